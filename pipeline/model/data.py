"""Training data straight from the published layout: `load_dataset(dir_or_repo, config)`.

Each config is loaded with `datasets` (a local folder, an S3 copy or a Hub repo all read the
same way through the README's `configs:` YAML) and kept as its memory-mapped Arrow table.
Batches are drawn like JAT's training mixture: a task is picked by its sampling weight and
all rows of a batch come from it (one modality per batch); each row is a window of one
episode, at most the suite's context long, decoded only for the steps it covers (Atari
frames stay PNG bytes until a window needs them).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from PIL import Image

from pipeline.errors import PipelineError
from pipeline.model.tokenizer import MissionTokenizer
from pipeline.registry import TaskSpec, get_task
from pipeline.schema import FEATURES

log = logging.getLogger(__name__)


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


def load_split(data: str, config: str, split: str) -> pa.Table | None:
    """One split of one config as an Arrow table (None when the dataset has no such split)."""
    import datasets

    spec = get_task(config)  # unknown names fail here, before any loading
    try:
        ds = datasets.load_dataset(data, config, split=split)
    except ValueError as exc:
        if str(exc).startswith("Unknown split"):
            return None
        raise PipelineError(f"cannot load config {config!r} from {data}: {exc}") from exc
    except OSError as exc:  # FileNotFoundError, connection errors (offline Hub)
        raise PipelineError(
            f"cannot load {data}: {exc} (give a dataset folder, or a Hub repo id online)"
        ) from exc
    expected = set(FEATURES[spec.suite])
    missing = expected - set(ds.column_names)
    if missing:
        raise PipelineError(
            f"{data} config {config} lacks columns {sorted(missing)}: is it a JAT-format dataset?"
        )
    return ds.with_format("arrow")[0 : ds.num_rows]


def _slice_values(column: pa.ChunkedArray, row: int, start: int, length: int) -> pa.Array:
    return column[row].values.slice(start, length)


def _nested(column: pa.ChunkedArray, row: int, start: int, length: int, dtype: type) -> np.ndarray:
    """Steps [start, start+length) of a list<list<x>> cell as a (length, dim) array."""
    steps = _slice_values(column, row, start, length)
    flat = steps.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return flat.reshape(len(steps), -1)


def decode_frames(pngs: list[bytes]) -> np.ndarray:
    """PNG-encoded frame stacks -> (n, 84, 84, 4) uint8."""
    return np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in pngs])


class EpisodeTable:
    """One split of one config: episode lengths, and windows of steps as numpy arrays."""

    def __init__(self, table: pa.Table, spec: TaskSpec, tokenizer: MissionTokenizer | None) -> None:
        self.table = table
        self.spec = spec
        self.tokenizer = tokenizer
        self.lengths = pc.list_value_length(table.column("rewards")).to_numpy(zero_copy_only=False)
        self.columns = {name: table.column(name) for name in table.column_names}

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def steps(self) -> int:
        return int(self.lengths.sum())

    def window(self, row: int, start: int, length: int) -> dict[str, np.ndarray]:
        """Steps [start, start+length) of episode `row`, with the reward received before each."""
        c = self.columns
        out: dict[str, np.ndarray] = {}
        if "image_observations" in c:
            frames = _slice_values(c["image_observations"], row, start, length).field("bytes").to_pylist()
            out["image_observations"] = decode_frames(frames)
        if "discrete_observations" in c:
            out["discrete_observations"] = _nested(c["discrete_observations"], row, start, length, np.int64)
        if "text_observations" in c and self.tokenizer is not None:
            texts = _slice_values(c["text_observations"], row, start, length).to_pylist()
            out["text_observations"] = self.tokenizer.encode(texts)
        if "continuous_observations" in c:
            out["continuous_observations"] = _nested(
                c["continuous_observations"], row, start, length, np.float32
            )
        if "continuous_actions" in c:
            out["continuous_actions"] = _nested(c["continuous_actions"], row, start, length, np.float32)
        else:
            actions = _slice_values(c["discrete_actions"], row, start, length)
            out["discrete_actions"] = actions.to_numpy(zero_copy_only=False).astype(np.int64)
        first = max(start - 1, 0)
        rewards = _slice_values(c["rewards"], row, first, start + length - 1 - first)
        previous = rewards.to_numpy(zero_copy_only=False).astype(np.float32)
        out["rewards"] = np.concatenate([np.zeros(1, np.float32), previous]) if start == 0 else previous
        return out

    def missions(self) -> list[str]:
        if "text_observations" not in self.columns:
            return []
        return pc.unique(pc.list_flatten(self.columns["text_observations"])).to_pylist()


def collate(windows: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Pad windows at the end to the longest one; `mask` marks real steps."""
    longest = max(len(w["rewards"]) for w in windows)
    batch: dict[str, torch.Tensor] = {}
    for key in windows[0]:
        rows = []
        for w in windows:
            value = w[key]
            pad = [(0, longest - len(value))] + [(0, 0)] * (value.ndim - 1)
            rows.append(np.pad(value, pad))
        batch[key] = torch.from_numpy(np.stack(rows))
    batch["mask"] = torch.from_numpy(np.stack([np.arange(longest) < len(w["rewards"]) for w in windows]))
    return batch


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
        self, rng: np.random.Generator, batch_size: int, split: str = "train"
    ) -> dict[str, torch.Tensor]:
        """A batch of windows: episodes drawn in proportion to their length, start uniform."""
        table = self.train if split == "train" else self.test
        if table is None or len(table) == 0:
            raise PipelineError(f"{self.config} has no {split} episodes")
        p = table.lengths / table.lengths.sum()
        windows = []
        for row in rng.choice(len(table), size=batch_size, p=p):
            n = int(table.lengths[row])
            start = int(rng.integers(0, max(n - self.context, 0) + 1))
            windows.append(table.window(int(row), start, min(self.context, n - start)))
        return collate(windows)


class TaskMixture:
    """Configs with sampling weights: each batch comes from one task, picked by weight."""

    def __init__(self, tasks: list[TaskData]) -> None:
        if not tasks:
            raise PipelineError("no configs to train on: pass --configs")
        self.tasks = tasks
        weights = np.asarray([t.weight for t in tasks], dtype=np.float64)
        self.probabilities = weights / weights.sum()

    def sample(self, rng: np.random.Generator, batch_size: int) -> tuple[TaskData, dict[str, torch.Tensor]]:
        task = self.tasks[int(rng.choice(len(self.tasks), p=self.probabilities))]
        return task, task.sample(rng, batch_size)


def load_tables(data: str, configs: list[str]) -> dict[str, tuple[pa.Table, pa.Table | None]]:
    """Load every config's train (required) and test (optional) split."""
    out = {}
    for config in configs:
        train = load_split(data, config, "train")
        if train is None or train.num_rows == 0:
            raise PipelineError(f"{data} has no train episodes for {config}: roll some out first")
        out[config] = (train, load_split(data, config, "test"))
        log.info(
            "%s: %d train / %d test episodes",
            config,
            train.num_rows,
            0 if out[config][1] is None else out[config][1].num_rows,
        )
    return out
