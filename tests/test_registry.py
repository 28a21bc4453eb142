"""The registry holds all 157 JAT tasks (plus DeepMind Control's 28), and each env builds and steps."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.tasks import registry
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import all_tasks, get_task, resolve_tasks


def test_157_jat_tasks_split_57_39_50_11_and_28_dmc_tasks():
    tasks = all_tasks()
    assert len(tasks) == 157 + 28
    assert collections.Counter(t.suite for t in tasks.values()) == {
        "atari": 57,
        "babyai": 39,
        "metaworld": 50,
        "mujoco": 11,
        "dmc": 28,  # dm_control's BENCHMARKING list; JAT had no DeepMind Control (tests/test_dmc.py)
    }
    assert all(name == f"{t.suite}-{t.task}" for name, t in tasks.items())


def test_jat_names_and_env_ids():
    assert get_task("atari-pong").env_id == "ALE/Pong-v5"
    assert get_task("babyai-put-next").env_id == "BabyAI-PutNextS7N4-v0"
    assert get_task("metaworld-assembly").env_name == "assembly-v3"
    assert get_task("mujoco-ant").observation.shape == (27,)
    assert get_task("go-to", "babyai").config == "babyai-go-to"


def test_reference_scores_and_normalisation():
    pong = get_task("atari-pong").scores
    assert pong.human_mean is not None
    assert pong.normalise(pong.expert_mean) == pytest.approx(1.0)
    assert pong.normalise(pong.random_mean) == pytest.approx(0.0)


def test_unknown_task_names_closest_valid_ones():
    with pytest.raises(PipelineError, match="did you mean pong"):
        get_task("pongg", "atari")
    with pytest.raises(PipelineError, match="unknown suite"):
        resolve_tasks("atary", None)
    with pytest.raises(PipelineError, match="belongs to suite"):
        get_task("atari-pong", "babyai")


def test_unknown_yaml_key_is_rejected(monkeypatch, tmp_path):
    text = (registry.resources.files("env_configs") / "mujoco.yaml").read_text()
    data = yaml.safe_load(text)
    data["tasks"]["hopper"]["max_episode_stepz"] = 10
    bad = tmp_path / "mujoco.yaml"
    bad.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(registry.resources, "files", lambda package: tmp_path)
    with pytest.raises(PipelineError, match="max_episode_stepz"):
        registry._load_suite("mujoco")


def _mujoco_yaml(edit) -> str:
    data = yaml.safe_load((registry.resources.files("env_configs") / "mujoco.yaml").read_text())
    edit(data)
    return yaml.safe_dump(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "suite: mujoco\ntasks:\n  hopper: {env_id: [\n",
            r"env_configs/mujoco.yaml is not valid YAML at line \d+",
        ),
        ("- just\n- a list\n", "must be a mapping with `suite`, `defaults` and `tasks`"),
        (
            _mujoco_yaml(lambda d: d["tasks"]["hopper"].pop("env_id")),
            "env_configs/mujoco.yaml task 'hopper' misses the key 'env_id'",
        ),
        (
            _mujoco_yaml(lambda d: d["tasks"]["hopper"].update(observation="17")),
            "env_configs/mujoco.yaml task 'hopper' is malformed",
        ),
    ],
)
def test_a_broken_registry_file_is_one_line_naming_the_file_and_place(text, expected):
    with pytest.raises(PipelineError, match=expected) as raised:
        registry.parse_suite("mujoco", text)
    assert "\n" not in str(raised.value) and str(raised.value).endswith("(fix the file)")


def _check_env_steps(config: str) -> None:
    spec = get_task(config)
    env = make_env(spec)
    try:
        obs, _ = env.reset(seed=0)
        obs, reward, *_ = env.step(env.action_space.sample())
        if spec.suite == "atari":
            assert obs.shape == (84, 84, 4) and obs.dtype == np.uint8
        elif spec.suite == "babyai":
            assert obs["discrete_observations"].shape == (148,) and isinstance(obs["text_observations"], str)
        else:
            assert obs.shape == spec.observation.shape and obs.dtype == np.float32
        assert env.action_space.shape == spec.action.shape or spec.action.type == "discrete"
        if spec.action.type == "discrete":
            assert env.action_space.n == spec.action.n
        assert np.isfinite(float(reward))
    finally:
        env.close()


FAST_SAMPLE = [
    "atari-pong",
    "atari-breakout",
    "babyai-go-to",
    "babyai-boss-level",
    "metaworld-assembly",
    "metaworld-reach",
    "mujoco-ant",
    "mujoco-humanoid",
    "mujoco-pusher",
]


@pytest.mark.parametrize("config", FAST_SAMPLE)
def test_sample_envs_construct_and_step(config):
    _check_env_steps(config)


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(set(all_tasks()) - set(FAST_SAMPLE)))
def test_every_env_constructs_and_steps(config):
    _check_env_steps(config)


def test_metaworld_hides_the_goal_but_scripted_policy_sees_it():
    env = make_env(get_task("metaworld-reach"))
    obs, info = env.reset(seed=3)
    assert (obs[36:39] == 0).all()
    assert np.abs(info["full_observation"][36:39]).sum() > 0
