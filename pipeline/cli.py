"""The `pipeline` command: one subcommand per stage. The only module that parses arguments.

Each subcommand builds the stage's typed config and calls the stage's function; user errors
(`PipelineError`) print as one line naming the cause and the fix, with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from pipeline.errors import PipelineError

console = Console(stderr=True, soft_wrap=True)
Handler = Callable[[argparse.Namespace], int]


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


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
    p.add_argument("--tasks", type=_csv, help="comma-separated task names (default: the whole suite)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--episodes", type=int, help="episodes per task")
    budget.add_argument("--steps", type=int, help="steps per task (whole episodes)")
    p.add_argument("--out", required=True, help="output folder or URI (s3://bucket/prefix)")
    p.add_argument("--workers", type=int, default=1, help="Ray actors (0: in this process)")
    p.add_argument("--policy", choices=["expert", "scripted", "random"], help="default: the suite's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, help="default: JAT's per suite")
    p.add_argument("--max-shard-mb", type=int, default=256, help="size cap per shard (MB)")
    p.add_argument("--episodes-per-shard", type=int, help="default per suite")
    p.add_argument("--max-episode-steps", type=int, help="horizon override (Meta-World default 100)")
    p.add_argument("--overwrite", action="store_true", help="replace these configs if present")
    p.add_argument("--resume", action="store_true", help="finish an interrupted run of the same command")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    p.add_argument("--experts-dir", help="experts trained by train-experts")
    p.add_argument("--no-progress", action="store_true")
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
        max_episode_steps=args.max_episode_steps,
        overwrite=args.overwrite,
        resume=args.resume,
        address=args.address,
        experts_dir=args.experts_dir,
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
    p.add_argument("--configs", type=_csv, help="comma-separated configs (default: all)")
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
    out.print(
        f"{len(report.configs) - len(failed)}/{len(report.configs)} configs valid"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return 1 if failed else 0


# --- demo --------------------------------------------------------------------------------------
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="small end-to-end run on the embedded defaults",
        description="Roll out one task per suite, validate, load back with `datasets`.",
    )
    p.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import DemoConfig, run_demo

    return run_demo(
        DemoConfig(out=args.out, episodes=args.episodes, workers=args.workers, overwrite=args.overwrite)
    )


# --- publish -----------------------------------------------------------------------------------
def _add_publish(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish",
        help="push validated configs to a Hub dataset repo (or a folder) with a dataset card",
        description="Validate, then upload configs in bounded commits with a generated card; re-running "
        "resumes and uploads only what is missing. Hub endpoint: HF_ENDPOINT; token: HF_TOKEN "
        "or `hf auth login`. Without --repo-id, writes the same layout to --to-folder.",
    )
    p.add_argument("dir", help="dataset folder or URI written by `pipeline rollout`")
    p.add_argument("--repo-id", help="Hub dataset repo ORG/NAME")
    p.add_argument(
        "--configs", type=_csv, help="comma-separated configs (default: all); others on the target are kept"
    )
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to commit to (created from main if missing)")
    p.add_argument(
        "--to-folder", help="write the publishable layout here (default without --repo-id: DIR-publish)"
    )
    p.add_argument("--max-commit-files", type=int, default=100, help="files per commit (default 100)")
    p.add_argument(
        "--max-commit-mb", type=int, default=1024, help="MB of new files per commit (default 1024)"
    )
    p.add_argument("--no-xet", action="store_true", help="plain LFS upload (servers without Xet storage)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_cmd_publish)


def _cmd_publish(args: argparse.Namespace) -> int:
    from pipeline.publish import PublishConfig, publish

    if args.max_commit_mb < 1:
        raise PipelineError(f"--max-commit-mb must be at least 1, got {args.max_commit_mb}")
    summary = publish(
        PublishConfig(
            data_dir=args.dir,
            repo_id=args.repo_id,
            configs=tuple(args.configs or ()),
            private=args.private,
            revision=args.revision,
            to_folder=args.to_folder,
            max_commit_files=args.max_commit_files,
            max_commit_bytes=args.max_commit_mb * 1024 * 1024,
            xet=not args.no_xet,
            progress=not args.no_progress,
        )
    )
    table = Table(title=f"publish → {summary.target} ({summary.seconds:.1f} s)")
    for column in ("configs published", "files uploaded", "MB", "MB/s", "unchanged", "deleted", "commits"):
        table.add_column(column)
    table.add_row(
        ", ".join(summary.configs),
        str(summary.uploaded_files),
        f"{summary.uploaded_bytes / 1e6:.1f}",
        f"{summary.throughput_mb_s:.1f}",
        str(summary.unchanged_files),
        str(summary.deleted_files),
        str(summary.commits),
    )
    out = Console(soft_wrap=True)
    out.print(table)
    out.print(f"the card lists {len(summary.card_configs)} config(s): {', '.join(summary.card_configs)}")
    return 0


# --- main --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline", description="jat-pipeline: build, validate and publish JAT-format datasets."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_tasks, _add_rollout, _add_validate, _add_demo, _add_publish):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    try:
        return args.handler(args)
    except PipelineError as exc:
        console.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted: nothing partial was committed; re-run with --overwrite to start again")
        return 130


if __name__ == "__main__":
    sys.exit(main())
