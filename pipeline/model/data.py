"""Training data read where it lives: a dataset folder, `s3://…` or a Hub repo, shard by shard.

The dataset's README `configs:` YAML (the card `pipeline publish` uploads; without one, the
pipeline's own `data/CONFIG/SPLIT-*.parquet` layout) names each split's Parquet shards. Shards
are read through `pipeline.runtime.storage` (pyarrow filesystems: local, S3) and a Hub repo's shards of
the configs in use are fetched into the Hub cache, so nothing is converted or loaded whole:
opening a split reads only its `rewards` column (episode lengths), and a window reads the row
group (≤ 8 episodes) holding its episode into a byte-bounded LRU cache shared by all splits.

Batches are drawn like JAT's training mixture: a task is picked by its sampling weight and all
rows of a batch come from it (one modality per batch); each row is a window of one episode, at
most the suite's context long, decoded only for the steps it covers (Atari frames stay PNG bytes
until a window needs them). With data-parallel workers, the global batch is drawn from one
stream that every rank advances alike, and each rank decodes its own contiguous slice of it:
the global batch does not depend on the number of workers.
"""

from __future__ import annotations

import fnmatch
import io
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
import yaml
from PIL import Image

from pipeline.errors import PipelineError
from pipeline.format.columns import (
    CONTINUOUS_ACTIONS,
    CONTINUOUS_OBSERVATIONS,
    DISCRETE_ACTIONS,
    DISCRETE_OBSERVATIONS,
    IMAGE_OBSERVATIONS,
    REWARDS,
    TEXT_OBSERVATIONS,
)
from pipeline.format.schema import SHARD_GLOB
from pipeline.model.tokenizer import MissionTokenizer
from pipeline.release.hub_models import dataset_snapshot
from pipeline.runtime.storage import is_uri, open_location
from pipeline.suites import get_suite
from pipeline.tasks.registry import TaskSpec, get_task

log = logging.getLogger(__name__)

CACHE_BYTES = 512 << 20
"""Decoded row groups kept in memory per process (about 8 Atari episodes of 1,000 steps take
~30 MB): a bound on what training holds of the data, whatever the dataset's size."""
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def jat_loss_weight(config: str) -> float:
    """JAT's per-task loss multipliers (scripts/train_jat.py): MSE tasks are scaled up."""
    special = {"mujoco-pendulum": 50.0, "mujoco-doublependulum": 20.0}
    if config in special:
        return special[config]
    if config.startswith("metaworld-"):
        return 50.0
    if config.startswith("mujoco-"):
        return 10.0
    return 1.0


