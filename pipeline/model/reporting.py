"""Files the model stages leave behind: CSV tables, loss curves and score plots.

Every file is written to a temporary name and renamed into place, so an interrupted run
never leaves a half-written CSV or PNG next to a model.
"""

from __future__ import annotations

import csv
import io
import json
import os
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=1) + "\n").encode())


def write_csv(path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...] = ()) -> None:
    buffer = io.StringIO()
    fields = list(rows[0]) if rows else list(fields)
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue().encode())


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _figure_bytes(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plot_losses(path: Path, train: list[dict[str, Any]], test: list[dict[str, Any]]) -> None:
    """Training loss per task (moving average) and test-split loss at each checkpoint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    by_task: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in train:
        by_task[row["config"]].append((int(row["step"]), float(row["loss"])))
    for config, points in sorted(by_task.items()):
        steps, losses = np.array(points).T
        window = max(1, min(25, len(losses) // 10))
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        axes[0].plot(steps[window - 1 :], smooth, label=config)
    axes[0].set(title="training loss (moving average)", xlabel="step", ylabel="loss", yscale="log")
    test_by_task: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in test:
        test_by_task[row["config"]].append((int(row["step"]), float(row["loss"])))
    for config, points in sorted(test_by_task.items()):
        steps, losses = np.array(points).T
        axes[1].plot(steps, losses, marker="o", label=config)
    axes[1].set(title="test-split loss", xlabel="step", ylabel="loss", yscale="log")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    write_atomic(path, _figure_bytes(fig))
    plt.close(fig)


def plot_scores(path: Path, tasks: list[dict[str, Any]], domains: list[dict[str, Any]]) -> None:
    """Per-task expert-normalised score (model vs random baseline) and per-domain IQM with 95 % CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [max(len(tasks), 2), 2]})
    names = [t["config"] for t in tasks]
    x = np.arange(len(names))
    model = [np.nan if t["normalised_mean"] is None else t["normalised_mean"] for t in tasks]
    axes[0].bar(x - 0.2, model, 0.4, label="model")
    if any(t.get("baseline") for t in tasks):
        base = [
            np.nan
            if not t.get("baseline") or t["baseline"]["normalised_mean"] is None
            else t["baseline"]["normalised_mean"]
            for t in tasks
        ]
        axes[0].bar(x + 0.2, base, 0.4, label="random policy (measured)")
    axes[0].axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[0].axhline(0.0, color="black", lw=0.8)
    axes[0].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    axes[0].set(title="expert-normalised score per task", ylabel="(return - random) / (expert - random)")
    axes[0].legend(fontsize=8)
    expert = [d for d in domains if d["kind"] == "expert"]
    xd = np.arange(len(expert))
    iqms = [d["iqm"] for d in expert]
    errors = np.array(
        [[d["iqm"] - d["iqm_ci"][0] for d in expert], [d["iqm_ci"][1] - d["iqm"] for d in expert]]
    )
    axes[1].bar(xd, iqms, 0.6, yerr=errors if expert else None, capsize=4)
    axes[1].set_xticks(xd, [d["domain"] for d in expert])
    axes[1].axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[1].axhline(0.0, color="black", lw=0.8)
    axes[1].set(title="IQM per domain (95 % CI)")
    write_atomic(path, _figure_bytes(fig))
    plt.close(fig)
