"""Episodes in Python: open a dataset anywhere, list its configs, iterate its episodes with their metadata.

`datasets.load_dataset(DIR, config)` gives exactly JAT's step columns and nothing else, by design:
episode ids, seeds, splits, returns and success live in the manifests (`meta/<config>/manifest.json`).
This module puts both back together, as Minari's `iterate_episodes()` and LeRobot's `episode_index` do:

    from pipeline.dataset import open_dataset

    dataset = open_dataset("outputs/demo")          # a folder, s3://bucket/prefix, or a Hub repo ORG/NAME
    config = dataset.config("babyai-go-to")
    for episode in config.iterate_episodes(split="test"):
        print(episode.episode_id, episode.seed, episode.episode_return, episode.columns[REWARDS])
    env = config.recover_environment()              # the env that recorded it (make_env + the plan)
    result = config.replay(episode_id=0)            # re-simulated by `pipeline.checks.replay`

Metadata comes from the manifest alone (`config.episodes()` reads no shard); steps are read row group
by row group (at most 8 episodes each) through pyarrow, with a few row groups kept, so iterating a config
holds a bounded part of it whatever its size. A Hub repo is fetched with `huggingface_hub` (endpoint,
cache and offline mode as set in the environment at call time): its card and manifests when opened, a
config's shards when its steps are first read, all from the commit the card was read at. Importing this
module imports neither Ray nor torch.
"""

from __future__ import annotations

import difflib
import io
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.configs.publish import REPO_ID
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
from pipeline.format.manifest import DatasetInfo, Manifest, dataset_configs, read_info, read_manifest
from pipeline.format.schema import INFO_PATH, MANIFEST_PATH
from pipeline.format.shards import EpisodeRecord
from pipeline.runtime.storage import Location, is_uri, open_location
from pipeline.suites import get_suite
from pipeline.tasks.registry import TaskSpec, get_task

__all__ = ["Dataset", "DatasetConfig", "EpisodeData", "EpisodeInfo", "open_dataset"]

CACHED_ROW_GROUPS = 4
"""Row groups (≤ 8 episodes each) kept while iterating: enough for train and test shards read in
episode-id order, a few tens of MB for Atari."""
SPLIT_CHOICES = ("train", "test", "both")


@dataclass(frozen=True)
class EpisodeInfo:
    """One episode as the manifest describes it: no shard is read to list these."""

    config: str
    episode_id: int
    seed: int
    """The seed its env was reset with (`recover_environment().reset(seed=seed)`)."""
    split: str
    length: int
    """Steps stored (observation, action, reward per step; the final observation is not stored)."""
    episode_return: float
    success: bool | None
    """Whether the task was solved; None where the suite records no success (MuJoCo, Atari)."""
    checkpoint_step: int | None
    """Learning histories: the training step of the snapshot that acted; None elsewhere."""
    digest: str
    """The checksum of its stored content (`pipeline validate` recomputes it)."""
    shard: str
    """The Parquet file holding it, relative to the dataset root."""
    row: int
    """Its row in that file."""

    def record(self) -> EpisodeRecord:
        return EpisodeRecord(
            self.episode_id,
            self.seed,
            self.length,
            self.episode_return,
            self.success,
            self.digest,
            self.checkpoint_step,
        )


@dataclass(frozen=True)
class EpisodeData(EpisodeInfo):
    """An episode's metadata and its steps: `columns` holds JAT's step columns by their names.

    Numeric columns are numpy arrays of the stored type, one entry per step (`rewards` float32 of
    shape (T,), `discrete_actions` int64 (T,), `continuous_observations` float32 (T, d), ...);
    `text_observations` is a list of strings; `image_observations` a list of the stored PNG bytes
    (84x84, 4 grey frames as RGBA channels; `frames()` decodes them).
    """

    columns: dict[str, Any]

    @property
    def rewards(self) -> np.ndarray:
        return self.columns[REWARDS]

    @property
    def actions(self) -> np.ndarray:
        return self.columns.get(DISCRETE_ACTIONS, self.columns.get(CONTINUOUS_ACTIONS))

    @property
    def observations(self) -> Any:
        """The observation column of the suite (images as PNG bytes, BabyAI's 148 ints, vectors)."""
        for name in (IMAGE_OBSERVATIONS, DISCRETE_OBSERVATIONS, CONTINUOUS_OBSERVATIONS):
            if name in self.columns:
                return self.columns[name]
        raise KeyError("no observation column")

    def frames(self) -> np.ndarray:
        """Atari: the stored frame stacks decoded, uint8 of shape (T, 84, 84, 4), oldest frame first."""
        if IMAGE_OBSERVATIONS not in self.columns:
            raise PipelineError(f"{self.config} has no image observations: only Atari stores frames")
        from PIL import Image

        return np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in self.columns[IMAGE_OBSERVATIONS]])


