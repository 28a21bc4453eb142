"""CLI subcommands of the JAT model: train-model, evaluate."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from pipeline.cli.common import csv_list, fmt_number
from pipeline.errors import PipelineError


# --- train-model / evaluate --------------------------------------------------------------------
def _configs_and_weights(items: list[str]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """`babyai-go-to:2,metaworld-reach` -> configs and (if any weight is given) one weight each."""
    configs, weights = [], []
    for item in items:
        name, _, weight = item.partition(":")
        try:
            weights.append(float(weight) if weight else 1.0)
        except ValueError as exc:
            raise PipelineError(
                f"bad sampling weight in {item!r}: write CONFIG:WEIGHT, e.g. babyai-go-to:2"
            ) from exc
        configs.append(name)
    return tuple(configs), tuple(weights) if any(":" in i for i in items) else ()


def _add_train_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-model",
        help="train the thin JAT model on a JAT-format dataset",
        description="Train a JAT model (GPT-Neo backbone) on configs of a dataset folder or Hub repo.",
    )
    p.add_argument("--data", required=True, help="dataset folder, S3 URI or Hub repo id")
    p.add_argument(
        "--configs",
        type=csv_list,
        default=[],
        help="comma-separated configs, each optionally CONFIG:WEIGHT (default: all, equal weights)",
    )
    p.add_argument(
        "--size", default="tiny", choices=["tiny", "small", "jat"], help="model size (default tiny)"
    )
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps in total (default 1000)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per optimizer step")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0.01)")
    p.add_argument("--grad-clip", type=float, help="gradient-norm clip (default 1.0)")
    p.add_argument("--context", type=int, default=256, help="context in steps, non-Atari (JAT: 256)")
    p.add_argument("--atari-context", type=int, default=32, help="context in steps, Atari (JAT: 32)")
    p.add_argument("--out", default="outputs/model", help="model folder (default outputs/model)")
    p.add_argument("--checkpoint-every", type=int, default=250, help="steps between checkpoints")
    p.add_argument("--eval-batches", type=int, default=2, help="test-split batches per task at checkpoints")
    p.add_argument("--max-minutes", type=float, help="stop (and save) after this much wall time")
    p.add_argument("--no-rewards", action="store_true", help="do not feed previous rewards (JAT does)")
    p.add_argument("--no-loss-weights", action="store_true", help="drop JAT's per-task loss multipliers")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--seed", type=int, default=0, help="data sampling and initialisation seed")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="replace the model in OUT")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(handler=_cmd_train_model)


def _cmd_train_model(args: argparse.Namespace) -> int:
    import datasets
    from transformers.utils import logging as hf_logging

    from pipeline.model.train import TrainModelConfig, train_model

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    configs, weights = _configs_and_weights(args.configs)
    result = train_model(
        TrainModelConfig(
            data=args.data,
            configs=configs,
            weights=weights,
            size=args.size,
            steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            **({"weight_decay": args.weight_decay} if args.weight_decay is not None else {}),
            **({"grad_clip": args.grad_clip} if args.grad_clip is not None else {}),
            context_steps=args.context,
            atari_context_steps=args.atari_context,
            out=args.out,
            checkpoint_every=args.checkpoint_every,
            eval_batches=args.eval_batches,
            max_minutes=args.max_minutes,
            use_rewards=not args.no_rewards,
            jat_loss_weights=not args.no_loss_weights,
            threads=args.threads,
            seed=args.seed,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    )
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
    p = sub.add_parser(
        "evaluate",
        help="score a trained model in the real environments",
        description="Run episodes with the model (KV-cached decoding); report raw, normalised, IQM scores.",
    )
    p.add_argument("--model", required=True, help="model folder from train-model")
    p.add_argument("--tasks", type=csv_list, required=True, help="comma-separated task configs and/or suites")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task (default 10)")
    p.add_argument("--seed", type=int, default=0, help="episode seeds and action sampling")
    p.add_argument("--greedy", action="store_true", help="argmax actions instead of sampling (JAT samples)")
    p.add_argument("--max-episode-steps", type=int, help="extra cap on episode length (partial returns)")
    p.add_argument("--no-baseline", action="store_true", help="skip the measured random-policy baseline")
    p.add_argument("--out", help="results folder (default MODEL/eval)")
    p.add_argument("--bootstrap-reps", type=int, default=2000, help="resamples per interval (default 2000)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest for acting)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(handler=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    from pipeline.model.evaluate import EvaluateConfig, evaluate

    hf_logging.disable_progress_bar()
    result = evaluate(
        EvaluateConfig(
            model=args.model,
            tasks=tuple(args.tasks),
            episodes=args.episodes,
            seed=args.seed,
            greedy=args.greedy,
            max_episode_steps=args.max_episode_steps,
            random_baseline=not args.no_baseline,
            out=args.out,
            bootstrap_reps=args.bootstrap_reps,
            threads=args.threads,
            progress=not args.no_progress,
        )
    )
    out = Console(soft_wrap=True)
    table = Table(title=f"evaluate {args.model} ({args.episodes} episodes per task)")
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
