"""Loading torch checkpoints safely: `weights_only=True` with exactly the numpy globals they hold.

torch >= 2.6 loads with `weights_only=True` by default and refuses any pickled global it does not
know. sample-factory's checkpoints hold numpy scalars (`best_performance` becomes a `numpy.float64`
as soon as one episode has been scored), and checkpoints written under numpy 1.x name them by
numpy's old module path (`numpy.core.multiarray.scalar`). sample-factory 2.1.1's own loader then
logs the refusal and returns None, and training silently starts again from step 0.

Loading with `weights_only=False` would run any code a downloaded file carries; released experts
come from the Hub. So this module allows exactly what these files need -- numpy scalars and
arrays of plain numeric dtypes, under their numpy 1 and numpy 2 names -- and refuses everything
else in one line that names the file and the global. Every torch checkpoint the experts read
(resume, evaluation, rollout, import) goes through `load_checkpoint`.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pipeline.errors import PipelineError

# dtype kinds a checkpoint may hold: booleans, integers, floats (no objects, no strings, no voids).
REFUSED_GLOBAL = r"(?:Unsupported global: GLOBAL|unsupported GLOBAL|but got <class ')\s*([\w.]+)"
"""Where torch's refusal names the global (its wording differs by the reason it refuses)."""
_PLAIN_DTYPES = ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8")


def allowed_globals() -> list[Any]:
    """The globals `weights_only` loading may meet in these files, each under every name numpy used."""
    import numpy as np
    import numpy._core.multiarray as multiarray

    allowed: list[Any] = [np.dtype, np.ndarray]
    for name in ("scalar", "_reconstruct"):
        function = getattr(multiarray, name)
        allowed += [function, (function, f"numpy.core.multiarray.{name}")]
    allowed += [type(np.dtype(code)) for code in _PLAIN_DTYPES]
    return allowed


def load_checkpoint(path: str, map_location: Any = "cpu") -> Any:
    """The object saved in `path`, loaded without running code; a PipelineError naming the file if not."""
    import pickle

    import torch
    from torch.serialization import safe_globals

    if not os.path.isfile(path):
        raise PipelineError(f"checkpoint {path} does not exist")
    try:
        with safe_globals(allowed_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(REFUSED_GLOBAL, str(exc))
        garbage = re.search(r"Unsupported operand \d+", str(exc))  # bytes that are no pickle at all
        if found or not garbage:
            what = f"the global {found[1]}" if found else "an object"
            raise PipelineError(
                f"refused to load {path}: it holds {what}, which a checkpoint of weights and numbers never "
                "needs (loading it could run code); use a checkpoint from a trusted training run"
            ) from exc
        raise _damaged(path, f"UnpicklingError: not a checkpoint ({garbage[0]})") from exc
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise _damaged(path, f"{type(exc).__name__}: {reason}") from exc


def _damaged(path: str, reason: str) -> PipelineError:
    return PipelineError(
        f"cannot read checkpoint {path}: {reason} (a partial or damaged file: delete it to use the "
        "previous checkpoint, or retrain with --overwrite)"
    )
