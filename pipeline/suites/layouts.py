"""JAT's three ways of storing a step, and the conversion between observations and columns.

JAT's dataset has three column layouts (`pipeline.format.schema.LAYOUT_FEATURES`): frame stacks as PNG
images with discrete actions (Atari), a mission text plus integer observations with discrete
actions (BabyAI), and float vectors for observations and actions (Meta-World, MuJoCo, and any
continuous-control suite). A suite names its layout; the layout is the one place that turns an
env's observation into stored steps (recorder), episodes into Arrow columns (shards), columns
back into steps (validate, replay) and steps into the model's inputs. Actions follow the task's
action space (`SpaceSpec.type`), not the layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.format import columns as col
from pipeline.format.schema import LAYOUT_FEATURES, arrow_schema

if TYPE_CHECKING:
    from datasets import Features

    from pipeline.tasks.registry import TaskSpec


@dataclass(frozen=True)
class Observed:
    """A row's (or a shard's) observations in stored form: a (steps, values) array, or for images
    the PNG bytes per step; `texts` are the missions of a text layout."""

    observations: Any
    texts: Any = None


class Layout:
    """One of JAT's column layouts. Subclasses differ in how an observation is stored."""

    name: str
    observation_column: str
    text: bool = False
    """A mission text accompanies every step (`text_observations`)."""
    continuous: bool = False
    """Observations and rewards are float32 roundings of float64 physics: replay compares them within
    a few ulps (`pipeline.format.columns.within_float32`); other layouts must replay exactly."""

    @property
    def features(self) -> Features:
        return LAYOUT_FEATURES[self.name]

    @cached_property
    def arrow_schema(self) -> pa.Schema:
        return arrow_schema(self.features)

    @property
    def columns(self) -> list[str]:
        return list(self.features)

    def record(self, episode: Any, observation: Any) -> None:
        """Append one env observation, in stored form, to a recorded episode (`shards.Episode`)."""
        episode.observations.append(observation)

    def observation_columns(self, episodes: list[Any]) -> dict[str, pa.Array]:
        """The observation columns of one row per episode."""
        obs = [np.asarray(e.observations, dtype=np.float32) for e in episodes]
        return {self.observation_column: col.nested_list(obs, pa.float32())}

    def check_observations(self, table: pa.Table, spec: TaskSpec, lengths: np.ndarray) -> Observed:
        """The shard's observations after the row-level checks (`validate`); raises `RowError`."""
        values = col.check_inner(
            table.column(self.observation_column), self.observation_column, spec.observation.dim, lengths
        )
        values = values.to_numpy()
        col.check_values(values, self.observation_column, -np.inf, np.inf, lengths, spec.observation.dim)
        return Observed(values.reshape(-1, spec.observation.dim))

    def read_observations(self, row: pa.Table, length: int) -> Observed:
        """One stored row's observations (replay, render)."""
        values = col.flat(row.column(self.observation_column)).flatten().to_numpy()
        return Observed(values.reshape(length, -1))

    def first_difference(self, replayed: list[Any], stored: Observed, n: int) -> tuple[tuple | None, float]:
        """The first of `n` steps whose replayed observation differs from the stored one, and the
        largest absolute difference of the values (0 for exact layouts)."""
        mine = np.asarray(replayed[:n], dtype=stored.observations.dtype)
        found = col.first_bad(self.observation_column, mine, stored.observations[:n], self.continuous)
        diff = (
            float(np.abs(mine.astype(np.float64) - stored.observations[:n]).max(initial=0))
            if self.continuous
            else 0.0
        )
        return found, diff

    def model_inputs(self, observation: Any, tokenizer: Any) -> dict[str, Any]:
        """One env observation as the JAT model's inputs, shape (1, 1, ...)."""
        import torch

        values = torch.tensor(np.asarray(observation, dtype=np.float32))
        return {self.observation_column: values[None, None]}

    def __repr__(self) -> str:
        return f"<layout {self.name}>"


class VectorLayout(Layout):
    """Float vectors: continuous observations (and, with the task's space, continuous actions)."""

    name = "vector"
    observation_column = col.CONTINUOUS_OBSERVATIONS
    continuous = True


