"""Scores as JAT reports them: expert-normalised (and human-normalised for Atari) returns,
aggregated per domain by mean and interquartile mean with stratified-bootstrap confidence
intervals — the rliable method JAT's model cards use, reimplemented in numpy.

rliable treats a score matrix of shape (runs, tasks); JAT fills the runs with evaluation
episodes. The bootstrap resamples runs within each task independently (stratified), recomputes
the aggregate, and reports the percentile interval.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.tasks.registry import Scores

log = logging.getLogger(__name__)


def normalised(scores: Scores, returns: list[float]) -> list[float] | None:
    """(return - random) / (expert - random) per episode; None when expert ≤ random (undefined).

    JAT maps such tasks (Bowling, Venture) to 1.0; an undefined score is left out of the
    aggregates here instead of being counted as expert-level.
    """
    if scores.expert_mean <= scores.random_mean:
        return None
    return [scores.normalise(r) for r in returns]


def human_normalised(scores: Scores, returns: list[float]) -> list[float] | None:
    """Atari's human-normalised scores, when the registry has a human reference above random."""
    if scores.human_mean is None or scores.human_mean <= scores.random_mean:
        return None
    return [float(scores.human_normalise(r)) for r in returns]


def iqm(values: np.ndarray) -> float:
    """Interquartile mean over all entries: drop the lowest and highest 25 % (scipy's trim_mean)."""
    flat = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    cut = int(0.25 * flat.size)
    return float(flat[cut : flat.size - cut].mean())


def mean(values: np.ndarray) -> float:
    return float(np.mean(values))


def stratified_bootstrap_ci(
    matrix: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of `statistic` over `reps` resamplings of each task's runs."""
    runs, tasks = matrix.shape
    if runs < 2:
        value = statistic(matrix)
        return value, value
    rng = np.random.default_rng(seed)
    columns = np.arange(tasks)
    values = np.empty(reps)
    for i in range(reps):
        rows = rng.integers(0, runs, size=(runs, tasks))
        values[i] = statistic(matrix[rows, columns])
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


@dataclass(frozen=True)
class Aggregate:
    """A domain's aggregate of per-episode normalised scores over its tasks."""

    domain: str
    kind: str  # "expert" or "human" normalisation
    tasks: int
    episodes: int
    mean: float
    mean_ci: tuple[float, float]
    iqm: float
    iqm_ci: tuple[float, float]


def aggregate(
    domain: str, kind: str, per_task: dict[str, list[float]], reps: int, seed: int = 0
) -> Aggregate | None:
    """Mean and IQM (with CIs) of a domain; tasks must have equal episode counts (truncated to the least)."""
    scores = {k: v for k, v in per_task.items() if v and all(math.isfinite(x) for x in v)}
    if not scores:
        return None
    runs = min(len(v) for v in scores.values())
    matrix = np.array([v[:runs] for v in scores.values()], dtype=np.float64).T  # (runs, tasks)
    return Aggregate(
        domain=domain,
        kind=kind,
        tasks=matrix.shape[1],
        episodes=int(matrix.size),
        mean=mean(matrix),
        mean_ci=stratified_bootstrap_ci(matrix, mean, reps, seed=seed),
        iqm=iqm(matrix),
        iqm_ci=stratified_bootstrap_ci(matrix, iqm, reps, seed=seed),
    )
