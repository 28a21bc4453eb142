"""The arithmetic of one optimizer step, apart from the loop that runs it (`pipeline.model.train`):
the learning-rate schedule, micro-batches for gradient accumulation and the loss weights that make
them add up to one larger batch."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from pipeline.format.columns import DISCRETE_OBSERVATIONS


def lr_schedule(warmup: int, total: int):
    """The LR multiplier per step: linear warm-up, then a cosine decay to 10 % at `total` (JAT's)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def micro_batches(batch: dict[str, torch.Tensor], n: int) -> list[dict[str, torch.Tensor]]:
    """Split a batch into `n` micro-batches of consecutive rows, each cut to its longest real row."""
    if n == 1:
        return [batch]
    chunks = {k: v.tensor_split(n) for k, v in batch.items()}
    parts = []
    for i in range(n):
        longest = int(chunks["mask"][i].sum(1).max())  # padding is at the end of each row
        parts.append({k: c[i][:, :longest] for k, c in chunks.items()})
    return parts


def loss_counts(batch: dict[str, torch.Tensor], config: Any) -> tuple[int, int]:
    """What the model's action and observation losses average over, in this batch.

    The model returns means (`JatModel.forward`): the action loss over real steps, the observation
    loss over steps with a successor (times BabyAI's entries that have a class). Weighting each
    micro-batch's means by its share of these counts makes the accumulated loss and gradient those
    of the whole batch, whatever padding the micro-batches have."""
    mask = batch["mask"]
    actions = int(mask.sum())
    valid = mask[:, 1:]
    if DISCRETE_OBSERVATIONS in batch:
        if not config.predict_discrete_observations:
            return actions, 0
        entries = batch[DISCRETE_OBSERVATIONS][:, 1:][valid]
        return actions, int((entries < config.discrete_obs_classes).sum())
    return actions, int(valid.sum())


def recent_losses(records: list[dict[str, Any]], last: int = 50) -> dict[str, float]:
    """Mean training loss of each task over its last `last` batches."""
    by_task: dict[str, list[float]] = {}
    for row in records:
        by_task.setdefault(row["config"], []).append(float(row["loss"]))
    return {k: float(np.mean(v[-last:])) for k, v in by_task.items()}
