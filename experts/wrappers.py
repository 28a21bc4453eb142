"""Training-only env wrappers, stacked on top of `pipeline.tasks.envs.make_env`.

Experts must learn from exactly the observations the dataset stores, so every training env
starts from `make_env(spec)`. What training adds changes rewards and episode boundaries only:
Atari's reward clipping and episodic life (the standard DQN/APPO Atari recipe). Rollout and
evaluation never use these wrappers. `TrueEpisodeStats` sits underneath them so learning
curves always report the real game return, not the clipped per-life one.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import TaskSpec

TRUE_EPISODE = "true_episode"


class TrueEpisodeStats(gym.Wrapper):
    """Put {"return", "length"} of the real episode into `info["true_episode"]` when it ends."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._return = 0.0
        self._length = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self._return, self._length = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        self._length += 1
        if terminated or truncated:
            info = dict(info)
            info[TRUE_EPISODE] = {"return": self._return, "length": self._length}
        return obs, reward, terminated, truncated, info


class EpisodicLife(gym.Wrapper):
    """A lost life ends the learner's episode; the game itself goes on until it is really over.

    Under `atari_semantics: envpool` the env has already done envpool's life-loss reset (NOOPs, FIRE)
    inside the step that lost the life (`info["life_loss"]`): the next learner episode then starts
    from that step's observation, with no further step, exactly as envpool's `episodic_life` does.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._lives = 0
        self._game_over = True
        self._after_reset: tuple[Any, dict[str, Any]] | None = None

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._game_over = terminated or truncated
        self._after_reset = (obs, info) if info.get("life_loss") else None
        lives = int(info.get("lives", 0))
        if 0 < lives < self._lives:
            terminated = True
        self._lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        if not self._game_over and self._after_reset is not None:
            obs, info = self._after_reset
            self._lives = int(info.get("lives", 0))
            return obs, info
        if not self._game_over:
            obs, _, terminated, truncated, info = self.env.step(0)  # NOOP, continue the same game
            if not (terminated or truncated):
                self._lives = int(info.get("lives", 0))
                return obs, info
        obs, info = self.env.reset(**kwargs)
        self._game_over = False
        self._lives = int(info.get("lives", 0))
        return obs, info


class ClipReward(gym.RewardWrapper):
    """sign(reward): one scale of learning signal for every Atari game."""

    def reward(self, reward: float) -> float:
        return float(np.sign(reward))


def make_training_env(spec: TaskSpec) -> gym.Env:
    """`make_env(spec)` plus the training-only wrappers of `expert.training_wrappers` (Atari: both)."""
    env: gym.Env = TrueEpisodeStats(make_env(spec))
    wrappers = spec.expert.training_wrappers
    if wrappers.episodic_life:
        env = EpisodicLife(env)
    if wrappers.clip_rewards:
        env = ClipReward(env)
    return env
