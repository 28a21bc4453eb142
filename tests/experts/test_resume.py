"""A resume continues from its checkpoint and the store tells the truth about it: sample-factory loads
a checkpoint holding a recorded best score, a learner that does not load it stops the run instead of
training again from step 0, and the learning curve loses the rows of the training a kill undid."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from expert_helpers import TINY_SF, tiny_plan

from experts.base import read_curve
from experts.training import FAILED, ExpertPlan, train_expert

CHECKPOINTS = ("mujoco-hopper", "checkpoints", "sf", "checkpoint_p0")
# Score the best policy from the first step, so that the checkpoint holds a numpy `best_performance`
# as every real run's does once it has scored episodes (the default set's tiny runs never do).
SCORED = {"save_best_after": 0, "save_best_every_sec": 1}


def _plan(steps: int, resume: bool, **overrides) -> ExpertPlan:
    plan = tiny_plan("mujoco-hopper", "sample-factory", steps, resume=resume, **overrides)
    return replace(plan, evaluate=False)


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("sf-scored") / "experts"
    first = train_expert(_plan(1500, resume=False, **SCORED), str(root))
    assert first.status != FAILED, first.error
    return root, first


def _latest(root: Path) -> Path:
    return sorted(root.joinpath(*CHECKPOINTS).glob("checkpoint_*.pth"))[-1]


def test_resume_continues_from_a_checkpoint_with_a_recorded_best_score(scored_run, tmp_path):
    root = tmp_path / "experts"
    shutil.copytree(scored_run[0], root)
    first = scored_run[1]
    latest = _latest(root)
    state = torch.load(latest, weights_only=False)
    if not isinstance(state["best_performance"], np.floating):
        # sample-factory records a best score on a 1-s timer, or at the stop after the last checkpoint
        # was written: a run that ends before the timer fires with episode stats (a quiet, fast machine)
        # leaves the initial Python float there. What a later checkpoint of such a run holds is the
        # score as the numpy float sample-factory computes it; write that, so the case is always met.
        state["best_performance"] = np.float64(state["best_performance"])
        torch.save(state, latest)
    best = torch.load(latest, weights_only=False)["best_performance"]
    assert isinstance(best, np.floating)  # the case torch's weights_only refused
    second = train_expert(_plan(3000, resume=True), str(root))
    assert second.status != FAILED, second.error
    meta = json.loads((root / "mujoco-hopper" / "metadata.json").read_text())
    assert meta["resumed_from_step"] == first.steps
    state = torch.load(_latest(root), weights_only=False)
    assert state["env_steps"] == meta["steps_trained"] >= 3000
    # Started again from 0, the learner would have trained 3000 steps in the second run alone: the
    # episodes of the whole curve would add up to far more steps than were trained in all.
    curve = read_curve(str(root / "mujoco-hopper" / "learning_curve.csv"))
    episode_steps = sum(row["episodes"] * row["mean_length"] for row in curve)
    # (the sampler may finish episodes of one batch it collected but did not train on: one batch slack)
    assert episode_steps <= meta["steps_trained"] + TINY_SF["batch_size"]
    assert [row["steps"] for row in curve] == sorted({row["steps"] for row in curve})


def test_a_learner_that_does_not_load_the_checkpoint_stops_the_run(scored_run, tmp_path, monkeypatch):
    """sample-factory 2.1.1's own loader returned None on any error and trained from step 0."""
    from sample_factory.algo.learning.learner import Learner

    root = tmp_path / "experts"
    shutil.copytree(scored_run[0], root)
    monkeypatch.setattr(Learner, "load_checkpoint", staticmethod(lambda checkpoints, device: None))
    result = train_expert(_plan(3000, resume=True), str(root))
    assert result.status == FAILED
    assert "restarted at" in result.error and "instead of resuming" in result.error
    assert _latest(root).name in result.error
    meta = json.loads((root / "mujoco-hopper" / "metadata.json").read_text())
    assert meta["steps_trained"] == scored_run[1].steps  # the store still tells the first run's truth


def test_an_sb3_resume_drops_the_curve_rows_of_the_training_it_undid(tmp_path):
    """Killed after its last curve row but before the checkpoint that would cover it: the resume
    goes back to the previous checkpoint, so that row's training is undone and the row must go."""
    root = tmp_path / "experts"
    first = train_expert(replace(tiny_plan("mujoco-hopper", "sb3", 2048), evaluate=False), str(root))
    assert first.status != FAILED, first.error
    folder = root / "mujoco-hopper" / "checkpoints" / "sb3"
    newest = sorted(folder.glob("model_*_steps.zip"))[-1]
    for undone in folder.glob(newest.name.replace(".zip", "*")):
        undone.unlink()  # as if the kill came before this checkpoint was written
    killed_rows = read_curve(str(root / "mujoco-hopper" / "checkpoints" / "learning_curve.csv"))
    assert killed_rows and killed_rows[-1]["steps"] > 1536
    second = train_expert(
        replace(tiny_plan("mujoco-hopper", "sb3", 2048, resume=True), evaluate=False), str(root)
    )
    assert second.status != FAILED, second.error
    meta = json.loads((root / "mujoco-hopper" / "metadata.json").read_text())
    assert meta["resumed_from_step"] == 1536
    steps = [row["steps"] for row in read_curve(str(root / "mujoco-hopper" / "learning_curve.csv"))]
    assert steps == sorted(set(steps)) and steps[-1] == meta["steps_trained"]


