"""Compatibility fixes for sample-factory 2.1.1 with numpy >= 2.4, torch >= 2.6 and gymnasium 1.x.

1. Checkpoint loading. `Learner.load_checkpoint` calls `torch.load` with torch's default
`weights_only=True`, which refuses the numpy scalars sample-factory itself saves (`best_performance`),
logs the refusal three times and returns None: a resumed training then starts again from step 0
without a word. It is replaced by one that loads through `experts.checkpoints.load_checkpoint`
(exactly the numpy globals these files hold) and raises, naming the file, when a checkpoint
cannot be read: never a silent fresh start.

2. Trajectory buffers.

sample-factory writes per-step policy outputs into its trajectory buffers through
`TensorDict._set_data_func`. Some of those outputs arrive as 1-element arrays (shape (1,))
while the buffer slot they go to is a scalar (shape ()). numpy < 2.4 silently converted the
1-element array; numpy 2.4 removed that conversion and raises "setting an array element with
a sequence", which stops training at the first rollout step.

`apply()` wraps the method once per process. A 1-element array is written as a 0-d one, which
lands in a scalar slot and broadcasts into any other slot exactly as the 1-element array did
(this happens about three times per env step, so it is decided up front rather than by catching
numpy's error: the error path cost ~7 % of a training run's CPU). Any other refused value of the
slot's size is reshaped to the slot's shape and written again. Nothing in site-packages is
edited; the patch lives with our backend and is applied by `experts.sample_factory` before any
sample-factory object is built, in every process sample-factory starts (they import our env
factory, which imports this module).
"""

from __future__ import annotations

from typing import Any

import numpy as np

_APPLIED = False


def _reshaped(target: np.ndarray, index: Any, value: Any) -> np.ndarray | None:
    """`value` reshaped to `target[index]`'s shape when the sizes agree, else None."""
    slot_shape = np.shape(target[index])
    array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if array.shape != slot_shape and array.size == int(np.prod(slot_shape, dtype=np.int64)):
        return array.reshape(slot_shape)
    return None


def _size(data: Any) -> int:
    return data.size if isinstance(data, np.ndarray) else data.numel()


def _load_checkpoint(checkpoints: list[str], device: Any) -> dict[str, Any] | None:
    """`Learner.load_checkpoint` with safe numpy globals; None only when there is no checkpoint."""
    from experts.checkpoints import load_checkpoint

    if not checkpoints:
        return None
    return load_checkpoint(checkpoints[-1], map_location=device)


def apply() -> None:
    """Patch sample-factory's TensorDict and checkpoint loader in this process (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    import torch
    from sample_factory.algo.learning.learner import Learner
    from sample_factory.algo.utils.tensor_dict import TensorDict

    Learner.load_checkpoint = staticmethod(_load_checkpoint)

    original = TensorDict._set_data_func

    def _set_data_func(self: TensorDict, x: Any, index: Any, new_data: Any) -> None:
        if isinstance(new_data, np.ndarray | torch.Tensor) and new_data.ndim and _size(new_data) == 1:
            new_data = new_data.reshape(())
        try:
            original(self, x, index, new_data)
        except (ValueError, TypeError, RuntimeError):
            if isinstance(new_data, dict) or x is None:
                raise
            fixed = _reshaped(x, index, new_data)
            if fixed is None:
                raise
            original(self, x, index, fixed)

    TensorDict._set_data_func = _set_data_func
    _APPLIED = True
