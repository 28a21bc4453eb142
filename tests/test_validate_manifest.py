"""`pipeline validate` recomputes what the manifest claims per episode: digest, seed, split,
return and (BabyAI) success, each mismatch naming the config, the shard, the row and the episode."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.checks.claims import capped, check_plan, episode_digests, return_tolerance
from pipeline.checks.validate import _check_table, validate
from pipeline.configs.datasets import ValidateConfig
from pipeline.format.manifest import read_manifest
from pipeline.format.shards import Episode
from pipeline.runtime.storage import open_location
from pipeline.tasks.registry import get_task

CONFIGS = ("babyai-go-to", "metaworld-reach", "mujoco-hopper", "atari-breakout")


def _edit(dataset: Path, config: str, change) -> dict:
    """Apply `change(manifest)` to a config's manifest.json; returns the edited manifest."""
    path = dataset / "meta" / config / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return manifest


def _errors(dataset: Path, config: str) -> list[str]:
    report = validate(ValidateConfig(str(dataset), configs=(config,)))
    assert not report.ok
    return report.errors


def _writer_episode(row: dict, suite: str, episode_id: int, seed: int) -> Episode:
    """The episode as the recorder held it before writing: one object per step, the recorded types."""
    episode = Episode(episode_id, seed, rewards=[float(r) for r in row["rewards"]])
    if suite == "atari":
        episode.observations = [frame["bytes"] for frame in row["image_observations"]]
        episode.actions = [int(a) for a in row["discrete_actions"]]
    elif suite == "babyai":
        episode.texts = list(row["text_observations"])
        episode.observations = [np.asarray(o, dtype=np.int64) for o in row["discrete_observations"]]
        episode.actions = [int(a) for a in row["discrete_actions"]]
    else:
        episode.observations = [np.asarray(o, dtype=np.float32) for o in row["continuous_observations"]]
        episode.actions = [np.asarray(a, dtype=np.float32) for a in row["continuous_actions"]]
    return episode


@pytest.mark.parametrize("config", CONFIGS)
def test_digests_recomputed_from_rows_equal_the_writers(sample_dataset, config):
    """Untouched data: the vectorised digest equals `Episode.digest()` and what the writer recorded."""
    location = open_location(str(sample_dataset))
    manifest = read_manifest(location, config)
    spec = get_task(config)
    assert check_plan(manifest) == []
    for shard in manifest.shards:
        table = pq.read_table(sample_dataset / shard.path)
        steps = _check_table(table, spec, [e.length for e in shard.episodes])
        recorded = [e.digest for e in shard.episodes]
        assert episode_digests(steps) == recorded
        rows = table.to_pylist()
        rebuilt = [
            _writer_episode(r, spec.suite, e.episode_id, e.seed)
            for r, e in zip(rows, shard.episodes, strict=True)
        ]
        assert [e.digest() for e in rebuilt] == recorded
        assert [e.episode_return for e in rebuilt] == [e.episode_return for e in shard.episodes]


def test_edited_digest_is_caught(dataset_copy):
    manifest = _edit(
        dataset_copy, "atari-breakout", lambda m: m["shards"][0]["episodes"][1].update(digest="0" * 32)
    )
    shard, episode = manifest["shards"][0], manifest["shards"][0]["episodes"][1]
    errors = _errors(dataset_copy, "atari-breakout")
    assert any(
        e.startswith(f"atari-breakout: {shard['path']} row 1 (episode {episode['episode_id']})")
        and "digest" in e
        for e in errors
    ), errors


def test_rewritten_shard_with_fresh_checksum_is_caught_by_its_digest(dataset_copy):
    """A shard rewritten with other actions and a re-recorded sha256 passes every file check."""
    path = dataset_copy / "meta/babyai-go-to/manifest.json"
    manifest = json.loads(path.read_text())
    shard = manifest["shards"][0]
    table = pq.read_table(dataset_copy / shard["path"])
    actions = table.column("discrete_actions").to_pylist()
    actions[2][0] = (actions[2][0] + 1) % get_task("babyai-go-to").action.n
    index = table.column_names.index("discrete_actions")
    column = pa.array(actions, pa.list_(pa.int64()))
    pq.write_table(table.set_column(index, table.schema.field(index), column), dataset_copy / shard["path"])
    data = (dataset_copy / shard["path"]).read_bytes()
    shard.update(sha256=hashlib.sha256(data).hexdigest(), num_bytes=len(data))
    path.write_text(json.dumps(manifest))
    errors = _errors(dataset_copy, "babyai-go-to")
    where = f"babyai-go-to: {shard['path']} row 2 (episode {shard['episodes'][2]['episode_id']})"
    assert [e for e in errors if "digest" in e] == [next(e for e in errors if e.startswith(where))], errors
    assert not any("sha256" in e for e in errors)


