"""Figures for the dataset card, drawn from `stats.json` content only (never from the shards).

Because they need only the statistics, the figures of configs published earlier can be redrawn
when a new config joins a suite, without downloading their data. Rendering uses matplotlib's
object API with the Agg canvas (no pyplot state, no display) and PNG metadata without version
or date, so the same statistics always give the same bytes — re-publishing uploads nothing.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline.format.schema import SPLITS
from pipeline.report.stats_types import ConfigStats

COLOURS = {"train": "#3b75af", "test": "#ef8636"}


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def returns_histogram(stats: ConfigStats) -> bytes:
    """Episode returns per split, with JAT's random and expert reference returns marked."""
    figure = Figure(figsize=(7.5, 3.2), layout="constrained")
    ax = figure.add_subplot()
    edges = np.asarray(stats.histogram_edges)
    bottom = np.zeros(len(edges) - 1)
    for split in SPLITS:
        entry = stats.splits.get(split)
        if entry is None:
            continue
        counts = np.asarray(entry.histogram, dtype=float)
        ax.bar(
            edges[:-1],
            counts,
            width=np.diff(edges),
            bottom=bottom,
            align="edge",
            color=COLOURS[split],
            edgecolor="white",
            linewidth=0.5,
            label=f"{split} ({entry.episodes} episodes)",
        )
        bottom += counts
    ax.set_ylim(0, max(float(bottom.max(initial=0.0)), 1.0) * 1.3)  # room above for the labels
    _mark_references(ax, edges, stats)
    ax.set_xlabel("episode return")
    ax.set_ylabel("episodes")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    train = stats.splits.get("train") or next(iter(stats.splits.values()), None)
    score = train.normalised_score.mean if train is not None else None
    said = "" if score is None else f" (normalised score {score:.3g}: 0 JAT random, 1 JAT expert)"
    ax.set_title(f"{stats.config}: episode returns{said}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(figure)


def _mark_references(ax: Any, edges: np.ndarray, stats: ConfigStats) -> None:
    """JAT's random and expert returns: a line where they fall within the data's range, else an arrow
    at the edge they lie beyond, with their value. The axis is the data's, so episodes far from
    JAT's expert still show as bars (the axis used to run to the expert's score, leaving slivers)."""
    low, high = float(edges[0]), float(edges[-1])
    pad = 0.05 * (high - low or max(abs(high), 1.0))
    ax.set_xlim(low - pad, high + pad)
    scores = stats.reference_scores
    for name, value, style in (("random", scores.random, ":"), ("expert", scores.expert, "--")):
        label = f"JAT {name} ({value:.4g})"
        if low - pad <= value <= high + pad:
            ax.axvline(value, color="black", linestyle=style, linewidth=1, label=label)
            continue
        right = value > high
        ax.annotate(
            f"{label} {'→' if right else '←'}",
            xy=(1.0 if right else 0.0, 0.93 if name == "expert" else 0.83),
            xycoords="axes fraction",
            ha="right" if right else "left",
            va="center",
            fontsize=7,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "0.6", "linewidth": 0.5},
        )


def suite_summary(suite: str, all_stats: list[ConfigStats]) -> bytes:
    """JAT-normalised score (0 = random, 1 = JAT expert) of every config of a suite, train split."""
    rows = sorted((s for s in all_stats if s.suite == suite), key=lambda s: s.config)
    height = 1.2 + 0.28 * max(len(rows), 1)
    figure = Figure(figsize=(7, height), layout="constrained")
    ax = figure.add_subplot()
    names, means, stds = [], [], []
    for s in rows:
        entry = s.splits.get("train") or next(iter(s.splits.values()))
        score = entry.normalised_score
        names.append(s.config.removeprefix(f"{suite}-"))
        means.append(score.mean if score.mean is not None else np.nan)
        stds.append(score.std if score.std is not None else 0.0)
    y = np.arange(len(rows))
    ax.barh(y, means, xerr=stds, color=COLOURS["train"], error_kw={"linewidth": 0.8})
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0.0, color="black", linestyle=":", linewidth=1, label="JAT random")
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1, label="JAT expert")
    ax.set_xlabel("normalised score, train split (mean ± std over episodes)")
    ax.set_title(f"{suite}: {len(rows)} config(s)", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(figure)
