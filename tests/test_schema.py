"""The schema round-trips per domain: shards written by us load with `datasets` as JAT's features."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from pipeline.format.columns import encode_frame
from pipeline.format.schema import LAYOUT_FEATURES, arrow_schema
from pipeline.format.shards import Episode, ShardWriter
from pipeline.runtime.storage import open_location
from pipeline.suites import get_suite


def _episode(domain: str, rng: np.random.Generator, length: int) -> Episode:
    ep = Episode(episode_id=0, seed=1)
    for _ in range(length):
        if domain == "atari":
            ep.observations.append(encode_frame(rng.integers(0, 255, (84, 84, 4), dtype=np.uint8)))
            ep.actions.append(int(rng.integers(0, 6)))
        elif domain == "babyai":
            ep.observations.append(rng.integers(0, 11, 148))
            ep.texts.append("go to the red ball")
            ep.actions.append(int(rng.integers(0, 7)))
        else:
            ep.observations.append(rng.normal(size=39).astype(np.float32))
            ep.actions.append(rng.uniform(-1, 1, 4).astype(np.float32))
        ep.rewards.append(float(rng.normal()))
    return ep


@pytest.mark.parametrize("domain", ["atari", "babyai", "metaworld"])
def test_round_trip(domain, tmp_path):
    rng = np.random.default_rng(0)
    episode = _episode(domain, rng, 7)
    location = open_location(str(tmp_path))
    writer = ShardWriter(location, f"{domain}-x", domain, "train", 0)
    writer.add(episode)
    record = writer.close()
    ds = load_dataset("parquet", data_files=str(tmp_path / record.path), split="train")
    assert ds.features == get_suite(domain).layout.features
    row = ds[0]
    np.testing.assert_array_equal(
        np.asarray(row["rewards"], np.float32), np.asarray(episode.rewards, np.float32)
    )
    if domain == "atari":
        frames = np.asarray(row["image_observations"][3])
        assert frames.shape == (84, 84, 4)
        assert row["image_observations"][3].mode == "RGBA"
        assert row["discrete_actions"] == episode.actions
    elif domain == "babyai":
        np.testing.assert_array_equal(
            np.asarray(row["discrete_observations"]), np.asarray(episode.observations)
        )
        assert row["text_observations"] == episode.texts
    else:
        np.testing.assert_allclose(
            np.asarray(row["continuous_observations"]), np.asarray(episode.observations)
        )
        np.testing.assert_allclose(np.asarray(row["continuous_actions"]), np.asarray(episode.actions))


def test_frame_stack_order_is_preserved(tmp_path):
    """Channel k of the stored PNG is frame k of the stack (oldest first)."""
    frames = np.stack([np.full((84, 84), 10 * (k + 1), np.uint8) for k in range(4)], axis=-1)
    location = open_location(str(tmp_path))
    writer = ShardWriter(location, "atari-x", "atari", "train", 0)
    writer.add(Episode(0, 0, observations=[encode_frame(frames)], actions=[0], rewards=[0.0]))
    record = writer.close()
    ds = load_dataset("parquet", data_files=str(tmp_path / record.path), split="train")
    assert np.asarray(ds[0]["image_observations"][0])[0, 0].tolist() == [10, 20, 30, 40]


def test_arrow_schema_derives_from_features_in_sequence_spelling():
    for features in LAYOUT_FEATURES.values():
        schema = arrow_schema(features)
        assert schema.names == list(features)
        assert schema.remove_metadata() == features.arrow_schema.remove_metadata()
        meta = json.loads(schema.metadata[b"huggingface"])["info"]["features"]
        assert meta["rewards"]["_type"] == "Sequence"  # readable by datasets 2.x, which JAT pins
        assert meta["rewards"]["feature"]["dtype"] == "float32"


def test_written_files_carry_the_schema(tmp_path):
    location = open_location(str(tmp_path))
    writer = ShardWriter(location, "babyai-x", "babyai", "train", 0)
    writer.add(_episode("babyai", np.random.default_rng(1), 3))
    record = writer.close()
    schema = pq.read_schema(tmp_path / record.path)
    assert schema.equals(get_suite("babyai").layout.arrow_schema)
    assert schema.metadata == get_suite("babyai").layout.arrow_schema.metadata
