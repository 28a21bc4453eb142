"""The device an expert trains on, and the Ray resources its task held: decided in the worker.

`train-experts --device auto|cpu|cuda` is resolved where training runs, not in the driver: on a
cluster the driver (often the head node, e.g. under `pipeline submit`) may have no GPU while the
node Ray placed the task on does. Ray also schedules on GPUs a node merely *declares*
(`ray start --num-gpus 1`) that torch may not see (a CPU-only torch build, no driver): `auto`
then trains on the CPU and says so in one warning, `cuda` fails that task naming the node. What
was asked for and what was used is recorded in the expert's metadata.json (`resources`), so a
slow expert trained on the CPU of a "GPU" node shows it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import get_args

from pipeline.configs.experts import Device
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

DEVICES: tuple[str, ...] = get_args(Device)


@dataclass(frozen=True)
class RayPlacement:
    """What Ray gave one training task, read inside it from `ray.get_runtime_context()`."""

    assigned: dict[str, float]
    """Ray resources the task holds, e.g. {"CPU": 8.0, "GPU": 1.0}."""
    accelerator_ids: dict[str, list[str]]
    """Accelerator ids Ray assigned (what it put in CUDA_VISIBLE_DEVICES), e.g. {"GPU": ["0"]}."""
    node_id: str

    @classmethod
    def current(cls) -> RayPlacement:
        """The placement of the Ray task this is called from."""
        import ray

        context = ray.get_runtime_context()
        accelerators = context.get_accelerator_ids().items()
        ids = {name: [str(i) for i in found] for name, found in accelerators if found}
        return cls(dict(context.get_assigned_resources()), ids, context.get_node_id())


@dataclass(frozen=True)
class TrainResources:
    """What an expert trained with: metadata.json's `resources` section."""

    device: str
    """The torch device training used: cpu | cuda."""
    requested_device: str
    """`train-experts --device`: auto | cpu | cuda."""
    num_cpus: int
    num_gpus: float
    """GPUs asked of Ray for the task (`expert.num_gpus` / `--num-gpus`); in-process, whether `auto` may
    pick CUDA."""
    cuda_devices: tuple[str, ...] = ()
    """CUDA devices torch saw in the worker (names)."""
    ray: RayPlacement | None = None
    """What Ray assigned; None when trained in this process (`--workers 0`)."""
    note: str = ""
    """Why the device differs from the request (e.g. a GPU only declared to Ray), else empty."""


def check_device(device: str) -> str:
    """`device` if it is one of DEVICES, else a PipelineError naming the valid ones."""
    if device not in DEVICES:
        raise PipelineError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    return device


def cuda_devices() -> tuple[str, ...]:
    """Names of the CUDA devices torch can use in this process (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return ()
    return tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


def no_cuda_reason() -> str:
    """Why torch sees no CUDA device here, in a few words (for one-line errors and warnings)."""
    import torch

    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no usable CUDA device"


def resolve_device(
    requested: str, num_cpus: int, num_gpus: float, placement: RayPlacement | None, where: str
) -> TrainResources:
    """The device to train on in this process: `auto` is cuda when the task was given a GPU torch sees.

    A GPU Ray assigned but torch cannot use means the node only declared it: `auto` falls back to
    the CPU with one warning, `cuda` raises (that task fails, naming the node).
    """
    check_device(requested)
    found = cuda_devices() if requested == "cuda" or (requested == "auto" and num_gpus > 0) else ()
    gpus = placement.accelerator_ids.get("GPU", []) if placement else []
    on = f" (Ray node {placement.node_id[:12]}, GPU ids {gpus or 'none'})" if placement else ""
    device, note = "cpu", ""
    if requested == "cuda":
        if not found:
            raise PipelineError(
                f"{where}: --device cuda but {no_cuda_reason()} in the training worker{on}; use --device "
                "auto or cpu, or give the task a node with a working GPU"
            )
        device = "cuda"
    elif requested == "auto" and num_gpus > 0:
        if found:
            device = "cuda"
        else:
            note = f"asked for {num_gpus:g} GPU(s) but {no_cuda_reason()}{on}: trained on the CPU"
            log.warning("%s: %s (--num-gpus 0 reserves none; --device cpu silences this)", where, note)
    return TrainResources(device, requested, num_cpus, float(num_gpus), found, placement, note)
