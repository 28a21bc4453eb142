"""The policy interface rollout and evaluation use, and the random policy.

A policy is anything with `reset(env, seed)` and `act(observation, info)`; it never sees
storage (the recorder owns that, as in Minari). Trained experts from `experts/` implement the
same interface, so rollout does not care where actions come from; a suite's scripted policy
lives in its suite module (`pipeline.suites.<suite>.Suite.scripted_policy`).
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym

POLICY_KINDS = ("expert", "scripted", "random")


class EpisodeFailed(Exception):
    """The policy gave up on this episode (e.g. the BabyAI bot found no plan); it is dropped."""


class PolicyTimeout(EpisodeFailed):
    """One policy call ran past its time budget; the episode is dropped with the reason."""


class Policy(Protocol):
    """What rollout needs from a policy."""

    name: str

    def reset(self, env: gym.Env, seed: int) -> None:
        """Start an episode; `env` is the env being recorded, already reset."""

    def act(self, observation: Any, info: dict[str, Any]) -> Any:
        """The action for the observation the env just returned."""

    def provenance(self) -> dict[str, Any]:
        """What produced the actions: recorded in the manifest and the dataset card."""


class RandomPolicy:
    """Uniform random actions, seeded per episode so an episode replays identically."""

    name = "random"

    def __init__(self, action_space: gym.Space) -> None:
        self.action_space = action_space

    def reset(self, env: gym.Env, seed: int) -> None:
        self.action_space.seed(seed)

    def act(self, observation: Any, info: dict[str, Any]) -> Any:
        return self.action_space.sample()

    def provenance(self) -> dict[str, Any]:
        return {"policy": self.name}
