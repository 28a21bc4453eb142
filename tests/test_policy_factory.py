"""`pipeline.rollout.policy_factory`: which policy acts, the gate on stored experts, and learning-history
snapshots.

Stored experts are real expert folders (metadata.json written by `ExpertStore`) of the experts that
train nothing (the BabyAI bot, Meta-World's scripted policies), so no training runs here.
"""

from __future__ import annotations

import pytest

from experts.metadata import ExpertMetadata, ExpertStatus
from experts.store import ExpertStore
from pipeline.errors import PipelineError
from pipeline.rollout.policy_factory import check_policy, history_snapshots, make_policy
from pipeline.suites.babyai import BabyAIBotPolicy
from pipeline.suites.metaworld import MetaWorldScriptedPolicy
from pipeline.tasks.envs import make_env
from pipeline.tasks.policies import RandomPolicy
from pipeline.tasks.registry import get_task

GOTO = get_task("babyai-go-to")
REACH = get_task("metaworld-reach")
HOPPER = get_task("mujoco-hopper")
PONG = get_task("atari-pong")


def _store(tmp_path, spec, backend: str, status: ExpertStatus, gate: dict | None = None, **kw) -> str:
    metadata = ExpertMetadata(spec.config, spec.suite, backend, status=status, gate=gate, **kw)
    ExpertStore(str(tmp_path)).write_metadata(spec.config, metadata)
    return str(tmp_path)


def test_an_unknown_kind_is_refused_naming_the_kinds():
    with pytest.raises(PipelineError) as info:
        check_policy("greedy", HOPPER, None)
    assert str(info.value) == "unknown policy 'greedy'; choose one of expert, scripted, random"


@pytest.mark.parametrize("spec", [HOPPER, PONG])
def test_scripted_is_refused_where_no_scripted_policy_exists(spec):
    with pytest.raises(PipelineError, match=rf"no scripted policy for {spec.config}: .*--policy random"):
        check_policy("scripted", spec, None)


def test_random_and_scripted_policies_are_built_with_the_registry_settings():
    assert isinstance(make_policy("random", HOPPER, make_env(HOPPER)), RandomPolicy)
    bot = make_policy("scripted", GOTO, make_env(GOTO))
    assert isinstance(bot, BabyAIBotPolicy)
    # babyai.yaml's bounds, not the class defaults
    assert (
        (bot.replan_timeout_s, bot.replan_max_subgoals)
        == (1.0, 100)
        == (
            GOTO.rollout.bot_replan_timeout_s,
            GOTO.rollout.bot_replan_max_subgoals,
        )
    )
    scripted = make_policy("scripted", REACH, make_env(REACH))
    assert isinstance(scripted, MetaWorldScriptedPolicy) and scripted.env_name == "reach-v3"


def test_expert_without_a_store_falls_back_to_the_bot_or_scripted_expert(tmp_path):
    assert isinstance(make_policy("expert", GOTO, make_env(GOTO)), BabyAIBotPolicy)
    assert isinstance(make_policy("expert", REACH, make_env(REACH), str(tmp_path)), MetaWorldScriptedPolicy)


def test_expert_without_a_stored_one_is_refused_where_nothing_falls_back(tmp_path):
    with pytest.raises(PipelineError) as info:
        check_policy("expert", HOPPER, str(tmp_path))
    assert str(info.value) == (
        f"no trained expert for mujoco-hopper in {tmp_path}: train one with `pipeline train-experts "
        f"--tasks mujoco-hopper --out EXPERTS_DIR` and pass --experts-dir EXPERTS_DIR, or use --policy random"
    )
    with pytest.raises(
        PipelineError, match=r"no trained expert for mujoco-hopper \(no --experts-dir given\)"
    ):
        make_policy("expert", HOPPER, make_env(HOPPER))


def test_a_variant_uses_the_expert_of_its_task(tmp_path):
    experts = _store(tmp_path, GOTO, "babyai-bot", ExpertStatus.REJECTED, {"reason": "too weak"})
    with pytest.raises(PipelineError, match=r"the expert for babyai-go-to in .* is rejected: too weak"):
        check_policy("expert", get_task("babyai-go-to-top80"), experts)


