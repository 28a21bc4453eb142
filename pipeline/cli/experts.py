"""CLI subcommands of the experts: train-experts, evaluate-experts."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from experts.device import DEVICES
from pipeline.cli.common import add_shared_fs, console, csv_list, fmt_number
from pipeline.executor import PLACEMENT_TIMEOUT_S


# --- train-experts / evaluate-experts ----------------------------------------------------------
def _hyperparameter(item: str) -> tuple[str, object]:
    """`key=value` with a YAML value (numbers, lists, booleans), RL Zoo's --hyperparams style."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
    return key.strip(), yaml.safe_load(value)


def _add_train_experts(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-experts",
        help="train, evaluate and gate one expert per task on Ray",
        description="Train one expert per task (one Ray task each), evaluate it against JAT's reference "
        "and mark it accepted or rejected for `rollout --policy expert`.",
    )
    p.add_argument("--suite", help="atari | babyai | metaworld | mujoco")
    p.add_argument("--tasks", type=csv_list, help="comma-separated task names (default: the whole suite)")
    p.add_argument(
        "--backend", help="sample-factory | sb3 | babyai-bot | metaworld-scripted (default: suite)"
    )
    p.add_argument("--steps", type=int, help="env steps per expert (default: env_configs/)")
    p.add_argument("--time-limit", type=float, help="minutes of training per expert at most")
    p.add_argument("--out", required=True, help="EXPERTS_DIR: folder or URI (s3://bucket/prefix)")
    p.add_argument(
        "--history-every",
        type=int,
        help="keep a learning-history snapshot every N env steps, 0 for none "
        "(default: steps / expert.history_snapshots)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoints")
    p.add_argument("--overwrite", action="store_true", help="retrain experts that already exist")
    p.add_argument("--seed", type=int, default=0, help="training and evaluation seed")
    p.add_argument("--num-cpus", type=int, help="CPUs per training task (default: env_configs/)")
    p.add_argument(
        "--num-gpus",
        type=float,
        help="GPUs per training task asked of Ray, a fraction to share one (default: expert.num_gpus, 0)",
    )
    p.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="torch device of trained experts: auto = cuda when the task got a GPU torch can use (default)",
    )
    p.add_argument(
        "--placement-timeout",
        type=float,
        default=PLACEMENT_TIMEOUT_S,
        metavar="S",
        help="stop with one line when training tasks wait S seconds for Ray resources with none of this "
        f"run's tasks running (GPUs held by other jobs, a lost node); default {PLACEMENT_TIMEOUT_S:.0f}",
    )
    p.add_argument(
        "--set",
        type=_hyperparameter,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a backend hyperparameter (repeatable), e.g. --set learning_rate=1e-4 "
        "(the device is --device, not --set)",
    )
    p.add_argument("--eval-episodes", type=int, help="evaluation episodes per expert (default: env_configs/)")
    p.add_argument(
        "--threshold",
        type=float,
        help="minimum normalised score to accept (default 0.5); Meta-World tasks whose scripted policy "
        "reaches it keep that policy untrained",
    )
    p.add_argument(
        "--force-train",
        action="store_true",
        help="Meta-World: train even where the scripted policy passes the gate (the better of the two, "
        "scored on the same seeds, is kept)",
    )
    p.add_argument("--no-eval", action="store_true", help="skip evaluation (experts stay unevaluated)")
    p.add_argument("--in-process", action="store_true", help="train here, one task after another (no Ray)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    add_shared_fs(p, "--out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(handler=_cmd_train_experts)


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
    from pipeline.train_experts import TrainExpertsConfig, train_experts

    summary = train_experts(
        TrainExpertsConfig(
            out=args.out,
            suite=args.suite,
            tasks=tuple(args.tasks or ()),
            backend=args.backend,
            steps=args.steps,
            seed=args.seed,
            resume=args.resume,
            overwrite=args.overwrite,
            num_cpus=args.num_cpus,
            num_gpus=args.num_gpus,
            device=args.device,
            placement_timeout_s=args.placement_timeout,
            hyperparameters=dict(args.set),
            eval_episodes=args.eval_episodes,
            threshold=args.threshold,
            force_train=args.force_train,
            evaluate=not args.no_eval,
            in_process=args.in_process,
            address=args.address,
            shared_fs=args.shared_fs,
            progress=not args.no_progress,
            time_limit_min=args.time_limit,
            history_every=args.history_every,
        )
    )
    Console(soft_wrap=True).print(_expert_table(f"experts in {summary.out}", summary.results))
    for files in summary.reports.values():
        console.print("summary: " + ", ".join(files))
    return 1 if summary.failed else 0


def _add_evaluate_experts(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate-experts",
        help="re-evaluate stored experts and re-apply the quality gate",
        description="Play N episodes per stored expert on fresh seeds, score it against JAT's reference and "
        "mark it accepted or rejected; writes a summary table and learning-curve PNG per suite.",
    )
    p.add_argument("experts_dir", help="EXPERTS_DIR written by train-experts")
    p.add_argument("--suite", help="atari | babyai | metaworld | mujoco")
    p.add_argument("--tasks", type=csv_list, help="comma-separated task names (default: the whole suite)")
    p.add_argument("--episodes", type=int, help="episodes per expert (default: env_configs/)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (fresh episode seeds follow)")
    p.add_argument("--threshold", type=float, help="minimum normalised score to accept (default 0.5)")
    p.set_defaults(handler=_cmd_evaluate_experts)


def _cmd_evaluate_experts(args: argparse.Namespace) -> int:
    from pipeline.evaluate_experts import EvaluateExpertsConfig, evaluate_experts

    summary = evaluate_experts(
        EvaluateExpertsConfig(
            experts_dir=args.experts_dir,
            suite=args.suite,
            tasks=tuple(args.tasks or ()),
            episodes=args.episodes,
            seed=args.seed,
            threshold=args.threshold,
        )
    )
    Console(soft_wrap=True).print(_expert_table(f"experts in {summary.experts_dir}", summary.results))
    for files in summary.reports.values():
        console.print("summary: " + ", ".join(files))
    return 1 if summary.failed else 0
