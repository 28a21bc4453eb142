"""CLI subcommands that look into a dataset: info (tables or JSON, 80 columns) and view (a local page)."""

from __future__ import annotations

import argparse
import io
import json
import sys

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.cli.common import fmt_number
from pipeline.cli.options import add_config, config_from
from pipeline.configs.browse import InfoConfig, ViewConfig

WIDTH = 80
"""`pipeline info` fits a classic terminal, and logs."""


def human_bytes(n: int) -> str:
    """1234567 -> "1.2 MB" (decimal units, as the Hub shows sizes)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _score(row) -> str:
    return fmt_number(row.normalised, 2)


def _plan_text(plan: dict) -> str:
    budget = plan.get("budget") or {}
    spent = ", ".join(f"{v:,} {k}" for k, v in budget.items()) or "registry's"
    horizon = plan.get("max_episode_steps")
    return (
        f"seed {plan.get('seed')}, budget {spent}, test fraction {plan.get('test_fraction')}, "
        + (f"horizon {horizon}" if horizon else "the task's horizon")
        + f", policy {plan.get('policy')}"
    )


# --- info --------------------------------------------------------------------------------------
def _add_info(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "info", InfoConfig, _cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from pipeline.browse.info import dataset_summary

    request = config_from(InfoConfig, args)
    summary = dataset_summary(request)
    if request.json:
        sys.stdout.write(json.dumps(summary.to_dict(), indent=1) + "\n")
        return 0
    buffer = io.StringIO()
    out = Console(file=buffer, width=WIDTH, soft_wrap=False, highlight=False, color_system=None)
    if request.config is None:
        _print_overview(out, summary)
    else:
        _print_config(out, summary)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines()))
    return 0


def _print_overview(out: Console, summary) -> None:
    configs = summary.configs
    episodes = sum(sum(c.episodes.values()) for c in configs)
    steps = sum(sum(c.steps.values()) for c in configs)
    size = sum(c.num_bytes for c in configs)
    where = f"{summary.repo_id}@{summary.revision[:8]}" if summary.repo_id else summary.source
    out.print(
        f"{escape(where)}: {len(configs)} configs, {episodes:,} episodes, {steps:,} steps, "
        f"{human_bytes(size)}" + (f" (format v{summary.format_version})" if summary.format_version else "")
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("config", no_wrap=True, overflow="ellipsis", max_width=32)
    for column in ("train/test", "steps", "size", "return", "score"):
        table.add_column(column, justify="right", no_wrap=True)
    for c in configs:
        table.add_row(
            c.config,
            f"{c.episodes['train']:,}/{c.episodes['test']:,}",
            f"{sum(c.steps.values()):,}",
            human_bytes(c.num_bytes),
            fmt_number(c.quality.mean_return),
            _score(c.quality),
        )
    out.print(table)
    policies = Table(box=None, show_header=False, pad_edge=False, title="policies", title_justify="left")
    policies.add_column("config", no_wrap=True, overflow="ellipsis", max_width=32)
    policies.add_column("policy", overflow="fold")
    for c in configs:
        policies.add_row(c.config, escape(c.quality.policy))
    out.print(policies)
    out.print("score: (mean return - random) / (expert - random), JAT's reference returns")


def _print_config(out: Console, summary) -> None:
    (c,) = summary.configs
    q = summary.configs[0].quality
    facts = Table(box=None, show_header=False, pad_edge=False)
    facts.add_column("key", no_wrap=True, style="bold")
    facts.add_column("value", overflow="fold")
    success = "" if q.success_rate is None else f", success {100 * q.success_rate:.0f}%"
    ci = f" (95% CI {q.ci[0]:.2f} to {q.ci[1]:.2f})" if q.ci else ""
    versions = ", ".join(f"{k} {v}" for k, v in c.versions.items())
    rows = [
        ("env", f"{c.env_id} ({c.suite})"),
        ("episodes", f"{c.episodes['train']:,} train / {c.episodes['test']:,} test "
         f"({c.planned:,} planned, {c.dropped:,} dropped)"),
        ("steps", f"{c.steps['train']:,} train / {c.steps['test']:,} test"),
        ("data", f"{c.shards} shards, {human_bytes(c.num_bytes)}"),
        ("policy", q.policy),
        ("plan", _plan_text(c.plan)),
        ("return", f"mean {fmt_number(q.mean_return)}{success}"),
        ("score", f"{_score(q)}{ci}, expert {q.expert_return:g}, random {q.random_return:g}"),
        ("recorded", f"{c.created}; {versions}"),
    ]  # fmt: skip
    for key, value in rows:
        facts.add_row(key, escape(value))
    where = f"{summary.repo_id}@{summary.revision[:8]}" if summary.repo_id else summary.source
    out.print(f"{escape(c.config)} in {escape(where)}")
    out.print(facts)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("episode", "split", "seed", "length", "return", "success"):
        table.add_column(column, justify="left" if column == "split" else "right", no_wrap=True)
    for e in summary.episodes:
        table.add_row(
            str(e.episode_id),
            e.split,
            str(e.seed),
            f"{e.length:,}",
            f"{e.episode_return:.4g}",
            "-" if e.success is None else ("yes" if e.success else "no"),
        )
    out.print(table)
    shown, total = len(summary.episodes), summary.total_episodes
    if shown < total:
        out.print(f"the first {shown} of {total:,} episodes by id (--episodes N for more, --json for all)")


# --- view --------------------------------------------------------------------------------------
def _add_view(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "view", ViewConfig, _cmd_view)


def _cmd_view(args: argparse.Namespace) -> int:
    from pipeline.browse.viewer import Viewer

    viewer = Viewer(config_from(ViewConfig, args))  # checks dataset, config, episode and port first
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"serving {escape(viewer.config.name)} at {viewer.url} (Ctrl-C stops)")
    try:
        viewer.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
    out.print("stopped")
    return 0
