"""The rollout worker: owns its envs, its policy and its shard writer.

One worker records work units (batches of planned episodes of one config and split) into
shards. It runs in-process (serial mode) or as a Ray actor (`pipeline.runtime.executor`); either way
the episodes never travel to the driver, only the shard records do.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from pipeline.errors import PipelineError
from pipeline.format.plan import FILTER_REASON, PlannedEpisode, WorkUnit
from pipeline.format.schema import RUN_LEASE_PATH, SHARD_RECORD_DIR, UNIT_RECORD_NAME
from pipeline.format.shards import DEFAULT_MAX_SHARD_BYTES, Episode, ShardRecord, ShardWriter
from pipeline.rollout.policy_factory import make_policy
from pipeline.rollout.recorder import can_batch, record_batched, record_episode
from pipeline.runtime import faults
from pipeline.runtime.storage import open_location
from pipeline.tasks.envs import make_env
from pipeline.tasks.policies import Policy
from pipeline.tasks.registry import TaskSpec, get_task

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
    envs_per_worker: dict[str, int] = field(default_factory=dict)  # config -> lockstep envs (experts)
    run_id: str = ""  # the run's lease in meta/run.json; a worker of a superseded run commits nothing


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


def _in_plan_order(
    finished: Iterator[tuple[PlannedEpisode, Episode | str]], planned: list[PlannedEpisode]
) -> Iterator[tuple[PlannedEpisode, Episode | str]]:
    """Re-order episodes that finished out of order (lockstep envs) into plan order."""
    waiting: dict[int, Episode | str] = {}
    expected = iter(planned)
    current = next(expected, None)
    for episode, result in finished:
        waiting[episode.episode_id] = result
        while current is not None and current.episode_id in waiting:
            yield current, waiting.pop(current.episode_id)
            current = next(expected, None)


def unit_record_path(config: str, split: str, index: int) -> str:
    """The unit's sidecar; written after its shard is committed, so a shard without one is an orphan."""
    return f"{SHARD_RECORD_DIR.format(config=config)}/{UNIT_RECORD_NAME.format(split=split, index=index)}"


class RolloutWorker:
    """Records work units into shards. Envs and policies are built once per config and kept.

    Learning histories need one policy per expert snapshot; units hold consecutive episodes,
    so only the latest snapshot's policy is kept per config.
    """

    def __init__(self, settings: WorkerSettings) -> None:
        warnings.filterwarnings("ignore", category=UserWarning)
        self.settings = settings
        self.location = open_location(settings.out)
        self._envs: dict[str, list[Any]] = {}
        self._policies: dict[str, tuple[int | None, Policy]] = {}

    def _env_list(self, spec: TaskSpec, count: int) -> list[Any]:
        envs = self._envs.setdefault(spec.config, [])
        while len(envs) < count:
            envs.append(make_env(spec, max_episode_steps=self.settings.max_episode_steps))
        return envs[:count]

    def _policy(self, spec: TaskSpec, checkpoint: int | None) -> Policy:
        cached = self._policies.get(spec.config)
        if cached is None or cached[0] != checkpoint:
            kind = self.settings.policies[spec.config]
            env = self._env_list(spec, 1)[0]
            policy = make_policy(
                kind, spec, env, self.settings.experts_dir, self.settings.allow_weak, step=checkpoint
            )
            self._policies[spec.config] = cached = (checkpoint, policy)
        return cached[1]

    def _play(self, spec: TaskSpec, unit: WorkUnit) -> Iterator[tuple[PlannedEpisode, Episode | str]]:
        """The unit's episodes, played and yielded in plan order.

        A batchable expert steps `envs_per_worker` envs in lockstep (one forward pass for all);
        other policies play one episode after another. Learning histories switch snapshot
        between consecutive runs of episodes.
        """
        width = self.settings.envs_per_worker.get(spec.config, 1)
        for checkpoint, group in groupby(unit.episodes, key=lambda e: e.checkpoint):
            planned = list(group)
            policy = self._policy(spec, checkpoint)
            if width > 1 and can_batch(policy):
                yield from _in_plan_order(
                    record_batched(self._env_list(spec, width), policy, spec, planned), planned
                )
                continue
            env = self._env_list(spec, 1)[0]
            for episode in planned:
                yield episode, record_episode(env, policy, spec, episode)

    def run_unit(self, unit: WorkUnit) -> Iterator[Progress | UnitResult]:
        """Record a unit; yields progress now and then, and the `UnitResult` last."""
        spec = get_task(unit.config)
        played = self._play(spec, unit)
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
            for position in range(len(unit.episodes)):
                if writer.full and writer.num_episodes:
                    leftover = unit.episodes[position:]
                    break
                planned, result = next(played)
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
            self._check_lease()
            shard = writer.close() if writer.num_episodes else None
            if shard is None:
                writer.abort()
            faults.hit("unit.shard_committed")
        except BaseException:
            writer.abort()
            raise
        finally:
            played.close()
        yield Progress(unit, done - reported_done, steps - reported_steps)
        result = UnitResult(
            unit, shard, dropped, leftover, steps, self._policies[spec.config][1].provenance()
        )
        self._write_unit_record(result)
        faults.hit("unit.record_written")
        yield result

    def _check_lease(self) -> None:
        """Refuse to commit for a run that another one has replaced.

        When a driver dies, its actors can outlive it by a second or two and finish their
        units; a `--resume` started meanwhile owns the folder (it wrote a new lease), so those
        leftovers must not land shards or records under the new run's indices.
        """
        if not self.settings.run_id:
            return
        current = self.location.read_json(RUN_LEASE_PATH).get("run_id")
        if current != self.settings.run_id:
            raise PipelineError(
                f"{self.location.uri} is now written by rollout run {current}, not by this one "
                f"({self.settings.run_id}): this worker's unit is dropped"
            )

    def _filter(self, spec: TaskSpec, episode: Episode) -> Episode | str:
        """Gato's filter: keep episodes scoring at least `min_return_fraction` (expert-normalised)."""
        threshold = self.settings.min_return_fraction
        if threshold is None:
            return episode
        score = spec.scores.normalise(episode.episode_return)
        return (
            episode if score >= threshold else f"{FILTER_REASON}: normalised score {score:.3f} < {threshold}"
        )

    def _write_unit_record(self, result: UnitResult) -> None:
        self.location.write_json(result.record_path, result.to_dict())
