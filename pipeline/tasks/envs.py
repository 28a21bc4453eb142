"""Environment construction, one function for every stage.

Expert training, rollout, replay and model evaluation all build their envs here, so the
observations an expert learns from are the observations stored and the ones the model is scored
on. The suite builds the env (`pipeline.suites.<suite>.make_env`) and it returns observations in
JAT's stored form (its layout, `pipeline.suites.layouts`); this module registers the suite's env
ids once per process and turns a failure to build into one line.
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym

from pipeline.errors import PipelineError
from pipeline.suites import get_suite
from pipeline.tasks.registry import TaskSpec

_REGISTERED: set[str] = set()


def make_env(spec: TaskSpec, *, max_episode_steps: int | None = None) -> gym.Env:
    """Build the env of a task with the observations JAT stored.

    `max_episode_steps` overrides the registry's horizon (Meta-World: 100 by default, JAT's).
    """
    suite = get_suite(spec.suite)
    if suite.name not in _REGISTERED:
        suite.register_envs()
        _REGISTERED.add(suite.name)
    warnings.filterwarnings("ignore", module="gymnasium.utils.passive_env_checker")
    # The registry picks env versions on purpose (MuJoCo v4 where it keeps JAT's layout): gymnasium's
    # "is out of date" notice, once per env id and process, would be noise in every actor's log.
    warnings.filterwarnings(
        "ignore", message=r".*The environment \S+ is out of date", category=DeprecationWarning
    )
    try:
        return suite.make_env(spec, max_episode_steps)
    except gym.error.Error as exc:
        packages = ", ".join(("gymnasium", *suite.packages))
        raise PipelineError(
            f"cannot build env {spec.env_id!r} for {spec.config}: {exc} "
            f"(check the installed {packages} versions: `make install`)"
        ) from exc


def step_success(spec: TaskSpec, terminated: bool, reward: float, info: dict[str, Any]) -> bool | None:
    """Did this step succeed, the suite's way (`Suite.step_success`)? Shared by rollout, expert
    evaluation and model evaluation so all three count success the same way."""
    return get_suite(spec.suite).step_success(spec, terminated, reward, info)
