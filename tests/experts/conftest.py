"""Shared fixtures for expert tests: tiny real trainings, done once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from expert_helpers import tiny_plan

from experts.training import ExpertResult, train_expert


def _train_twice(root: Path, backend: str, first: int, second: int) -> tuple[ExpertResult, ExpertResult]:
    """Train `first` steps, then resume to `second`: both results (the store is `root`).

    Learning-history snapshots are kept every `first // 2` steps."""
    every = first // 2
    one = train_expert(tiny_plan("mujoco-hopper", backend, first, history_every=every), str(root))
    two = train_expert(
        tiny_plan("mujoco-hopper", backend, second, resume=True, history_every=every), str(root)
    )
    return one, two


@pytest.fixture(scope="session")
def sf_hopper(tmp_path_factory) -> tuple[Path, ExpertResult, ExpertResult]:
    """A real sample-factory Hopper expert: 1500 steps, then resumed to 3000 (read-only)."""
    root = tmp_path_factory.mktemp("sf") / "experts"
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    trained = (root, *_train_twice(root, "sample-factory", 1500, 3000))
    # sample-factory sets CUDA_VISIBLE_DEVICES in the process it trains in; the backend restores it
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == before
    return trained


@pytest.fixture(scope="session")
def sb3_hopper(tmp_path_factory) -> tuple[Path, ExpertResult, ExpertResult]:
    """A real stable-baselines3 PPO Hopper expert: 1024 steps, then resumed to 2048 (read-only)."""
    root = tmp_path_factory.mktemp("sb3") / "experts"
    return (root, *_train_twice(root, "sb3", 1024, 2048))


RELEASES = {
    # config: (steps, env name in sample-factory's examples, repo as JAT names it)
    "mujoco-hopper": (1500, "mujoco_hopper", "edbeeching/mujoco_hopper_1111"),
    "atari-breakout": (512, "atari_breakout", "edbeeching/atari_2B_atari_breakout_1111"),
    "metaworld-reach": (512, "reach-v2", "qgallouedec/reach-v2"),
}


@pytest.fixture(scope="session")
def sf_released(tmp_path_factory) -> Path:
    """Experts trained by sample-factory itself (MuJoCo, Atari, Meta-World, a few hundred steps each)
    that scored a best policy and kept milestones, each in the exact layout of JAT's released repos:
    a mirror folder holding `edbeeching/mujoco_hopper_1111/`, `edbeeching/atari_2B_atari_breakout_1111/`
    and `qgallouedec/reach-v2/` (read-only)."""
    from dataclasses import replace

    from expert_helpers import released_layout

    root = tmp_path_factory.mktemp("sf-release")
    scored = {"save_best_after": 0, "save_best_every_sec": 1, "save_milestones_sec": 1}
    for config, (steps, env, repo) in RELEASES.items():
        plan = replace(tiny_plan(config, "sample-factory", steps, **scored), evaluate=False)
        result = train_expert(plan, str(root / "trained"))
        assert result.status != "failed", result.error
        released_layout(root / "trained" / config / "checkpoints", root / "mirror" / repo, env)
    return root / "mirror"


@pytest.fixture(scope="session")
def sf_released_hopper(sf_released) -> Path:
    """The mirror of `sf_released`, used for its Hopper expert."""
    return sf_released
