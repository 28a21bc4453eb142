"""`pipeline replay`: play stored episodes again from their seed and actions, and compare.

A stored episode is a claim that this env, reset with this seed and driven by these actions,
showed these observations and paid these rewards. Validation checks the files and the manifest's
arithmetic; only re-simulation checks the claim itself: rows moved between episodes (with their
manifest records, so every digest still matches), an env whose dynamics changed with a package
upgrade, or a recorder that stored something other than what the policy saw.

The episode is played by the recorder's own loop (`pipeline.rollout.recorder.Recording`, which is
`pipeline.tasks.episodes.EpisodeRun` plus the stored form) on an env from `pipeline.tasks.envs.make_env`,
with a
"policy" that returns the stored actions: reset, seeding, clipping and the stored form of each
observation are the rollout's, by construction. Discrete data must match exactly (BabyAI
integers and missions, Atari frame stacks pixel for pixel); continuous observations and rewards
within a few float32 ulps (`pipeline.format.columns.within_float32`): float32 roundings of float64 physics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.configs.replay import ReplayConfig
from pipeline.errors import PipelineError
from pipeline.format.columns import (
    CONTINUOUS_ACTIONS,
    DISCRETE_ACTIONS,
    REWARDS,
    TEXT_OBSERVATIONS,
    first_bad,
    flat,
)
from pipeline.format.manifest import Manifest, read_manifest
from pipeline.format.plan import PlannedEpisode
from pipeline.format.shards import EpisodeRecord, ShardRecord
from pipeline.rollout.recorder import Recording
from pipeline.runtime.storage import Location, open_location
from pipeline.suites import get_suite
from pipeline.suites.base import Grab
from pipeline.suites.layouts import Observed
from pipeline.tasks.envs import make_env
from pipeline.tasks.episodes import play
from pipeline.tasks.policies import EpisodeFailed
from pipeline.tasks.registry import TaskSpec, get_task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredEpisode:
    """One stored row, per step: observations (PNG bytes for Atari), missions, actions, rewards."""

    record: EpisodeRecord
    split: str
    shard: str
    row: int
    observations: list[bytes] | np.ndarray
    texts: list[str] | None
    actions: np.ndarray
    rewards: np.ndarray

    @property
    def length(self) -> int:
        return len(self.rewards)


@dataclass(frozen=True)
class Mismatch:
    """The first step where a re-simulated episode leaves its stored one, and how."""

    episode_id: int
    split: str
    shard: str
    row: int
    step: int
    feature: str
    """The JAT column that differs (`rewards`, `continuous_observations`, ...), or `episode end`."""
    detail: str

    def line(self, config: str) -> str:
        return (
            f"{config}: episode {self.episode_id} ({self.shard} row {self.row}) does not reproduce: "
            f"step {self.step}, {self.feature}: {self.detail}"
        )


@dataclass(frozen=True)
class EpisodeReplay:
    """How one episode replayed."""

    episode_id: int
    split: str
    steps: int
    exact: bool
    """Every compared value is bit-identical to the stored one."""
    max_abs_diff: float
    """The largest |replayed - stored| over observations and rewards (0.0 when exact)."""
    mismatch: Mismatch | None


@dataclass(frozen=True)
class ReplayResult:
    """The replay of one config's selected episodes."""

    config: str
    suite: str
    episodes: tuple[EpisodeReplay, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(e.mismatch is None for e in self.episodes)

    @property
    def mismatches(self) -> list[Mismatch]:
        return [e.mismatch for e in self.episodes if e.mismatch is not None]

    @property
    def steps(self) -> int:
        return sum(e.steps for e in self.episodes)

    @property
    def exact(self) -> int:
        return sum(e.exact for e in self.episodes)

    @property
    def max_abs_diff(self) -> float:
        return max((e.max_abs_diff for e in self.episodes), default=0.0)


# --- stored episodes ----------------------------------------------------------------------------
def select_episodes(
    manifest: Manifest, count: int | None, split: str = "both"
) -> list[tuple[ShardRecord, int, EpisodeRecord]]:
    """(shard, row, record) of the first `count` episodes by id (all with None) of the split(s):
    a deterministic sample, the same on every run and machine."""
    rows = [
        (shard, row, record)
        for shard in manifest.shards
        if split in ("both", shard.split)
        for row, record in enumerate(shard.episodes)
    ]
    rows.sort(key=lambda item: item[2].episode_id)
    return rows if count is None else rows[:count]


def read_episodes(
    location: Location, spec: TaskSpec, selection: list[tuple[ShardRecord, int, EpisodeRecord]]
) -> Iterator[StoredEpisode]:
    """The selected rows in stored form, each shard read once (in selection order)."""
    tables: dict[str, pa.Table] = {}
    layout = get_suite(spec.suite).layout
    for shard, row, record in selection:
        if shard.path not in tables:
            try:
                tables[shard.path] = pq.read_table(location.path(shard.path), filesystem=location.fs)
            except (pa.ArrowException, OSError) as exc:
                raise PipelineError(
                    f"cannot read {location.uri}/{shard.path} ({exc}): run `pipeline validate` on it"
                ) from None
        table = tables[shard.path].slice(row, 1)
        observed = layout.read_observations(table, record.length)
        if spec.action.type == "discrete":
            actions = flat(table.column(DISCRETE_ACTIONS)).to_numpy()
        else:
            actions = flat(table.column(CONTINUOUS_ACTIONS)).flatten().to_numpy().reshape(record.length, -1)
        rewards = flat(table.column(REWARDS)).to_numpy()
        yield StoredEpisode(
            record, shard.split, shard.path, row, observed.observations, observed.texts, actions, rewards
        )


# --- re-simulation ------------------------------------------------------------------------------
def replay_env(spec: TaskSpec, manifest: Manifest):
    """The env the rollout recorded with: `make_env` with the plan's horizon and Atari semantics.

    The rollout passed `--max-episode-steps` only when given; the plan stores it, else the task's
    horizon, so the override is passed again only where it differs from the task's. Atari data
    replays with the semantics it was recorded with (gymnasium's or envpool's), not the registry's
    default of the day.
    """
    recorded = manifest.plan.get("atari_semantics")
    if recorded is not None and recorded != spec.env.atari_semantics:
        try:
            spec = replace(spec, env=replace(spec.env, atari_semantics=recorded))
        except ValueError as exc:
            raise PipelineError(
                f"{spec.config} was recorded with atari_semantics {recorded}, which this registry's "
                f"env section cannot build ({exc}): use the jat-pipeline version that recorded it"
            ) from None
    horizon = manifest.plan.get("max_episode_steps")
    return make_env(spec, max_episode_steps=None if horizon == spec.max_episode_steps else horizon)


class Replaying(Recording):
    """The recorder's episode, fed the stored actions; optionally grabs one frame per stored step."""

    def __init__(self, env, spec: TaskSpec, stored: StoredEpisode, grab: Grab | None = None) -> None:
        record = stored.record
        super().__init__(
            env, spec, PlannedEpisode(record.episode_id, record.seed, stored.split, record.checkpoint_step)
        )
        self.stored, self.grab = stored, grab
        self.frames: list[np.ndarray] = [] if grab is None else [grab(env, self.observation)]

    def record(self, observation, action, reward: float) -> None:
        super().record(observation, action, reward)
        if self.grab is not None and len(self.frames) < self.stored.length:  # the state acted on next
            self.frames.append(self.grab(self.env, self.observation))

    def act(self, _run: object) -> object:
        if self.length >= self.stored.length:
            raise EpisodeFailed(
                f"the re-simulated episode had not ended after the stored {self.length} steps"
            )
        return self.stored.actions[self.length]


def compare(spec: TaskSpec, stored: StoredEpisode, run: Replaying, cut_short: str | None) -> EpisodeReplay:
    """Compare the re-simulated episode with the stored one, step by step; the first difference."""
    episode = run.episode
    n = min(stored.length, episode.length)
    layout = get_suite(spec.suite).layout
    continuous = layout.continuous
    first, largest = layout.first_difference(episode.observations, Observed(stored.observations), n)
    found, diffs = [first], [0.0, largest]
    if stored.texts is not None:
        bad = [t for t, (a, b) in enumerate(zip(episode.texts[:n], stored.texts[:n], strict=True)) if a != b]
        if bad:
            t = bad[0]
            found.append((t, TEXT_OBSERVATIONS, f"stored {stored.texts[t]!r}, replayed {episode.texts[t]!r}"))
    rewards = np.asarray(episode.rewards[:n], dtype=np.float32)
    found.append(first_bad(REWARDS, rewards, stored.rewards[:n], continuous))
    diffs.append(float(np.abs(rewards.astype(np.float64) - stored.rewards[:n]).max(initial=0)))
    if cut_short is not None:
        found.append((n, "episode end", cut_short))
    elif episode.length < stored.length:
        found.append(
            (
                n,
                "episode end",
                f"the re-simulated episode ended after {n} of the stored {stored.length} steps",
            )
        )
    found = sorted((f for f in found if f is not None), key=lambda f: f[0])
    mismatch = None
    if found:
        step, feature, detail = found[0]
        mismatch = Mismatch(
            stored.record.episode_id, stored.split, stored.shard, stored.row, step, feature, detail
        )
    exact = mismatch is None and max(diffs) == 0.0
    return EpisodeReplay(stored.record.episode_id, stored.split, stored.length, exact, max(diffs), mismatch)


def replay_episode(
    env, spec: TaskSpec, stored: StoredEpisode, grab: Grab | None = None
) -> tuple[EpisodeReplay, list[np.ndarray]]:
    """Play one stored episode again on `env`; its comparison, and the frames `grab` took."""
    run = Replaying(env, spec, stored, grab)
    cut_short = play(run, run.act)
    return compare(spec, stored, run, cut_short), run.frames


def replay_config(
    location: Location, config: str, episodes: int | None = None, split: str = "both"
) -> ReplayResult:
    """Replay the first `episodes` episodes by id (all with None) of one config's split(s)."""
    spec = get_task(config)
    manifest = read_manifest(location, config)
    selection = select_episodes(manifest, episodes, split)
    if not selection:
        where = "" if split == "both" else f" {split}"
        raise PipelineError(
            f"{location.uri}: {config} has no{where} episodes to replay: pick another --split"
        )
    start = time.monotonic()
    env = replay_env(spec, manifest)
    try:
        results = tuple(
            replay_episode(env, spec, stored)[0] for stored in read_episodes(location, spec, selection)
        )
    finally:
        env.close()
    result = ReplayResult(config, spec.suite, results, time.monotonic() - start)
    log.debug("%s: %d episodes replayed, %d bit-exact", config, len(results), result.exact)
    return result


def replay(config: ReplayConfig) -> ReplayResult:
    """`pipeline replay`: the replay of `config.config` in the dataset at `config.data_dir`."""
    location = open_location(config.data_dir)
    if not location.exists(""):
        raise PipelineError(f"{config.data_dir} does not exist: give the folder or URI a rollout wrote")
    return replay_config(location, config.config, config.episodes, config.split)
