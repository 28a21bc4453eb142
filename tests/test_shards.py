"""Shard writer: size cap, atomic commit, nothing left behind on abort."""

from __future__ import annotations

import numpy as np

from pipeline.format.shards import Episode, ShardWriter
from pipeline.runtime.storage import open_location


def _episode(i: int, length: int = 200) -> Episode:
    rng = np.random.default_rng(i)
    return Episode(
        i,
        i,
        observations=list(rng.normal(size=(length, 11)).astype(np.float32)),
        actions=list(rng.uniform(-1, 1, (length, 3)).astype(np.float32)),
        rewards=list(rng.normal(size=length)),
    )


def test_commit_is_atomic_and_abort_leaves_nothing(tmp_path):
    location = open_location(str(tmp_path))
    writer = ShardWriter(location, "mujoco-hopper", "mujoco", "train", 3)
    writer.add(_episode(0))
    assert not (tmp_path / "data").exists()  # nothing visible before close
    record = writer.close()
    assert record.path == "data/mujoco-hopper/train-00003.parquet"
    assert (tmp_path / record.path).stat().st_size == record.num_bytes
    aborted = ShardWriter(location, "mujoco-hopper", "mujoco", "train", 4)
    aborted.add(_episode(1))
    aborted.abort()
    aborted.abort()  # safe twice
    assert sorted(p.name for p in (tmp_path / "data/mujoco-hopper").iterdir()) == ["train-00003.parquet"]
    assert not list((tmp_path / ".tmp").iterdir())


def test_writer_reports_full_before_the_cap(tmp_path):
    location = open_location(str(tmp_path))
    cap = 64 * 1024
    writer = ShardWriter(location, "mujoco-hopper", "mujoco", "train", 0, max_bytes=cap, row_group_episodes=1)
    added = 0
    while not writer.full:
        writer.add(_episode(added))
        added += 1
    record = writer.close()
    assert 1 <= added < 50
    assert record.num_bytes <= cap
