"""How many env steps an expert that falls short would need, read from its own learning curve.

A budget set too low is the commonest reason an expert misses JAT's level, and the learning curve
says by how much: over the second half of training, RL curves rise roughly linearly in log(steps)
until they saturate. So the estimate fits the normalised training return against log10(steps) on
that half, takes its slope (score gained per tenfold more steps), and anchors the line at the
expert's evaluation, the score the gate judged:

    steps_needed = steps_trained * 10 ** ((target - evaluated) / slope)

It is a log-linear extrapolation, so an optimistic lower bound once a curve bends towards its
plateau; it says so instead of guessing when the curve is flat, falling or too short.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

TARGET = 0.9
"""The normalised score an expert should reach: `pipeline report` flags data below it."""
MIN_POINTS = 4
"""Curve points needed in the fitted half for a slope worth extrapolating."""
MAX_FACTOR = 1000.0
"""Beyond this many times the trained steps, the estimate says "more than" instead of a number."""


@dataclass(frozen=True)
class BudgetEstimate:
    """What an expert below `target` would need; `steps` is None when the curve cannot tell."""

    target: float
    evaluated: float
    steps_trained: int
    steps: int | None
    slope_per_decade: float | None
    """Normalised score gained per tenfold steps over the fitted half of the curve."""
    reason: str

    def short(self) -> str:
        """A table cell: '~4.2M steps', '>1.4G steps' or the reason it cannot be told."""
        if self.steps is None:
            return self.reason
        prefix = ">" if self.steps >= self.steps_trained * MAX_FACTOR else "~"
        return f"{prefix}{_si(self.steps)} steps"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _si(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def estimate_budget(
    curve: list[dict[str, float]],
    *,
    random_mean: float,
    expert_mean: float,
    evaluated: float,
    steps_trained: int,
    target: float = TARGET,
) -> BudgetEstimate | None:
    """The estimate for an expert evaluated at normalised score `evaluated`; None when it reached `target`.

    `curve` rows hold `steps` and `mean_return` (the training curve the backends write).
    """
    if evaluated >= target:
        return None

    def estimate(steps: int | None, slope: float | None, reason: str) -> BudgetEstimate:
        return BudgetEstimate(target, round(evaluated, 4), steps_trained, steps, slope, reason)

    scale = expert_mean - random_mean
    points = [
        (math.log10(r["steps"]), (r["mean_return"] - random_mean) / scale)
        for r in curve
        if r.get("steps", 0) > 0 and math.isfinite(r.get("mean_return", math.nan))
    ]
    if scale == 0 or steps_trained <= 0:
        return estimate(None, None, "no reference scale")
    fitted = points[len(points) // 2 :]
    if len(fitted) < MIN_POINTS or fitted[-1][0] - fitted[0][0] < 0.05:
        return estimate(None, None, "curve too short to extrapolate")
    mean_x = sum(x for x, _ in fitted) / len(fitted)
    mean_y = sum(y for _, y in fitted) / len(fitted)
    var_x = sum((x - mean_x) ** 2 for x, _ in fitted)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in fitted) / var_x
    if slope <= 0.01:
        # a plateau (tune it) or a task not yet cracked (more steps may bring it): no trend to extend
        return estimate(None, round(slope, 4), "flat over the last half: nothing to extrapolate")
    factor = min(10 ** ((target - evaluated) / slope), MAX_FACTOR)
    how = f"log-linear fit of the last {len(fitted)} curve points, {slope:+.2f} per 10x steps"
    return estimate(int(steps_trained * factor), round(slope, 4), how)
