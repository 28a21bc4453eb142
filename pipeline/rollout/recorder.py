"""Playing planned episodes into their stored form, one env at a time or many in lockstep.

A trained expert spends far longer in one forward pass than the env spends in one step (about
1 ms against 0.25 ms for a Hopper MLP on this CPU), and a pass over 16 observations costs
barely more than over one. So an actor recording with an expert steps several envs in
lockstep and asks the policy for all their actions at once (`BatchPolicy.act_batch`).

An episode's content must still depend on its seed alone, whichever episodes share the batch
(resume and actor restarts regroup them). The batch is therefore always padded to the same
size: rows of a fixed-size matrix product do not depend on each other, while a batch of one
and a batch of 16 round differently. The batch size is part of the plan, like the seed.

Every episode has a wall-clock limit (`rollout.episode_timeout_s`); the loop itself, clipping,
success and the limit are `pipeline.tasks.episodes`', shared with expert and model evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.format.plan import PlannedEpisode
from pipeline.format.shards import Episode
from pipeline.suites import get_suite
from pipeline.tasks.episodes import EpisodeRun, play
from pipeline.tasks.policies import Policy
from pipeline.tasks.registry import TaskSpec


@runtime_checkable
class BatchPolicy(Protocol):
    """A policy that can act for many envs at once (trained experts, deterministic, no memory)."""

    def batchable(self) -> bool:
        """Whether `act_batch` gives each row the action `act` would (no per-episode state)."""

    def act_batch(self, observations: np.ndarray) -> np.ndarray:
        """Actions for a batch of observations stacked on the first axis, one row per env."""


def can_batch(policy: Policy) -> bool:
    return isinstance(policy, BatchPolicy) and policy.batchable()


class Recording(EpisodeRun):
    """One episode being played into its stored form (`pipeline.tasks.episodes` plays it)."""

    def __init__(self, env: Any, spec: TaskSpec, planned: PlannedEpisode) -> None:
        super().__init__(env, spec, planned.seed, timeout_s=spec.rollout.episode_timeout_s)
        self.planned = planned
        self.episode = Episode(planned.episode_id, planned.seed, checkpoint_step=planned.checkpoint)
        self.layout = get_suite(spec.suite).layout

    def record(self, observation: Any, action: Any, reward: float) -> None:
        episode = self.episode
        self.layout.record(episode, observation)
        episode.actions.append(action)
        episode.rewards.append(reward)

    def result(self) -> Episode | str:
        """The finished episode, or why it is dropped."""
        if self.spec.rollout.drop_unfinished and not self.terminated:
            return "unfinished: the episode hit the step limit"
        self.episode.success = self.success
        return self.episode


def record_episode(env: Any, policy: Policy, spec: TaskSpec, planned: PlannedEpisode) -> Episode | str:
    """Play one planned episode; return it in stored form, or the reason it was dropped."""
    recording = Recording(env, spec, planned)
    policy.reset(env, planned.seed)
    cut_short = play(recording, lambda run: policy.act(run.observation, run.info))
    return cut_short if cut_short is not None else recording.result()


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