@pytest.mark.parametrize("left", ["checkpoint_temp", "best_temp"])
def test_a_resume_after_a_kill_inside_sample_factorys_save_continues_from_the_last_whole_checkpoint(
    scored_run, tmp_path, left
):
    """sample-factory saves to `checkpoint_temp` (`best_temp`) and renames it when whole; killed in
    between, the half-written file stays, and its learner loads the last `checkpoint_*` by name: that
    file. The resume failed on it (found by benchmarks/chaos_stages.py, kind train-sf)."""
    root = tmp_path / "experts"
    shutil.copytree(scored_run[0], root)
    latest = _latest(root)
    temporary = latest.parent / left
    temporary.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # the kill's moment
    second = train_expert(_plan(3000, resume=True), str(root))
    assert second.status != FAILED, second.error
    meta = json.loads((root / "mujoco-hopper" / "metadata.json").read_text())
    assert meta["resumed_from_step"] == scored_run[1].steps
    assert not temporary.exists()


def test_a_resume_drops_the_snapshots_of_the_training_it_undid(tmp_path):
    """Killed after snapshots past its last checkpoint: the resume trains those steps again, so the
    history must not keep the undone branch's policies (nor a snapshot the kill left half-written);
    found by benchmarks/chaos_stages.py, kind train-sb3."""
    from experts.base import history_steps

    root = tmp_path / "experts"
    plan = replace(tiny_plan("mujoco-hopper", "sb3", 2048, history_every=256), evaluate=False)
    assert train_expert(plan, str(root)).status != FAILED
    expert = root / "mujoco-hopper"
    folder = expert / "checkpoints" / "sb3"
    for undone in folder.glob(sorted(folder.glob("model_*_steps.zip"))[-1].name.replace(".zip", "*")):
        undone.unlink()  # as if the kill came before the last checkpoint was written
    history = expert / "history"
    killed = {
        step: (history / f"{step:012d}" / "model.zip").read_bytes() for step in history_steps(str(history))
    }
    assert max(killed) == 2048
    (history / "000000001800.partial").mkdir()  # a snapshot the kill interrupted
    second = train_expert(replace(plan, resume=True), str(root))
    assert second.status != FAILED, second.error
    meta = json.loads((expert / "metadata.json").read_text())
    assert meta["resumed_from_step"] == 1536
    kept = history_steps(str(history))
    assert sorted(p.name for p in history.iterdir()) == [f"{step:012d}" for step in kept]
    for step in kept:  # at most the checkpoint's: the killed run's; past it: the resumed run's own
        written = (history / f"{step:012d}" / "model.zip").read_bytes()
        assert (written == killed.get(step)) == (step <= 1536), step
    assert meta["history_snapshots"] == len(kept) and kept[-1] == meta["steps_trained"]


def test_a_resume_after_a_kill_past_the_training_stores_the_trained_checkpoint_as_it_is(scored_run, tmp_path):
    """Killed once training had ended (evaluating, writing metadata.json): the resume found a
    checkpoint at the budget and sample-factory's runner trained one more iteration past it, so the
    stored expert differed from the uninterrupted run's (found by benchmarks/chaos_stages.py)."""
    root = tmp_path / "experts"
    shutil.copytree(scored_run[0], root)
    (root / "mujoco-hopper" / "metadata.json").unlink()  # the kill came before it was written
    checkpoints = sorted(p.name for p in root.joinpath(*CHECKPOINTS).glob("checkpoint_*.pth"))
    again = train_expert(_plan(1500, resume=True), str(root))
    assert again.status != FAILED, again.error
    meta = json.loads((root / "mujoco-hopper" / "metadata.json").read_text())
    assert meta["steps_trained"] == meta["resumed_from_step"] == scored_run[1].steps
    assert sorted(p.name for p in root.joinpath(*CHECKPOINTS).glob("checkpoint_*.pth")) == checkpoints
    model = torch.load(root / "mujoco-hopper" / "model" / "model.pth", weights_only=False)
    assert model["env_steps"] == scored_run[1].steps
