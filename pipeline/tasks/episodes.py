"""One episode loop for everything that plays an env: recording, expert evaluation, model evaluation.

Reset with the episode's seed, clip continuous actions to the action space, step, add up the
return, read success the suite's way (`pipeline.tasks.envs.step_success`), stop at the end of the
episode, at an optional step limit or past an optional wall-clock deadline. What differs between
the callers is only who picks the action (`act`) and what is kept of each step (`EpisodeRun.record`,
which the recorder overrides to store the rows), so they cannot drift apart: an expert is scored
on exactly the episodes rollout would record with it.

The deadline is checked between steps, so a policy or env that slows to a crawl costs one
dropped episode, not a stuck worker. It cannot interrupt a single call that never returns:
policies with such a risk bound their own calls (the BabyAI bot's replan, `pipeline.tasks.policies`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.tasks.envs import step_success
from pipeline.tasks.policies import EpisodeFailed
from pipeline.tasks.registry import TaskSpec


class EpisodeRun:
    """One episode being played: its env after `reset(seed)`, the latest step, and running totals."""

    def __init__(
        self,
        env: Any,
        spec: TaskSpec,
        seed: int,
        timeout_s: float | None = None,
        max_steps: int | None = None,
    ) -> None:
        self.env, self.spec, self.seed = env, spec, seed
        self.timeout_s, self.max_steps = timeout_s, max_steps
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._continuous = spec.action.type == "continuous"
        self.observation, self.info = env.reset(seed=seed)
        self.reward: float | None = None
        """The reward of the latest step (None before the first)."""
        self.total = 0.0
        self.length = 0
        self.success: bool | None = None
        """Whether the task was solved; None while the env has not said (MuJoCo, Atari never do)."""
        self.terminated = False
        self.truncated = False
        """The env's time limit ended it (not its own terminal state)."""
        self.cut = False
        """`max_steps` ended it before the env did."""

    def record(self, observation: Any, action: Any, reward: float) -> None:
        """What to keep of a step (the observation acted on, the action applied, its reward): nothing here."""

    def step(self, action: Any) -> bool:
        """Apply `action` (clipped to the action space); True when the episode has ended."""
        spec = self.spec
        if self._continuous:  # what np.clip returns, bit for bit, at a third of its per-step cost
            action = np.minimum(
                np.maximum(np.asarray(action, dtype=np.float32), spec.action.low), spec.action.high
            )
        observation = self.observation
        self.observation, reward, terminated, truncated, self.info = self.env.step(action)
        self.reward = float(reward)
        self.record(observation, action, self.reward)
        self.total += self.reward
        self.length += 1
        succeeded = step_success(spec, terminated, self.reward, self.info)
        if succeeded is not None:
            self.success = bool(self.success) or succeeded
        self.terminated, self.truncated = bool(terminated), bool(truncated)
        self.cut = (
            self.max_steps is not None and self.length >= self.max_steps and not (terminated or truncated)
        )
        return self.terminated or self.truncated or self.cut

    def overdue(self) -> str | None:
        """Why the episode is dropped if it has outlived its wall-clock limit, else None."""
        if self._deadline is None or time.monotonic() <= self._deadline:
            return None
        return f"episode timeout: still running after {self.timeout_s:g} s (step {self.length})"


def play(run: EpisodeRun, act: Callable[[EpisodeRun], Any]) -> str | None:
    """Play `run` to its end with `act(run) -> action`; the reason it was cut short, or None.

    A policy that gives up (`EpisodeFailed`: the BabyAI bot's replan budget) or a passed deadline
    cuts it short; what was played so far stays in `run`.
    """
    while True:
        try:
            action = act(run)
        except EpisodeFailed as exc:
            return str(exc)
        if run.step(action):
            return None
        overdue = run.overdue()
        if overdue is not None:
            return overdue
