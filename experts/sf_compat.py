"""Compatibility fixes for sample-factory 2.1.1 with numpy >= 2.4, torch >= 2.6 and gymnasium 1.x.

1. Checkpoint loading. `Learner.load_checkpoint` calls `torch.load` with torch's default
`weights_only=True`, which refuses the numpy scalars sample-factory itself saves (`best_performance`),
logs the refusal three times and returns None: a resumed training then starts again from step 0
without a word. It is replaced by one that loads through `experts.checkpoints.load_checkpoint`
(exactly the numpy globals these files hold) and raises, naming the file, when a checkpoint
cannot be read: never a silent fresh start.

2. The env-info probe. Before training, sample-factory builds one env in a child process and waits
for its spaces with an unbounded `Queue.get()`: a child that dies (an env that cannot be built, a
script without a `__main__` guard re-run by `spawn`) leaves the run waiting forever. It is replaced
by the same probe with a bounded wait that stops, naming the child's exit code, when it dies.

3. Trajectory buffers.

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


ENV_INFO_TIMEOUT_S = 300.0
"""How long the env-info probe may take: building one env, seconds even for Atari."""


def _obtain_env_info(cfg: Any) -> Any:
    """sample-factory's `obtain_env_info_in_a_separate_process`, with a bounded wait."""
    import multiprocessing
    import os
    import pickle
    import queue
    import time

    from sample_factory.algo.utils import env_info as probe
    from sample_factory.algo.utils.context import sf_global_context

    cache = probe.env_info_cache_filename(cfg)
    if cfg.use_env_info_cache and os.path.isfile(cache):
        with open(cache, "rb") as f:
            found = pickle.load(f)
        if found.env_info_protocol_version == probe.ENV_INFO_PROTOCOL_VERSION:
            return found
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=probe.spawn_tmp_env_and_get_info, args=(sf_global_context(), results, cfg))
    child.start()
    deadline = time.monotonic() + ENV_INFO_TIMEOUT_S
    try:
        while True:
            try:
                found = results.get(timeout=1.0)
                break
            except queue.Empty:
                if not child.is_alive():
                    raise RuntimeError(
                        f"sample-factory's env-info process for {cfg.env} died (exit code {child.exitcode}) "
                        "before it reported the env's spaces: the env cannot be built there (its error is "
                        "printed above)"
                    ) from None
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"sample-factory's env-info process for {cfg.env} gave no spaces in "
                        f"{ENV_INFO_TIMEOUT_S:.0f} s: building the env hangs"
                    ) from None
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    if cfg.use_env_info_cache:
        with open(cache, "wb") as f:
            pickle.dump(found, f)
    return found


def apply() -> None:
    """Patch sample-factory's TensorDict and checkpoint loader in this process (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    import torch
    from sample_factory.algo.learning.learner import Learner
    from sample_factory.algo.runners import runner as runner_module
    from sample_factory.algo.utils.tensor_dict import TensorDict

    Learner.load_checkpoint = staticmethod(_load_checkpoint)
    runner_module.obtain_env_info_in_a_separate_process = _obtain_env_info

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
