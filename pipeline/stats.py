"""Per-config statistics: what the dataset card shows and what sequence models need to normalise.

Two passes of very different cost. `episode_stats` reads only the manifest (episodes, steps,
returns, success per split; JAT-normalised scores; a return histogram), so the local README can
show it for free. `feature_stats` streams the shards record batch by record batch and merges
per-feature moments (Chan et al.'s parallel update), so a config is never loaded whole: it gives
the per-feature mean/std/min/max of continuous observations and actions that Decision
Transformer users normalise states with, per-step reward moments, and discrete action counts.
`config_stats` joins both into the machine-readable `meta/<config>/stats.json`.

Everything here is deterministic for a given dataset (no timestamps), so publishing the same
data twice produces byte-identical files and uploads nothing the second time.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.manifest import Manifest, read_manifest
from pipeline.registry import TaskSpec, get_task
from pipeline.schema import SHARD_GLOB, SPLITS, step_columns
from pipeline.storage import Location

log = logging.getLogger(__name__)

STATS_VERSION = 1
STATS_PATH = "meta/{config}/stats.json"
HISTOGRAM_BINS = 20
BATCH_EPISODES = 32
# Per-step columns whose per-feature moments are computed: JAT's continuous vectors.
VECTOR_COLUMNS = ("continuous_observations", "continuous_actions")

PLAN_KEYS = ("seed", "budget", "test_fraction", "max_episode_steps", "history")  # shown on the card


@dataclass
class Moments:
    """Running count/mean/M2/min/max per feature, mergeable batch by batch without precision loss."""

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

    def to_dict(self) -> dict[str, Any]:
        if self.mean is None:
            return {"count": 0}
        return {
            "count": int(self.count),
            "mean": _floats(self.mean),
            "std": _floats(np.sqrt(self.m2 / self.count)),
            "min": _floats(self.low),
            "max": _floats(self.high),
        }


def _floats(values: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def _summary(values: np.ndarray) -> dict[str, float] | None:
    if values.size == 0:
        return None
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def episode_stats(manifest: Manifest, spec: TaskSpec) -> dict[str, Any]:
    """Per-split counts and return statistics from the manifest alone (no shard is read)."""
    scores = spec.scores
    records = {
        s: [e for shard in manifest.shards if shard.split == s for e in shard.episodes] for s in SPLITS
    }
    all_returns = np.array([e.episode_return for s in SPLITS for e in records[s]], dtype=np.float64)
    edges = (
        np.histogram_bin_edges(all_returns, bins=HISTOGRAM_BINS) if all_returns.size else np.array([0.0, 1.0])
    )
    splits: dict[str, Any] = {}
    for split in SPLITS:
        episodes = records[split]
        if not episodes:
            continue
        returns = np.array([e.episode_return for e in episodes], dtype=np.float64)
        lengths = np.array([e.length for e in episodes], dtype=np.float64)
        successes = [e.success for e in episodes if e.success is not None]
        summary = _summary(returns)
        assert summary is not None
        normalised = {
            "mean": _finite_or_none(scores.normalise(summary["mean"])),
            "std": _finite_or_none(summary["std"] / abs(scores.expert_mean - scores.random_mean)),
        }
        human = scores.human_normalise(summary["mean"])
        splits[split] = {
            "episodes": len(episodes),
            "steps": int(lengths.sum()),
            "shards": sum(1 for s in manifest.shards if s.split == split),
            "bytes": sum(s.num_bytes for s in manifest.shards if s.split == split),
            "length": _summary(lengths),
            "return": summary,
            "normalised_score": normalised,
            "human_normalised_score": _finite_or_none(human),
            "success_rate": float(np.mean(successes)) if successes else None,
            "histogram": np.histogram(returns, bins=edges)[0].astype(int).tolist(),
        }
    return {
        "format_version": STATS_VERSION,
        "config": manifest.config,
        "suite": manifest.suite,
        "env_id": manifest.env_id,
        "jat_env_id": spec.jat_env_id,
        "make_kwargs": manifest.make_kwargs,
        "observation": {"type": spec.observation.type, "shape": list(spec.observation.shape)},
        "action": {"type": spec.action.type, "shape": list(spec.action.shape), "n": spec.action.n},
        "reference_scores": {
            "expert": scores.expert_mean,
            "random": scores.random_mean,
            "human": scores.human_mean,
        },
        "policy": {
            "kind": manifest.plan.get("policy"),
            "provenance": manifest.provenance,
            "backend": spec.expert.backend,
            "jat_expert": spec.expert_source or None,
        },
        "plan": {k: manifest.plan.get(k) for k in PLAN_KEYS},
        "dropped": len(manifest.dropped),
        "data_files": {s: SHARD_GLOB.format(config=manifest.config, split=s) for s in splits},
        "histogram_edges": _floats(edges),
        "splits": splits,
    }


def _step_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """list<list<float>> (episodes → steps → features) as a (steps, features) float array."""
    steps = pc.list_flatten(column)
    width = pc.list_value_length(steps).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(steps).to_numpy(zero_copy_only=False)
    dim = int(width[0]) if width.size else 0
    return values.reshape(-1, dim) if dim else np.empty((0, 0))


def feature_stats(
    location: Location, manifest: Manifest, batch_episodes: int = BATCH_EPISODES
) -> dict[str, Any]:
    """Per-split, per-feature moments of the vector columns, streamed one record batch at a time."""
    columns = [
        c for c in step_columns(manifest.suite) if c in VECTOR_COLUMNS or c in ("rewards", "discrete_actions")
    ]
    out: dict[str, Any] = {}
    for split in SPLITS:
        shards = [s for s in manifest.shards if s.split == split]
        if not shards:
            continue
        moments = {c: Moments() for c in columns if c != "discrete_actions"}
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
                    if "discrete_actions" in columns:
                        actions = pc.list_flatten(batch.column("discrete_actions")).to_numpy(
                            zero_copy_only=False
                        )
                        counts = np.bincount(actions.astype(np.int64), minlength=action_counts.size)
                        action_counts = np.pad(action_counts, (0, counts.size - action_counts.size)) + counts
        entry: dict[str, Any] = {name: m.to_dict() for name, m in moments.items()}
        if "rewards" in entry and entry["rewards"].get("count"):
            entry["rewards"] = {k: (v[0] if isinstance(v, list) else v) for k, v in entry["rewards"].items()}
        if "discrete_actions" in columns:
            entry["discrete_actions"] = {"counts": action_counts.astype(int).tolist()}
        out[split] = entry
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


def config_stats(location: Location, request: StatsRequest) -> dict[str, Any]:
    """The content of `meta/<config>/stats.json` for one config of the dataset at `location`."""
    manifest = read_manifest(location, request.config)
    spec = get_task(request.config)
    stats = episode_stats(manifest, spec)
    if request.features:
        features = feature_stats(location, manifest, request.batch_episodes)
        for split, entry in features.items():
            stats["splits"][split]["features"] = entry
        log.debug("%s: feature statistics over %s", request.config, {s: len(v) for s, v in features.items()})
    return stats
