"""`experts.training`: one expert start to finish, its failures returned as results, never raised."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

from experts.evaluation import eval_seeds
from experts.metadata import ExpertStatus
from experts.training import FAILED, ExpertPlan, env_spec_record, train_expert
from pipeline.tasks.registry import get_task

PLAN = ExpertPlan(
    config="babyai-go-to",
    backend="babyai-bot",
    hyperparameters={},
    steps=0,
    seed=2,
    num_cpus=1,
    eval_episodes=2,
    threshold=0.5,
    deterministic=True,
)


def _meta(root, config: str) -> dict:
    return json.loads((root / config / "metadata.json").read_text())


def test_an_untrained_expert_is_stored_evaluated_and_gated(tmp_path):
    result = train_expert(PLAN, str(tmp_path))
    assert (result.config, result.backend, result.status, result.steps) == (
        "babyai-go-to",
        "babyai-bot",
        ExpertStatus.ACCEPTED,
        0,
    )
    assert result.evaluation["episodes"] == 2 and result.evaluation["seeds"] == tuple(eval_seeds(2, 2))
    assert result.chosen == "" and result.budget == "" and result.error == ""
    meta = _meta(tmp_path, "babyai-go-to")
    assert (meta["backend"], meta["status"], meta["trained"], meta["learning_curve"]) == (
        "babyai-bot",
        "accepted",
        False,
        None,
    )
    assert meta["evaluation"] == json.loads(json.dumps(result.evaluation))
    assert meta["gate"]["threshold"] == 0.5 and meta["seed"] == 2 and meta["resources"]["device"] == "cpu"
    assert meta["env_spec"] == json.loads(json.dumps(env_spec_record(get_task("babyai-go-to"))))
    assert meta["versions"]["minigrid"] and meta["versions"]["python"]


def test_without_evaluation_the_expert_is_stored_unevaluated(tmp_path):
    result = train_expert(replace(PLAN, evaluate=False), str(tmp_path))
    assert result.status == ExpertStatus.UNEVALUATED and result.evaluation == {}
    meta = _meta(tmp_path, "babyai-go-to")
    assert (meta["status"], meta["evaluation"], meta["gate"]) == ("unevaluated", None, None)


def test_a_backend_that_cannot_play_the_task_fails_the_task_and_writes_nothing(tmp_path):
    result = train_expert(replace(PLAN, config="mujoco-hopper"), str(tmp_path))
    assert (result.status, result.backend) == (FAILED, "babyai-bot")
    assert result.error == "the babyai-bot expert plays BabyAI tasks only, not mujoco-hopper"
    assert not (tmp_path / "mujoco-hopper").exists()


def test_an_unknown_backend_or_task_is_a_failed_result_too(tmp_path):
    unknown = train_expert(replace(PLAN, backend="ppo"), str(tmp_path))
    assert unknown.status == FAILED and unknown.error.startswith(
        "unknown expert backend 'ppo'; choose one of "
    )
    task = train_expert(replace(PLAN, config="babyai-go-too"), str(tmp_path))
    assert task.status == FAILED and "babyai-go-too" in task.error
    assert list(tmp_path.iterdir()) == []


def test_a_scripted_alternative_that_passes_is_kept_and_nothing_is_trained(tmp_path):
    plan = replace(
        PLAN,
        config="metaworld-reach",
        backend="sb3",
        hyperparameters={"algo": "ppo", "n_steps": 64},
        steps=10_000,
        alternative="metaworld-scripted",
        history_every=500,
    )
    result = train_expert(plan, str(tmp_path))
    assert (result.backend, result.chosen, result.steps, result.status) == (
        "metaworld-scripted",
        "metaworld-scripted",
        0,
        ExpertStatus.ACCEPTED,
    )
    meta = _meta(tmp_path, "metaworld-reach")
    assert (meta["backend"], meta["trained"], meta["steps_target"], meta["hyperparameters"]) == (
        "metaworld-scripted",
        False,
        0,
        {},
    )
    assert (meta["history_every"], meta["history_snapshots"]) == (0, 0)
    assert list(meta["candidates"]) == ["metaworld-scripted"] and meta["chosen"] == "metaworld-scripted"
    assert meta["choice_reason"].startswith("metaworld-scripted passes the gate (normalised score ")
    assert not (tmp_path / "metaworld-reach" / "model").exists()


def test_the_env_record_names_the_env_its_spaces_and_training_wrappers():
    spec = get_task("atari-breakout")
    record = env_spec_record(spec)
    assert (record["config"], record["env_id"], record["jat_env_id"]) == (
        "atari-breakout",
        spec.env_id,
        spec.jat_env_id,
    )
    assert record["training_wrappers"] == {"episodic_life": True, "clip_rewards": True}
    assert record["observation"] == asdict(spec.observation) and record["action"] == asdict(spec.action)
    assert "make_kwargs" not in record["env"] and record["make_kwargs"] == spec.make_kwargs
