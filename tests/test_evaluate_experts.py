"""`pipeline.expert_stages.evaluate_experts`: stored experts re-scored on fresh seeds, the gate's verdict
rewritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experts.evaluation import evaluate, gate
from experts.metadata import ExpertStatus
from experts.training import ExpertPlan, train_expert
from pipeline.configs.experts import EvaluateExpertsConfig
from pipeline.errors import PipelineError
from pipeline.expert_stages.evaluate_experts import evaluate_experts
from pipeline.suites.babyai import BabyAIBotPolicy
from pipeline.tasks.registry import get_task

GOTO = get_task("babyai-go-to")


def _store_bot(root: Path, config: str = "babyai-go-to") -> None:
    """A real stored expert that needs no training (the BabyAI bot), left unevaluated."""
    plan = ExpertPlan(
        config=config,
        backend="babyai-bot",
        hyperparameters={},
        steps=0,
        seed=0,
        num_cpus=1,
        eval_episodes=2,
        threshold=0.5,
        deterministic=True,
        evaluate=False,
    )
    assert train_expert(plan, str(root)).status == ExpertStatus.UNEVALUATED


def _meta(root: Path, config: str = "babyai-go-to") -> dict:
    return json.loads((root / config / "metadata.json").read_text())


def test_an_expert_is_scored_gated_and_its_metadata_rewritten(tmp_path):
    root = tmp_path / "experts"
    _store_bot(root)
    assert _meta(root)["status"] == "unevaluated" and _meta(root)["evaluation"] is None

    summary = evaluate_experts(EvaluateExpertsConfig(str(root), tasks=("babyai-go-to",), episodes=3, seed=4))

    expected = evaluate(BabyAIBotPolicy.for_task(GOTO), GOTO, 3, 4)  # the bot replays each seed exactly
    decision = gate(expected, 0.5)  # the task's own threshold (env_configs/babyai.yaml)
    assert decision.accepted
    (result,) = summary.results
    assert (result.config, result.backend, result.status) == ("babyai-go-to", "babyai-bot", "accepted")
    assert result.evaluation == expected.to_dict()
    assert result.budget == ""  # an untrained expert has no learning curve to extrapolate
    assert summary.failed == [] and summary.experts_dir == str(root)

    meta = _meta(root)
    assert meta["status"] == "accepted"
    assert meta["evaluation"] == json.loads(json.dumps(expected.to_dict()))
    assert meta["gate"] == {"threshold": 0.5, "reason": decision.reason}
    assert summary.reports == {"babyai": [str(root / "summary-babyai.json")]}  # no curve: no PNG
    (row,) = json.loads((root / "summary-babyai.json").read_text())
    assert (row["config"], row["status"], row["episodes"]) == ("babyai-go-to", "accepted", 3)
    assert not (root / ".tmp").exists()


def test_a_higher_threshold_rejects_the_same_expert_and_says_why(tmp_path):
    root = tmp_path / "experts"
    _store_bot(root)
    summary = evaluate_experts(
        EvaluateExpertsConfig(str(root), tasks=("babyai-go-to",), episodes=2, threshold=50.0)
    )
    assert summary.results[0].status == "rejected"
    meta = _meta(root)
    assert meta["status"] == "rejected" and meta["gate"]["threshold"] == 50.0
    score = meta["evaluation"]["normalised"]
    assert meta["gate"]["reason"].startswith(f"normalised score {score:.3f} < 50.00 (mean return ")
    # a second evaluation with the default bar accepts it again: the verdict is rewritten, not appended
    evaluate_experts(EvaluateExpertsConfig(str(root), tasks=("babyai-go-to",), episodes=2))
    assert _meta(root)["status"] == "accepted" and _meta(root)["gate"]["threshold"] == 0.5


def test_a_missing_expert_fails_its_task_and_the_others_are_still_scored(tmp_path):
    root = tmp_path / "experts"
    _store_bot(root)
    summary = evaluate_experts(
        EvaluateExpertsConfig(str(root), tasks=("babyai-pickup", "babyai-go-to"), episodes=2)
    )
    assert [(r.config, r.status) for r in summary.results] == [
        ("babyai-pickup", "failed"),
        ("babyai-go-to", "accepted"),
    ]
    (failed,) = summary.failed
    assert failed.backend == "?"
    assert failed.error == f"no expert for babyai-pickup in {root}: train it with `pipeline train-experts`"
    assert not (root / "babyai-pickup").exists()


def test_an_unreadable_metadata_file_fails_its_task_and_the_others_are_still_reported(tmp_path):
    root = tmp_path / "experts"
    _store_bot(root)
    _store_bot(root, "babyai-pickup")
    (root / "babyai-go-to" / "metadata.json").write_text("{not json")
    summary = evaluate_experts(
        EvaluateExpertsConfig(str(root), tasks=("babyai-go-to", "babyai-pickup"), episodes=2)
    )
    assert [(r.config, r.status) for r in summary.results] == [
        ("babyai-go-to", "failed"),
        ("babyai-pickup", "accepted"),
    ]
    (failed,) = summary.failed
    assert failed.error.startswith(f"corrupt expert metadata {root / 'babyai-go-to' / 'metadata.json'}: ")
    assert failed.error.endswith("(retrain with `pipeline train-experts --overwrite`)")


@pytest.mark.parametrize("make", [False, True])
def test_an_empty_or_missing_experts_dir_is_refused_with_the_command_that_fills_it(tmp_path, make):
    root = tmp_path / "experts"
    if make:
        root.mkdir()
    with pytest.raises(PipelineError) as info:
        evaluate_experts(EvaluateExpertsConfig(str(root), tasks=("babyai-go-to",)))
    assert str(info.value) == f"no experts in {root}: train some with `pipeline train-experts --out {root}`"
