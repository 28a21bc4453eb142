"""CLI subcommands of the experts: train-experts, evaluate-experts, import-experts."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from pipeline.cli.common import console, fmt_number
from pipeline.cli.options import add_config, config_from
from pipeline.configs.experts import EvaluateExpertsConfig, ImportExpertsConfig, TrainExpertsConfig
from pipeline.runtime.tables import narrow_table


# --- train-experts / evaluate-experts ----------------------------------------------------------
def _add_train_experts(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "train-experts", TrainExpertsConfig, _cmd_train_experts)


def _expert_table(title: str, results: list, width: int = 80) -> Table:
    """One row per expert that fits `width` columns: names are never cut; time, then backend, are
    left out when they would not fit (summary-<suite>.json has them), a column nobody has a value
    for too, and failures and budget estimates follow as notes (`_notes`)."""
    from experts.base import ExpertStatus

    has_success = any((r.evaluation or {}).get("success_rate") is not None for r in results)
    columns = ["config", "backend", "status", "steps", "time", "return", "success", "norm."]
    rows = []
    for r in results:
        e = r.evaluation or {}
        chosen = r.chosen
        rows.append(
            {
                "config": r.config,
                "backend": r.backend if not chosen or chosen == r.backend else f"{chosen} (over {r.backend})",
                "status": str(r.status),
                "steps": f"{r.steps:,}",
                "time": f"{r.wall_time_s / 60:.1f} min",
                "return": f"{e['mean_return']:.1f}±{e['std_return']:.1f}" if e else "-",
                "success": fmt_number(e.get("success_rate")),
                "norm.": fmt_number(e.get("normalised"), 3),
            }
        )
    if not has_success:
        columns.remove("success")
    for optional in ("time", "backend"):
        widths = [max(len(c), *(len(row[c]) for row in rows)) if rows else len(c) for c in columns]
        if sum(widths) + 2 * (len(columns) - 1) <= width:
            break
        columns.remove(optional)
    table = narrow_table(title)
    for column in columns:
        right = column in ("steps", "time", "return", "success", "norm.")
        table.add_column(column, no_wrap=True, justify="right" if right else "left")
    colours = {ExpertStatus.ACCEPTED: "green", ExpertStatus.REJECTED: "yellow", ExpertStatus.FAILED: "red"}
    for r, row in zip(results, rows, strict=True):
        if r.status in colours:
            row["status"] = f"[{colours[r.status]}]{r.status}[/]"
        table.add_row(*(row[c] for c in columns))
    return table


def _notes(results: list) -> list[str]:
    """What does not fit a table cell: why an expert failed, the budget one below JAT's level needs."""
    from experts.base import ExpertStatus
    from experts.budget import TARGET

    notes = [f"{r.config} failed: {r.error}" for r in results if r.status == ExpertStatus.FAILED]
    return notes + [f"{r.config}, budget to {TARGET}: {r.budget}" for r in results if r.budget]


def _print(title: str, results: list) -> None:
    out = Console()
    out.print(_expert_table(title, results, out.width))
    for note in _notes(results):
        out.print(note, markup=False, highlight=False)


def _cmd_train_experts(args: argparse.Namespace) -> int:
    from pipeline.expert_stages.train_experts import train_experts

    summary = train_experts(config_from(TrainExpertsConfig, args))
    _print(f"experts in {summary.out}", summary.results)
    for files in summary.reports.values():
        console.print("summary: " + ", ".join(files))
    return 1 if summary.failed else 0


def _add_evaluate_experts(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "evaluate-experts", EvaluateExpertsConfig, _cmd_evaluate_experts)


def _cmd_evaluate_experts(args: argparse.Namespace) -> int:
    from pipeline.expert_stages.evaluate_experts import evaluate_experts

    summary = evaluate_experts(config_from(EvaluateExpertsConfig, args))
    _print(f"experts in {summary.experts_dir}", summary.results)
    for files in summary.reports.values():
        console.print("summary: " + ", ".join(files))
    return 1 if summary.failed else 0


def _add_import_experts(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "import-experts", ImportExpertsConfig, _cmd_import_experts)


def _cmd_import_experts(args: argparse.Namespace) -> int:
    from pipeline.expert_stages.import_experts import import_experts

    summary = import_experts(config_from(ImportExpertsConfig, args))
    _print(f"experts in {summary.out}", summary.results)
    return 1 if summary.failed else 0
