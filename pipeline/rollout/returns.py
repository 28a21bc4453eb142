"""Returns-to-go for Decision Transformer users, as a sidecar next to the data.

JAT's features must stay exact (its processor feeds every column), so returns-to-go live in
`meta/<config>/returns_to_go.parquet`: one row per episode (episode id, split, per-step
undiscounted return-to-go), computed from the stored float32 rewards.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.format.columns import REWARDS
from pipeline.format.manifest import read_manifest
from pipeline.format.schema import RTG_PATH
from pipeline.runtime.storage import Location


def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """rtg[t] = sum of rewards from step t to the end of the episode."""
    return np.cumsum(np.asarray(rewards, dtype=np.float64)[::-1])[::-1].astype(np.float32)


def write_returns_to_go(location: Location, config: str) -> str:
    """Compute returns-to-go for every episode of a config (reads only the rewards column)."""
    ids, splits, values = [], [], []
    for shard in read_manifest(location, config).shards:
        with location.fs.open_input_file(location.path(shard.path)) as f:
            rewards = pq.read_table(f, columns=[REWARDS]).column(REWARDS).to_pylist()
        for record, episode_rewards in zip(shard.episodes, rewards, strict=True):
            ids.append(record.episode_id)
            splits.append(shard.split)
            values.append(returns_to_go(np.asarray(episode_rewards, dtype=np.float32)))
    table = pa.table(
        {
            "episode_id": pa.array(ids, pa.int64()),
            "split": pa.array(splits, pa.string()),
            "returns_to_go": pa.array([v.tolist() for v in values], pa.list_(pa.float32())),
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table.sort_by("episode_id"), buffer, compression="zstd")
    path = RTG_PATH.format(config=config)
    location.write_bytes(path, buffer.getvalue())
    return path
