"""The thin JAT model: train (`train_model`) and score (`evaluate`) a JAT agent on JAT-format data."""

from pipeline.model.configuration import JatConfig, make_config
from pipeline.model.evaluate import EvaluateConfig, EvaluateResult, evaluate
from pipeline.model.modeling import JatModel
from pipeline.model.train import TrainModelConfig, TrainModelResult, train_model

__all__ = [
    "EvaluateConfig",
    "EvaluateResult",
    "JatConfig",
    "JatModel",
    "TrainModelConfig",
    "TrainModelResult",
    "evaluate",
    "make_config",
    "train_model",
]
