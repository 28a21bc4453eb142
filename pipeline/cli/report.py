"""`pipeline report DATA_DIR`: each config's quality against JAT's experts, as a table, as JSON, and
as a gate (`--min-normalised X` exits 1 when a config scores below X) that dataset CI can run."""

from __future__ import annotations

import argparse
import json

from rich.console import Console

from pipeline.cli.common import fmt_number
from pipeline.cli.options import add_config, config_from
from pipeline.configs.datasets import ReportConfig
from pipeline.errors import PipelineError
from pipeline.runtime.tables import narrow_table


def _add_report(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "report", ReportConfig, _cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from pipeline.report.quality import CONFIDENCE, JAT_BAR, below, dataset_quality

    config = config_from(ReportConfig, args)
    threshold = config.min_normalised
    rows = dataset_quality(config)
    table = narrow_table(f"quality of {config.data_dir} against JAT's experts")
    table.add_column("config", no_wrap=True)
    has_success = any(r.success_rate is not None for r in rows)
    columns = ("train/test", "return", *(("success",) if has_success else ()), "norm.", "95% CI")
    for column in columns:
        table.add_column(column, justify="right")
    for r in rows:
        normalised = fmt_number(r.normalised, 3)
        table.add_row(
            r.config,
            f"{r.train_episodes}/{r.test_episodes}",
            fmt_number(r.mean_return),
            *(["-" if r.success_rate is None else f"{100 * r.success_rate:.0f}%"] if has_success else []),
            f"[red]{normalised} <[/]" if r.below_bar else normalised,
            f"{r.ci[0]:.3f} to {r.ci[1]:.3f}" if r.ci else "-",
        )
    out = Console()
    out.print(table)
    notes = [
        f"norm.: (return - random) / (JAT expert - random) over all episodes, with its 95% bootstrap CI; "
        f"'<' marks a config below JAT's {JAT_BAR:g}"
    ]
    by_policy: dict[str, list[str]] = {}
    for r in rows:
        by_policy.setdefault(r.policy, []).append(r.config)
    notes += [f"policy of {', '.join(configs)}: {policy}" for policy, configs in by_policy.items()]
    for note in notes:
        out.print(note, markup=False, highlight=False)
    if config.json:
        document = {
            "dataset": config.data_dir,
            "bar": JAT_BAR,
            "confidence": CONFIDENCE,
            "bootstrap_reps": config.bootstrap_reps,
            "seed": config.seed,
            "configs": [r.to_dict() for r in rows],
        }
        try:
            with open(config.json, "w", encoding="utf-8") as f:
                json.dump(document, f, indent=1)
                f.write("\n")
        except OSError as exc:
            raise PipelineError(
                f"cannot write --json {config.json}: {exc.strerror} (choose a writable path)"
            ) from exc
    if threshold is None:
        return 0
    failing = below(rows, threshold)
    if not failing:
        out.print(f"all {len(rows)} config(s) score at least {threshold:g}", soft_wrap=True, highlight=False)
        return 0
    listed = ", ".join(
        f"{r.config} ({'no episodes' if r.episodes == 0 else f'{r.normalised:.3f}'})" for r in failing
    )
    # one line, however many configs fail: CI logs and scripts read it as such
    out.print(
        f"{len(failing)} config(s) below --min-normalised {threshold:g}: {listed}",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    return 1
