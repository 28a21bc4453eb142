"""Meta-World (50 MT1 tasks, v3): 39-float observations with the goal zeroed, 4 continuous actions.

The goal (obs[36:39]) is zeroed in what is stored, as JAT's v2 fork did; the scripted expert is
Meta-World's hand-written per-task policy, which reads the goal from `info["full_observation"]`.
Success is the env's own `success` flag.
"""

from __future__ import annotations

import warnings
from importlib.metadata import version
from typing import Any

import gymnasium as gym
import numpy as np

from pipeline.errors import PipelineError
from pipeline.suites.base import Suite
from pipeline.tasks.registry import TaskSpec

DEFAULT_HORIZON = 100
"""JAT's episode length for Meta-World when the registry sets none."""


class GoalHiddenObservation(gym.Wrapper):
    """Zero Meta-World's goal (obs[36:39]) in what is stored, as JAT's v2 fork did.

    Scripted experts need the goal to act, so the full observation is passed on in
    `info["full_observation"]`; only the stored copy hides it.
    """

    GOAL = slice(36, 39)

    def __init__(self, env: gym.Env, hide_goal: bool) -> None:
        super().__init__(env)
        self.hide_goal = hide_goal
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (39,), np.float32)

    def _split(self, obs: np.ndarray, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        info = dict(info)
        info["full_observation"] = obs
        stored = np.asarray(obs, dtype=np.float32).copy()
        if self.hide_goal:
            stored[self.GOAL] = 0.0
        return stored, info

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        if kwargs.get("seed") is not None:
            # MT1 draws the episode's task (goal) *before* reset reseeds the env, from the env's
            # previous random state: seed it first, so an episode depends on its seed alone.
            self.env.unwrapped.np_random = gym.utils.seeding.np_random(kwargs["seed"])[0]
        obs, info = self.env.reset(**kwargs)
        return self._split(obs, info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        stored, info = self._split(obs, info)
        return stored, reward, terminated, truncated, info


class MetaWorldScriptedPolicy:
    """Meta-World's hand-written policy for the task; it reads the goal from the full observation."""

    name = "metaworld-scripted"

    def __init__(self, env_name: str) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        if env_name not in ENV_POLICY_MAP:
            raise PipelineError(f"Meta-World ships no scripted policy for {env_name!r}")
        self.env_name = env_name
        self._policy = ENV_POLICY_MAP[env_name]()

    def reset(self, env: gym.Env, seed: int) -> None:
        pass

    def act(self, observation: Any, info: dict[str, Any]) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._policy.get_action(info["full_observation"])

    def provenance(self) -> dict[str, Any]:
        return {"policy": self.name, "env_name": self.env_name, "metaworld": version("metaworld")}


class MetaWorld(Suite):
    name = "metaworld"
    title = "Meta-World"
    packages = ("metaworld", "mujoco")
    scripted_expert = "metaworld-scripted"

    def register_envs(self) -> None:
        import metaworld

        gym.register_envs(metaworld)

    def make_env(self, spec: TaskSpec, max_episode_steps: int | None) -> gym.Env:
        horizon = max_episode_steps or spec.max_episode_steps or DEFAULT_HORIZON
        env = gym.make(spec.env_id, env_name=spec.env_name, max_episode_steps=horizon, **spec.make_kwargs)
        return GoalHiddenObservation(env, hide_goal=spec.env.goal_hidden)

    def scripted_policy(self, spec: TaskSpec) -> MetaWorldScriptedPolicy:
        return MetaWorldScriptedPolicy(spec.env_name or "")


SUITE = MetaWorld()
