"""Training throughput of the thin JAT model: tokens/s and peak memory per size, device, precision
and gradient accumulation, measured side by side.

Each repeat trains every combination for the same number of optimizer steps on the same data,
combinations interleaved so that load from other processes hits them alike, through `train_model`
(what `pipeline train-model` runs): batch sampling and window decoding, forward, backward and the
optimizer step are timed; start-up, checkpoints and test losses are not. A token is one observation
or one action of a real (unpadded) step, as JAT counts its sequence positions. With --grad-accum N
a step holds batch x N windows, so tokens/s compares like with like across N.

Every measurement runs in a fresh process, so that its peak memory is its own: on CPU the peak
resident set (`ru_maxrss`, Python, torch and the data included) and its rise over the process's
resident set just before training; on CUDA `torch.cuda.max_memory_allocated`.

    .venv/bin/python benchmarks/model_throughput.py --data outputs/demo
    .venv/bin/python benchmarks/model_throughput.py --data DIR --configs babyai-go-to --sizes tiny,small,jat
    .venv/bin/python benchmarks/model_throughput.py --data DIR --precisions fp32,bf16 --grad-accum 1,4
"""

from __future__ import annotations

import argparse
import itertools
import logging
import resource
import statistics
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Arm:
    size: str
    device: str
    precision: str
    grad_accum: int

    def label(self) -> str:
        return f"{self.size} {self.device} {self.precision} x{self.grad_accum}"


@dataclass(frozen=True)
class Sample:
    tokens_per_second: float
    parameters: int
    peak_mb: float
    rise_mb: float
    threads: int


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _measure(arm: Arm, args: argparse.Namespace, out: str) -> Sample:
    """One training run in this (fresh) process."""
    import torch
    from transformers.utils import logging as hf_logging

    from pipeline.model.train import TrainModelConfig, train_model

    logging.basicConfig(level=logging.WARNING)
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    before = _rss_mb()
    cuda = arm.device == "cuda" or (arm.device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = train_model(
        TrainModelConfig(
            data=args.data,
            configs=tuple(c for c in args.configs.split(",") if c),
            size=arm.size,
            steps=args.steps,
            batch_size=args.batch_size,
            grad_accum=arm.grad_accum,
            device=arm.device,
            precision=arm.precision,
            checkpoint_every=10**9,
            eval_batches=0,
            out=out,
            threads=args.threads,
            progress=False,
        )
    )
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
        rise = peak
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
        rise = peak - before
    return Sample(result.tokens_per_second, result.parameters, peak, rise, torch.get_num_threads())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder (e.g. outputs/demo)")
    parser.add_argument("--configs", default="babyai-go-to,metaworld-reach", help="comma-separated configs")
    parser.add_argument("--sizes", default="tiny,small", help="comma-separated sizes")
    parser.add_argument("--devices", default="cpu", help="comma-separated: cpu, cuda, auto")
    parser.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16, fp16 (CUDA)")
    parser.add_argument("--grad-accum", default="1", help="comma-separated micro-batches per step")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per measurement")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per micro-batch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default torch's)")
    args = parser.parse_args()

    def items(text: str) -> list[str]:
        return [s for s in text.split(",") if s]

    arms = [
        Arm(size, device, precision, int(accum))
        for size, device, precision, accum in itertools.product(
            items(args.sizes), items(args.devices), items(args.precisions), items(args.grad_accum)
        )
    ]
    samples: dict[Arm, list[Sample]] = {arm: [] for arm in arms}
    spawn = get_context("spawn")
    console = Console(width=150)
    with tempfile.TemporaryDirectory(prefix="jat-bench-") as tmp:
        for repeat in range(args.repeats):
            for i, arm in enumerate(arms):
                with ProcessPoolExecutor(1, mp_context=spawn, max_tasks_per_child=1) as pool:
                    out = str(Path(tmp) / f"{i}-{repeat}")
                    sample = pool.submit(_measure, arm, args, out).result()
                samples[arm].append(sample)
                rate, peak = sample.tokens_per_second, sample.peak_mb
                console.log(f"{arm.label()}: {rate:.0f} tokens/s, peak {peak:.0f} MB")
    threads = samples[arms[0]][0].threads
    table = Table(
        title=f"training throughput on {args.configs} ({args.steps} steps x {args.repeats}, "
        f"batch {args.batch_size} per micro-batch, {threads} torch threads)"
    )
    first = arms[0]
    for column in (
        "size",
        "parameters",
        "device",
        "precision",
        "grad accum",
        "tokens/s (median)",
        "min-max",
        "vs " + first.label(),
        "peak MB",
        "rise MB",
    ):
        table.add_column(column)
    base = statistics.median(s.tokens_per_second for s in samples[first])
    for arm in arms:
        rates = [s.tokens_per_second for s in samples[arm]]
        median = statistics.median(rates)
        table.add_row(
            arm.size,
            f"{samples[arm][0].parameters / 1e6:.1f}M",
            arm.device,
            arm.precision,
            str(arm.grad_accum),
            f"{median:.0f}",
            f"{min(rates):.0f}-{max(rates):.0f}",
            f"{median / base:.2f}x",
            f"{max(s.peak_mb for s in samples[arm]):.0f}",
            f"{max(s.rise_mb for s in samples[arm]):.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
