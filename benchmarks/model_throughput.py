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
    .venv/bin/python benchmarks/model_throughput.py --data DIR --threads 1 \
        --jat-python /tmp/jat-venv/bin/python

With --jat-python, every measurement of ours is followed by one of JAT's original `JatModel` (in
JAT's own venv, `benchmarks/jat_throughput_child.py`) with the same backbone shape, trained for the
same steps on batches of the same suites, window lengths and padding that our run drew (recorded as
it trained), so both sides count the same tokens; the table adds JAT's tokens/s and peak memory and
the ours/JAT ratios. JAT's child builds its batches from random values outside its timer, while ours
times its sampling and decoding: the ratio slightly favours JAT.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import subprocess
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from harness import last_json_line, peak_rss_mb, rss_mb
from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class Arm:
    size: str
    device: str
    precision: str
    grad_accum: int
    workers: int = 0
    """Ray Train DDP workers (`--num-workers`); 0: one process, as `train-model` without it."""

    def label(self) -> str:
        ddp = f" {self.workers} DDP workers" if self.workers else ""
        return f"{self.size} {self.device} {self.precision} x{self.grad_accum}{ddp}"


@dataclass(frozen=True)
class Sample:
    tokens_per_second: float
    parameters: int
    peak_mb: float
    rise_mb: float
    threads: int


def _record_batches(plan: list[dict]) -> None:
    """Make `TaskMixture.sample` append each drawn batch's shape to `plan` (this process only).

    What JAT's side needs to train on the same shapes: the suite, each window's real length and the
    padded length, the observation / action sizes."""
    from pipeline.model.data import TaskMixture

    sample = TaskMixture.sample

    def recording(self, *args, **kwargs):
        task, batch = sample(self, *args, **kwargs)
        mask = batch["mask"]
        step = {"suite": task.spec.suite, "lengths": mask.sum(1).tolist(), "padded": int(mask.shape[1])}
        if "continuous_actions" in batch:
            step["obs_dim"] = int(batch["continuous_observations"].shape[-1])
            step["act_dim"] = int(batch["continuous_actions"].shape[-1])
        else:
            step["actions"] = int(task.spec.action.n)
        plan.append(step)
        return task, batch

    TaskMixture.sample = recording


def _measure(arm: Arm, args: argparse.Namespace, out: str) -> tuple[Sample, list[dict]]:
    """One training run in this (fresh) process; also returns the batches' shapes it trained on."""
    import torch
    from transformers.utils import logging as hf_logging

    from pipeline.model.train import TrainModelConfig, train_model

    plan: list[dict] = []
    _record_batches(plan)

    logging.basicConfig(level=logging.WARNING)
    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    before = rss_mb()
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
            num_workers=arm.workers,
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
        peak = peak_rss_mb()
        rise = peak - before
    sample = Sample(result.tokens_per_second, result.parameters, peak, rise, torch.get_num_threads())
    return sample, plan