# --- where the shards are ----------------------------------------------------------------------
class DatasetFiles:
    """A dataset's configs and each split's shard paths, wherever the dataset lives."""

    def __init__(self, data: str) -> None:
        self.data = data
        self.hub_root: Path | None = None
        if is_uri(data):
            self.location = open_location(data)
            if self.location.fs.get_file_info(self.location.root).type == pafs.FileType.NotFound:
                raise PipelineError(f"cannot load {data}: nothing there (check the bucket and prefix)")
        elif Path(data).expanduser().exists():
            self.location = open_location(data)
        elif _REPO_ID.match(data):
            self.hub_root = Path(dataset_snapshot(data, ["README.md"]))  # .../snapshots/<commit>
            self.location = open_location(str(self.hub_root))
        else:
            raise PipelineError(
                f"cannot load {data}: no such folder (give a dataset folder, s3://bucket/prefix, "
                "or a Hub repo id ORG/NAME)"
            )
        self.patterns = self._read_card()

    def _read_card(self) -> dict[str, dict[str, list[str]]] | None:
        """config -> split -> path patterns, from README.md's YAML header (None: no card)."""
        if not self.location.exists("README.md"):
            return None
        text = self.location.read_bytes("README.md").decode()
        match = re.match(r"^---\n(.*?)\n---", text, re.S)
        header = yaml.safe_load(match.group(1)) if match else {}
        out: dict[str, dict[str, list[str]]] = {}
        for entry in (header or {}).get("configs", []):
            for item in entry.get("data_files", []):
                paths = item["path"] if isinstance(item["path"], list) else [item["path"]]
                out.setdefault(entry["config_name"], {}).setdefault(item["split"], []).extend(paths)
        return out

    def configs(self) -> list[str]:
        if self.patterns is not None:
            return sorted(self.patterns)
        return sorted(i.base_name for i in self.location.list("data") if i.type == pafs.FileType.Directory)

    def shards(self, config: str, split: str) -> list[str] | None:
        """The split's shard paths in the location's filesystem, sorted (None: no such split)."""
        if self.patterns is not None:
            if config not in self.patterns:
                raise PipelineError(
                    f"cannot load config {config!r} from {self.data}: it has {', '.join(self.configs())}"
                )
            patterns = self.patterns[config].get(split)
            if patterns is None:
                return None
        else:
            patterns = [SHARD_GLOB.format(config=config, split=split)]
        if self.hub_root is not None:  # the card's commit, so that the shards land in the same snapshot
            dataset_snapshot(self.data, patterns, revision=self.hub_root.name)
        found = set()
        for pattern in patterns:
            folder = pattern.split("*", 1)[0].rpartition("/")[0]
            for info in self.location.list(folder, recursive=True):
                if info.type == pafs.FileType.File and fnmatch.fnmatch(
                    self.location.relative(info.path), pattern
                ):
                    found.add(info.path)
        if not found and self.patterns is None:
            return None
        return sorted(found)


def config_names(data: str) -> list[str]:
    """Every config the dataset declares (its card's `configs:`, else its `data/` folders)."""
    return DatasetFiles(data).configs()


