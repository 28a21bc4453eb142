"""The rollout worker: owns its env(s), its policy and its shard writer.

One worker records work units (batches of planned episodes of one config and split) into
shards. It runs in-process (serial mode) or as a Ray actor (`pipeline.executor`); either way
the episodes never travel to the driver, only the shard records do.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.envs import make_env, step_success
from pipeline.plan import PlannedEpisode, WorkUnit
from pipeline.policies import EpisodeFailed, Policy, make_policy
from pipeline.registry import TaskSpec, get_task
from pipeline.schema import SHARD_RECORD_DIR
from pipeline.shards import DEFAULT_MAX_SHARD_BYTES, Episode, ShardRecord, ShardWriter, encode_frame
from pipeline.storage import open_location

PROGRESS_EVERY_S = 0.5


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker of a run shares."""

    out: str
    policies: dict[str, str]  # config -> policy kind
    experts_dir: str | None = None
    allow_weak: bool = False
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    max_episode_steps: int | None = None
    min_return_fraction: float | None = None  # drop episodes below this expert-normalised score


@dataclass(frozen=True)
class Progress:
    """Episodes and steps recorded since the unit's previous report."""

    unit: WorkUnit
    episodes: int
    steps: int


@dataclass
class UnitResult:
    """The outcome of one unit: its shard (if any episode was kept), drops and unplayed leftovers."""

    unit: WorkUnit
    shard: ShardRecord | None
    dropped: list[dict[str, Any]] = field(default_factory=list)
    leftover: tuple[PlannedEpisode, ...] = ()
    steps: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def record_path(self) -> str:
        return unit_record_path(self.unit.config, self.unit.split, self.unit.shard_index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": {
                "config": self.unit.config,
                "split": self.unit.split,
                "shard_index": self.unit.shard_index,
                "episodes": [_planned_to_list(e) for e in self.unit.episodes],
            },
            "shard": self.shard.to_dict() if self.shard else None,
            "dropped": self.dropped,
            "leftover": [_planned_to_list(e) for e in self.leftover],
            "steps": self.steps,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitResult:
        u = data["unit"]
        episodes = tuple(PlannedEpisode(i, seed, u["split"], *rest) for i, seed, *rest in u["episodes"])
        return cls(
            unit=WorkUnit(u["config"], u["split"], u["shard_index"], episodes),
            shard=ShardRecord.from_dict(data["shard"]) if data["shard"] else None,
            dropped=data["dropped"],
            leftover=tuple(PlannedEpisode(i, seed, u["split"], *rest) for i, seed, *rest in data["leftover"]),
            steps=data["steps"],
            provenance=data["provenance"],
        )


def _planned_to_list(episode: PlannedEpisode) -> list[int]:
    """[id, seed], plus the snapshot step for learning histories."""
    head = [episode.episode_id, episode.seed]
    return head if episode.checkpoint is None else [*head, episode.checkpoint]


def unit_record_path(config: str, split: str, index: int) -> str:
    """The unit's sidecar; written after its shard is committed, so a shard without one is an orphan."""
    return f"{SHARD_RECORD_DIR.format(config=config)}/{split}-{index:05d}.json"


def record_episode(env: Any, policy: Policy, spec: TaskSpec, planned: PlannedEpisode) -> Episode | str:
    """Play one planned episode; return it in stored form, or the reason it was dropped."""
    observation, info = env.reset(seed=planned.seed)
    policy.reset(env, planned.seed)
    episode = Episode(planned.episode_id, planned.seed, checkpoint_step=planned.checkpoint)
    continuous = spec.action.type == "continuous"
    low, high = spec.action.low, spec.action.high
    success: bool | None = None
    while True:
        try:
            action = policy.act(observation, info)
        except EpisodeFailed as exc:
            return str(exc)
        if continuous:  # what np.clip returns, bit for bit, at a third of its per-step cost
            action = np.minimum(np.maximum(np.asarray(action, dtype=np.float32), low), high)
        if spec.suite == "atari":
            episode.observations.append(encode_frame(observation))
        elif spec.suite == "babyai":
            episode.texts.append(observation["text_observations"])
            episode.observations.append(observation["discrete_observations"])
        else:
            episode.observations.append(observation)
        observation, reward, terminated, truncated, info = env.step(action)
        episode.actions.append(action)
        episode.rewards.append(float(reward))
        succeeded = step_success(spec, terminated, float(reward), info)
        if succeeded is not None:
            success = bool(success) or succeeded
        if terminated or truncated:
            break
    episode.success = success
    if spec.rollout.get("drop_unfinished", False) and not terminated:
        return "unfinished: the episode hit the step limit"
    return episode


