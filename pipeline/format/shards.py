"""Parquet shards: episodes in, size-capped zstd files out, each committed only when complete.

A writer owns one shard (`data/<config>/<split>-NNNNN.parquet`). It buffers at most one row
group of episodes, writes row groups as they fill, and on `close()` moves the finished file
into place and returns its record (sha256, episodes, steps) for the manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.configs.datasets import DEFAULT_MAX_SHARD_BYTES
from pipeline.format import columns as col
from pipeline.format.schema import DATA_DIR, SHARD_NAME
from pipeline.runtime.storage import Location
from pipeline.suites import get_suite

ROW_GROUP_EPISODES = 8


@dataclass
class Episode:
    """One recorded episode in stored form (Atari frames already PNG-encoded)."""

    episode_id: int
    seed: int
    observations: list[Any] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    success: bool | None = None
    checkpoint_step: int | None = None  # learning histories: the env step of the snapshot that acted

    @property
    def length(self) -> int:
        return len(self.rewards)

    @property
    def episode_return(self) -> float:
        return float(np.sum(np.asarray(self.rewards, dtype=np.float32), dtype=np.float64))

    def digest(self) -> str:
        """A checksum of the stored content, so two runs can be compared episode by episode."""
        h = hashlib.blake2b(digest_size=16)
        for item in self.observations:
            h.update(item if isinstance(item, bytes) else np.ascontiguousarray(item).tobytes())
        for text in self.texts:
            h.update(text.encode())
        h.update(np.asarray(self.actions).tobytes())
        h.update(np.asarray(self.rewards, dtype=np.float32).tobytes())
        return h.hexdigest()

    def nbytes(self) -> int:
        first = self.observations[0] if self.observations else b""
        per_obs = len(first) if isinstance(first, bytes) else np.asarray(first).nbytes
        per_action = np.asarray(self.actions[0]).nbytes if self.actions else 0
        return self.length * (per_obs + per_action + 4 + (len(self.texts[0]) if self.texts else 0))


@dataclass
class EpisodeRecord:
    """What the manifest keeps per episode (metadata never stored as Parquet columns)."""

    episode_id: int
    seed: int
    length: int
    episode_return: float
    success: bool | None
    digest: str = ""
    checkpoint_step: int | None = None  # learning histories only: the acting snapshot's training step


@dataclass
class ShardRecord:
    """A committed shard: where it is, its checksum, and the episodes it holds in row order."""

    path: str
    split: str
    index: int
    sha256: str
    num_bytes: int
    episodes: list[EpisodeRecord]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for episode in data["episodes"]:  # only learning histories have one: keep manifests lean
            if episode["checkpoint_step"] is None:
                del episode["checkpoint_step"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardRecord:
        episodes = [EpisodeRecord(**e) for e in data["episodes"]]
        return cls(**{**data, "episodes": episodes})


def episodes_to_table(domain: str, episodes: list[Episode]) -> pa.Table:
    """Build one row per episode with exactly the schema of the suite's layout (`pipeline.format.schema`):
    the layout stores the observations, the action space decides the action column."""
    layout = get_suite(domain).layout
    schema = layout.arrow_schema
    actions_np = [np.asarray(e.actions) for e in episodes]
    columns = layout.observation_columns(episodes)
    if col.DISCRETE_ACTIONS in schema.names:
        columns[col.DISCRETE_ACTIONS] = col.flat_list([a.astype(np.int64) for a in actions_np], pa.int64())
    else:
        columns[col.CONTINUOUS_ACTIONS] = col.nested_list(
            [a.astype(np.float32) for a in actions_np], pa.float32()
        )
    rewards = [np.asarray(e.rewards, dtype=np.float32) for e in episodes]
    columns[col.REWARDS] = col.flat_list(rewards, pa.float32())
    return pa.Table.from_arrays([columns[name] for name in schema.names], schema=schema)


class _HashingStream:
    """A write-only stream that hashes what passes through it to the real one.

    The shard's checksum is known when the file closes, without reading it back: on S3 a read
    back would be a second transfer of every shard.
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        self.stream.write(data)
        return len(data)

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        if not self.closed:
            self.stream.close()
            self.closed = True


class ShardWriter:
    """Writes one shard; buffers at most one row group; commits by rename on `close()`."""

    def __init__(
        self,
        location: Location,
        config: str,
        domain: str,
        split: str,
        index: int,
        *,
        max_bytes: int = DEFAULT_MAX_SHARD_BYTES,
        row_group_episodes: int = ROW_GROUP_EPISODES,
    ) -> None:
        self.location = location
        self.domain = domain
        self.split = split
        self.index = index
        self.relative = f"{DATA_DIR.format(config=config)}/{SHARD_NAME.format(split=split, index=index)}"
        self.max_bytes = max_bytes
        self.row_group_episodes = row_group_episodes
        self.row_group_bytes = max(1, min(64 << 20, max_bytes // 4))
        self._pending: list[Episode] = []
        self._pending_bytes = 0
        self._records: list[EpisodeRecord] = []
        self._tmp = location.tmp_path(self.relative)
        self._hashing = _HashingStream(location.fs.open_output_stream(self._tmp))
        self._sink = pa.PythonFile(self._hashing, mode="w")
        self._writer = pq.ParquetWriter(
            self._sink,
            get_suite(domain).layout.arrow_schema,
            compression="zstd",
            compression_level=3,
            use_dictionary=False,
            write_statistics=False,
        )
        self._closed = False

    @property
    def num_episodes(self) -> int:
        return len(self._records) + len(self._pending)

    @property
    def full(self) -> bool:
        """True when one more row group could push the file past `max_bytes`."""
        return self._sink.tell() + self._pending_bytes + self.row_group_bytes >= self.max_bytes

    def add(self, episode: Episode) -> None:
        self._pending.append(episode)
        self._pending_bytes += episode.nbytes()
        if len(self._pending) >= self.row_group_episodes or self._pending_bytes >= self.row_group_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = episodes_to_table(self.domain, self._pending)
        self._writer.write_table(table, row_group_size=len(self._pending))
        self._records += [
            EpisodeRecord(
                e.episode_id, e.seed, e.length, e.episode_return, e.success, e.digest(), e.checkpoint_step
            )
            for e in self._pending
        ]
        self._pending, self._pending_bytes = [], 0

    def close(self) -> ShardRecord:
        """Finish the file, move it into place, and return its manifest record."""
        if self._closed:
            raise RuntimeError(f"shard {self.relative} already closed")
        self._flush()
        self._writer.close()
        self._sink.close()
        self._closed = True
        digest, size = self._hashing.digest.hexdigest(), self._hashing.size
        self.location.commit(self._tmp, self.relative)
        return ShardRecord(self.relative, self.split, self.index, digest, size, self._records)

    def abort(self) -> None:
        """Drop the temporary file; nothing under `data/` is touched. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._writer.close()
            self._sink.close()
        finally:
            self.location.fs.delete_file(self._tmp)