class MissionLayout(Layout):
    """A mission text and integer observations per step (BabyAI: direction + 7x7x3 view)."""

    name = "mission"
    observation_column = col.DISCRETE_OBSERVATIONS
    text = True

    def record(self, episode: Any, observation: Any) -> None:
        episode.texts.append(observation[col.TEXT_OBSERVATIONS])
        episode.observations.append(observation[self.observation_column])

    def observation_columns(self, episodes: list[Any]) -> dict[str, pa.Array]:
        texts = pa.array([t for e in episodes for t in e.texts], type=pa.string())
        obs = [np.asarray(e.observations, dtype=np.int64) for e in episodes]
        return {
            col.TEXT_OBSERVATIONS: pa.ListArray.from_arrays(
                col.step_offsets([e.length for e in episodes]), texts
            ),
            self.observation_column: col.nested_list(obs, pa.int64()),
        }

    def check_observations(self, table: pa.Table, spec: TaskSpec, lengths: np.ndarray) -> Observed:
        obs = spec.observation
        values = col.check_inner(
            table.column(self.observation_column), self.observation_column, obs.dim, lengths
        )
        values = values.to_numpy()
        col.check_values(values, self.observation_column, obs.low, obs.high, lengths, obs.dim)
        missions = pc.list_flatten(table.column(col.TEXT_OBSERVATIONS))
        if missions.null_count or (pc.utf8_length(missions).to_numpy() == 0).any():
            raise col.RowError(0, f"{col.TEXT_OBSERVATIONS} holds an empty mission")
        return Observed(values.reshape(-1, obs.dim), col.StepBytes(missions))

    def read_observations(self, row: pa.Table, length: int) -> Observed:
        values = col.flat(row.column(self.observation_column)).flatten().to_numpy()
        return Observed(values.reshape(length, -1), col.flat(row.column(col.TEXT_OBSERVATIONS)).to_pylist())

    def model_inputs(self, observation: Any, tokenizer: Any) -> dict[str, Any]:
        import torch

        ints = torch.tensor(np.asarray(observation[self.observation_column], dtype=np.int64))
        inputs = {self.observation_column: ints[None, None]}
        if tokenizer is not None:
            ids = tokenizer.encode_one(observation[col.TEXT_OBSERVATIONS])
            inputs[col.TEXT_OBSERVATIONS] = torch.from_numpy(ids)[None, None]
        return inputs


class ImageLayout(Layout):
    """A stack of grey frames per step, stored as one 4-channel PNG (Atari: 84x84, 4 frames)."""

    name = "image"
    observation_column = col.IMAGE_OBSERVATIONS

    def record(self, episode: Any, observation: Any) -> None:
        episode.observations.append(col.encode_frame(observation))

    def observation_columns(self, episodes: list[Any]) -> dict[str, pa.Array]:
        frames = [f for e in episodes for f in e.observations]
        struct = pa.StructArray.from_arrays(
            [pa.array(frames, type=pa.binary()), pa.nulls(len(frames), pa.string())],
            names=["bytes", "path"],
        )
        return {
            self.observation_column: pa.ListArray.from_arrays(
                col.step_offsets([e.length for e in episodes]), struct
            )
        }

    def check_observations(self, table: pa.Table, spec: TaskSpec, lengths: np.ndarray) -> Observed:
        shape = spec.observation.shape
        frames = pc.struct_field(pc.list_flatten(table.column(self.observation_column)), "bytes")
        for step, png in enumerate(frames.to_pylist()):
            # PNG header: signature, IHDR width/height, bit depth 8, colour type 6 (RGBA = 4 frames)
            if (
                png is None
                or png[:8] != col.PNG_SIGNATURE
                or int.from_bytes(png[16:20], "big") != shape[1]
                or int.from_bytes(png[20:24], "big") != shape[0]
                or png[24] != 8
                or png[25] != 6
            ):
                raise col.RowError(
                    col.row_of_step(step, lengths),
                    f"image is not an {shape[0]}x{shape[1]} 4-channel (RGBA) PNG frame stack",
                )
        return Observed(col.StepBytes(frames))

    def read_observations(self, row: pa.Table, length: int) -> Observed:
        return Observed(pc.struct_field(col.flat(row.column(self.observation_column)), "bytes").to_pylist())

    def first_difference(self, replayed: list[Any], stored: Observed, n: int) -> tuple[tuple | None, float]:
        for step, (mine, theirs) in enumerate(zip(replayed[:n], stored.observations[:n], strict=True)):
            if mine != theirs and not np.array_equal(col.png_pixels(mine), col.png_pixels(theirs)):
                a, b = col.png_pixels(mine), col.png_pixels(theirs)
                return (
                    step,
                    self.observation_column,
                    f"{int((a != b).sum())} of {a.size} frame-stack pixels differ",
                ), 0.0
        return None, 0.0

    def model_inputs(self, observation: Any, tokenizer: Any) -> dict[str, Any]:
        import torch

        frames = torch.from_numpy(np.array(observation, dtype=np.uint8))
        return {self.observation_column: frames[None, None]}


VECTOR = VectorLayout()
MISSION = MissionLayout()
IMAGE = ImageLayout()
