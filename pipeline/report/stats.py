"""Per-config statistics: what the dataset card shows and what sequence models need to normalise.

Two passes of very different cost. `episode_stats` reads only the manifest (episodes, steps,
returns, success per split; JAT-normalised scores; a return histogram), so the local README can
show it for free. `feature_stats` streams the shards record batch by record batch and merges
per-feature moments (Chan et al.'s parallel update), so a config is never loaded whole: it gives
the per-feature mean/std/min/max of continuous observations and actions that Decision
Transformer users normalise states with, per-step reward moments, and discrete action counts.
`config_stats` joins both into the machine-readable `meta/<config>/stats.json`.

The results are the typed, frozen dataclasses of `pipeline.report.stats_types` (`ConfigStats` down to
`Summary`), which the card, the figures and the publisher read by attribute.

Everything here is deterministic for a given dataset (no timestamps), so publishing the same
data twice produces byte-identical files and uploads nothing the second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.format.columns import DISCRETE_ACTIONS, REWARDS
from pipeline.format.manifest import Manifest, read_manifest
from pipeline.format.plan import RunPlan
from pipeline.format.schema import SHARD_GLOB, SPLITS
from pipeline.report.stats_types import (
    BATCH_EPISODES,
    HISTOGRAM_BINS,
    VECTOR_COLUMNS,
    ActionSpace,
    ConfigStats,
    FeatureMoments,
    FeatureStats,
    NormalisedScore,
    PlanSummary,
    PolicyInfo,
    ReferenceScores,
    RewardMoments,
    Space,
    SplitStats,
    Summary,
    as_floats,
    finite_or_none,
)
from pipeline.runtime.storage import Location
from pipeline.suites import get_suite
from pipeline.tasks.registry import TaskSpec, get_task

log = logging.getLogger(__name__)


@dataclass
class Moments:
    """Running count/mean/M2/min/max per feature, mergeable batch by batch without precision loss.

    The accumulator of one pass (mutable, never leaves this module): `result()` is what is kept.
    """

    count: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        """Merge a (steps, features) block."""
        if values.size == 0:
            return
        values = values.astype(np.float64, copy=False)
        n = values.shape[0]
        mean = values.mean(axis=0)
        m2 = ((values - mean) ** 2).sum(axis=0)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            self.low, self.high = values.min(axis=0), values.max(axis=0)
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.low = np.minimum(self.low, values.min(axis=0))
        self.high = np.maximum(self.high, values.max(axis=0))
        self.count = total

    def result(self) -> FeatureMoments:
        """The per-feature moments merged so far."""
        if self.mean is None:
            return FeatureMoments()
        return FeatureMoments(
            int(self.count),
            as_floats(self.mean),
            as_floats(np.sqrt(self.m2 / self.count)),
            as_floats(self.low),
            as_floats(self.high),
        )

    def scalar(self) -> RewardMoments:
        """The moments of a one-feature column (rewards) as scalars."""
        moments = self.result()
        if not moments.count:
            return RewardMoments()
        return RewardMoments(
            moments.count, Summary(moments.mean[0], moments.std[0], moments.min[0], moments.max[0])
        )


def episode_stats(manifest: Manifest, spec: TaskSpec) -> ConfigStats:
    """Per-split counts and return statistics from the manifest alone (no shard is read)."""
    scores = spec.scores
    records = {
        s: [e for shard in manifest.shards if shard.split == s for e in shard.episodes] for s in SPLITS
    }
    all_returns = np.array([e.episode_return for s in SPLITS for e in records[s]], dtype=np.float64)
    edges = (
        np.histogram_bin_edges(all_returns, bins=HISTOGRAM_BINS) if all_returns.size else np.array([0.0, 1.0])
    )
    splits: dict[str, SplitStats] = {}
    for split in SPLITS:
        episodes = records[split]
        if not episodes:
            continue
        returns = np.array([e.episode_return for e in episodes], dtype=np.float64)
        lengths = np.array([e.length for e in episodes], dtype=np.float64)
        successes = [e.success for e in episodes if e.success is not None]
        summary = Summary.of(returns)
        length = Summary.of(lengths)
        assert summary is not None and length is not None
        splits[split] = SplitStats(
            episodes=len(episodes),
            steps=int(lengths.sum()),
            shards=sum(1 for s in manifest.shards if s.split == split),
            bytes=sum(s.num_bytes for s in manifest.shards if s.split == split),
            length=length,
            episode_return=summary,
            normalised_score=NormalisedScore(
                mean=finite_or_none(scores.normalise(summary.mean)),
                std=finite_or_none(summary.std / abs(scores.expert_mean - scores.random_mean)),
            ),
            human_normalised_score=finite_or_none(scores.human_normalise(summary.mean)),
            success_rate=float(np.mean(successes)) if successes else None,
            histogram=tuple(int(c) for c in np.histogram(returns, bins=edges)[0]),
        )
    plan = RunPlan.from_dict(manifest.plan, f"{manifest.config}: the manifest")
    return ConfigStats(
        config=manifest.config,
        suite=manifest.suite,
        env_id=manifest.env_id,
        jat_env_id=spec.jat_env_id,
        make_kwargs=manifest.make_kwargs,
        observation=Space(spec.observation.type, tuple(spec.observation.shape)),
        action=ActionSpace(spec.action.type, tuple(spec.action.shape), spec.action.n),
        reference_scores=ReferenceScores(scores.expert_mean, scores.random_mean, scores.human_mean),
        policy=PolicyInfo(
            kind=plan.policy or None,
            provenance=manifest.provenance,
            backend=spec.expert.backend,
            jat_expert=spec.expert_source or None,
        ),
        plan=PlanSummary.of(plan),
        dropped=len(manifest.dropped),
        data_files={s: SHARD_GLOB.format(config=manifest.config, split=s) for s in splits},
        histogram_edges=as_floats(edges),
        splits=splits,
    )


def _step_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """list<list<float>> (episodes → steps → features) as a (steps, features) float array."""
    steps = pc.list_flatten(column)
    width = pc.list_value_length(steps).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(steps).to_numpy(zero_copy_only=False)
    dim = int(width[0]) if width.size else 0
    return values.reshape(-1, dim) if dim else np.empty((0, 0))


def feature_stats(
    location: Location, manifest: Manifest, batch_episodes: int = BATCH_EPISODES
) -> dict[str, FeatureStats]:
    """Per-split, per-feature moments of the vector columns, streamed one record batch at a time."""
    columns = [
        c
        for c in get_suite(manifest.suite).layout.columns
        if c in VECTOR_COLUMNS or c in (REWARDS, DISCRETE_ACTIONS)
    ]
    out: dict[str, FeatureStats] = {}
    for split in SPLITS:
        shards = [s for s in manifest.shards if s.split == split]
        if not shards:
            continue
        moments = {c: Moments() for c in columns if c != DISCRETE_ACTIONS}
        action_counts: np.ndarray = np.zeros(0, dtype=np.int64)
        for shard in shards:
            with location.fs.open_input_file(location.path(shard.path)) as f:
                for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_episodes, columns=columns):
                    for name in moments:
                        column = batch.column(name)
                        block = (
                            _step_matrix(column)
                            if name in VECTOR_COLUMNS
                            else pc.list_flatten(column).to_numpy(zero_copy_only=False).reshape(-1, 1)
                        )
                        moments[name].add(block)
                    if DISCRETE_ACTIONS in columns:
                        actions = pc.list_flatten(batch.column(DISCRETE_ACTIONS)).to_numpy(
                            zero_copy_only=False
                        )
                        counts = np.bincount(actions.astype(np.int64), minlength=action_counts.size)
                        action_counts = np.pad(action_counts, (0, counts.size - action_counts.size)) + counts
        out[split] = FeatureStats(
            rewards=moments[REWARDS].scalar(),
            discrete_action_counts=tuple(int(c) for c in action_counts)
            if DISCRETE_ACTIONS in columns
            else None,
            **{name: moments[name].result() for name in VECTOR_COLUMNS if name in moments},
        )
    return out


@dataclass(frozen=True)
class StatsRequest:
    """Which statistics to compute for a config."""

    config: str
    """Config name, e.g. `mujoco-hopper`."""
    features: bool = True
    """Also stream the shards for per-feature moments (the manifest-only part is always computed)."""
    batch_episodes: int = field(default=BATCH_EPISODES)
    """Episodes per record batch while streaming: bounds memory per step of the pass."""

    def __post_init__(self) -> None:
        if self.batch_episodes < 1:
            raise ValueError(f"batch_episodes must be positive, got {self.batch_episodes}")


def config_stats(location: Location, request: StatsRequest) -> ConfigStats:
    """The content of `meta/<config>/stats.json` for one config of the dataset at `location`."""
    manifest = read_manifest(location, request.config)
    spec = get_task(request.config)
    stats = episode_stats(manifest, spec)
    if request.features:
        features = feature_stats(location, manifest, request.batch_episodes)
        splits = {name: replace(split, features=features.get(name)) for name, split in stats.splits.items()}
        stats = replace(stats, splits=splits)
        log.debug("%s: feature statistics over %s splits", request.config, len(features))
    return stats