def test_a_rejected_expert_is_refused_unless_allow_weak(tmp_path):
    reason = "normalised score 0.100 < 0.50"
    experts = _store(tmp_path, REACH, "metaworld-scripted", ExpertStatus.REJECTED, {"reason": reason})
    with pytest.raises(PipelineError) as info:
        check_policy("expert", REACH, experts)
    assert str(info.value) == (
        f"the expert for metaworld-reach in {experts} is rejected: {reason}; train it further "
        "(`pipeline train-experts --resume`), or pass --allow-weak to record it anyway, or --policy scripted"
    )
    policy = make_policy("expert", REACH, make_env(REACH), experts, allow_weak=True)
    assert isinstance(policy, MetaWorldScriptedPolicy)


def test_an_unevaluated_expert_is_refused_as_never_evaluated(tmp_path):
    experts = _store(tmp_path, HOPPER, "sample-factory", ExpertStatus.UNEVALUATED, trained=True)
    with pytest.raises(PipelineError) as info:
        check_policy("expert", HOPPER, experts)
    message = str(info.value)
    assert "is unevaluated: it was never evaluated;" in message
    assert "--policy scripted" not in message  # MuJoCo has no scripted policy to offer


def test_an_accepted_stored_expert_is_loaded(tmp_path):
    experts = _store(tmp_path, GOTO, "babyai-bot", ExpertStatus.ACCEPTED, {"reason": "ok"})
    check_policy("expert", GOTO, experts)
    assert isinstance(make_policy("expert", GOTO, make_env(GOTO), experts), BabyAIBotPolicy)


def test_a_stored_bot_expert_acts_with_the_registrys_replan_bounds(tmp_path):
    experts = _store(tmp_path, GOTO, "babyai-bot", ExpertStatus.ACCEPTED, {"reason": "ok"})
    stored = make_policy("expert", GOTO, make_env(GOTO), experts)
    assert GOTO.rollout.bot_replan_timeout_s != BabyAIBotPolicy().replan_timeout_s  # else this proves nothing
    assert (stored.replan_timeout_s, stored.replan_max_subgoals) == (
        GOTO.rollout.bot_replan_timeout_s,
        GOTO.rollout.bot_replan_max_subgoals,
    )


def test_a_learning_history_needs_an_experts_dir_and_a_trained_expert(tmp_path):
    with pytest.raises(PipelineError, match=r"--learning-history records an expert's snapshots: pass"):
        history_snapshots(HOPPER, None)
    with pytest.raises(PipelineError, match=rf"{tmp_path} holds no expert for mujoco-hopper, so there is no"):
        history_snapshots(HOPPER, str(tmp_path))
    experts = _store(tmp_path, GOTO, "babyai-bot", ExpertStatus.ACCEPTED)
    with pytest.raises(PipelineError, match=r"holds a babyai-bot expert \(never trained\) for babyai-go-to"):
        history_snapshots(GOTO, experts)


def test_a_learning_history_needs_two_snapshots_and_lists_them_in_training_order(tmp_path):
    # a rejected expert still has a history: the gate does not apply to snapshots
    experts = _store(tmp_path, HOPPER, "sample-factory", ExpertStatus.REJECTED, trained=True)
    history = tmp_path / "mujoco-hopper" / "history"
    (history / f"{4096:012d}").mkdir(parents=True)
    with pytest.raises(PipelineError, match=r"kept 1 learning-history snapshot\(s\), a history needs 2"):
        history_snapshots(HOPPER, experts)
    (history / f"{1024:012d}").mkdir()
    (history / "000000002048.partial").mkdir()  # a snapshot still being written is not one
    assert history_snapshots(HOPPER, experts) == [1024, 4096]
    assert history_snapshots(get_task("mujoco-hopper-history"), experts) == [1024, 4096]
