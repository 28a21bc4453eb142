"""Reading downloaded stable-baselines3 files without running the code they may carry.

An sb3 model zip keeps its hyperparameters in a JSON `data` file where every object JSON cannot
hold is a base64 cloudpickle (`":serialized:"`): the policy class, the spaces, `policy_kwargs` with
classes in it, but also learning-rate schedules (functions, pickled by value: code) and the
training state. `BaseAlgorithm.load` unpickles them all. A `vec_normalize.pkl` is a plain pickle of
a `VecNormalize`. Loading either as they are would run whatever a downloaded file holds.

So: `load_model` reads `data` first and hands sb3's own `load` a `custom_objects` entry for every
serialized key, so sb3 never unpickles one. The four keys inference needs (policy class, spaces,
policy kwargs) are unpickled here with an allow-list of exactly the globals such objects hold
(gymnasium spaces, numpy arrays/scalars/random generators, sb3's policy and feature-extractor
classes, torch activations and optimizers); training state is decoded as numbers or dropped;
schedules become a constant 0 (as RL Zoo's `enjoy` replaces them too). `load_vec_normalize`
reads a VecNormalize pickle into inert records: numpy's array globals are the only callables it
may reach. Anything else is refused in one line naming the global.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import pickle
import zipfile
from typing import Any

from pipeline.errors import PipelineError

INFERENCE_KEYS = ("policy_class", "observation_space", "action_space", "policy_kwargs")
"""The serialized `data` entries a model needs to act; all others are training state."""
SCHEDULE_KEYS = ("learning_rate", "lr_schedule", "clip_range", "clip_range_vf", "exploration_schedule")
"""Training schedules: functions in the file, replaced by `constant_zero` (as RL Zoo's enjoy does)."""

_NUMPY_DATA = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
}
"""numpy's array, dtype and scalar constructors, under their numpy 2 and numpy 1 names."""
_NUMPY_RANDOM = {
    ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pcg64", "PCG64"),
    ("numpy.random._mt19937", "MT19937"),
    ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
    ("numpy.random.bit_generator", "SeedSequence"),
}
"""A space's random generator (pickled with it once the space was sampled)."""
_SPACES = ("Box", "Discrete", "MultiDiscrete", "MultiBinary")


def constant_zero(_: float = 0.0) -> float:
    """The schedule an imported model carries: it is never trained here."""
    return 0.0


