"""Env construction details that the stored data depends on."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipeline.envs import FastSeededReset, make_env
from pipeline.registry import get_task, suite_tasks


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
    spec = get_task(config)
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
