"""MuJoCo (11 gymnasium locomotion and control tasks): float32 vectors of JAT's sizes.

The registry picks each env's version so that it stores JAT's observation layout (v4 where JAT's
own env still builds: humanoid, standup, double pendulum, reacher; v5 elsewhere), and every task
declares JAT's size (`jat_obs_dim`, required by `required_task_keys` in its YAML), so a layout
of another size fails when the registry loads, not in the model.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from pipeline.errors import PipelineError
from pipeline.suites.base import Suite
from pipeline.tasks.registry import TaskSpec


def vector_env(spec: TaskSpec, env: gym.Env) -> gym.Env:
    """`env` with float32 observations, refused in one line unless of the registry's (JAT's) shape."""
    if env.observation_space.shape != spec.observation.shape:
        env.close()
        raise PipelineError(
            f"{spec.env_id} observes shape {list(env.observation_space.shape)}, not the "
            f"{list(spec.observation.shape)} of {spec.config} in env_configs/{spec.suite}.yaml: "
            f"use the env version and make_kwargs that give JAT's layout ({spec.jat_env_id})"
        )
    return gym.wrappers.TransformObservation(
        env,
        lambda o: np.asarray(o, dtype=np.float32),
        gym.spaces.Box(-np.inf, np.inf, env.observation_space.shape, np.float32),
    )


class MuJoCo(Suite):
    name = "mujoco"
    title = "MuJoCo"
    packages = ("mujoco",)

    def make_env(self, spec: TaskSpec, max_episode_steps: int | None) -> gym.Env:
        kwargs = dict(spec.make_kwargs)
        if max_episode_steps:
            kwargs["max_episode_steps"] = max_episode_steps
        return vector_env(spec, gym.make(spec.env_id, **kwargs))


SUITE = MuJoCo()
