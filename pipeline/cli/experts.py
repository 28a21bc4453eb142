"""CLI subcommands of the experts: train-experts, evaluate-experts, import-experts."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from pipeline.cli.common import console, fmt_number
from pipeline.cli.options import add_config, config_from
from pipeline.configs.experts import EvaluateExpertsConfig, ImportExpertsConfig, TrainExpertsConfig


# --- train-experts / evaluate-experts ----------------------------------------------------------
def _add_train_experts(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "train-experts", TrainExpertsConfig, _cmd_train_experts)


def _expert_table(title: str, results: list) -> Table:
    table = Table(title=title)
    from experts.base import ExpertStatus
    from experts.budget import TARGET

    columns = ("config", "backend", "status", "steps", "time", "return", "success", "normalised")
    for column in (*columns, f"budget to {TARGET}"):
        table.add_column(column)
    colours = {ExpertStatus.ACCEPTED: "green", ExpertStatus.REJECTED: "yellow"}
    for r in results:
        e = r.evaluation or {}
        ret = f"{e['mean_return']:.2f} ± {e['std_return']:.2f}" if e else "-"
        status = f"[{colours[r.status]}]{r.status}[/]" if r.status in colours else str(r.status)
        if r.status == ExpertStatus.FAILED:
            status = f"[red]failed[/]: {r.error}"
        chosen = r.chosen
        table.add_row(
            r.config,
            r.backend if not chosen or chosen == r.backend else f"{chosen} (kept over {r.backend})",
            status,
            f"{r.steps:,}",
            f"{r.wall_time_s / 60:.1f} min",
            ret,
            fmt_number(e.get("success_rate")),
            fmt_number(e.get("normalised"), 3),
            r.budget or "-",
        )
    return table


def _cmd_train_experts(args: argparse.Namespace) -> int:
    from pipeline.train_experts import train_experts

    summary = train_experts(config_from(TrainExpertsConfig, args))
    Console(soft_wrap=True).print(_expert_table(f"experts in {summary.out}", summary.results))
    for files in summary.reports.values():
        console.print("summary: " + ", ".join(files))
    return 1 if summary.failed else 0


def _add_evaluate_experts(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "evaluate-experts", EvaluateExpertsConfig, _cmd_evaluate_experts)


def _cmd_evaluate_experts(args: argparse.Namespace) -> int:
    from pipeline.evaluate_experts import evaluate_experts

    summary = evaluate_experts(config_from(EvaluateExpertsConfig, args))
    Console(soft_wrap=True).print(_expert_table(f"experts in {summary.experts_dir}", summary.results))
    for files in summary.reports.values():
        console.print("summary: " + ", ".join(files))
    return 1 if summary.failed else 0


def _add_import_experts(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "import-experts", ImportExpertsConfig, _cmd_import_experts)


def _cmd_import_experts(args: argparse.Namespace) -> int:
    from pipeline.import_experts import import_experts

    summary = import_experts(config_from(ImportExpertsConfig, args))
    Console(soft_wrap=True).print(_expert_table(f"experts in {summary.out}", summary.results))
    return 1 if summary.failed else 0
