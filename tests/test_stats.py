"""Per-config statistics: streamed per-feature moments equal a whole-config numpy pass, and the typed
statistics write and read back `meta/<config>/stats.json` unchanged, refusing keys they do not know."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from publish_helpers import CONFIGS

from pipeline.errors import PipelineError
from pipeline.format.manifest import read_manifest
from pipeline.format.plan import HistoryPlan
from pipeline.report.stats import Moments, StatsRequest, config_stats
from pipeline.report.stats_types import (
    HISTOGRAM_BINS,
    ConfigStats,
    FeatureMoments,
    FeatureStats,
    PlanSummary,
    RewardMoments,
)
from pipeline.runtime.storage import open_location
from pipeline.tasks.registry import get_task
from pipeline.tasks.sections import Budget


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
        features = stats.splits[split].features
        for column in ("continuous_observations", "continuous_actions"):
            values = _steps(table, column)
            got = getattr(features, column)
            assert got.count == len(values)
            np.testing.assert_allclose(got.mean, values.mean(axis=0), rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(got.std, values.std(axis=0), rtol=1e-7, atol=1e-9)
            np.testing.assert_allclose(got.min, values.min(axis=0))
            np.testing.assert_allclose(got.max, values.max(axis=0))
        rewards = _steps(table, "rewards")
        assert features.rewards.count == len(rewards)
        assert features.rewards.summary.mean == pytest.approx(rewards.mean(), rel=1e-9)
        assert features.rewards.summary.std == pytest.approx(rewards.std(), rel=1e-7)
        assert features.rewards.summary.max == rewards.max() and features.discrete_action_counts is None


def test_discrete_action_counts_and_episode_statistics(dataset: Path) -> None:
    location = open_location(str(dataset))
    stats = config_stats(location, StatsRequest("babyai-go-to"))
    manifest = read_manifest(location, "babyai-go-to")
    spec = get_task("babyai-go-to")
    for split in ("train", "test"):
        table = _whole(dataset, "babyai-go-to", split)
        actions = np.array([a for ep in table.column("discrete_actions").to_pylist() for a in ep])
        counts = stats.splits[split].features.discrete_action_counts
        assert list(counts) == np.bincount(actions, minlength=len(counts)).tolist()
        records = [e for s in manifest.shards if s.split == split for e in s.episodes]
        returns = np.array([e.episode_return for e in records])
        entry = stats.splits[split]
        assert entry.episodes == len(records) == table.num_rows == stats.episodes(split)
        assert entry.steps == sum(e.length for e in records) == len(actions)
        assert entry.shards == len([s for s in manifest.shards if s.split == split])
        assert entry.bytes == sum(
            (dataset / s.path).stat().st_size for s in manifest.shards if s.split == split
        )
        assert entry.episode_return.mean == pytest.approx(returns.mean())
        assert entry.episode_return.std == pytest.approx(returns.std())
        assert (entry.episode_return.min, entry.episode_return.max) == (returns.min(), returns.max())
        assert entry.length.mean == pytest.approx(np.mean([e.length for e in records]))
        assert entry.normalised_score.mean == pytest.approx(spec.scores.normalise(returns.mean()))
        assert entry.success_rate == pytest.approx(np.mean([e.success for e in records]))
        assert sum(entry.histogram) == len(records)
        assert len(entry.histogram) == len(stats.histogram_edges) - 1 == HISTOGRAM_BINS
    assert stats.splits["train"].features.continuous_observations is None
    assert stats.total_steps == sum(t["steps"] for t in manifest.totals().values())
    assert (stats.action.type, stats.action.n) == ("discrete", spec.action.n)
    plan = manifest.plan  # the card's plan entry is the manifest's RunPlan, typed
    assert (stats.plan.seed, stats.plan.budget.to_dict(), stats.plan.test_fraction) == (
        plan["seed"],
        plan["budget"],
        plan["test_fraction"],
    )
    assert stats.policy.kind == plan["policy"] and stats.plan.history is None


def test_statistics_are_deterministic(dataset: Path) -> None:
    location = open_location(str(dataset))
    first = json.dumps(config_stats(location, StatsRequest("mujoco-hopper", batch_episodes=2)).to_dict())
    again = json.dumps(config_stats(location, StatsRequest("mujoco-hopper", batch_episodes=2)).to_dict())
    assert first == again


def test_moments_merge_is_exact_for_shifted_data() -> None:
    # values far from zero: a naive sum-of-squares would lose the variance entirely
    rng = np.random.default_rng(0)
    values = 1e6 + rng.normal(size=(1000, 3))
    moments = Moments()
    for block in np.array_split(values, 37):
        moments.add(block)
    out = moments.result()
    assert out.count == len(values)
    np.testing.assert_allclose(out.std, values.std(axis=0), rtol=1e-9)
    np.testing.assert_allclose(out.mean, values.mean(axis=0), rtol=1e-12)


STATS_KEYS = [
    "format_version",
    "config",
    "suite",
    "env_id",
    "jat_env_id",
    "make_kwargs",
    "observation",
    "action",
    "reference_scores",
    "policy",
    "plan",
    "dropped",
    "data_files",
    "histogram_edges",
    "splits",
]
SPLIT_KEYS = [
    "episodes",
    "steps",
    "shards",
    "bytes",
    "length",
    "return",
    "normalised_score",
    "human_normalised_score",
    "success_rate",
    "histogram",
    "features",
]


@pytest.mark.parametrize("config", CONFIGS)
def test_stats_json_round_trips_and_keeps_its_shape(dataset: Path, config: str) -> None:
    stats = config_stats(open_location(str(dataset)), StatsRequest(config))
    data = json.loads(json.dumps(stats.to_dict()))  # what stats.json holds
    again = ConfigStats.from_dict(data, "stats.json")
    assert again == stats and again.to_dict() == data
    # the published layout, key order included (a reader of stats.json indexes these keys)
    assert list(data) == STATS_KEYS
    assert list(data["plan"]) == ["seed", "budget", "test_fraction", "max_episode_steps", "history"]
    assert list(data["observation"]) == ["type", "shape"] and list(data["action"]) == ["type", "shape", "n"]
    assert list(data["splits"]) == ["train", "test"]
    train = data["splits"]["train"]
    assert list(train) == SPLIT_KEYS and list(train["return"]) == ["mean", "std", "min", "max"]
    assert list(train["features"]["rewards"]) == ["count", "mean", "std", "min", "max"]
    discrete = stats.suite in ("atari", "babyai")
    vectors = [] if discrete else ["continuous_observations", "continuous_actions"]
    assert list(train["features"]) == [*vectors, "rewards", *(["discrete_actions"] if discrete else [])]


def test_manifest_only_statistics_and_empty_moments_round_trip(dataset: Path) -> None:
    location = open_location(str(dataset))
    stats = config_stats(location, StatsRequest("mujoco-hopper", features=False))
    assert all(s.features is None for s in stats.splits.values())
    assert "features" not in stats.to_dict()["splits"]["train"]
    empty = FeatureStats(RewardMoments(), FeatureMoments(), FeatureMoments())
    assert empty.to_dict() == {
        "continuous_observations": {"count": 0},
        "continuous_actions": {"count": 0},
        "rewards": {"count": 0},
    }
    assert FeatureStats.from_dict(empty.to_dict(), "features") == empty
    # a learning history's plan: snapshots in training order survive the round trip as a typed plan
    history = PlanSummary(0, Budget(episodes=6), 0.1, None, HistoryPlan((1000, 2000, 3000), 2))
    with_history = replace(stats, plan=history)
    assert ConfigStats.from_dict(json.loads(json.dumps(with_history.to_dict())), "x") == with_history
    assert with_history.to_dict()["plan"]["history"] == {
        "snapshots": [1000, 2000, 3000],
        "episodes_per_snapshot": 2,
    }


def _with(data: dict, path: tuple[str, ...], key: str, value: object) -> dict:
    data = json.loads(json.dumps(data))
    entry = data
    for part in path:
        entry = entry[part]
    entry[key] = value
    return data


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ((), "created"),
        (("splits", "train"), "median"),
        (("splits", "train", "features", "rewards"), "median"),
        (("splits", "train", "features"), "image_observations"),
        (("plan",), "policy"),
        (("plan", "budget"), "minutes"),
        (("reference_scores",), "expert_std"),
    ],
)
def test_unknown_keys_are_refused_by_name(dataset: Path, path: tuple[str, ...], key: str) -> None:
    data = config_stats(open_location(str(dataset)), StatsRequest("metaworld-reach")).to_dict()
    with pytest.raises(
        PipelineError, match=rf"stats\.json.*unknown key\(s\) \['{key}'\].*publish that config again"
    ):
        ConfigStats.from_dict(_with(data, path, key, 1), "org/name/meta/metaworld-reach/stats.json")


def test_missing_keys_other_versions_and_wrong_values_are_refused(dataset: Path) -> None:
    data = config_stats(open_location(str(dataset)), StatsRequest("babyai-go-to")).to_dict()
    where = "meta/babyai-go-to/stats.json"
    without = json.loads(json.dumps(data))
    del without["splits"]["test"]["histogram"]
    with pytest.raises(PipelineError, match=r"splits\.test: missing key\(s\) \['histogram'\]"):
        ConfigStats.from_dict(without, where)
    with pytest.raises(PipelineError, match="format_version 2, this pipeline reads 1"):
        ConfigStats.from_dict({**data, "format_version": 2}, where)
    with pytest.raises(PipelineError, match=r"splits\.train\.return mean must be float"):
        ConfigStats.from_dict(_with(data, ("splits", "train", "return"), "mean", "high"), where)
    with pytest.raises(PipelineError, match=r"unknown split\(s\) \['validation'\]"):
        ConfigStats.from_dict(_with(data, ("splits",), "validation", data["splits"]["test"]), where)
    # a stats.json from before shard sizes were recorded still reads (its size counts as unknown: 0)
    old = json.loads(json.dumps(data))
    del old["splits"]["train"]["bytes"]
    assert ConfigStats.from_dict(old, where).splits["train"].bytes == 0


def test_publish_refuses_a_published_stats_file_it_cannot_read(dataset: Path, tmp_path: Path) -> None:
    """Another config's stats.json on the target is read back for the card: a foreign key stops it."""
    from pipeline.configs.publish import PublishConfig
    from pipeline.release.publish import publish

    folder = tmp_path / "published"
    publish(PublishConfig(str(dataset), configs=("babyai-go-to",), to_folder=str(folder), progress=False))
    path = folder / "meta" / "babyai-go-to" / "stats.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "median_return": 0.5}))
    with pytest.raises(
        PipelineError, match=r"babyai-go-to/stats\.json: unknown key\(s\) \['median_return'\]"
    ):
        publish(
            PublishConfig(str(dataset), configs=("mujoco-hopper",), to_folder=str(folder), progress=False)
        )
