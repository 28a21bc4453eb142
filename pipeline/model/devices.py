"""Where the model runs and in which precision: `--device` and `--precision` of train-model and evaluate.

`auto` takes CUDA when torch sees a GPU. Precision is autocast only: weights, gradients and the
optimizer state stay fp32, so a checkpoint is the same whatever precision or device wrote it, and
loads anywhere (`map_location`). bf16 autocast runs on CPU and on GPUs that support it; fp16 is a
CUDA feature and needs a gradient scaler (its small range underflows gradients), which training adds.
"""

from __future__ import annotations

import contextlib

import torch

from pipeline.errors import PipelineError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, precision: str = "fp32") -> torch.device:
    """The torch device for `--device`, refusing in one line what this machine cannot do."""
    available = torch.cuda.is_available()
    if name == "cuda" and not available:
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        raise PipelineError(
            f"--device cuda, but torch ({torch.__version__}, {build}) sees no CUDA device: "
            "use --device cpu, or auto"
        )
    device = torch.device("cuda" if name == "cuda" or (name == "auto" and available) else "cpu")
    if precision == "fp16" and device.type != "cuda":
        raise PipelineError(
            "--precision fp16 needs CUDA and this run is on CPU: use --precision bf16 or fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise PipelineError("this GPU has no bf16 support: use --precision fp16 or fp32")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of a forward pass (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[precision])