# --- reading episodes --------------------------------------------------------------------------
class _RowGroupCache:
    """Decoded row groups, least recently used dropped first beyond `capacity` bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity, self.used = capacity, 0
        self.items: OrderedDict[tuple, pa.Table] = OrderedDict()

    def get(self, key: tuple, load) -> pa.Table:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        table = load()
        self.items[key] = table
        self.used += table.nbytes
        while self.used > self.capacity and len(self.items) > 1:
            _, dropped = self.items.popitem(last=False)
            self.used -= dropped.nbytes
        return table


CACHE = _RowGroupCache(CACHE_BYTES)


class ShardSplit:
    """One split of one config, as Parquet shards read on demand (episode lengths up front)."""

    def __init__(self, fs: pafs.FileSystem, paths: list[str], cache: _RowGroupCache = CACHE) -> None:
        self.fs, self.paths, self.cache = fs, paths, cache
        self.metadata = [pq.read_metadata(fs.open_input_file(p)) for p in paths]
        self.column_names = self.metadata[0].schema.to_arrow_schema().names if paths else []
        lengths, where = [], []
        for f, path in enumerate(paths):
            parquet = pq.ParquetFile(fs.open_input_file(path), metadata=self.metadata[f])
            for g in range(self.metadata[f].num_row_groups):
                rewards = parquet.read_row_group(g, columns=[REWARDS]).column(REWARDS)
                lengths.append(pc.list_value_length(rewards).to_numpy(zero_copy_only=False))
                where += [(f, g, i) for i in range(len(rewards))]
        self.lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        self.where = where

    @property
    def num_rows(self) -> int:
        return len(self.lengths)

    def _row_group(self, f: int, g: int, columns: list[str] | None = None) -> pa.Table:
        parquet = pq.ParquetFile(self.fs.open_input_file(self.paths[f]), metadata=self.metadata[f])
        return parquet.read_row_group(g, columns=columns)

    def episode(self, row: int) -> pa.Table:
        """Episode `row` as a one-row table (its row group read through the cache)."""
        f, g, i = self.where[row]
        group = self.cache.get((self.paths[f], g), lambda: self._row_group(f, g))
        return group.slice(i, 1)

    def column(self, name: str):
        """One column, row group by row group (nothing kept)."""
        for f, metadata in enumerate(self.metadata):
            for g in range(metadata.num_row_groups):
                yield self._row_group(f, g, [name]).column(name)


class _WholeColumn:
    """A column read in full only when indexed."""

    def __init__(self, source: ShardSplit, name: str) -> None:
        self.source, self.name = source, name

    def __getitem__(self, row: int):
        return pa.chunked_array([c for column in self.source.column(self.name) for c in column.chunks])[row]


def _slice_values(column: pa.ChunkedArray, start: int, length: int) -> pa.Array:
    return column[0].values.slice(start, length)


def _nested(column: pa.ChunkedArray, start: int, length: int, dtype: type) -> np.ndarray:
    """Steps [start, start+length) of a list<list<x>> cell as a (length, dim) array."""
    steps = _slice_values(column, start, length)
    flat = steps.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return flat.reshape(len(steps), -1)


def decode_frames(pngs: list[bytes]) -> np.ndarray:
    """PNG-encoded frame stacks -> (n, 84, 84, 4) uint8."""
    return np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in pngs])


class EpisodeTable:
    """One split of one config: episode lengths, and windows of steps as numpy arrays."""

    def __init__(self, source: ShardSplit, spec: TaskSpec, tokenizer: MissionTokenizer | None) -> None:
        self.source = source
        self.spec = spec
        self.tokenizer = tokenizer
        self.lengths = source.lengths

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def steps(self) -> int:
        return int(self.lengths.sum())

    def window(self, row: int, start: int, length: int) -> dict[str, np.ndarray]:
        """Steps [start, start+length) of episode `row`, with the reward received before each."""
        episode = self.source.episode(row)
        c = {name: episode.column(name) for name in episode.column_names}
        out: dict[str, np.ndarray] = {}
        if IMAGE_OBSERVATIONS in c:
            frames = _slice_values(c[IMAGE_OBSERVATIONS], start, length).field("bytes").to_pylist()
            out[IMAGE_OBSERVATIONS] = decode_frames(frames)
        if DISCRETE_OBSERVATIONS in c:
            out[DISCRETE_OBSERVATIONS] = _nested(c[DISCRETE_OBSERVATIONS], start, length, np.int64)
        if TEXT_OBSERVATIONS in c and self.tokenizer is not None:
            texts = _slice_values(c[TEXT_OBSERVATIONS], start, length).to_pylist()
            out[TEXT_OBSERVATIONS] = self.tokenizer.encode(texts)
        if CONTINUOUS_OBSERVATIONS in c:
            out[CONTINUOUS_OBSERVATIONS] = _nested(c[CONTINUOUS_OBSERVATIONS], start, length, np.float32)
        if CONTINUOUS_ACTIONS in c:
            out[CONTINUOUS_ACTIONS] = _nested(c[CONTINUOUS_ACTIONS], start, length, np.float32)
        else:
            actions = _slice_values(c[DISCRETE_ACTIONS], start, length)
            out[DISCRETE_ACTIONS] = actions.to_numpy(zero_copy_only=False).astype(np.int64)
        first = max(start - 1, 0)
        rewards = _slice_values(c[REWARDS], first, start + length - 1 - first)
        previous = rewards.to_numpy(zero_copy_only=False).astype(np.float32)
        out[REWARDS] = np.concatenate([np.zeros(1, np.float32), previous]) if start == 0 else previous
        return out

    @property
    def columns(self) -> dict[str, pa.ChunkedArray]:
        """Whole columns by name, each read from every row group (for inspection: training reads windows)."""
        return {name: _WholeColumn(self.source, name) for name in self.source.column_names}

    def missions(self) -> list[str]:
        if TEXT_OBSERVATIONS not in self.source.column_names:
            return []
        found: set[str] = set()
        for column in self.source.column(TEXT_OBSERVATIONS):
            found.update(pc.unique(pc.list_flatten(column)).to_pylist())
        return sorted(found)


def collate(windows: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Pad windows at the end to the longest one; `mask` marks real steps."""
    longest = max(len(w[REWARDS]) for w in windows)
    batch: dict[str, torch.Tensor] = {}
    for key in windows[0]:
        rows = []
        for w in windows:
            value = w[key]
            pad = [(0, longest - len(value))] + [(0, 0)] * (value.ndim - 1)
            rows.append(np.pad(value, pad))
        batch[key] = torch.from_numpy(np.stack(rows))
    batch["mask"] = torch.from_numpy(np.stack([np.arange(longest) < len(w[REWARDS]) for w in windows]))
    return batch


