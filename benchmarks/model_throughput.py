"""Training throughput of the thin JAT model: tokens/s per size, measured side by side.

Each repeat trains every size for the same number of optimizer steps on the same data, sizes
interleaved so that load from other processes hits them alike, through `train_model` (what
`pipeline train-model` runs): batch sampling and window decoding, forward, backward and the
optimizer step are timed; start-up, checkpoints and test losses are not. A token is one
observation or one action of a real (unpadded) step, as JAT counts its sequence positions.

    .venv/bin/python benchmarks/model_throughput.py --data outputs/demo
    .venv/bin/python benchmarks/model_throughput.py --data DIR --configs babyai-go-to --sizes tiny,small,jat
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from transformers.utils import logging as hf_logging

from pipeline.model.train import TrainModelConfig, train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder (e.g. outputs/demo)")
    parser.add_argument("--configs", default="babyai-go-to,metaworld-reach", help="comma-separated configs")
    parser.add_argument("--sizes", default="tiny,small", help="comma-separated sizes")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per measurement")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default torch's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    hf_logging.disable_progress_bar()
    sizes = [s for s in args.sizes.split(",") if s]
    configs = tuple(c for c in args.configs.split(",") if c)
    rates: dict[str, list[float]] = {s: [] for s in sizes}
    parameters: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="jat-bench-") as tmp:
        for repeat in range(args.repeats):
            for size in sizes:
                result = train_model(
                    TrainModelConfig(
                        data=args.data,
                        configs=configs,
                        size=size,
                        steps=args.steps,
                        batch_size=args.batch_size,
                        checkpoint_every=10**9,
                        eval_batches=0,
                        out=str(Path(tmp) / f"{size}-{repeat}"),
                        threads=args.threads,
                        progress=False,
                    )
                )
                rates[size].append(result.tokens_per_second)
                parameters[size] = result.parameters
    table = Table(
        title=f"training throughput on {', '.join(configs)} ({args.steps} steps x {args.repeats}, "
        f"batch {args.batch_size}, {torch.get_num_threads()} torch threads)"
    )
    for column in ("size", "parameters", "tokens/s (median)", "min-max", "vs " + sizes[0]):
        table.add_column(column)
    base = statistics.median(rates[sizes[0]])
    for size in sizes:
        median = statistics.median(rates[size])
        table.add_row(
            size,
            f"{parameters[size] / 1e6:.1f}M",
            f"{median:.0f}",
            f"{min(rates[size]):.0f}-{max(rates[size]):.0f}",
            f"{median / base:.2f}x",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