def test_edited_seed_is_caught_naming_the_plan(dataset_copy):
    manifest = _edit(
        dataset_copy, "mujoco-hopper", lambda m: m["shards"][0]["episodes"][0].update(seed=12345)
    )
    shard = manifest["shards"][0]
    errors = _errors(dataset_copy, "mujoco-hopper")
    assert any(
        f"mujoco-hopper: {shard['path']} row 0 (episode {shard['episodes'][0]['episode_id']}): seed 12345"
        in e
        and "episode_seed(0, 'mujoco-hopper', id)" in e
        for e in errors
    ), errors


def test_episode_in_the_wrong_split_is_caught(dataset_copy):
    """Relabel the test shard as train: its episodes are test episodes in the plan."""

    def relabel(manifest: dict) -> None:
        test = next(s for s in manifest["shards"] if s["split"] == "test")
        test["split"] = "train"

    manifest = _edit(dataset_copy, "metaworld-reach", relabel)
    relabelled = [s for s in manifest["shards"] if s["path"].split("/")[-1].startswith("test-")]
    errors = _errors(dataset_copy, "metaworld-reach")
    first = relabelled[0]["episodes"][0]["episode_id"]
    assert any(
        f"(episode {first}): stored in a train shard, the plan puts it in test" in e for e in errors
    ), errors


def test_edited_babyai_success_is_caught(dataset_copy):
    def flip(manifest: dict) -> None:
        record = manifest["shards"][0]["episodes"][0]
        record["success"] = not record["success"]

    manifest = _edit(dataset_copy, "babyai-go-to", flip)
    shard = manifest["shards"][0]
    errors = _errors(dataset_copy, "babyai-go-to")
    assert any(
        f"{shard['path']} row 0 (episode {shard['episodes'][0]['episode_id']}): the manifest says success="
        in e
        for e in errors
    ), errors


@pytest.mark.parametrize("config", ["mujoco-hopper", "metaworld-reach"])
def test_return_off_by_a_twentieth_is_caught(dataset_copy, config):
    """Hopper's random returns are tens; Meta-World reach's scripted ones are hundreds or more,
    where the former relative tolerance (1e-4) let 0.05 through."""
    manifest = json.loads((dataset_copy / "meta" / config / "manifest.json").read_text())
    rows = [(s, r, e) for s in manifest["shards"] for r, e in enumerate(s["episodes"])]
    shard, row, record = max(rows, key=lambda t: abs(t[2]["episode_return"]))
    if config == "metaworld-reach":
        assert abs(record["episode_return"]) > 500  # the case 1e-4 relative missed
    record["episode_return"] += 0.05
    (dataset_copy / "meta" / config / "manifest.json").write_text(json.dumps(manifest))
    errors = _errors(dataset_copy, config)
    assert any(
        f"{config}: {shard['path']} row {row} (episode {record['episode_id']}): rewards sum to" in e
        for e in errors
    ), errors


def test_return_tolerance_admits_float32_sums_only():
    """A float32 sum (sequential, the worst kind) of 1000 rewards passes; 0.05 more does not."""
    rewards = np.random.default_rng(0).uniform(2.5, 4.0, 1000).astype(np.float32)
    exact = float(np.sum(rewards, dtype=np.float64))
    sequential32 = np.float32(0)
    for r in rewards:
        sequential32 = np.float32(sequential32 + r)
    tolerance = return_tolerance(np.array([1000]), np.array([np.abs(rewards.astype(np.float64)).sum()]))[0]
    assert abs(float(np.sum(rewards)) - exact) <= tolerance  # numpy's float32 pairwise sum
    assert abs(float(sequential32) - exact) <= tolerance
    assert tolerance < 0.05 / 10  # where the former bound, 1e-3 + 1e-4 * 3250, allowed 0.33


def test_claims_are_capped_per_config():
    lines = [f"c: shard row {i}: seed" for i in range(30)]
    assert capped("c", lines, 20) == [*lines[:20], "c: ... and 10 more episodes disagree the same way"]
    assert capped("c", lines[:5], 20) == lines[:5]
