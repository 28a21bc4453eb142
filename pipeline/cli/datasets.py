"""CLI subcommands that build and check datasets: tasks, rollout, validate, demo, submit."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.cli.common import console
from pipeline.cli.options import add_config, config_from
from pipeline.configs.datasets import DemoConfig, RolloutConfig, SubmitConfig, TasksConfig, ValidateConfig
from pipeline.runtime.tables import narrow_table


# --- tasks -------------------------------------------------------------------------------------
def _add_tasks(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "tasks", TasksConfig, _cmd_tasks)


def _cmd_tasks(args: argparse.Namespace) -> int:
    from pipeline.tasks.registry import all_tasks, suite_tasks

    config = config_from(TasksConfig, args)
    specs = suite_tasks(config.suite) if config.suite else list(all_tasks().values())
    if config.json:
        rows = [
            {
                "config": s.config,
                "suite": s.suite,
                "env_id": s.env_id,
                "make_kwargs": s.make_kwargs,
                "observation": list(s.observation.shape),
                "action": s.action.n or list(s.action.shape),
                "expert_score": s.scores.expert_mean,
                "random_score": s.scores.random_mean,
                "human_score": s.scores.human_mean,
            }
            for s in specs
        ]
        print(json.dumps(rows, indent=1))
        return 0
    console_out = Console()
    table, note = _tasks_table(specs, console_out.width)
    console_out.print(table)
    console_out.print(note, markup=False, highlight=False)
    return 0


_KINDS = {"image": "img", "discrete": "int", "continuous": "f32"}


def _score(value: float) -> str:
    """A reference return at the precision its scale needs (BabyAI's 0.93, Atari's 16,912)."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def _tasks_table(specs: list, width: int) -> tuple[Table, str]:
    """Fits `width` columns: names never cut, spaces written short (`int 148+text`, `img 84x84x4`,
    `f32 39`; actions `disc 7`, `box 4`), and the env ids only where they fit whole (`--json` has
    every field in full); with the note that goes below it."""
    rows = []
    for s in specs:
        obs = (
            f"{_KINDS.get(s.observation.type, s.observation.type)} {'x'.join(map(str, s.observation.shape))}"
        )
        if s.observation.text:
            obs += "+text"
        shape = "x".join(map(str, s.action.shape))
        action = f"disc {s.action.n}" if s.action.type == "discrete" else f"box {shape}"
        expert, random = _score(s.scores.expert_mean), _score(s.scores.random_mean)
        rows.append((s.config, s.env_id, obs, action, expert, random))
    headers = ("config", "env id", "obs", "action", "expert", "random")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    keep = [i for i in range(len(headers)) if i != 1 or sum(widths) + 2 * (len(headers) - 1) <= width]
    table = narrow_table(f"{len(specs)} tasks")
    for i in keep:
        table.add_column(headers[i], no_wrap=True, justify="right" if i >= 4 else "left")
    for row in rows:
        table.add_row(*(row[i] for i in keep))
    return table, "expert, random: JAT's mean returns" + ("" if 1 in keep else "; env ids: --json")


# --- rollout -----------------------------------------------------------------------------------
def _add_rollout(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "rollout", RolloutConfig, _cmd_rollout)


def _cmd_rollout(args: argparse.Namespace) -> int:
    from pipeline.rollout.run import rollout

    config = config_from(RolloutConfig, args)
    summary = rollout(config)
    rate = summary.total_steps / max(summary.seconds, 1e-9)
    table = narrow_table(f"rollout → {summary.out}")
    table.add_column("config", no_wrap=True)
    for column in ("train episodes", "test episodes", "steps", "dropped"):
        table.add_column(column, justify="right")
    for name, row in summary.configs.items():
        table.add_row(name, *(f"{row[k]:,}" for k in ("train_episodes", "test_episodes", "steps", "dropped")))
    out = Console()
    out.print(table)
    # the clock runs from the call: Ray's start-up and the workers' imports are in it
    out.print(
        f"{summary.total_steps:,} steps in {summary.seconds:.1f} s: {rate:,.0f} steps/s, start-up included",
        highlight=False,
    )
    return 0


# --- validate ----------------------------------------------------------------------------------
def _add_validate(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "validate", ValidateConfig, _cmd_validate)


def _cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.checks.validate import validate

    config = config_from(ValidateConfig, args)
    report = validate(config)
    out = Console(soft_wrap=True)
    for c in report.configs:
        status = "[green]ok[/]" if c.ok else f"[red]FAILED ({len(c.errors)})[/]"
        out.print(
            f"{c.config:<34} {status}  train {c.episodes['train']:>6} / test {c.episodes['test']:>5} "
            f"episodes, {c.steps:>9} steps, {c.shards} shards"
        )
        for error in c.errors:
            out.print(f"    {error}", markup=False)
    failed = [c.config for c in report.configs if not c.ok]
    if report.dataset_errors:
        out.print(f"{'data/':<34} [red]FAILED ({len(report.dataset_errors)})[/]  files of no config")
        for error in report.dataset_errors:
            out.print(f"    {error}", markup=False)
    out.print(
        f"{len(report.configs) - len(failed)}/{len(report.configs)} configs valid"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + ("; stray files under data/" if report.dataset_errors else "")
    )
    if report.fix:
        out.print(f"fix: {report.fix}", markup=False, highlight=False)
    return 0 if report.ok else 1


# --- demo --------------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "demo", DemoConfig, _cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.cli.demo import demo

    return demo(config_from(DemoConfig, args))


# --- submit ------------------------------------------------------------------------------------
def _add_submit(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "submit", SubmitConfig, _cmd_submit)


def _cmd_submit(args: argparse.Namespace) -> int:
    from pipeline.runtime.submit import submit

    config = config_from(SubmitConfig, args)
    args.parse_command(list(config.command))  # a typo fails here, not on the cluster
    result = submit(config)
    if result.status in ("SUCCEEDED", "PENDING", "RUNNING"):
        console.print(f"job {result.job_id}: {result.status}")
        return 0
    # The stage's own code when it ran (2: bad input it named in its last line), else 1.
    console.print(f"[red]error:[/] {escape(result.failure_line())}", highlight=False)
    return result.exit_code if result.exit_code else 1
