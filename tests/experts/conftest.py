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


@pytest.fixture(scope="session")
def sf_released_hopper(tmp_path_factory) -> Path:
    """A Hopper expert trained by sample-factory (1500 steps) that scored a best policy and kept
    milestones, in the exact layout of JAT's released `edbeeching/mujoco_hopper_1111`: the mirror
    folder holding `edbeeching/mujoco_hopper_1111/` (read-only)."""
    from dataclasses import replace

    from expert_helpers import released_layout

    root = tmp_path_factory.mktemp("sf-release")
    scored = {"save_best_after": 0, "save_best_every_sec": 1, "save_milestones_sec": 1}
    plan = replace(tiny_plan("mujoco-hopper", "sample-factory", 1500, **scored), evaluate=False)
    result = train_expert(plan, str(root / "trained"))
    assert result.status != "failed", result.error
    mirror = root / "mirror"
    workdir = root / "trained" / "mujoco-hopper" / "checkpoints"
    released_layout(workdir, mirror / "edbeeching" / "mujoco_hopper_1111", "mujoco_hopper")
    return mirror
