"""JAT's column names and the Arrow mechanics every layout shares, in one place.

The writer (`pipeline.format.shards`), the validator, replay and the layouts (`pipeline.suites.layouts`)
build and read the same list columns; the helpers here are the one copy of how a per-episode
list (or list of lists) is laid out in Arrow, how a frame stack becomes JAT's PNG, how a
row-level failure names its row, and how float32 values compare after re-simulation.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

IMAGE_OBSERVATIONS = "image_observations"
TEXT_OBSERVATIONS = "text_observations"
DISCRETE_OBSERVATIONS = "discrete_observations"
CONTINUOUS_OBSERVATIONS = "continuous_observations"
DISCRETE_ACTIONS = "discrete_actions"
CONTINUOUS_ACTIONS = "continuous_actions"
REWARDS = "rewards"

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPS32 = float(np.finfo(np.float32).eps)
ULPS = 4
"""Continuous values may differ by this many float32 epsilons of max(|stored|, 1)."""


# --- writing -------------------------------------------------------------------------------------


def flat_list(arrays: list[np.ndarray], value_type: pa.DataType) -> pa.ListArray:
    """list<value> from one 1-D array per episode."""
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int32, count=len(arrays))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = pa.array(np.concatenate(arrays) if arrays else [], type=value_type)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def nested_list(arrays: list[np.ndarray], value_type: pa.DataType) -> pa.ListArray:
    """list<list<value>> from one (steps, dim) array per episode."""
    steps = [np.asarray(a).reshape(len(a), -1) for a in arrays]
    outer = np.concatenate([[0], np.cumsum([len(s) for s in steps])]).astype(np.int32)
    dims = np.concatenate([np.full(len(s), s.shape[1], dtype=np.int64) for s in steps])
    inner = np.concatenate([[0], np.cumsum(dims)]).astype(np.int32)
    values = pa.array(np.concatenate([s.reshape(-1) for s in steps]), type=value_type)
    return pa.ListArray.from_arrays(pa.array(outer), pa.ListArray.from_arrays(pa.array(inner), values))


def step_offsets(lengths: list[int]) -> pa.Array:
    """The outer offsets of a list column whose rows hold `lengths` steps."""
    return pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_frame(frames: np.ndarray) -> bytes:
    """One (84, 84, 4) uint8 frame stack as a 4-channel (RGBA-mode) PNG, as JAT stored it.

    Channel k is frame k (oldest first). Written directly (8-bit RGBA, no row filter, zlib level 1)
    instead of through PIL, whose adaptive row filtering made PNG encoding the largest recording cost
    of an Atari rollout: this is several times faster and, on these mostly flat grey frames, smaller.
    Any PNG decoder (PIL, `datasets.Image`) reads back exactly the same pixels.
    """
    if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[2] != 4:
        raise ValueError(f"expected a (height, width, 4) uint8 frame stack, got {frames.dtype}{frames.shape}")
    height, width, _ = frames.shape
    rows = np.zeros((height, 1 + 4 * width), dtype=np.uint8)  # each row: filter type 0, then RGBA pixels
    rows[:, 1:] = frames.reshape(height, 4 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit, colour type 6 (RGBA)
    return b"".join(
        (
            PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)),
            _png_chunk(b"IEND", b""),
        )
    )


def png_pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)))


# --- reading and checking ------------------------------------------------------------------------


class StepBytes:
    """One binary column's values (PNG frames, mission texts), step after step, without copies:
    a row's steps are one contiguous slice of the column's data buffer."""

    def __init__(self, column: pa.ChunkedArray | pa.Array) -> None:
        array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        _, offsets, data = array.buffers()
        self.offsets = np.frombuffer(offsets, dtype=np.int32)[array.offset : array.offset + len(array) + 1]
        self.data = memoryview(data) if data is not None else memoryview(b"")

    def steps(self, first: int, end: int) -> memoryview:
        return self.data[self.offsets[first] : self.offsets[end]]


class RowError(Exception):
    """A shard's row breaks the schema: `row` is the episode, the message says how."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row


def list_lengths(column: pa.ChunkedArray) -> np.ndarray:
    return pc.list_value_length(column).to_numpy(zero_copy_only=False)


def flat(column: pa.ChunkedArray) -> pa.Array:
    """The steps of a list column, all rows one after the other."""
    return pc.list_flatten(column.combine_chunks())


def row_of_step(step: int, lengths: np.ndarray) -> int:
    """The episode (row) a flat step index belongs to."""
    return int(np.searchsorted(np.cumsum(lengths), step, side="right"))


def check_inner(column: pa.ChunkedArray, name: str, dim: int, outer: np.ndarray) -> pa.Array:
    """Every step of a list<list<x>> column has `dim` values; returns the flat values."""
    steps = pc.list_flatten(column)
    inner = pc.list_value_length(steps).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(inner != dim)
    if bad.size:
        raise RowError(
            row_of_step(int(bad[0]), outer),
            f"{name} step has {inner[bad[0]]} values, the task expects {dim}",
        )
    return pc.list_flatten(steps)


def check_values(
    values: np.ndarray, name: str, low: float, high: float, lengths: np.ndarray, per_step: int
) -> None:
    """No NaN/inf, every value within [low, high]; `per_step` values make one step."""
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise RowError(row_of_step(bad // per_step, lengths), f"{name} holds NaN or inf")
    outside = (values < low) | (values > high)
    if outside.any():
        bad = int(np.flatnonzero(outside)[0])
        raise RowError(
            row_of_step(bad // per_step, lengths), f"{name} value {values[bad]} outside [{low}, {high}]"
        )


# --- comparing (replay) --------------------------------------------------------------------------


def within_float32(replayed: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Per value: equal up to `ULPS` float32 epsilons of max(|stored|, 1)."""
    stored64 = stored.astype(np.float64)
    return np.abs(replayed.astype(np.float64) - stored64) <= ULPS * EPS32 * np.maximum(np.abs(stored64), 1)


def first_bad(
    feature: str, replayed: np.ndarray, stored: np.ndarray, continuous: bool
) -> tuple[int, str, str] | None:
    """(step, feature, detail) of the first step whose values differ, else None."""
    good = within_float32(replayed, stored) if continuous else replayed == stored
    good = good.reshape(len(good), -1).all(axis=1)
    if good.all():
        return None
    step = int(np.flatnonzero(~good)[0])
    a, b = replayed.reshape(len(replayed), -1)[step], stored.reshape(len(stored), -1)[step]
    index = int(np.flatnonzero(~(within_float32(a, b) if continuous else a == b))[0])
    where = f"[{index}]" if a.size > 1 else ""
    detail = f"stored{where} {b[index]!r}, replayed {a[index]!r}"
    if continuous:
        detail += f" (|difference| {abs(float(a[index]) - float(b[index])):.3g} > {ULPS} float32 ulps)"
    return step, feature, detail
