"""`experts.candidates`: trained and scripted candidates scored on the same seeds, the better kept."""

from __future__ import annotations

import dataclasses

import pytest

from experts.candidates import (
    Candidate,
    Choice,
    choose,
    evaluate_candidate,
    keep_scripted,
    scripted_alternative,
    scripted_candidate,
)
from experts.evaluation import EvalResult, eval_seeds, evaluate, gate
from pipeline.errors import PipelineError
from pipeline.suites.metaworld import MetaWorldScriptedPolicy
from pipeline.tasks.envs import make_env
from pipeline.tasks.policies import RandomPolicy
from pipeline.tasks.registry import get_task

REACH = get_task("metaworld-reach")


def _result(normalised: float, seeds: tuple[int, ...] = (1, 2)) -> EvalResult:
    return EvalResult(
        episodes=len(seeds),
        mean_return=100 * normalised,
        std_return=1.0,
        normalised=normalised,
        random_mean=0.0,
        expert_reference=100.0,
        success_rate=None,
        failed_episodes=0,
        seed=0,
        mean_length=10.0,
        seeds=seeds,
    )


def _candidate(backend: str, normalised: float, seeds: tuple[int, ...] = (1, 2)) -> Candidate:
    result = _result(normalised, seeds)
    return Candidate(backend, result, gate(result, 0.5))


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("metaworld-reach", "metaworld-scripted"),
        ("babyai-go-to", None),
        ("mujoco-hopper", None),
        ("atari-pong", None),
    ],
)
def test_only_meta_world_has_an_untrained_alternative(config, expected):
    assert scripted_alternative(get_task(config)) == expected


def test_the_scripted_candidate_is_scored_on_the_evaluation_seeds():
    candidate = scripted_candidate("metaworld-scripted", REACH, episodes=2, seed=3, threshold=0.5)
    alone = evaluate(MetaWorldScriptedPolicy(REACH.env_name), REACH, 2, 3)
    assert candidate.backend == "metaworld-scripted"
    assert candidate.evaluation == alone and candidate.evaluation.seeds == tuple(eval_seeds(3, 2))
    assert (
        candidate.decision == gate(alone, 0.5) and candidate.decision.accepted
    )  # reach: the script is expert


def test_a_candidate_is_gated_at_the_given_threshold():
    env = make_env(REACH)
    candidate = evaluate_candidate("random", RandomPolicy(env.action_space), REACH, 2, 0, threshold=0.5)
    assert candidate.decision.accepted is False and candidate.decision.threshold == 0.5
    assert candidate.to_dict() == {
        "evaluation": candidate.evaluation.to_dict(),
        "gate": {"threshold": 0.5, "reason": candidate.decision.reason},
        "status": "rejected",
    }


def test_a_script_for_another_suite_is_refused():
    with pytest.raises(PipelineError, match="plays Meta-World tasks only, not mujoco-hopper"):
        scripted_candidate("metaworld-scripted", get_task("mujoco-hopper"), 1, 0, 0.5)


def test_the_higher_normalised_score_is_kept_and_both_are_recorded():
    trained, scripted = _candidate("sample-factory", 0.8), _candidate("metaworld-scripted", 0.3)
    choice = choose(trained, scripted)
    assert choice.chosen is trained and choice.candidates == (scripted, trained)
    assert choice.reason == (
        "sample-factory scores 0.800 > metaworld-scripted 0.300 (normalised, same 2 evaluation seeds)"
    )
    assert choice.record() == {
        "candidates": {"metaworld-scripted": scripted.to_dict(), "sample-factory": trained.to_dict()},
        "chosen": "sample-factory",
        "choice_reason": choice.reason,
    }


@pytest.mark.parametrize("trained_score", [0.3, 0.1])
def test_a_tie_or_a_worse_network_keeps_the_script_that_runs_no_network(trained_score):
    trained, scripted = _candidate("sb3", trained_score), _candidate("metaworld-scripted", 0.3)
    choice = choose(trained, scripted)
    assert choice.chosen is scripted
    assert choice.reason == (
        f"metaworld-scripted scores 0.300 >= sb3 {trained_score:.3f} (normalised, same 2 evaluation seeds)"
    )


def test_candidates_scored_on_different_seeds_cannot_be_compared():
    with pytest.raises(ValueError, match="evaluated on different seeds"):
        choose(_candidate("sb3", 0.9, (1, 2)), _candidate("metaworld-scripted", 0.3, (1, 3)))


def test_a_script_that_passes_is_kept_alone_saying_how_to_train_anyway():
    scripted = _candidate("metaworld-scripted", 0.95)
    choice = keep_scripted(scripted)
    assert choice == Choice(scripted, (scripted,), choice.reason)
    assert choice.reason == (
        "metaworld-scripted passes the gate (normalised score 0.950 >= 0.50): kept without training "
        "(train-experts --force-train trains and compares anyway)"
    )
    assert dataclasses.asdict(choice)["chosen"]["backend"] == "metaworld-scripted"
