"""Per-config statistics: streamed per-feature moments equal a whole-config numpy pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.manifest import read_manifest
from pipeline.registry import get_task
from pipeline.stats import Moments, StatsRequest, config_stats
from pipeline.storage import open_location


@pytest.fixture
def dataset(sample_dataset: Path) -> Path:
    """conftest's four-task dataset (read-only)."""
    return sample_dataset


def _whole(dataset: Path, config: str, split: str) -> pa.Table:
    manifest = read_manifest(open_location(str(dataset)), config)
    return pa.concat_tables([pq.read_table(dataset / s.path) for s in manifest.shards if s.split == split])


def _steps(table: pa.Table, column: str) -> np.ndarray:
    return np.array(
        [step for episode in table.column(column).to_pylist() for step in episode], dtype=np.float64
    )


@pytest.mark.parametrize("config", ["metaworld-reach", "mujoco-hopper"])
def test_feature_moments_match_numpy_on_the_whole_config(dataset: Path, config: str) -> None:
    # one episode per record batch: every batch is merged into the running moments
    stats = config_stats(open_location(str(dataset)), StatsRequest(config, batch_episodes=1))
    for split in ("train", "test"):
        table = _whole(dataset, config, split)
        features = stats["splits"][split]["features"]
        for column in ("continuous_observations", "continuous_actions"):
            values = _steps(table, column)
            got = features[column]
            assert got["count"] == len(values)
            np.testing.assert_allclose(got["mean"], values.mean(axis=0), rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(got["std"], values.std(axis=0), rtol=1e-7, atol=1e-9)
            np.testing.assert_allclose(got["min"], values.min(axis=0))
            np.testing.assert_allclose(got["max"], values.max(axis=0))
        rewards = _steps(table, "rewards")
        assert features["rewards"]["mean"] == pytest.approx(rewards.mean(), rel=1e-9)
        assert features["rewards"]["std"] == pytest.approx(rewards.std(), rel=1e-7)


def test_discrete_action_counts_and_episode_statistics(dataset: Path) -> None:
    location = open_location(str(dataset))
    stats = config_stats(location, StatsRequest("babyai-go-to"))
    manifest = read_manifest(location, "babyai-go-to")
    spec = get_task("babyai-go-to")
    for split in ("train", "test"):
        table = _whole(dataset, "babyai-go-to", split)
        actions = np.array([a for ep in table.column("discrete_actions").to_pylist() for a in ep])
        counts = stats["splits"][split]["features"]["discrete_actions"]["counts"]
        assert counts == np.bincount(actions, minlength=len(counts)).tolist()
        records = [e for s in manifest.shards if s.split == split for e in s.episodes]
        returns = np.array([e.episode_return for e in records])
        entry = stats["splits"][split]
        assert entry["episodes"] == len(records) == table.num_rows
        assert entry["steps"] == sum(e.length for e in records) == len(actions)
        assert entry["return"]["mean"] == pytest.approx(returns.mean())
        assert entry["return"]["std"] == pytest.approx(returns.std())
        assert entry["normalised_score"]["mean"] == pytest.approx(spec.scores.normalise(returns.mean()))
        assert entry["success_rate"] == pytest.approx(np.mean([e.success for e in records]))
        assert sum(entry["histogram"]) == len(records)
    assert "continuous_observations" not in stats["splits"]["train"]["features"]


def test_statistics_are_deterministic(dataset: Path) -> None:
    location = open_location(str(dataset))
    first = json.dumps(config_stats(location, StatsRequest("mujoco-hopper", batch_episodes=2)))
    again = json.dumps(config_stats(location, StatsRequest("mujoco-hopper", batch_episodes=2)))
    assert first == again


def test_moments_merge_is_exact_for_shifted_data() -> None:
    # values far from zero: a naive sum-of-squares would lose the variance entirely
    rng = np.random.default_rng(0)
    values = 1e6 + rng.normal(size=(1000, 3))
    moments = Moments()
    for block in np.array_split(values, 37):
        moments.add(block)
    out = moments.to_dict()
    np.testing.assert_allclose(out["std"], values.std(axis=0), rtol=1e-9)
    np.testing.assert_allclose(out["mean"], values.mean(axis=0), rtol=1e-12)