def _column_values(column: pa.ChunkedArray, length: int) -> Any:
    """One episode's value of a JAT column, by its Arrow type (not by suite)."""
    steps = pc.list_flatten(column.combine_chunks())
    if pa.types.is_struct(steps.type):  # datasets' Image: {bytes, path}
        return pc.struct_field(steps, "bytes").to_pylist()
    if pa.types.is_string(steps.type):
        return steps.to_pylist()
    if pa.types.is_list(steps.type):
        return steps.flatten().to_numpy(zero_copy_only=False).reshape(length, -1)
    return steps.to_numpy(zero_copy_only=False)


class DatasetConfig:
    """One config of a dataset: its manifest, its task, its episodes, the env that recorded them."""

    def __init__(self, dataset: Dataset, name: str) -> None:
        self.dataset = dataset
        self.name = name
        self.manifest: Manifest = read_manifest(dataset.location, name)
        self.spec: TaskSpec = get_task(name)
        self._row_groups: OrderedDict[tuple[str, int], pa.Table] = OrderedDict()
        self._shards_local = not dataset.is_hub

    def __repr__(self) -> str:
        return f"DatasetConfig({self.dataset.source!r}, {self.name!r}: {self.total_episodes} episodes)"

    # --- metadata, from the manifest --------------------------------------------------------
    @cached_property
    def _index(self) -> dict[int, EpisodeInfo]:
        out = {}
        for shard in self.manifest.shards:
            for row, e in enumerate(shard.episodes):
                out[e.episode_id] = EpisodeInfo(
                    self.name, e.episode_id, e.seed, shard.split, e.length, float(e.episode_return),
                    e.success, e.checkpoint_step, e.digest, shard.path, row,
                )  # fmt: skip
        return dict(sorted(out.items()))

    def episodes(self, split: str = "both") -> list[EpisodeInfo]:
        """Every episode of the split(s), by episode id, from the manifest alone."""
        _check_split(split)
        return [e for e in self._index.values() if split in ("both", e.split)]

    @property
    def episode_ids(self) -> list[int]:
        return list(self._index)

    @property
    def total_episodes(self) -> int:
        return len(self._index)

    @property
    def total_steps(self) -> int:
        return sum(e.length for e in self._index.values())

    @property
    def num_bytes(self) -> int:
        """Bytes of its Parquet shards."""
        return sum(s.num_bytes for s in self.manifest.shards)

    def info(self, episode_id: int) -> EpisodeInfo:
        if episode_id not in self._index:
            ids = self.episode_ids
            span = f"{ids[0]}..{ids[-1]}" if ids else "none"
            raise PipelineError(
                f"{self.name} has no episode {episode_id} (its {len(ids)} episode ids: {span}; "
                "dropped ones are in the manifest's `dropped`)"
            )
        return self._index[episode_id]

    # --- steps, from the shards -------------------------------------------------------------
    def iterate_episodes(
        self, split: str = "both", episode_ids: Iterable[int] | None = None
    ) -> Iterator[EpisodeData]:
        """The episodes of the split(s) (or those of `episode_ids`, in that order) with their steps,
        by episode id; each row group is read once while it stays among the last few read."""
        chosen = self.episodes(split) if episode_ids is None else [self.info(int(i)) for i in episode_ids]
        for info in chosen:
            yield self._read(info)

    def episode(self, episode_id: int) -> EpisodeData:
        return self._read(self.info(episode_id))

    def __iter__(self) -> Iterator[EpisodeData]:
        return self.iterate_episodes()

    def __len__(self) -> int:
        return self.total_episodes

    @property
    def location(self) -> Location:
        """Where the shards are read (a Hub repo's are fetched into the Hub cache first)."""
        if not self._shards_local:
            self.dataset.fetch([s.path for s in self.manifest.shards])
            self._shards_local = True
        return self.dataset.location

    def _read(self, info: EpisodeInfo) -> EpisodeData:
        group, first = self._row_group(info.shard, info.row)
        row = group.slice(info.row - first, 1)
        columns = {
            name: _column_values(row.column(name), info.length)
            for name in get_suite(self.spec.suite).layout.columns
        }
        if len(columns[REWARDS]) != info.length:
            raise PipelineError(
                f"{self.dataset.source}/{info.shard} row {info.row} has {len(columns['rewards'])} steps, "
                f"its manifest {info.length}: run `pipeline validate {self.dataset.source}`"
            )
        return EpisodeData(**{f: getattr(info, f) for f in EpisodeInfo.__dataclass_fields__}, columns=columns)

    def _row_group(self, shard: str, row: int) -> tuple[pa.Table, int]:
        """The row group of `shard` holding `row`, and the index of its first row."""
        location = self.location
        try:
            with location.fs.open_input_file(location.path(shard)) as source:
                parquet = pq.ParquetFile(source)
                expected = get_suite(self.spec.suite).layout.columns
                if parquet.schema_arrow.names != expected:
                    raise PipelineError(
                        f"{self.dataset.source}/{shard} has columns {parquet.schema_arrow.names}, "
                        f"{self.spec.suite} data has {expected}: run `pipeline validate` on it"
                    )
                first = 0
                for index in range(parquet.metadata.num_row_groups):
                    rows = parquet.metadata.row_group(index).num_rows
                    if row < first + rows:
                        key = (shard, index)
                        if key not in self._row_groups:
                            self._row_groups[key] = parquet.read_row_group(index)
                            while len(self._row_groups) > CACHED_ROW_GROUPS:
                                self._row_groups.popitem(last=False)
                        self._row_groups.move_to_end(key)
                        return self._row_groups[key], first
                    first += rows
        except (pa.ArrowException, OSError) as exc:
            raise PipelineError(
                f"cannot read {self.dataset.source}/{shard} ({' '.join(str(exc).split())[:200]}): "
                f"run `pipeline validate {self.dataset.source}`"
            ) from None
        raise PipelineError(
            f"{self.dataset.source}/{shard} has fewer rows than its manifest lists: "
            f"run `pipeline validate {self.dataset.source}`"
        )

    # --- the env ----------------------------------------------------------------------------
    def recover_environment(self):
        """The env that recorded this config: `pipeline.tasks.envs.make_env` with the plan's horizon, as
        `pipeline replay` builds it; `env.reset(seed=episode.seed)` starts an episode as recorded.

        Refused in one line when today's registry builds another env than the manifest names."""
        from pipeline.checks.replay import replay_env

        manifest, spec = self.manifest, self.spec
        if (manifest.env_id, manifest.make_kwargs) != (spec.env_id, spec.make_kwargs):
            raise PipelineError(
                f"{self.name} was recorded on {manifest.env_id} {manifest.make_kwargs}, this registry builds "
                f"{spec.env_id} {spec.make_kwargs}: use the jat-pipeline version that recorded it "
                f"({manifest.versions.get('jat-pipeline', 'see the manifest')})"
            )
        return replay_env(spec, manifest)

    def replay(self, episode_id: int, env=None):
        """Re-simulate one episode from its seed and stored actions (`pipeline.checks.replay.replay_episode`);
        its `EpisodeReplay` (`mismatch` is None when every step reproduces)."""
        from pipeline.checks.replay import StoredEpisode, replay_episode

        episode = self.episode(episode_id)
        own = env is None
        env = self.recover_environment() if own else env
        texts = episode.columns.get(TEXT_OBSERVATIONS)
        stored = StoredEpisode(
            episode.record(), episode.split, episode.shard, episode.row,
            episode.observations, texts, episode.actions, episode.rewards,
        )  # fmt: skip
        try:
            return replay_episode(env, self.spec, stored)[0]
        finally:
            if own:
                env.close()

    def quality(self):
        """Its row of `pipeline report` (`pipeline.report.quality.QualityRow`): normalised score and CI."""
        from pipeline.report.quality import quality_row

        return quality_row(self.manifest)


