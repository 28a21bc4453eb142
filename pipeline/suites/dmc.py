"""DeepMind Control Suite (dm_control's 28 benchmarking tasks): float32 vectors, continuous actions.

A thin gymnasium env of ours over `dm_control.suite` (no shimmy): one more package between the
physics and the stored data would be one more version to pin for replay, and the wrapper is short.

- Observations: dm_control's own flat observation (`flat_observation=True`: the task's observation
  dict concatenated in the task's key order, each value raveled), as float32. The order is the
  task's `get_observation` order, fixed in dm_control's source, e.g. cartpole: position (3), velocity (2).
- Actions: the task's `action_spec()` bounds (every benchmarking task: [-1, 1]).
- Episodes: dm_control's tasks never end on their own (reward in [0, 1] every step); the horizon is
  the registry's `max_episode_steps` (1000, dm_control's default time limit over its control
  timestep for every benchmarking task), a truncation. dm_control's own time limit is switched off
  so that `--max-episode-steps` may also lengthen an episode.
- Seeding: `reset(seed=s)` gives the task a fresh random state drawn from `s` alone before dm_control
  resets the physics (`mj_resetData`), so an episode depends on its seed and actions only (replay).
- Success: none. dm_control's rewards are graded (a tolerance in [0, 1]), with no solved state.
- Frames: `physics.render` of camera 0, through the offscreen GL of `pipeline.suites.drawing`; the
  GL backend must be chosen before dm_control is imported, so the import happens here, lazily.

JAT had no DeepMind Control data: a task's `jat_env_id` is dm_control's own `domain-task` name.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import sys
import warnings
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np

from pipeline.errors import PipelineError
from pipeline.suites.base import Grab, Suite
from pipeline.tasks.registry import TaskSpec

MAX_FPS = 50.0
"""Browsers show a GIF frame delay under 20 ms as 100 ms: a 100-step-a-second task (cartpole, 10 ms a
step) would play ten times too slow, so it plays at 50 fps, half speed, instead."""
ENV_ID = re.compile(r"^dmc/(?P<domain>\w+)-(?P<task>\w+)-v0$")
"""Our gymnasium ids: `dmc/<domain>-<task>-v0`, dm_control's names (neither holds a hyphen)."""


def dm_suite() -> Any:
    """`dm_control.suite`, imported after an offscreen GL is picked (OSMesa, when MUJOCO_GL is unset
    and it is installed): dm_control fixes its GL backend when first imported."""
    if "dm_control.suite" not in sys.modules and "MUJOCO_GL" not in os.environ:
        from pipeline.suites.drawing import NoGL, use_offscreen_gl

        with contextlib.suppress(NoGL):  # envs step without GL; drawing then names the fix
            use_offscreen_gl()
    absl = logging.getLogger("absl")  # dm_control logs its GL choice and MuJoCo's version at INFO
    level = absl.level
    absl.setLevel(max(level, logging.WARNING))
    try:
        with warnings.catch_warnings():  # GLFW warns of a missing display when it is merely imported
            warnings.simplefilter("ignore")
            return importlib.import_module("dm_control.suite")
    finally:
        absl.setLevel(level)


def domain_task(env_id: str) -> tuple[str, str]:
    """dm_control's (domain, task) of one of our env ids; one line when the id is not of our form."""
    match = ENV_ID.match(env_id)
    if not match:
        raise PipelineError(
            f"{env_id!r} is no DeepMind Control env id: write dmc/<domain>-<task>-v0 with dm_control's "
            "names (e.g. dmc/cartpole-swingup-v0) in env_configs/dmc.yaml"
        )
    return match["domain"], match["task"]


