"""Meta-World experts: the scripted policy or a trained network, whichever scores higher on the same seeds.

Real envs, real sample-factory (a tiny budget), real rollouts. The tiny network will most likely
lose to the scripted policy, but the tests assert the choice against the recorded scores, so they
hold (and can fail) whichever wins.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from expert_helpers import TINY_SF

from experts.evaluation import eval_seeds
from experts.metadata import ExpertStatus
from experts.store import ExpertStore
from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.expert_stages.train_experts import TrainExpertsConfig, train_experts
from pipeline.rollout.policy_factory import check_policy, make_policy
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task

SCRIPTED, TRAINED = "metaworld-scripted", "sample-factory"
LOW = "metaworld-handle-pull"  # scripted policy: 0.05 of JAT's expert, below the 0.5 gate
HIGH = "metaworld-reach"  # scripted policy: above the gate
EPISODES = 3


def _meta(root: Path, config: str) -> dict:
    return json.loads((root / config / "metadata.json").read_text())


def _train(out: Path, config: str, **overrides):
    settings = {"eval_episodes": EPISODES, "num_cpus": 1, "workers": 0, "progress": False}
    # A tiny budget: if a path trains that should not, it is over in seconds and the asserts say so.
    settings |= {"steps": 2048, "hyperparameters": dict(TINY_SF), "history_every": 1024}
    summary = train_experts(TrainExpertsConfig(out=str(out), tasks=(config,), **{**settings, **overrides}))
    assert not summary.failed, [r.error for r in summary.failed]
    return summary.results[0]


@pytest.fixture(scope="module")
def low_task(tmp_path_factory) -> tuple[Path, object]:
    """handle-pull trained for 2048 steps next to its scripted policy (read-only)."""
    out = tmp_path_factory.mktemp("metaworld-choice") / "experts"
    return out, _train(out, LOW)


def test_below_the_gate_trains_and_keeps_the_better_on_identical_seeds(low_task):
    out, result = low_task
    meta = _meta(out, LOW)
    candidates = meta["candidates"]
    assert set(candidates) == {SCRIPTED, TRAINED}
    scripted, trained = (candidates[name]["evaluation"] for name in (SCRIPTED, TRAINED))
    assert scripted["normalised"] < 0.5, "premise: the scripted policy is below the gate on this task"
    assert meta["backend"] == TRAINED and meta["trained"] is True and meta["steps_trained"] >= 2048
    # the trained network's learning history is kept either way (how many snapshots a 2048-step
    # run gets depends on the clock: sample-factory's checkpoints are save_every_sec apart)
    assert meta["history_snapshots"] >= 1
    # both candidates played the very same episodes
    assert scripted["seeds"] == trained["seeds"] == eval_seeds(0, EPISODES)
    best = TRAINED if trained["normalised"] > scripted["normalised"] else SCRIPTED
    assert meta["chosen"] == best == result.chosen, meta["choice_reason"]
    assert meta["evaluation"] == candidates[best]["evaluation"]
    assert meta["status"] == candidates[best]["status"] == result.status
    assert meta["gate"] == candidates[best]["gate"]
    # the scripted policy scores below the gate on these fixed seeds (asserted above): rejected
    assert candidates[SCRIPTED]["status"] == ExpertStatus.REJECTED
    # the tiny network's score depends on its training run; its verdict must follow the gate either way
    accepted = trained["normalised"] >= candidates[TRAINED]["gate"]["threshold"]
    assert candidates[TRAINED]["status"] == (ExpertStatus.ACCEPTED if accepted else ExpertStatus.REJECTED)
    # learning-history snapshots are the trained network's, whichever candidate was chosen
    store = ExpertStore(str(out))
    snapshot = store.load_policy(get_task(LOW), step=store.history_steps(LOW)[-1]).provenance()
    assert snapshot["backend"] == TRAINED and "choice" not in snapshot


def test_rollout_expert_records_with_the_kept_candidate(low_task, tmp_path):
    experts, _ = low_task
    meta = _meta(experts, LOW)
    spec = get_task(LOW)
    if meta["status"] != ExpertStatus.ACCEPTED:
        with pytest.raises(PipelineError, match="--allow-weak"):
            check_policy("expert", spec, str(experts))
    data = tmp_path / "data"
    args = ["rollout", "--tasks", LOW, "--policy", "expert", "--experts-dir", str(experts), "--allow-weak"]
    assert main([*args, "--episodes", "2", "--workers", "0", "--out", str(data), "--no-progress"]) == 0
    manifest = json.loads((data / "meta" / LOW / "manifest.json").read_text())
    provenance = manifest["provenance"]
    assert manifest["plan"]["policy"] == "expert"
    assert provenance["choice"]["chosen"] == meta["chosen"]
    assert provenance["choice"]["normalised"] == {
        name: c["evaluation"]["normalised"] for name, c in meta["candidates"].items()
    }
    if meta["chosen"] == SCRIPTED:
        assert provenance["policy"] == SCRIPTED and "backend" not in provenance
    else:
        assert provenance["policy"] == "expert" and provenance["backend"] == TRAINED


def test_a_store_without_the_task_keeps_the_scripted_expert(tmp_path):
    spec = get_task(LOW)
    policy = make_policy("expert", spec, make_env(spec), str(tmp_path))
    assert policy.provenance()["policy"] == SCRIPTED and "choice" not in policy.provenance()


def test_scripted_policy_passing_the_gate_is_kept_untrained(tmp_path):
    result = _train(tmp_path, HIGH)
    meta = _meta(tmp_path, HIGH)
    assert meta["backend"] == SCRIPTED == meta["chosen"] == result.backend
    assert meta["trained"] is False and meta["steps_trained"] == 0
    assert not (tmp_path / HIGH / "checkpoints").exists() and not (tmp_path / HIGH / "model").exists()
    assert list(meta["candidates"]) == [SCRIPTED]
    assert meta["status"] == ExpertStatus.ACCEPTED and meta["evaluation"]["normalised"] >= 0.5
    assert "--force-train" in meta["choice_reason"]
    policy = make_policy("expert", get_task(HIGH), make_env(get_task(HIGH)), str(tmp_path))
    assert policy.provenance()["choice"]["chosen"] == SCRIPTED


def test_force_train_needs_a_trained_backend(capsys):
    args = ["train-experts", "--tasks", HIGH, "--backend", SCRIPTED, "--force-train", "--out", "unused"]
    assert main(args) == 2
    assert "--force-train" in capsys.readouterr().err


@pytest.mark.slow  # a second training
def test_force_train_trains_where_the_scripted_policy_passes(tmp_path):
    out = tmp_path / "experts"
    tiny = [arg for key, value in TINY_SF.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    args = ["train-experts", "--tasks", HIGH, "--force-train", "--steps", "1024", "--eval-episodes", "2"]
    assert main([*args, *tiny, "--num-cpus", "1", "--workers", "0", "--no-progress", "--out", str(out)]) == 0
    meta = _meta(out, HIGH)
    assert meta["backend"] == TRAINED and meta["steps_trained"] >= 1024
    scores = {name: c["evaluation"]["normalised"] for name, c in meta["candidates"].items()}
    assert set(scores) == {SCRIPTED, TRAINED}
    assert meta["chosen"] == (TRAINED if scores[TRAINED] > scores[SCRIPTED] else SCRIPTED)
