"""Playing planned episodes into their stored form, one env at a time or many in lockstep.

A trained expert spends far longer in one forward pass than the env spends in one step (about
1 ms against 0.25 ms for a Hopper MLP on this CPU), and a pass over 16 observations costs
barely more than over one. So an actor recording with an expert steps several envs in
lockstep and asks the policy for all their actions at once (`BatchPolicy.act_batch`).

An episode's content must still depend on its seed alone, whichever episodes share the batch
(resume and actor restarts regroup them). The batch is therefore always padded to the same
size: rows of a fixed-size matrix product do not depend on each other, while a batch of one
and a batch of 16 round differently. The batch size is part of the plan, like the seed.

Every episode also has a wall-clock limit (`rollout.episode_timeout_s`), checked between steps,
so a policy or env that slows to a crawl costs one dropped episode, not a stuck worker. It cannot
interrupt a single call that never returns: policies with such a risk bound their own calls
(the BabyAI bot's replan, `pipeline.policies`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.envs import step_success
from pipeline.plan import PlannedEpisode
from pipeline.policies import EpisodeFailed, Policy
from pipeline.registry import TaskSpec
from pipeline.shards import Episode, encode_frame

# When a suite's YAML sets no `rollout.episode_timeout_s`: far above any healthy episode.
DEFAULT_EPISODE_TIMEOUT_S = 600.0


@runtime_checkable
class BatchPolicy(Protocol):
    """A policy that can act for many envs at once (trained experts, deterministic, no memory)."""

    def batchable(self) -> bool:
        """Whether `act_batch` gives each row the action `act` would (no per-episode state)."""

    def act_batch(self, observations: np.ndarray) -> np.ndarray:
        """Actions for a batch of observations stacked on the first axis, one row per env."""


def can_batch(policy: Policy) -> bool:
    return isinstance(policy, BatchPolicy) and policy.batchable()


class Recording:
    """One episode being played: its env, its plan, and what will be stored."""

    def __init__(self, env: Any, spec: TaskSpec, planned: PlannedEpisode) -> None:
        self.env, self.spec, self.planned = env, spec, planned
        self.timeout_s = float(spec.rollout.get("episode_timeout_s", DEFAULT_EPISODE_TIMEOUT_S))
        self._deadline = time.monotonic() + self.timeout_s
        self.observation, self.info = env.reset(seed=planned.seed)
        self.episode = Episode(planned.episode_id, planned.seed, checkpoint_step=planned.checkpoint)
        self.terminated = False
        self._continuous = spec.action.type == "continuous"

    def step(self, action: Any) -> bool:
        """Store the current observation, apply `action`, store its result; True when the episode ended."""
        spec, episode = self.spec, self.episode
        if self._continuous:  # what np.clip returns, bit for bit, at a third of its per-step cost
            action = np.minimum(
                np.maximum(np.asarray(action, dtype=np.float32), spec.action.low), spec.action.high
            )
        if spec.suite == "atari":
            episode.observations.append(encode_frame(self.observation))
        elif spec.suite == "babyai":
            episode.texts.append(self.observation["text_observations"])
            episode.observations.append(self.observation["discrete_observations"])
        else:
            episode.observations.append(self.observation)
        self.observation, reward, terminated, truncated, self.info = self.env.step(action)
        episode.actions.append(action)
        episode.rewards.append(float(reward))
        succeeded = step_success(spec, terminated, float(reward), self.info)
        if succeeded is not None:
            episode.success = bool(episode.success) or succeeded
        self.terminated = bool(terminated)
        return bool(terminated or truncated)

    def overdue(self) -> str | None:
        """Why the episode is dropped if it has outlived its wall-clock limit, else None."""
        if time.monotonic() <= self._deadline:
            return None
        return f"episode timeout: still running after {self.timeout_s:g} s (step {len(self.episode.rewards)})"

    def result(self) -> Episode | str:
        """The finished episode, or why it is dropped."""
        if self.spec.rollout.get("drop_unfinished", False) and not self.terminated:
            return "unfinished: the episode hit the step limit"
        return self.episode


def record_episode(env: Any, policy: Policy, spec: TaskSpec, planned: PlannedEpisode) -> Episode | str:
    """Play one planned episode; return it in stored form, or the reason it was dropped."""
    recording = Recording(env, spec, planned)
    policy.reset(env, planned.seed)
    while True:
        try:
            action = policy.act(recording.observation, recording.info)
        except EpisodeFailed as exc:
            return str(exc)
        if recording.step(action):
            return recording.result()
        overdue = recording.overdue()
        if overdue is not None:
            return overdue


def record_batched(
    envs: Sequence[Any], policy: BatchPolicy, spec: TaskSpec, planned: Sequence[PlannedEpisode]
) -> Iterator[tuple[PlannedEpisode, Episode | str]]:
    """Play `planned` episodes on `len(envs)` envs in lockstep; yields each one as it ends.

    Episodes end out of order; the caller restores plan order. Every forward pass has exactly
    `len(envs)` rows (idle slots repeat a live observation), so results do not depend on which
    episodes happen to share it.
    """
    queue = list(reversed(planned))
    slots: list[Recording | None] = [None] * len(envs)

    def refill(i: int) -> None:
        slots[i] = Recording(envs[i], spec, queue.pop()) if queue else None

    for i in range(len(envs)):
        refill(i)
    while any(slots):
        live = [s for s in slots if s is not None]
        rows = [(s or live[0]).observation for s in slots]
        actions = policy.act_batch(np.stack(rows))
        for i, recording in enumerate(slots):
            if recording is None:
                continue
            if recording.step(actions[i]):
                yield recording.planned, recording.result()
                refill(i)
            elif (overdue := recording.overdue()) is not None:
                yield recording.planned, overdue
                refill(i)
