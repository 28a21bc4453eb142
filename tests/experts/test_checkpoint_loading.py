"""Checkpoints load with exactly the numpy globals they hold, under numpy 1 and 2 names; nothing else."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import torch

from experts.checkpoints import load_checkpoint
from pipeline.errors import PipelineError


def _numpy1_names(src, dst) -> None:
    """`src` as numpy 1.x pickles it: `numpy.core.multiarray` instead of numpy 2's `numpy._core`
    (how the 2022 released sample-factory experts name their numpy scalars)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(info.filename, data)


def _state() -> dict:
    """What sample-factory saves once an episode was scored: `best_performance` is a numpy float."""
    return {
        "train_step": 26,
        "env_steps": 1664,
        "best_performance": np.float64(23.42),
        "model": {"w": torch.ones(3), "count": torch.tensor(5)},
        "stats": np.arange(4, dtype=np.float32),
        "flags": np.array([True, False]),
    }


@pytest.mark.parametrize("numpy1", [False, True])
def test_a_checkpoint_with_numpy_scalars_loads_without_running_code(tmp_path, numpy1):
    path = tmp_path / "checkpoint.pth"
    torch.save(_state(), path)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)  # what sample-factory 2.1.1's loader met, and hid
    if numpy1:
        _numpy1_names(path, tmp_path / "old.pth")
        path = tmp_path / "old.pth"
    state = load_checkpoint(str(path))
    assert state["best_performance"] == np.float64(23.42) and state["env_steps"] == 1664
    assert torch.equal(state["model"]["w"], torch.ones(3))
    np.testing.assert_array_equal(state["stats"], np.arange(4, dtype=np.float32))


class _RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize(
    ("payload", "named"),
    [(_RunsCode(), "posix.getcwd"), (np.array(["a"], dtype=object), "numpy.dtypes.ObjectDType")],
)
def test_anything_else_is_refused_in_one_line_naming_file_and_global(tmp_path, payload, named):
    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "extra": payload}, path)
    with pytest.raises(PipelineError) as caught:
        load_checkpoint(str(path))
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and named in message


def test_a_truncated_or_missing_checkpoint_is_named(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save(_state(), path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(PipelineError, match=r"corrupt checkpoint .*checkpoint\.pth.*partial or damaged"):
        load_checkpoint(str(path))
    path.write_bytes(b"not a checkpoint")  # not even a zip: torch falls back to plain unpickling
    with pytest.raises(PipelineError, match=r"corrupt checkpoint .*checkpoint\.pth: UnpicklingError"):
        load_checkpoint(str(path))
    with pytest.raises(PipelineError, match="does not exist"):
        load_checkpoint(str(tmp_path / "none.pth"))