class Dataset:
    """A jat-pipeline dataset: a folder, an S3 prefix, or a Hub dataset repo (see `open_dataset`)."""

    def __init__(self, source: str, location: Location, repo_id: str | None = None) -> None:
        self.source = source
        self.location = location
        self.repo_id = repo_id
        """The Hub repo it was read from; None for a folder or object store."""
        self.revision = Path(location.root).name if repo_id else None
        """The Hub commit read (the snapshot's); None for a folder or object store."""
        self.configs: tuple[str, ...] = tuple(dataset_configs(location))
        """Configs with a manifest, sorted."""
        if not self.configs:
            raise PipelineError(
                f"{source} is not a jat-pipeline dataset: it holds no meta/<config>/manifest.json "
                "(give the folder a `pipeline rollout --out` wrote, or a published repo)"
            )
        self.info: DatasetInfo | None = read_info(location)
        """`meta/info.json` (format version, writer, versions); None when it has none."""
        self._configs: dict[str, DatasetConfig] = {}

    @property
    def is_hub(self) -> bool:
        return self.repo_id is not None

    def __repr__(self) -> str:
        return f"Dataset({self.source!r}: {', '.join(self.configs)})"

    def config(self, name: str) -> DatasetConfig:
        """One config, refused in one line with the closest names when the dataset has no such config."""
        if name not in self.configs:
            close = difflib.get_close_matches(name, self.configs, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise PipelineError(
                f"{self.source} has no config {name!r}: {hint}it holds {', '.join(self.configs)}"
            )
        if name not in self._configs:
            self._configs[name] = DatasetConfig(self, name)
        return self._configs[name]

    __getitem__ = config

    def fetch(self, paths: list[str]) -> None:
        """A Hub repo's files into its snapshot (the commit it was opened at); nothing otherwise."""
        if self.repo_id is not None:
            from pipeline.release.hub_models import dataset_snapshot

            dataset_snapshot(self.repo_id, paths, revision=self.revision)


def open_dataset(source: str, revision: str | None = None) -> Dataset:
    """Open a dataset: a local folder, `s3://bucket/prefix` (credentials as `pipeline.runtime.storage` reads
    them), or a Hub dataset repo `ORG/NAME` when no such folder exists (`revision`: a branch, tag such
    as `jat-format-v1`, or commit; default main). A Hub repo's card, info and manifests are fetched
    now, its shards when a config's steps are first read."""
    if is_uri(source):
        location = open_location(source)
        if location.fs.get_file_info(location.root).type == pafs.FileType.NotFound:
            raise PipelineError(f"{source} does not exist: check the bucket and prefix")
        return Dataset(source, location)
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise PipelineError(f"{source} is a file, not a dataset folder: give the folder a rollout wrote")
        return Dataset(source, open_location(str(path)))
    if not REPO_ID.fullmatch(source):
        raise PipelineError(
            f"{source} does not exist: give a dataset folder, s3://bucket/prefix, or a Hub repo id ORG/NAME"
        )
    from pipeline.release.hub_models import dataset_snapshot

    metadata = ["README.md", INFO_PATH, MANIFEST_PATH.format(config="*")]
    root = dataset_snapshot(source, metadata, revision=revision)
    return Dataset(source, open_location(root), repo_id=source)


def _check_split(split: str) -> None:
    if split not in SPLIT_CHOICES:
        raise PipelineError(f"split must be one of {', '.join(SPLIT_CHOICES)}, got {split!r}")