class RolloutWorker:
    """Records work units into shards. Envs and policies are built once per config and kept.

    Learning histories need one policy per expert snapshot; units hold consecutive episodes,
    so only the latest snapshot's policy is kept per config.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        warnings.filterwarnings("ignore", category=UserWarning)
        self.settings = settings
        self.location = open_location(settings.out)
        self._envs: dict[str, Any] = {}
        self._policies: dict[str, tuple[int | None, Policy]] = {}

    def _env_and_policy(self, spec: TaskSpec, checkpoint: int | None) -> tuple[Any, Policy]:
        if spec.config not in self._envs:
            self._envs[spec.config] = make_env(spec, max_episode_steps=self.settings.max_episode_steps)
        env = self._envs[spec.config]
        cached = self._policies.get(spec.config)
        if cached is None or cached[0] != checkpoint:
            kind = self.settings.policies[spec.config]
            policy = make_policy(
                kind, spec, env, self.settings.experts_dir, self.settings.allow_weak, step=checkpoint
            )
            self._policies[spec.config] = cached = (checkpoint, policy)
        return env, cached[1]

    def run_unit(self, unit: WorkUnit) -> Iterator[Progress | UnitResult]:
        """Record a unit; yields progress now and then, and the `UnitResult` last."""
        spec = get_task(unit.config)
        env, policy = self._env_and_policy(spec, unit.episodes[0].checkpoint)
        writer = ShardWriter(
            self.location,
            unit.config,
            spec.suite,
            unit.split,
            unit.shard_index,
            max_bytes=self.settings.max_shard_bytes,
        )
        dropped: list[dict[str, Any]] = []
        steps = done = reported_steps = reported_done = 0
        last = time.monotonic()
        leftover: tuple[PlannedEpisode, ...] = ()
        try:
            for position, planned in enumerate(unit.episodes):
                if writer.full and writer.num_episodes:
                    leftover = unit.episodes[position:]
                    break
                env, policy = self._env_and_policy(spec, planned.checkpoint)
                result = record_episode(env, policy, spec, planned)
                if not isinstance(result, str):
                    result = self._filter(spec, result)
                if isinstance(result, str):
                    dropped.append({"episode_id": planned.episode_id, "seed": planned.seed, "reason": result})
                else:
                    writer.add(result)
                    steps += result.length
                done += 1
                if time.monotonic() - last >= PROGRESS_EVERY_S:
                    yield Progress(unit, done - reported_done, steps - reported_steps)
                    reported_done, reported_steps, last = done, steps, time.monotonic()
            shard = writer.close() if writer.num_episodes else None
            if shard is None:
                writer.abort()
        except BaseException:
            writer.abort()
            raise
        yield Progress(unit, done - reported_done, steps - reported_steps)
        result = UnitResult(unit, shard, dropped, leftover, steps, policy.provenance())
        self._write_unit_record(result)
        yield result

    def _filter(self, spec: TaskSpec, episode: Episode) -> Episode | str:
        """Gato's filter: keep episodes scoring at least `min_return_fraction` (expert-normalised)."""
        threshold = self.settings.min_return_fraction
        if threshold is None:
            return episode
        score = spec.scores.normalise(episode.episode_return)
        return (
            episode if score >= threshold else f"below min return: normalised score {score:.3f} < {threshold}"
        )

    def _write_unit_record(self, result: UnitResult) -> None:
        self.location.write_json(result.record_path, result.to_dict())