def _real(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


class _Refused(Exception):
    pass


class _Restricted(pickle.Unpickler):
    """An unpickler that resolves only the globals `resolve` maps; any other is refused."""

    def __init__(self, data: bytes, resolve: Any) -> None:
        super().__init__(io.BytesIO(data))
        self.resolve = resolve

    def find_class(self, module: str, name: str) -> Any:
        found = self.resolve(module, name)
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found


def _space_class(module: str, name: str) -> Any:
    """gymnasium's spaces; gym's (sb3 < 2.0 zips) become gymnasium's, as sb3's own load converts them."""
    root = module.split(".", 1)[0]
    if root in ("gym", "gymnasium") and module.startswith(f"{root}.spaces") and name in _SPACES:
        import gymnasium

        return getattr(gymnasium.spaces, name)
    return None


def _sb3_class(module: str, name: str) -> Any:
    """sb3 / sb3-contrib policy and feature-extractor classes; torch activations and optimizers."""
    if module.split(".", 1)[0] not in ("stable_baselines3", "sb3_contrib", "torch"):
        return None
    if module.startswith("torch.") and not module.startswith(("torch.nn.modules.activation", "torch.optim")):
        return None
    import torch
    from stable_baselines3.common.policies import BasePolicy
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    try:
        found = _real(module, name)
    except (ImportError, AttributeError):
        return None
    bases = (BasePolicy, BaseFeaturesExtractor, torch.nn.Module, torch.optim.Optimizer)
    if isinstance(found, type) and issubclass(found, bases):
        return found
    return None


def _inference_global(module: str, name: str) -> Any:
    if (module, name) in _NUMPY_DATA or (module, name) in _NUMPY_RANDOM:
        return _real(module, name)
    return _space_class(module, name) or _sb3_class(module, name)


def _data_global(module: str, name: str) -> Any:
    return _real(module, name) if (module, name) in _NUMPY_DATA else None


def model_data(path: str) -> dict[str, Any]:
    """The model zip's `data` as JSON, serialized entries left as they are."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("data"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise PipelineError(
            f"{path} is not a stable-baselines3 model zip ({type(exc).__name__}: {exc})"
        ) from None


def zip_text(path: str, member: str) -> str:
    """A text member of the model zip (`system_info.txt`, `_stable_baselines3_version`); '' if absent."""
    with zipfile.ZipFile(path) as archive:
        return archive.read(member).decode("utf-8", "replace") if member in archive.namelist() else ""


def safe_objects(path: str, data: dict[str, Any]) -> dict[str, Any]:
    """A `custom_objects` for every serialized entry of `data`, none unpickled with code."""
    objects: dict[str, Any] = {}
    for key, item in data.items():
        if not (isinstance(item, dict) and ":serialized:" in item):
            continue
        raw = base64.b64decode(item[":serialized:"].encode())
        if key in SCHEDULE_KEYS:
            objects[key] = constant_zero
        elif key == "train_freq":
            objects[key] = 1  # off-policy training frequency; sb3 rebuilds a TrainFreq from it
        elif key in INFERENCE_KEYS:
            try:
                objects[key] = _Restricted(raw, _inference_global).load()
            except _Refused as exc:
                raise PipelineError(
                    f"refused to load {path}: its {key} holds the global {exc}, which a stable-baselines3 "
                    "model never needs (loading it could run code); use a model from a trusted source"
                ) from None
            except Exception as exc:
                raise PipelineError(f"cannot read the {key} of {path}: {type(exc).__name__}: {exc}") from None
        else:  # training state (last observations, episode buffers, target entropy): numbers or nothing
            try:
                objects[key] = _Restricted(raw, _data_global).load()
            except Exception:
                objects[key] = None
    return objects


def load_model(algo_class: type, path: str, off_policy: bool) -> Any:
    """`algo_class.load(path)` on CPU with no downloaded object unpickled but through the allow-list;
    an off-policy model gets a 1-transition replay buffer, as RL Zoo's enjoy loads it."""
    data = model_data(path)
    objects = safe_objects(path, data)
    kwargs: dict[str, Any] = {"buffer_size": 1} if off_policy else {}
    if off_policy and "optimize_memory_usage" in data:
        kwargs["optimize_memory_usage"] = False  # cannot be set with handle_timeout_termination
    try:
        return algo_class.load(path, device="cpu", custom_objects=objects, **kwargs)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise PipelineError(
            f"stable-baselines3 {algo_class.__name__} cannot load {path}: {type(exc).__name__}: {first[:300]}"
        ) from None


class Record:
    """What a VecNormalize pickle's objects become: their attributes, no behaviour."""

    def __init__(self, *args: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.state = state


_RECORDS = {
    ("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize"),
    ("stable_baselines3.common.running_mean_std", "RunningMeanStd"),
}


def _vec_normalize_global(module: str, name: str) -> Any:
    if (module, name) in _NUMPY_DATA:
        return _real(module, name)
    if (module, name) in _RECORDS or (module, name) in _NUMPY_RANDOM or _space_class(module, name):
        return Record  # the statistics file's spaces and their generators: kept as inert attributes
    return None


def load_vec_normalize(path: str) -> Record:
    """A `vec_normalize.pkl` as a record of its attributes (`obs_rms.mean`, `.var`, `clip_obs`,
    `epsilon`, `norm_obs`, ...); a PipelineError naming the global when it holds anything else."""
    try:
        with open(path, "rb") as f:
            found = _Restricted(f.read(), _vec_normalize_global).load()
    except _Refused as exc:
        raise PipelineError(
            f"refused to load {path}: it holds the global {exc}, which VecNormalize statistics never need "
            "(loading it could run code); use statistics from a trusted source"
        ) from None
    except Exception as exc:
        raise PipelineError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if not isinstance(found, Record) or not isinstance(getattr(found, "obs_rms", None), Record):
        raise PipelineError(f"{path} holds no VecNormalize statistics (no obs_rms)")
    return found
