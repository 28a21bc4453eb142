"""Per-suite expert summaries: a JSON table and a PNG of learning curves, written into EXPERTS_DIR.

    EXPERTS_DIR/summary-<suite>.json          one row per expert (status, steps, scores)
    EXPERTS_DIR/learning-curves-<suite>.png   mean return per env step, JAT's expert/random as lines

Both stages (`train-experts`, `evaluate-experts`) rewrite them from the store, so they always
describe every expert of the suite, not only the ones of the last run.
"""

from __future__ import annotations

import io
import logging
import math
from typing import Any

from experts.budget import TARGET, BudgetEstimate, estimate_budget
from experts.metadata import ExpertMetadata
from experts.store import ExpertStore
from pipeline.errors import PipelineError
from pipeline.registry import get_task

log = logging.getLogger(__name__)


def budget_of(store: ExpertStore, metadata: ExpertMetadata) -> BudgetEstimate | None:
    """For a trained expert whose task is below JAT's level: the steps its learning curve says it needs.

    The trained network's own evaluation is used, also when a scripted candidate acts instead; None
    when nothing was trained or evaluated, or the acting policy already reaches the target.
    """
    acting, own = metadata.normalised, (metadata.own_evaluation() or {}).get("normalised")
    if not metadata.trained or acting is None or own is None or acting >= TARGET:
        return None
    scores = get_task(metadata.config).scores
    return estimate_budget(
        store.curve(metadata.config),
        random_mean=scores.random_mean,
        expert_mean=scores.expert_mean,
        evaluated=own,
        steps_trained=metadata.steps_trained,
    )


def summary_row(metadata: ExpertMetadata, budget: BudgetEstimate | None = None) -> dict[str, Any]:
    """One table row from an expert's metadata (and its budget estimate, when it falls short)."""
    evaluation = metadata.evaluation or {}
    return {
        "config": metadata.config,
        "backend": metadata.backend,
        "algo": metadata.algo,
        "status": str(metadata.status),
        "steps_trained": metadata.steps_trained,
        "wall_time_s": metadata.wall_time_s,
        "mean_return": evaluation.get("mean_return"),
        "std_return": evaluation.get("std_return"),
        "success_rate": evaluation.get("success_rate"),
        "normalised": evaluation.get("normalised"),
        "episodes": evaluation.get("episodes"),
        # Meta-World: the candidate rollout acts with, and each candidate's normalised score
        "chosen": metadata.chosen,
        "candidates": metadata.choice_provenance().get("choice", {}).get("normalised"),
        # below experts.budget.TARGET: env steps the learning curve says it needs, and how that was read
        "budget": budget.to_dict() if budget else None,
    }


def suite_rows(store: ExpertStore, suite: str) -> list[dict[str, Any]]:
    """One row per readable expert of `suite`. An unreadable metadata.json is left out with a warning:
    the stage has already reported that task as failed, and the other experts' summary must not be
    lost with it."""
    rows = []
    for config in sorted(store.configs()):
        try:
            metadata = store.read_metadata(config)
        except PipelineError as exc:
            log.warning("left out of the %s summary: %s", suite, exc)
            continue
        if metadata and metadata.suite == suite:
            rows.append(summary_row(metadata, budget_of(store, metadata)))
    return rows


def plot_curves(store: ExpertStore, suite: str, configs: list[str]) -> bytes | None:
    """PNG bytes of the suite's learning curves (None when no expert has a curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {c: store.curve(c) for c in configs}
    curves = {c: rows for c, rows in curves.items() if rows}
    if not curves:
        return None
    columns = min(4, len(curves))
    lines = math.ceil(len(curves) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4 * columns, 3 * lines), squeeze=False)
    for ax, (config, rows) in zip(axes.flat, curves.items(), strict=False):
        scores = get_task(config).scores
        ax.plot([r["steps"] for r in rows], [r["mean_return"] for r in rows], label="expert (training)")
        ax.axhline(scores.expert_mean, color="green", linestyle="--", linewidth=1, label="JAT expert")
        ax.axhline(scores.random_mean, color="grey", linestyle=":", linewidth=1, label="random")
        ax.set_title(config, fontsize=9)
        ax.set_xlabel("env steps", fontsize=8)
        ax.set_ylabel("episode return", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(curves) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{suite}: expert learning curves")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_suite_reports(store: ExpertStore, suites: list[str]) -> dict[str, list[str]]:
    """Rewrite summary-<suite>.json and learning-curves-<suite>.png; returns the files written per suite."""
    written: dict[str, list[str]] = {}
    for suite in sorted(set(suites)):
        rows = suite_rows(store, suite)
        if not rows:
            continue
        store.location.write_json(f"summary-{suite}.json", rows)
        files = [store.location.path(f"summary-{suite}.json")]
        png = plot_curves(store, suite, [r["config"] for r in rows])
        if png is not None:
            store.location.write_bytes(f"learning-curves-{suite}.png", png)
            files.append(store.location.path(f"learning-curves-{suite}.png"))
        written[suite] = files
    return written
