"""`experts.evaluation`: the gate's verdict for given scores, and evaluation on real envs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from experts.evaluation import (
    DEFAULT_THRESHOLD,
    EVAL_SEED_BASE,
    EvalResult,
    check_threshold,
    eval_seeds,
    evaluate,
    gate,
    judged,
)
from experts.metadata import ExpertMetadata, ExpertStatus
from pipeline.errors import PipelineError
from pipeline.suites.babyai import BabyAIBotPolicy
from pipeline.tasks.envs import make_env
from pipeline.tasks.policies import RandomPolicy
from pipeline.tasks.registry import get_task

PENDULUM = get_task("mujoco-pendulum")
OPEN = get_task("babyai-open")


def _result(normalised: float, mean_return: float = 10.0) -> EvalResult:
    return EvalResult(
        episodes=4,
        mean_return=mean_return,
        std_return=1.0,
        normalised=normalised,
        random_mean=2.0,
        expert_reference=20.0,
        success_rate=None,
        failed_episodes=0,
        seed=0,
        mean_length=50.0,
    )


@pytest.mark.parametrize(
    ("normalised", "threshold", "expected"),
    [
        (0.5, 0.5, ExpertStatus.ACCEPTED),  # reaching the threshold is enough
        (0.4999, 0.5, ExpertStatus.REJECTED),
        (1.3, 0.5, ExpertStatus.ACCEPTED),  # better than JAT's expert
        (-0.2, 0.5, ExpertStatus.REJECTED),  # worse than random
        (0.0, 0.0, ExpertStatus.ACCEPTED),  # threshold 0: as good as random passes
        (-0.01, 0.0, ExpertStatus.REJECTED),
        (0.95, 1.0, ExpertStatus.REJECTED),
        (1.0, 1, ExpertStatus.ACCEPTED),  # an int threshold works as its float
    ],
)
def test_the_gate_verdict_for_given_scores(normalised, threshold, expected):
    decision = gate(_result(normalised), threshold)
    assert decision.status is expected
    assert decision.accepted is (expected is ExpertStatus.ACCEPTED)
    assert decision.threshold == float(threshold) and isinstance(decision.threshold, float)


def test_the_default_threshold_is_half_of_jats_expert():
    assert DEFAULT_THRESHOLD == 0.5
    assert gate(_result(0.5)).status is ExpertStatus.ACCEPTED
    assert gate(_result(0.49)).status is ExpertStatus.REJECTED


def test_the_reason_gives_the_score_and_what_it_is_measured_against():
    assert gate(_result(0.75), 0.5).reason == "normalised score 0.750 >= 0.50"
    assert gate(_result(0.25, mean_return=6.5), 0.5).reason == (
        "normalised score 0.250 < 0.50 (mean return 6.50; random 2.00, JAT expert 20.00)"
    )


@pytest.mark.parametrize("threshold", [-0.1, float("nan"), "0.5", None])
def test_a_threshold_below_random_or_not_a_number_is_refused(threshold):
    with pytest.raises(PipelineError) as info:
        gate(_result(0.9), threshold)
    assert str(info.value) == (
        f"the gate threshold must be a normalised score >= 0 (0 = random), got {threshold!r}"
    )
    with pytest.raises(PipelineError):
        check_threshold(threshold)


def test_judged_records_the_evaluation_and_the_verdict():
    metadata = ExpertMetadata("mujoco-pendulum", "mujoco", "sb3", trained=True)
    result = _result(0.3)
    decision = gate(result, 0.5)
    after = judged(metadata, result, decision)
    assert after.status is ExpertStatus.REJECTED
    assert after.gate == {"threshold": 0.5, "reason": decision.reason}
    assert after.evaluation == result.to_dict() and after.normalised == 0.3
    assert metadata.status is ExpertStatus.UNEVALUATED and metadata.evaluation is None  # unchanged
    assert replace(after, evaluation=None, gate=None, status=ExpertStatus.UNEVALUATED) == metadata
    accepted = judged(after, _result(0.8), gate(_result(0.8), 0.5))  # re-evaluation replaces the verdict
    assert accepted.status is ExpertStatus.ACCEPTED and accepted.normalised == 0.8


def test_evaluation_seeds_depend_on_the_evaluation_seed_alone():
    assert eval_seeds(0, 3) == [EVAL_SEED_BASE, EVAL_SEED_BASE + 1, EVAL_SEED_BASE + 2]
    assert eval_seeds(2, 2) == [EVAL_SEED_BASE + 20_000, EVAL_SEED_BASE + 20_001]
    assert eval_seeds(1, 0) == []


def test_evaluate_scores_a_policy_on_real_episodes_against_jats_references():
    env = make_env(PENDULUM)
    result = evaluate(RandomPolicy(env.action_space), PENDULUM, episodes=3, seed=1, env=env)
    assert result.episodes == 3 and result.seed == 1 and result.seeds == tuple(eval_seeds(1, 3))
    assert result.failed_episodes == 0 and result.success_rate is None  # MuJoCo reports no success
    assert result.normalised == pytest.approx(PENDULUM.scores.normalise(result.mean_return))
    assert (result.random_mean, result.expert_reference) == (
        PENDULUM.scores.random_mean,
        PENDULUM.scores.expert_mean,
    )
    # InvertedPendulum-v5 pays 1 per step but 0 on the terminating one
    assert result.mean_return == pytest.approx(result.mean_length - 1)
    # a random policy keeps the pole up a few steps: far below JAT's expert, so the gate rejects it
    assert result.mean_length < 50
    assert gate(result).status is ExpertStatus.REJECTED
    assert evaluate(RandomPolicy(env.action_space), PENDULUM, episodes=3, seed=1, env=env) == result


def test_episodes_the_policy_gives_up_count_as_failed_and_score_what_was_played():
    # With no subgoals allowed the bot gives up at its first replan on the first evaluation seed
    # (0 steps played, return 0) and solves the second, which needs no subgoal pushed.
    result = evaluate(BabyAIBotPolicy(replan_max_subgoals=0), OPEN, episodes=2, seed=0)
    assert result.failed_episodes == 1 and result.success_rate == 0.5
    assert result.mean_length == 3.0  # the solved episode: 6 steps, the other 0
    assert result.mean_return == pytest.approx(result.std_return)  # returns are [0, r]: mean = std = r / 2
    assert result.normalised == pytest.approx(OPEN.scores.normalise(result.mean_return))
    assert result.normalised == pytest.approx(0.466, abs=1e-3)
    assert gate(result).status is ExpertStatus.REJECTED


def test_the_bot_is_accepted_on_babyai_open():
    result = evaluate(BabyAIBotPolicy(), OPEN, episodes=2, seed=0)
    assert result.failed_episodes == 0 and result.success_rate == 1.0 and result.mean_length == 7.0
    assert result.normalised == pytest.approx(1.043, abs=1e-3)  # a little above JAT's own bot data
    assert gate(result).status is ExpertStatus.ACCEPTED


def test_evaluation_needs_an_episode():
    with pytest.raises(PipelineError, match="evaluation needs at least 1 episode, got 0"):
        evaluate(RandomPolicy(make_env(PENDULUM).action_space), PENDULUM, episodes=0)