@dataclass(frozen=True)
class Part:
    """This worker's share of each global batch: rank `rank` of `world` takes a contiguous slice."""

    rank: int = 0
    world: int = 1

    def slice(self, batch_size: int) -> slice:
        per = batch_size // self.world
        return slice(self.rank * per, (self.rank + 1) * per)


WHOLE = Part()


@dataclass
class TaskData:
    """A config in the training mixture."""

    spec: TaskSpec
    train: EpisodeTable
    test: EpisodeTable | None
    weight: float
    loss_weight: float
    context: int

    @property
    def config(self) -> str:
        return self.spec.config

    def sample(
        self, rng: np.random.Generator, batch_size: int, split: str = "train", part: Part = WHOLE
    ) -> dict[str, torch.Tensor]:
        """A batch of windows: episodes drawn in proportion to their length, start uniform.

        All `batch_size` windows are drawn from `rng` (cheap: indices only), so every rank's
        generator stays in step; only `part`'s slice of them is read and decoded."""
        table = self.train if split == "train" else self.test
        if table is None or len(table) == 0:
            raise PipelineError(f"{self.config} has no {split} episodes")
        p = table.lengths / table.lengths.sum()
        picks = []
        for row in rng.choice(len(table), size=batch_size, p=p):
            n = int(table.lengths[row])
            start = int(rng.integers(0, max(n - self.context, 0) + 1))
            picks.append((int(row), start, min(self.context, n - start)))
        return collate([table.window(*pick) for pick in picks[part.slice(batch_size)]])


class TaskMixture:
    """Configs with sampling weights: each batch comes from one task, picked by weight."""

    def __init__(self, tasks: list[TaskData]) -> None:
        if not tasks:
            raise PipelineError("no configs to train on: pass --configs")
        self.tasks = tasks
        weights = np.asarray([t.weight for t in tasks], dtype=np.float64)
        self.probabilities = weights / weights.sum()

    def sample(
        self, rng: np.random.Generator, batch_size: int, part: Part = WHOLE
    ) -> tuple[TaskData, dict[str, torch.Tensor]]:
        task = self.tasks[int(rng.choice(len(self.tasks), p=self.probabilities))]
        return task, task.sample(rng, batch_size, part=part)


def _open_split(files: DatasetFiles, config: str, split: str) -> ShardSplit | None:
    spec = get_task(config)  # unknown names fail here, before any loading
    paths = files.shards(config, split)
    if paths is None:
        return None
    source = ShardSplit(files.location.fs, paths)
    missing = set(get_suite(spec.suite).layout.columns) - set(source.column_names)
    if paths and missing:
        raise PipelineError(
            f"{files.data} config {config} lacks columns {sorted(missing)}: is it a JAT-format dataset?"
        )
    return source


def load_split(data: str, config: str, split: str) -> ShardSplit | None:
    """One split of one config (None when the dataset has no such split)."""
    get_task(config)
    return _open_split(DatasetFiles(data), config, split)


def load_tables(data: str, configs: list[str]) -> dict[str, tuple[ShardSplit, ShardSplit | None]]:
    """Open every config's train (required) and test (optional) split: episode lengths only."""
    for config in configs:
        get_task(config)  # every name checked before any reading
    files = DatasetFiles(data)
    out = {}
    for config in configs:
        train = _open_split(files, config, "train")
        if train is None or train.num_rows == 0:
            raise PipelineError(f"{data} has no train episodes for {config}: roll some out first")
        out[config] = (train, _open_split(files, config, "test"))
        log.info(
            "%s: %d train / %d test episodes",
            config,
            train.num_rows,
            0 if out[config][1] is None else out[config][1].num_rows,
        )
    return out
