"""Rollout memory: the RSS of the rollout's Ray actor over a long run must stay flat.

An actor buffers at most one row group of one shard (`ShardWriter`) and keeps nothing of an episode
once it is written, so its resident memory should stop growing after warm-up, however many
episodes it records. This runs `rollout` with one actor per task for a large step budget
(default: 1M MuJoCo Hopper steps and 200k Atari Breakout steps, i.e. stored frame stacks, random
policy) and samples, every `--interval` seconds, the RSS of the actor process (found by its Ray
process title among this process's descendants), this driver's RSS, and the steps committed so far
(from the unit records the actor writes after each shard).

It prints, per task: the RSS at 10/25/50/75/100 % of the steps, the peak, the growth from the 10 %
mark to the end, and a least-squares slope over the samples after the 10 % mark, in MB per 100k steps.

    .venv/bin/python benchmarks/rollout_memory.py                                 # ~25 min on 2 cores
    .venv/bin/python benchmarks/rollout_memory.py --runs mujoco-hopper:100000 --interval 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field

import psutil
from harness import local_ray, make_console, write_json
from rich.table import Table

from pipeline.format.schema import SHARD_RECORD_DIR

DEFAULT_RUNS = "mujoco-hopper:1000000,atari-breakout:200000"
ACTOR_PREFIX = "ray::_Remote"  # process title of the executor's actors
MB = 1024 * 1024

console = make_console()


@dataclass
class Trace:
    """RSS samples of one run: (seconds since start, committed steps, actor RSS, driver RSS)."""

    config: str
    steps_budget: int
    samples: list[tuple[float, int, int, int]] = field(default_factory=list)
    actor_pids: list[int] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


class Sampler:
    """Samples the actor's and the driver's RSS and the committed steps in a background thread."""

    def __init__(self, out: str, trace: Trace, interval: float) -> None:
        self.records = os.path.join(out, SHARD_RECORD_DIR.format(config=trace.config))
        self.trace = trace
        self.interval = interval
        self.driver = psutil.Process()
        self.actors: dict[int, psutil.Process] = {}
        self.seen: dict[str, int] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _committed_steps(self) -> int:
        """Steps in the unit records written so far (each parsed once)."""
        try:
            names = os.listdir(self.records)
        except FileNotFoundError:
            return 0
        for name in names:
            if name.endswith(".json") and name not in self.seen:
                try:
                    with open(os.path.join(self.records, name)) as f:
                        self.seen[name] = int(json.load(f).get("steps", 0))
                except (OSError, ValueError):
                    continue  # being moved into place: read it next time
        return sum(self.seen.values())

    def _actor_rss(self) -> int:
        if not self.actors:
            for proc in self.driver.children(recursive=True):
                try:
                    if proc.name().startswith(ACTOR_PREFIX):
                        self.actors[proc.pid] = proc
                        self.trace.actor_pids.append(proc.pid)
                except psutil.Error:
                    continue
        total = 0
        for proc in self.actors.values():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = self._actor_rss()
            if rss:
                elapsed = time.monotonic() - self.started
                self.trace.samples.append(
                    (elapsed, self._committed_steps(), rss, self.driver.memory_info().rss)
                )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run(config: str, steps: int, interval: float, scratch: str) -> Trace:
    from pipeline.rollout.run import RolloutConfig, rollout

    trace = Trace(config, steps)
    out = tempfile.mkdtemp(dir=scratch, prefix=f"mem-{config}-")
    sampler = Sampler(out, trace, interval)
    started = time.perf_counter()
    try:
        summary = rollout(
            RolloutConfig(out=out, tasks=(config,), steps=steps, workers=1, policy="random", progress=False)
        )
    finally:
        sampler.stop()
        shutil.rmtree(out, ignore_errors=True)
    trace.seconds = time.perf_counter() - started
    trace.steps = summary.total_steps
    return trace


def _at(trace: Trace, fraction: float) -> tuple[int, int] | None:
    """(actor RSS, driver RSS) of the first sample with `fraction` of the steps committed; the last
    sample for 1.0 (the actor is stopped soon after its last shard, maybe before one more sample)."""
    if fraction >= 1.0:
        return trace.samples[-1][2:] if trace.samples else None
    for _, steps, rss, driver in trace.samples:
        if steps >= fraction * trace.steps:
            return rss, driver
    return None


def slope_mb_per_100k(trace: Trace, after: float = 0.1) -> float:
    """Least-squares slope of actor RSS against committed steps, after the `after` fraction."""
    points = [(s, r) for _, s, r, _ in trace.samples if s >= after * trace.steps]
    if len(points) < 3:
        return float("nan")
    n = len(points)
    mx = sum(s for s, _ in points) / n
    my = sum(r for _, r in points) / n
    var = sum((s - mx) ** 2 for s, _ in points)
    if var == 0:
        return float("nan")
    cov = sum((s - mx) * (r - my) for s, r in points)
    return cov / var * 100_000 / MB


def report(traces: list[Trace]) -> None:
    fractions = (0.1, 0.25, 0.5, 0.75, 1.0)
    table = Table(title="Actor RSS (MB) over the run, at a share of the committed steps")
    for column in ("task", "steps", "seconds", *(f"{int(f * 100)}%" if f < 1 else "end" for f in fractions)):
        table.add_column(column, justify="right")
    for column in ("peak", "growth 10%->end", "slope MB/100k steps", "driver peak"):
        table.add_column(column, justify="right")
    for t in traces:
        at = [_at(t, f) for f in fractions]
        cells = [f"{a[0] / MB:.1f}" if a else "-" for a in at]
        peak = max((r for _, _, r, _ in t.samples), default=0)
        driver_peak = max((d for _, _, _, d in t.samples), default=0)
        growth = f"{(at[-1][0] - at[0][0]) / MB:+.1f}" if at[0] and at[-1] else "-"
        table.add_row(
            t.config,
            f"{t.steps:,}",
            f"{t.seconds:.0f}",
            *cells,
            f"{peak / MB:.1f}",
            growth,
            f"{slope_mb_per_100k(t):+.2f}",
            f"{driver_peak / MB:.1f}",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", default=DEFAULT_RUNS, help="comma-separated config:steps, run one after another")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between RSS samples")
    p.add_argument("--json", help="also write every sample to this JSON file")
    args = p.parse_args(argv)
    runs = []
    for item in args.runs.split(","):
        config, _, steps = item.strip().partition(":")
        if not steps.isdigit() or int(steps) < 1:
            p.error(f"--runs takes config:steps, got {item!r}")
        runs.append((config, int(steps)))
    if args.interval <= 0:
        p.error("--interval must be > 0")
    warnings.filterwarnings("ignore")
    traces = []
    with local_ray("jat-bench-mem-", num_cpus=1) as scratch:
        for config, steps in runs:
            console.log(f"{config}: {steps:,} steps, one actor")
            trace = run(config, steps, args.interval, scratch)
            peak = max((r for _, _, r, _ in trace.samples), default=0)
            console.log(
                f"{config}: {trace.steps:,} steps in {trace.seconds:.0f} s, actor peak RSS {peak / MB:.1f} MB"
            )
            traces.append(trace)
    report(traces)
    if args.json:
        write_json(args.json, [asdict(t) for t in traces], indent=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
