"""The thin JAT model: train (`train_model`) and score (`evaluate`) a JAT agent on JAT-format data.

The public names load on first use (PEP 562): importing `pipeline.model.metrics` for bootstrap
intervals (the dataset card, `pipeline report`) must not pull in torch and transformers (~4 s).
The `evaluate` function is not re-exported: lazily, that name would mean the function or the
submodule depending on import order; use `pipeline.model.evaluate.evaluate`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.model.configuration import JatConfig, make_config
    from pipeline.model.evaluate import EvaluateConfig, EvaluateResult
    from pipeline.model.modeling import JatModel
    from pipeline.model.train import TrainModelConfig, TrainModelResult, train_model

_EXPORTS = {
    "EvaluateConfig": "pipeline.model.evaluate",
    "EvaluateResult": "pipeline.model.evaluate",
    "JatConfig": "pipeline.model.configuration",
    "JatModel": "pipeline.model.modeling",
    "TrainModelConfig": "pipeline.model.train",
    "TrainModelResult": "pipeline.model.train",
    "make_config": "pipeline.model.configuration",
    "train_model": "pipeline.model.train",
}
__all__ = [
    "EvaluateConfig",
    "EvaluateResult",
    "JatConfig",
    "JatModel",
    "TrainModelConfig",
    "TrainModelResult",
    "make_config",
    "train_model",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
