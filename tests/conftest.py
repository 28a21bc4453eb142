"""Shared fixtures: caches in temp dirs, one real local Ray cluster, small real datasets."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_CACHE = tempfile.mkdtemp(prefix="jat-test-cache-")
os.environ.setdefault("HF_HOME", os.path.join(_CACHE, "hf"))
os.environ.setdefault("HF_DATASETS_CACHE", os.path.join(_CACHE, "hf", "datasets"))
os.environ.setdefault("RAY_TMPDIR", os.path.join(_CACHE, "ray"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# One task per suite, the policy each has without training, few episodes: the fast default set.
SAMPLE_TASKS = {
    "babyai-go-to": "scripted",
    "metaworld-reach": "scripted",
    "mujoco-hopper": "random",
    "atari-breakout": "random",
}


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster, started once for the whole session."""
    from pipeline.runtime.executor import init_ray

    ray = init_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def _rollout(out: Path, tasks: tuple[str, ...], policy: str | None, episodes: int, workers: int = 0) -> None:
    from pipeline.rollout.run import RolloutConfig, rollout

    rollout(
        RolloutConfig(
            out=str(out), tasks=tasks, episodes=episodes, workers=workers, policy=policy, progress=False
        )
    )


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory) -> Path:
    """A real dataset of the four sample tasks, recorded in-process (read-only: copy before changing)."""
    out = tmp_path_factory.mktemp("sample") / "dataset"
    _rollout(out, ("babyai-go-to", "metaworld-reach"), None, episodes=5)
    _rollout(out, ("mujoco-hopper", "atari-breakout"), "random", episodes=5)
    return out


@pytest.fixture
def dataset_copy(sample_dataset, tmp_path) -> Path:
    """A private copy of the sample dataset that a test may corrupt."""
    target = tmp_path / "dataset"
    shutil.copytree(sample_dataset, target)
    return target


@pytest.fixture
def rollout():
    return _rollout


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh local Hub-API server (tests/hub_server.py); this process's real huggingface_hub client
    points at it with a valid token and a fresh download cache, never at a login cache."""
    from hub_server import HubServer
    from huggingface_hub import constants

    server = HubServer(tmp_path / "hub").start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", server.token)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login-cache" / "token"))
    yield server
    server.stop()
