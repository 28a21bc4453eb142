"""Evaluation and the quality gate on real envs: random is rejected, bot and scripted experts pass."""

from __future__ import annotations

import json

import pytest

from experts.evaluation import DEFAULT_THRESHOLD, eval_seeds, evaluate, gate
from experts.metadata import ExpertStatus
from experts.store import ExpertStore
from experts.training import train_expert
from pipeline.errors import PipelineError
from pipeline.rollout.policy_factory import check_policy, make_policy
from pipeline.suites.babyai import BabyAIBotPolicy
from pipeline.suites.metaworld import MetaWorldScriptedPolicy
from pipeline.tasks.envs import make_env
from pipeline.tasks.policies import RandomPolicy
from pipeline.tasks.registry import get_task

REACH = get_task("metaworld-reach")
GOTO = get_task("babyai-go-to")
HOPPER = get_task("mujoco-hopper")


def test_gate_rejects_a_random_policy():
    env = make_env(REACH)
    result = evaluate(RandomPolicy(env.action_space), REACH, episodes=5, seed=0, env=env)
    decision = gate(result)
    assert not decision.accepted and decision.status == "rejected"
    assert result.normalised < DEFAULT_THRESHOLD
    assert result.success_rate is not None  # Meta-World reports success
    assert "<" in decision.reason


def test_scripted_metaworld_expert_passes_the_gate():
    result = evaluate(MetaWorldScriptedPolicy(REACH.env_name), REACH, episodes=5, seed=0)
    assert gate(result).accepted, result
    assert result.success_rate == 1.0


def test_babyai_bot_passes_the_gate():
    result = evaluate(BabyAIBotPolicy(), GOTO, episodes=5, seed=0)
    decision = gate(result)
    assert decision.accepted, result
    assert result.success_rate is not None and result.success_rate >= 0.8


def test_evaluation_seeds_are_fresh_and_reproducible():
    assert eval_seeds(0, 3) == eval_seeds(0, 3)
    assert set(eval_seeds(0, 3)).isdisjoint(eval_seeds(1, 3))
    assert min(eval_seeds(0, 3)) > 1_000_000  # far from rollout's and training's small seeds
    env = make_env(HOPPER)
    first = evaluate(RandomPolicy(env.action_space), HOPPER, episodes=2, seed=4, env=env)
    second = evaluate(RandomPolicy(env.action_space), HOPPER, episodes=2, seed=4, env=env)
    assert first == second


@pytest.mark.parametrize("threshold", [-0.1, float("nan")])
def test_threshold_below_random_is_refused(threshold):
    env = make_env(REACH)
    result = evaluate(RandomPolicy(env.action_space), REACH, episodes=1, env=env)
    with pytest.raises(PipelineError, match="threshold"):
        gate(result, threshold)


def _scripted_expert(tmp_path, config: str, backend: str, threshold: float, expected: ExpertStatus) -> str:
    from expert_helpers import tiny_plan

    plan = tiny_plan(config, backend, 0)
    plan = type(plan)(**{**plan.__dict__, "threshold": threshold, "eval_episodes": 3})
    result = train_expert(plan, str(tmp_path))
    assert result.status == expected, (result.error, result.evaluation)
    return str(tmp_path)


def test_rollout_refuses_a_rejected_expert_unless_allow_weak(tmp_path):
    # An impossible threshold makes Meta-World's scripted expert a stored, rejected expert.
    experts_dir = _scripted_expert(
        tmp_path, "metaworld-reach", "metaworld-scripted", threshold=50.0, expected=ExpertStatus.REJECTED
    )
    meta = json.loads((tmp_path / "metaworld-reach" / "metadata.json").read_text())
    assert meta["status"] == "rejected" and meta["trained"] is False
    with pytest.raises(PipelineError, match=r"is rejected.*--allow-weak.*--policy scripted"):
        check_policy("expert", REACH, experts_dir)
    check_policy("expert", REACH, experts_dir, allow_weak=True)
    policy = make_policy("expert", REACH, make_env(REACH), experts_dir, allow_weak=True)
    assert isinstance(policy, MetaWorldScriptedPolicy)


def test_accepted_stored_expert_is_used(tmp_path):
    experts_dir = _scripted_expert(
        tmp_path, "babyai-go-to", "babyai-bot", threshold=0.5, expected=ExpertStatus.ACCEPTED
    )
    assert ExpertStore(experts_dir).read_metadata("babyai-go-to").status == ExpertStatus.ACCEPTED
    assert isinstance(make_policy("expert", GOTO, make_env(GOTO), experts_dir), BabyAIBotPolicy)


def test_missing_expert(tmp_path):
    with pytest.raises(PipelineError, match=r"no trained expert for mujoco-hopper in .*train-experts"):
        check_policy("expert", HOPPER, str(tmp_path))
    with pytest.raises(PipelineError, match="no --experts-dir"):
        check_policy("expert", HOPPER, None)
    # BabyAI and Meta-World fall back to their bot/scripted expert.
    check_policy("expert", GOTO, str(tmp_path))
    assert isinstance(make_policy("expert", REACH, make_env(REACH), None), MetaWorldScriptedPolicy)
