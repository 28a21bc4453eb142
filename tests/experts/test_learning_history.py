"""Learning histories: training keeps snapshots, rollout records them in training order."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from datasets import load_dataset

from experts.base import HistoryKeeper, TrainJob, history_steps
from experts.store import ExpertStore
from pipeline.checks.validate import validate
from pipeline.configs.datasets import ValidateConfig
from pipeline.errors import PipelineError
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.tasks.registry import get_task

HOPPER = get_task("mujoco-hopper")


def _rollout(out: Path, experts: Path, **overrides) -> RolloutConfig:
    settings = {"tasks": ("mujoco-hopper",), "episodes": 2, "workers": 0, "progress": False}
    settings |= {"learning_history": True, "experts_dir": str(experts), **overrides}
    return RolloutConfig(out=str(out), **settings)


@pytest.mark.parametrize("fixture", ["sb3_hopper", "sf_hopper"])
def test_training_keeps_snapshots_across_a_resume(fixture, request):
    root, first, second = request.getfixturevalue(fixture)
    steps = ExpertStore(str(root)).history_steps("mujoco-hopper")
    assert len(steps) >= 2 and steps == sorted(set(steps))
    assert steps[0] <= first.steps < steps[-1]  # snapshots from before and after the resume
    assert steps[-1] == second.steps  # the final policy closes the history
    meta = json.loads((root / "mujoco-hopper" / "metadata.json").read_text())
    assert meta["history_snapshots"] == len(steps) and 0 < meta["history_every"] <= first.steps
    assert not list((root / "mujoco-hopper" / "history").glob("*.partial"))


def test_rollout_records_the_history_in_training_order(sb3_hopper, tmp_path):
    root = sb3_hopper[0]
    snapshots = ExpertStore(str(root)).history_steps("mujoco-hopper")
    summary = rollout(_rollout(tmp_path / "data", root))
    config = "mujoco-hopper-history"
    counts = summary.configs[config]
    assert counts["train_episodes"] + counts["test_episodes"] == 2 * len(snapshots)
    manifest = json.loads((tmp_path / "data" / "meta" / config / "manifest.json").read_text())
    episodes = sorted((e for s in manifest["shards"] for e in s["episodes"]), key=lambda e: e["episode_id"])
    assert [e["checkpoint_step"] for e in episodes] == [s for s in snapshots for _ in range(2)]
    assert manifest["plan"]["history"] == {"snapshots": snapshots, "episodes_per_snapshot": 2}
    assert validate(ValidateConfig(str(tmp_path / "data"))).ok
    loaded = load_dataset(str(tmp_path / "data"), config)
    assert list(loaded["train"].features) == ["continuous_observations", "continuous_actions", "rewards"]
    # different snapshots act differently on the same observation: they really are different policies
    first, last = (ExpertStore(str(root)).load_policy(HOPPER, step=s) for s in (snapshots[0], snapshots[-1]))
    observation = np.zeros(HOPPER.observation.shape, dtype=np.float32) + 0.1
    assert not np.allclose(first.act(observation, {}), last.act(observation, {}))


def test_resume_of_a_history_refuses_changed_snapshots(sb3_hopper, tmp_path):
    root = tmp_path / "experts"
    shutil.copytree(sb3_hopper[0], root)
    out = tmp_path / "data"
    rollout(_rollout(out, root))
    newest = max((root / "mujoco-hopper" / "history").iterdir())
    shutil.rmtree(newest)  # the expert's history changed since the run was planned
    with pytest.raises(PipelineError, match=r"different settings .*history"):
        rollout(_rollout(out, root, resume=True))


def test_history_needs_a_trained_expert_with_snapshots(sb3_hopper, tmp_path):
    with pytest.raises(PipelineError, match="--experts-dir"):
        rollout(_rollout(tmp_path / "a", tmp_path, experts_dir=None))
    with pytest.raises(PipelineError, match="no expert for mujoco-hopper"):
        rollout(_rollout(tmp_path / "b", tmp_path / "empty"))
    root = tmp_path / "one-snapshot"
    shutil.copytree(sb3_hopper[0], root)
    for snapshot in sorted((root / "mujoco-hopper" / "history").iterdir())[1:]:
        shutil.rmtree(snapshot)
    with pytest.raises(PipelineError, match="kept 1 learning-history snapshot"):
        rollout(_rollout(tmp_path / "c", root))
    with pytest.raises(PipelineError, match="not --steps"):
        RolloutConfig(out=str(tmp_path / "d"), tasks=("mujoco-hopper",), steps=100, learning_history=True)
    for path in ("a", "b", "c"):
        assert not (tmp_path / path).exists()  # refused before any work


def test_snapshots_are_written_whole_or_not_at_all(tmp_path):
    job = TrainJob(HOPPER, {}, 100, 0, str(tmp_path), "", history_dir=str(tmp_path / "h"), history_every=10)
    keeper = HistoryKeeper(job)

    def crash(folder: str) -> None:
        Path(folder, "model.zip").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        keeper.save(10, crash)
    assert history_steps(str(tmp_path / "h")) == []  # the interrupted snapshot is not listed
    keeper.save(12, lambda folder: Path(folder, "model.zip").write_bytes(b"whole"))
    assert history_steps(str(tmp_path / "h")) == [12]
    assert not keeper.due(19) and keeper.due(20)
    resumed = HistoryKeeper(job)
    assert not resumed.due(19) and resumed.due(20)  # marks continue after a resume


def test_time_limited_training_spaces_snapshots_over_time(tmp_path):
    """`--time-limit` usually stops far short of the step budget: snapshots then follow the clock."""
    from pipeline.expert_stages.train_experts import TrainExpertsConfig, plan_expert

    plan = plan_expert(HOPPER, TrainExpertsConfig(out=str(tmp_path), time_limit_min=30.0), None)
    assert plan.history_every_s == 30 * 60 / HOPPER.expert.history_snapshots
    job = TrainJob(
        HOPPER, {}, 100, 0, str(tmp_path), "", history_dir=str(tmp_path / "h"), history_every_s=0.2
    )
    keeper = HistoryKeeper(job)
    assert not keeper.due(5)
    time.sleep(0.25)
    assert keeper.due(5)
    keeper.save(5, lambda folder: Path(folder, "model.zip").write_bytes(b"x"))
    assert history_steps(str(tmp_path / "h")) == [5] and not keeper.due(6)
