"""CLI subcommands of the JAT model: train-model, evaluate, convert-jat."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from pipeline.cli.common import fmt_number
from pipeline.cli.options import add_config, config_from
from pipeline.configs.model import ConvertJatConfig, EvaluateConfig, TrainModelConfig


# --- train-model / evaluate --------------------------------------------------------------------
def _add_train_model(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "train-model", TrainModelConfig, _cmd_train_model)


def _cmd_train_model(args: argparse.Namespace) -> int:
    import datasets
    from transformers.utils import logging as hf_logging

    from pipeline.model.train import train_model

    config = config_from(TrainModelConfig, args)  # checked before the heavy imports' side effects
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    result = train_model(config)
    table = Table(
        title=f"train-model → {result.out}: step {result.step}, {result.parameters / 1e6:.2f}M parameters, "
        f"{result.tokens_per_second:.0f} tokens/s"
        + (" (stopped by --max-minutes)" if result.stopped_early else "")
    )
    for column in ("config", "train loss (last 50 batches)", "test loss"):
        table.add_column(column)
    for name, loss in sorted(result.train_losses.items()):
        test = result.test_losses.get(name)
        table.add_row(name, f"{loss:.4f}", "-" if test is None else f"{test:.4f}")
    Console().print(table)
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "evaluate", EvaluateConfig, _cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from pipeline.model.evaluate import evaluate

    config = config_from(EvaluateConfig, args)
    hf_logging.disable_progress_bar()
    result = evaluate(config)
    out = Console(soft_wrap=True)
    table = Table(title=f"evaluate {config.model} ({config.episodes} episodes per task)")
    for column in (
        "config",
        "return",
        "success",
        "normalised",
        "human-norm.",
        "random: return",
        "success",
        "normalised",
    ):
        table.add_column(column)
    for row in result.rows():
        table.add_row(
            row["config"],
            f"{row['mean_return']:.2f} ± {row['std_return']:.2f}",
            fmt_number(row["success_rate"]),
            fmt_number(row["normalised_mean"]),
            fmt_number(row["human_normalised_mean"]),
            fmt_number(row.get("random_mean_return")),
            fmt_number(row.get("random_success_rate")),
            fmt_number(row.get("random_normalised_mean")),
        )
    out.print(table)
    agg = Table(title="per-domain aggregates of normalised scores (95 % stratified-bootstrap CI)")
    for column in ("domain", "normalisation", "tasks", "mean", "IQM"):
        agg.add_column(column)
    for a in result.aggregates:
        agg.add_row(
            a.domain,
            a.kind,
            str(a.tasks),
            f"{a.mean:.3f} [{a.mean_ci[0]:.3f}, {a.mean_ci[1]:.3f}]",
            f"{a.iqm:.3f} [{a.iqm_ci[0]:.3f}, {a.iqm_ci[1]:.3f}]",
        )
    out.print(agg)
    out.print(f"results: {result.out}/results.json, results.csv, scores.png")
    return 0


# --- convert-jat -------------------------------------------------------------------------------
def _add_convert_jat(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "convert-jat", ConvertJatConfig, _cmd_convert_jat)


def _cmd_convert_jat(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from pipeline.model.convert_jat import convert_jat

    config = config_from(ConvertJatConfig, args)
    hf_logging.disable_progress_bar()
    result = convert_jat(config)
    Console(soft_wrap=True).print(
        f"convert-jat → {result.out}: {result.mapped} tensors mapped, {result.dropped} dropped "
        f"(unused by RL tasks), {result.parameters / 1e6:.1f}M parameters; "
        f"score it with `pipeline evaluate --model {result.out} --tasks ...`"
    )
    return 0
