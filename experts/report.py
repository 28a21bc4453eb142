"""Per-suite expert summaries: a JSON table and a PNG of learning curves, written into EXPERTS_DIR.

    EXPERTS_DIR/summary-<suite>.json          one row per expert (status, steps, scores)
    EXPERTS_DIR/learning-curves-<suite>.png   mean return per env step to the end of training, the
                                              evaluation, JAT's expert/random (lines or arrows)

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
from pipeline.tasks.registry import get_task

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
    """PNG bytes of the suite's learning curves (None when no expert has a curve).

    Each panel covers the whole run: the training curve (mean return of the episodes finished
    between rows), then the evaluation at the steps trained (mean ± std; a backend's last curve
    row may come before its last training round), with a line where training ended. The return
    axis is the data's: JAT's expert and random returns are lines where they fall within it, and
    arrows at its edge with their value where they do not (a weak expert used to be a flat line
    at the bottom of an axis that ran up to JAT's expert)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {c: store.curve(c) for c in configs}
    curves = {c: rows for c, rows in curves.items() if rows}
    if not curves:
        return None
    columns = min(4, len(curves))
    lines = math.ceil(len(curves) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4 * columns, 3.2 * lines), squeeze=False)
    for ax, (config, rows) in zip(axes.flat, curves.items(), strict=False):
        _panel(ax, config, rows, _metadata(store, config))
    for ax in list(axes.flat)[len(curves) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{suite}: expert learning curves")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _metadata(store: ExpertStore, config: str) -> ExpertMetadata | None:
    try:
        return store.read_metadata(config)
    except PipelineError:
        return None


def _panel(ax: Any, config: str, rows: list[dict[str, float]], metadata: ExpertMetadata | None) -> None:
    steps = [r["steps"] for r in rows]
    returns = [r["mean_return"] for r in rows]
    ax.plot(steps, returns, marker="." if len(rows) < 20 else None, label="training (mean return)")
    shown = list(returns)
    trained = metadata.steps_trained if metadata else None
    if trained:
        ax.axvline(trained, color="0.5", linewidth=0.8, label="end of training")
    evaluation = (metadata.evaluation if metadata else None) or {}
    if trained and evaluation.get("mean_return") is not None:
        mean, std = evaluation["mean_return"], evaluation.get("std_return") or 0.0
        ax.errorbar([trained], [mean], yerr=[std], fmt="o", color="C3", capsize=3, label="evaluation (± std)")
        shown += [mean - std, mean + std]
    low, high = min(shown), max(shown)
    pad = 0.08 * (high - low or max(abs(high), 1.0))
    ax.set_ylim(low - pad, high + 2.5 * pad)  # room above for the reference labels
    ax.set_xlim(left=min(0, min(steps)), right=max([*steps, trained or 0]) * 1.04 or 1)
    scores = get_task(config).scores
    for i, (name, value, style, colour) in enumerate(
        (("JAT expert", scores.expert_mean, "--", "green"), ("JAT random", scores.random_mean, ":", "grey"))
    ):
        label = f"{name} ({value:.4g})"
        if low - pad <= value <= high + 2.5 * pad:
            ax.axhline(value, color=colour, linestyle=style, linewidth=1, label=label)
        else:
            above = value > high
            ax.annotate(
                f"{label} {'↑' if above else '↓'}",
                xy=(0.98, (0.95 if above else 0.05) - (0.09 * i if above else -0.09 * i)),
                xycoords="axes fraction",
                ha="right",
                va="center",
                fontsize=7,
                color=colour,
            )
    ax.set_title(config, fontsize=9)
    ax.set_xlabel("env steps", fontsize=8)
    ax.set_ylabel("episode return", fontsize=8)
    ax.tick_params(labelsize=7)


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