def _measure_jat(arm: Arm, args: argparse.Namespace, plan: list[dict], path: Path) -> Sample:
    """JAT's original model on `plan`'s shapes, in a child under JAT's interpreter."""
    from pipeline.model.configuration import SIZES

    preset = SIZES[arm.size]
    path.write_text(
        json.dumps(
            {
                "hidden_size": preset["hidden_size"],
                "num_layers": preset["num_layers"],
                "num_heads": preset["num_heads"],
                "precision": arm.precision,
                "grad_accum": arm.grad_accum,
                "steps": plan,
            }
        )
    )
    child = Path(__file__).resolve().parent / "jat_throughput_child.py"
    command = [args.jat_python, str(child), "--plan", str(path)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"JAT's child failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    r = last_json_line(done.stdout)
    assert r is not None, f"JAT's child printed no figures ({' '.join(command)})"
    return Sample(r["tokens_per_second"], r["parameters"], r["peak_mb"], r["rise_mb"], r["threads"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset folder (e.g. outputs/demo)")
    parser.add_argument("--configs", default="babyai-go-to,metaworld-reach", help="comma-separated configs")
    parser.add_argument("--sizes", default="tiny,small", help="comma-separated sizes")
    parser.add_argument("--devices", default="cpu", help="comma-separated: cpu, cuda, auto")
    parser.add_argument("--precisions", default="fp32", help="comma-separated: fp32, bf16, fp16 (CUDA)")
    parser.add_argument("--grad-accum", default="1", help="comma-separated micro-batches per step")
    parser.add_argument(
        "--num-workers",
        default="0",
        help="comma-separated Ray Train DDP worker counts (0: one process); with workers, --batch-size "
        "is the global batch and peak MB is the driver's alone",
    )
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per measurement")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per micro-batch")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default torch's)")
    parser.add_argument(
        "--jat-python",
        help="interpreter of JAT's venv (e.g. /tmp/jat-venv/bin/python): also measure JAT's original model",
    )
    args = parser.parse_args()
    if args.jat_python and not Path(args.jat_python).is_file():
        parser.error(
            f"--jat-python {args.jat_python} does not exist: build JAT's venv (benchmarks/jat_reference.py)"
        )

    def items(text: str) -> list[str]:
        return [s for s in text.split(",") if s]

    arms = [
        Arm(size, device, precision, int(accum), int(workers))
        for size, device, precision, accum, workers in itertools.product(
            items(args.sizes),
            items(args.devices),
            items(args.precisions),
            items(args.grad_accum),
            items(args.num_workers),
        )
    ]
    if args.jat_python and any(arm.workers for arm in arms):
        parser.error("--jat-python compares one process with JAT's: drop --num-workers for that run")
    samples: dict[Arm, list[Sample]] = {arm: [] for arm in arms}
    jat: dict[Arm, list[Sample]] = {arm: [] for arm in arms}
    spawn = get_context("spawn")
    console = Console(width=150)
    with tempfile.TemporaryDirectory(prefix="jat-bench-") as tmp:
        for repeat in range(args.repeats):
            for i, arm in enumerate(arms):
                with ProcessPoolExecutor(1, mp_context=spawn, max_tasks_per_child=1) as pool:
                    out = str(Path(tmp) / f"{i}-{repeat}")
                    sample, plan = pool.submit(_measure, arm, args, out).result()
                samples[arm].append(sample)
                rate, peak = sample.tokens_per_second, sample.peak_mb
                console.log(f"{arm.label()}: {rate:.0f} tokens/s, peak {peak:.0f} MB")
                if args.jat_python:
                    theirs = _measure_jat(arm, args, plan, Path(tmp) / f"plan-{i}-{repeat}.json")
                    jat[arm].append(theirs)
                    rate, peak = theirs.tokens_per_second, theirs.peak_mb
                    console.log(f"{arm.label()} JAT's model: {rate:.0f} tokens/s, peak {peak:.0f} MB")
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
        "DDP workers",
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
            str(arm.workers or "-"),
            f"{median:.0f}",
            f"{min(rates):.0f}-{max(rates):.0f}",
            f"{median / base:.2f}x",
            f"{max(s.peak_mb for s in samples[arm]):.0f}",
            f"{max(s.rise_mb for s in samples[arm]):.0f}",
        )
    console.print(table)
    if args.jat_python:
        console.print(_jat_table(arms, samples, jat))


def _jat_table(arms: list[Arm], ours: dict[Arm, list[Sample]], jat: dict[Arm, list[Sample]]) -> Table:
    """Ours and JAT's original side by side; ratios of medians, and their range over repeats."""
    table = Table(title="ours vs JAT's original JatModel (same backbone, steps, windows and tokens)")
    for column in (
        "arm",
        "parameters ours / JAT",
        "tokens/s ours",
        "tokens/s JAT",
        "ours/JAT tokens/s",
        "per-repeat ratios",
        "peak MB ours / JAT",
        "rise MB ours / JAT",
    ):
        table.add_column(column)
    for arm in arms:
        a, b = ours[arm], jat[arm]
        mine = statistics.median(s.tokens_per_second for s in a)
        theirs = statistics.median(s.tokens_per_second for s in b)
        ratios = [x.tokens_per_second / y.tokens_per_second for x, y in zip(a, b, strict=True)]
        table.add_row(
            arm.label(),
            f"{a[0].parameters / 1e6:.1f}M / {b[0].parameters / 1e6:.1f}M",
            f"{mine:.0f}",
            f"{theirs:.0f}",
            f"{mine / theirs:.2f}x",
            f"{min(ratios):.2f}-{max(ratios):.2f}",
            f"{max(s.peak_mb for s in a):.0f} / {max(s.peak_mb for s in b):.0f}",
            f"{max(s.rise_mb for s in a):.0f} / {max(s.rise_mb for s in b):.0f}",
        )
    return table


if __name__ == "__main__":
    main()