class DMCEnv(gym.Env):
    """One dm_control suite task as a gymnasium env: flat float32 observations, seeded resets."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, domain: str, task: str, render_mode: str | None = None, size: int = 240) -> None:
        suite = dm_suite()
        if (domain, task) not in suite.ALL_TASKS:
            raise PipelineError(f"dm_control has no task {domain}-{task} (see dm_control.suite.ALL_TASKS)")
        self.domain, self.task = domain, task
        self._env = suite.load(
            domain,
            task,
            task_kwargs={"time_limit": float("inf")},
            environment_kwargs={"flat_observation": True},
        )
        (size_of,) = self._env.observation_spec().values()
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, size_of.shape, np.float32)
        action = self._env.action_spec()
        self.action_space = gym.spaces.Box(
            np.asarray(action.minimum, np.float32) * np.ones(action.shape, np.float32),
            np.asarray(action.maximum, np.float32) * np.ones(action.shape, np.float32),
            action.shape,
            np.float32,
        )
        self.render_mode = render_mode
        self.size = size
        self.metadata = {**self.metadata, "render_fps": 1.0 / self._env.control_timestep()}

    @property
    def physics(self) -> Any:
        return self._env.physics

    @property
    def control_timestep(self) -> float:
        return float(self._env.control_timestep())

    @staticmethod
    def _observation(time_step: Any) -> np.ndarray:
        (values,) = time_step.observation.values()
        return np.asarray(values, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        if seed is not None:
            # The task draws its initial state from its own RandomState: a fresh one from the seed
            # alone (MT19937 seeds any int through a SeedSequence), so no earlier episode leaks in.
            self._env.task._random = np.random.RandomState(np.random.MT19937(seed))
        return self._observation(self._env.reset()), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        time_step = self._env.step(np.asarray(action, dtype=np.float64))
        # With the time limit off, an episode ends only where a task terminates it (discount 0).
        terminated = bool(time_step.last() and time_step.discount == 0)
        truncated = bool(time_step.last()) and not terminated
        return self._observation(time_step), float(time_step.reward or 0.0), terminated, truncated, {}

    def render(self) -> np.ndarray:
        return self.physics.render(self.size, self.size, camera_id=0)

    def close(self) -> None:
        self._env.close()


@cache
def control_timestep(env_id: str) -> float:
    """Seconds of simulated time per env step of a task (dm_control's control timestep)."""
    env = DMCEnv(*domain_task(env_id))
    try:
        return env.control_timestep
    finally:
        env.close()


class DeepMindControl(Suite):
    name = "dmc"
    title = "DeepMind Control"
    packages = ("dm-control", "mujoco")

    def register_envs(self) -> None:
        from pipeline.tasks.registry import suite_tasks

        for spec in suite_tasks(self.name):
            if spec.env_id not in gym.registry:
                domain, task = domain_task(spec.env_id)
                gym.register(spec.env_id, entry_point=DMCEnv, kwargs={"domain": domain, "task": task})

    def make_env(self, spec: TaskSpec, max_episode_steps: int | None) -> gym.Env:
        domain_task(spec.env_id)  # one line naming the form, before gymnasium's own message
        horizon = max_episode_steps or spec.max_episode_steps
        env = gym.make(spec.env_id, max_episode_steps=horizon, **spec.make_kwargs)
        if env.observation_space.shape != spec.observation.shape:
            env.close()
            raise PipelineError(
                f"{spec.env_id} observes shape {list(env.observation_space.shape)}, not the "
                f"{list(spec.observation.shape)} of {spec.config} in env_configs/dmc.yaml: "
                "measure it again (benchmarks/dmc_reference_scores.py --spaces)"
            )
        return env

    def step_success(
        self, spec: TaskSpec, terminated: bool, reward: float, info: dict[str, Any]
    ) -> bool | None:
        return None

    def fps_for(self, spec: TaskSpec) -> float:
        """Real time (1 / the control timestep: 25 to 100 steps a second), at most `MAX_FPS`."""
        return min(1.0 / control_timestep(spec.env_id), MAX_FPS)

    def frame_grabber(self, spec: TaskSpec, env: Any, size: int) -> Grab:
        from pipeline.suites.drawing import tried, use_offscreen_gl

        use_offscreen_gl()
        env.unwrapped.size = size
        return tried(spec, lambda e, _observation: e.unwrapped.render(), env)


SUITE = DeepMindControl()
