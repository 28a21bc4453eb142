"""Env construction details that the stored data depends on."""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from dataclasses import replace

import numpy as np
import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.suites.atari import FastSeededReset
from pipeline.tasks import registry
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task, suite_tasks

# JAT's sizes, written out here so the test does not just read back what the registry says.
JAT_MUJOCO_OBS = {
    "mujoco-ant": 27,
    "mujoco-doublependulum": 11,
    "mujoco-halfcheetah": 17,
    "mujoco-hopper": 11,
    "mujoco-humanoid": 376,
    "mujoco-pendulum": 4,
    "mujoco-pusher": 23,
    "mujoco-reacher": 11,
    "mujoco-standup": 376,
    "mujoco-swimmer": 8,
    "mujoco-walker": 17,
}
# Where v5 changed JAT's layout and v4 still builds with mujoco 3, the registry uses v4.
MUJOCO_V4 = ["mujoco-doublependulum", "mujoco-humanoid", "mujoco-reacher", "mujoco-standup"]


def _fast_reset(env) -> FastSeededReset:
    while not isinstance(env, FastSeededReset):
        env = env.env
    return env


def _episode_digest(env, seed: int, steps: int = 300) -> str:
    observation, _ = env.reset(seed=seed)
    actions = np.random.default_rng(seed)
    digest = hashlib.sha1(observation.tobytes())
    for _ in range(steps):
        observation, reward, terminated, truncated, _ = env.step(int(actions.integers(env.action_space.n)))
        digest.update(observation.tobytes() + np.float32(reward).tobytes())
        if terminated or truncated:
            break
    return digest.hexdigest()


def _check_same_episodes(config: str, seeds: list[int]) -> None:
    """`FastSeededReset` is the gymnasium path's (the envpool path restores its own emulator start,
    checked in tests/test_atari_envpool.py)."""
    spec = get_task(config)
    spec = replace(spec, env=replace(spec.env, atari_semantics="gymnasium"))
    reference = make_env(spec)
    _fast_reset(reference)._enabled = False  # ale-py's own seeded reset: reloads the ROM every time
    fast = make_env(spec)
    fast.reset(seed=10**6)
    for _ in range(40):  # leave the emulator mid-game: the next seeded reset must not care
        fast.step(0)
    for seed in seeds:
        assert _episode_digest(fast, seed) == _episode_digest(reference, seed), (config, seed)


@pytest.mark.parametrize("config", ["atari-seaquest", "atari-breakout", "atari-montezumarevenge"])
def test_fast_seeded_atari_reset_replays_ale_py_exactly(config):
    _check_same_episodes(config, [3, 1, 2])


@pytest.mark.slow
def test_fast_seeded_atari_reset_for_every_game():
    for spec in suite_tasks("atari"):
        _check_same_episodes(spec.config, [1, 2])


def test_every_mujoco_task_is_registered_with_jat_size():
    assert {s.config: s.jat_obs_dim for s in suite_tasks("mujoco")} == JAT_MUJOCO_OBS


@pytest.mark.parametrize("config", sorted(JAT_MUJOCO_OBS))
def test_mujoco_env_observes_jat_size(config):
    spec = get_task(config)
    env = make_env(spec)
    try:
        observation, _ = env.reset(seed=0)
        assert env.observation_space.shape == spec.observation.shape == (JAT_MUJOCO_OBS[config],)
        assert observation.shape == (JAT_MUJOCO_OBS[config],) and observation.dtype == np.float32
    finally:
        env.close()


def _continuous_digest(env, seed: int, steps: int = 200) -> str:
    observation, _ = env.reset(seed=seed)
    actions = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    digest = hashlib.sha1(observation.tobytes())
    for _ in range(steps):
        observation, reward, terminated, truncated, _ = env.step(
            actions.uniform(low, high).astype(np.float32)
        )
        digest.update(observation.tobytes() + np.float32(reward).tobytes())
        if terminated or truncated:
            break
    return digest.hexdigest()


@pytest.mark.parametrize("config", MUJOCO_V4)
def test_v4_mujoco_episode_depends_on_its_seed_alone(config):
    spec = get_task(config)
    assert spec.env_id.endswith("-v4")
    first, second = make_env(spec), make_env(spec)
    second.reset(seed=12345)
    for _ in range(7):  # leave it mid-episode: the next seeded reset must not care
        second.step(second.action_space.sample())
    assert _continuous_digest(first, 1) == _continuous_digest(second, 1)
    assert _continuous_digest(first, 2) == _continuous_digest(second, 2)
    assert _continuous_digest(first, 1) != _continuous_digest(first, 2)


def test_v4_envs_do_not_warn_that_they_are_out_of_date():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_env(get_task("mujoco-humanoid")).close()
    assert not [w for w in caught if "out of date" in str(w.message)]


def test_env_with_another_layout_than_jat_is_refused():
    spec = dataclasses.replace(get_task("mujoco-humanoid"), env_id="Humanoid-v5")
    with pytest.raises(PipelineError, match=r"Humanoid-v5 observes shape \[348\], not the \[376\]"):
        make_env(spec)


def _load_edited_mujoco(monkeypatch, tmp_path, edit) -> None:
    data = yaml.safe_load((registry.resources.files("env_configs") / "mujoco.yaml").read_text())
    edit(data["tasks"]["humanoid"])
    (tmp_path / "mujoco.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setattr(registry.resources, "files", lambda package: tmp_path)
    registry._load_suite("mujoco")


def test_registry_refuses_a_mujoco_size_other_than_jat(monkeypatch, tmp_path):
    def to_v5(task):
        task.update(env_id="Humanoid-v5", observation={"type": "continuous", "shape": [348]})

    with pytest.raises(PipelineError, match=r"task 'humanoid': observation shape \[348\] is not JAT's 376"):
        _load_edited_mujoco(monkeypatch, tmp_path, to_v5)
    with pytest.raises(PipelineError, match="task 'humanoid': add `jat_obs_dim`"):
        _load_edited_mujoco(monkeypatch, tmp_path, lambda task: task.pop("jat_obs_dim"))
