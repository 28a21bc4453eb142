"""CLI subcommands that build and check datasets: tasks, rollout, validate, demo, submit."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.cli.common import add_shared_fs, console, csv_list
from pipeline.errors import PipelineError
from pipeline.executor import PLACEMENT_TIMEOUT_S


# --- tasks -------------------------------------------------------------------------------------
def _add_tasks(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tasks", help="list the registered JAT tasks", description="List the 157 JAT tasks.")
    p.add_argument("--suite", choices=["atari", "babyai", "metaworld", "mujoco"], help="only this suite")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_tasks)


def _cmd_tasks(args: argparse.Namespace) -> int:
    from pipeline.registry import all_tasks, suite_tasks

    specs = suite_tasks(args.suite) if args.suite else list(all_tasks().values())
    if args.json:
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
    table = Table(title=f"{len(specs)} JAT tasks")
    for column in ("config", "env id", "observation", "action", "expert", "random"):
        table.add_column(column)
    for s in specs:
        action = f"discrete({s.action.n})" if s.action.type == "discrete" else f"box{list(s.action.shape)}"
        table.add_row(
            s.config,
            s.env_id,
            f"{s.observation.type}{list(s.observation.shape)}",
            action,
            f"{s.scores.expert_mean:.1f}",
            f"{s.scores.random_mean:.1f}",
        )
    Console().print(table)
    return 0


# --- rollout -----------------------------------------------------------------------------------
def _add_rollout(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rollout",
        help="record episodes into a JAT-format dataset",
        description="Record episodes of a suite's tasks with Ray workers into Parquet shards.",
    )
    p.add_argument("--suite", help="atari | babyai | metaworld | mujoco")
    p.add_argument("--tasks", type=csv_list, help="comma-separated task names (default: the whole suite)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--episodes", type=int, help="episodes per task (per snapshot with --learning-history)"
    )
    budget.add_argument("--steps", type=int, help="steps per task (whole episodes)")
    p.add_argument("--out", required=True, help="output folder or URI (s3://bucket/prefix)")
    p.add_argument("--workers", type=int, default=1, help="Ray actors (0: in this process)")
    p.add_argument("--policy", choices=["expert", "scripted", "random"], help="default: the suite's")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode plan (same seed, same episodes)")
    p.add_argument("--test-fraction", type=float, help="default: JAT's per suite")
    p.add_argument("--max-shard-mb", type=int, default=256, help="size cap per shard (MB)")
    p.add_argument("--episodes-per-shard", type=int, help="default per suite")
    p.add_argument(
        "--envs-per-worker",
        type=int,
        help="envs a worker steps in lockstep for one expert forward pass (default per suite)",
    )
    p.add_argument("--max-episode-steps", type=int, help="horizon override (Meta-World default 100)")
    p.add_argument("--overwrite", action="store_true", help="replace these configs if present")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run of the same command")
    p.add_argument(
        "--min-return-fraction",
        type=float,
        help="keep episodes scoring at least this (expert-normalised, JAT reference); config <task>-topNN",
    )
    p.add_argument(
        "--learning-history",
        action="store_true",
        help="record --episodes (default 10) from each snapshot of the trained expert in training order "
        "(Algorithm Distillation); config <task>-history",
    )
    p.add_argument(
        "--returns-to-go", action="store_true", help="also write meta/<config>/returns_to_go.parquet"
    )
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    p.add_argument("--experts-dir", help="experts trained by train-experts")
    p.add_argument("--allow-weak", action="store_true", help="record experts the quality gate rejected")
    p.add_argument(
        "--placement-timeout",
        type=float,
        default=PLACEMENT_TIMEOUT_S,
        metavar="S",
        help="stop with one line when queued work has had no Ray worker placed for S seconds "
        f"(a lost node, a full cluster); default {PLACEMENT_TIMEOUT_S:.0f}",
    )
    add_shared_fs(p, "--out/--experts-dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(handler=_cmd_rollout)


def _cmd_rollout(args: argparse.Namespace) -> int:
    from pipeline.rollout import RolloutConfig, run_rollout

    if args.max_shard_mb < 1:
        raise PipelineError(f"--max-shard-mb must be at least 1, got {args.max_shard_mb}")
    config = RolloutConfig(
        out=args.out,
        suite=args.suite,
        tasks=tuple(args.tasks or ()),
        episodes=args.episodes,
        steps=args.steps,
        workers=args.workers,
        policy=args.policy,
        seed=args.seed,
        test_fraction=args.test_fraction,
        max_shard_bytes=args.max_shard_mb * 1024 * 1024,
        episodes_per_shard=args.episodes_per_shard,
        envs_per_worker=args.envs_per_worker,
        max_episode_steps=args.max_episode_steps,
        overwrite=args.overwrite,
        resume=args.resume,
        min_return_fraction=args.min_return_fraction,
        returns_to_go=args.returns_to_go,
        learning_history=args.learning_history,
        address=args.address,
        experts_dir=args.experts_dir,
        allow_weak=args.allow_weak,
        placement_timeout_s=args.placement_timeout,
        shared_fs=args.shared_fs,
        progress=not args.no_progress,
    )
    summary = run_rollout(config)
    table = Table(
        title=f"rollout → {summary.out} ({summary.seconds:.1f} s, "
        f"{summary.total_steps / max(summary.seconds, 1e-9):.0f} steps/s)"
    )
    for column in ("config", "train episodes", "test episodes", "steps", "dropped"):
        table.add_column(column)
    for name, row in summary.configs.items():
        table.add_row(name, *(str(row[k]) for k in ("train_episodes", "test_episodes", "steps", "dropped")))
    Console().print(table)
    return 0


# --- validate ----------------------------------------------------------------------------------
def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="check a dataset against the schema, registry and manifests",
        description="Validate every shard; exit 1 naming the shard and row on any failure.",
    )
    p.add_argument("dir", help="dataset folder or URI")
    p.add_argument("--configs", type=csv_list, help="comma-separated configs (default: all)")
    p.set_defaults(handler=_cmd_validate)


def _cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.validate import validate

    report = validate(args.dir, args.configs)
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
    return 0 if report.ok else 1


# --- demo --------------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="small end-to-end run on the embedded defaults",
        description="Roll out one task per suite, validate, load back with `datasets`.",
    )
    p.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task")
    p.add_argument("--workers", type=int, default=2, help="Ray actors (0: in this process)")
    p.add_argument("--overwrite", action="store_true", help="replace the demo folder if present")
    p.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import DemoConfig, run_demo

    return run_demo(
        DemoConfig(out=args.out, episodes=args.episodes, workers=args.workers, overwrite=args.overwrite)
    )


# --- submit ------------------------------------------------------------------------------------
def _add_submit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="run a stage as a Ray cluster batch job",
        description="Submit `pipeline COMMAND ...` to a Ray cluster's job server, e.g. "
        "`pipeline submit --address http://head:8265 -- rollout --suite atari --out s3://b/jat`.",
    )
    p.add_argument(
        "--address", help="Ray dashboard address (default: RAY_ADDRESS, else http://127.0.0.1:8265)"
    )
    p.add_argument(
        "--env", type=csv_list, default=[], help="comma-separated env var names to forward (AWS_*, HF_TOKEN)"
    )
    p.add_argument("--no-wait", action="store_true", help="return after submitting")
    p.add_argument("--job-id", help="submission id (default: chosen by Ray)")
    p.add_argument(
        "stage", nargs=argparse.REMAINDER, help="-- then the pipeline subcommand and its arguments"
    )
    p.set_defaults(handler=_cmd_submit)


def _cmd_submit(args: argparse.Namespace) -> int:
    from pipeline.submit import SubmitConfig, submit

    command = tuple(args.stage[1:] if args.stage[:1] == ["--"] else args.stage)
    args.parse_command(list(command))  # a typo fails here, not on the cluster
    result = submit(
        SubmitConfig(
            command=command,
            address=args.address,
            env=tuple(args.env),
            wait=not args.no_wait,
            job_id=args.job_id,
        )
    )
    if result.status in ("SUCCEEDED", "PENDING", "RUNNING"):
        console.print(f"job {result.job_id}: {result.status}")
        return 0
    # The stage's own code when it ran (2: bad input it named in its last line), else 1.
    console.print(f"[red]error:[/] {escape(result.failure_line())}", highlight=False)
    return result.exit_code if result.exit_code else 1
