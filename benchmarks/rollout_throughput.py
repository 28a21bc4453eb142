"""Rollout throughput: `pipeline rollout` against the bare env+policy loop and Minari, side by side.

For one task per suite, in one run and under the same machine load, this measures collected steps/s of

- bare:    `make_env(spec)` + `make_policy(kind, spec, env)` stepped in this process, nothing recorded;
- ours xN: `rollout` (what `pipeline rollout` calls) with N Ray actors and N times the episodes;
- minari:  the same env and policy wrapped in `minari.DataCollector`, then `create_dataset`.

Every mode plays the same planned episodes (ids 0..N-1 of `--seed`, the rollout's own seeds), so the
work is identical and a throughput ratio is a wall-time ratio. Collected steps are those of the
episodes the rollout keeps (BabyAI bot failures and unfinished Atari episodes are dropped); the bare
loop and Minari play the dropped episodes too, as the rollout does, and count the same kept steps.

How the rollout is timed (the Ray cluster is started once, before any timing, and never counted):

- e2e:    wall time of `rollout`: actor start-up (process, imports, registry, env build), every
          episode's recording, PNG encoding, Parquet writing, shard commits, manifests and README;
- steady: from the moment the first shard file appears under `.tmp/` (an actor is up, has built its
          env and policy, and records) to the mtime of the last unit record (written after its
          shard's commit): every episode's recording, encoding and writing and every shard's commit
          are in; actor start-up and the driver's final manifests are not. With two workers the
          clock starts with the first actor ready, so the other's start-up lag counts against us.
- cpu:    CPU time per collected step (bare and Minari: this thread; ours: the actor processes,
          Ray's threads included, over the steady window). Unlike wall time it hardly moves with
          other processes' load, so it shows the recording overhead on a busy machine.

Ray runs its workers at niceness 15; the bare loop and Minari run at that niceness too, and modes
are interleaved within each repeat, so that other jobs on a shared machine slow every mode alike.
The tables give the median over repeats and the min-max spread. Minari is optional, not a project
dependency: benchmarks/README.md says how to make it importable without touching the venv.

    .venv/bin/python benchmarks/rollout_throughput.py                 # ~12 s per measurement
    .venv/bin/python benchmarks/rollout_throughput.py --seconds 3 --repeats 1 --tasks mujoco-hopper
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import psutil
from harness import local_ray, make_console, spread, write_json
from rich.markup import escape
from rich.table import Table

from pipeline.format.plan import PlannedEpisode, plan_episodes
from pipeline.format.schema import SHARD_RECORD_DIR, TMP_DIR
from pipeline.rollout.policy_factory import make_policy
from pipeline.tasks.envs import make_env
from pipeline.tasks.policies import EpisodeFailed
from pipeline.tasks.registry import TaskSpec, get_task

# One task per suite, with the policy each suite has without training.
DEFAULT_TASKS = {
    "babyai-go-to": "scripted",
    "metaworld-reach": "scripted",
    "mujoco-hopper": "random",
    "atari-breakout": "random",
}
# The issues' targets: ours per worker against bare (Atari pays PNG encoding), x2 against x1.
TARGET_RATIO = 0.9
TARGET_RATIO_ATARI = 0.8
TARGET_SCALING = 1.8
ACTOR_PREFIX = "ray::_Remote"  # process title of the executor's actors

console = make_console()


@dataclass
class Sample:
    """One measurement: kept steps, wall seconds, CPU seconds (nan when not measured)."""

    kept: int
    seconds: float
    cpu: float = float("nan")

    @property
    def rate(self) -> float:
        return self.kept / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.cpu / self.kept if self.kept else float("nan")


@dataclass
class TaskResult:
    """Per-task samples of every mode, one per repeat."""

    config: str
    policy: str
    episodes: int
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, mode: str, sample: Sample) -> None:
        self.samples.setdefault(mode, []).append(sample)

    def rates(self, mode: str) -> list[float]:
        return [s.rate for s in self.samples.get(mode, [])]


# --- the three ways of playing the same episodes ---------------------------------------------------
def play(env: Any, policy: Any, spec: TaskSpec, episodes: list[PlannedEpisode]) -> int:
    """Step `episodes` with nothing recorded; returns the steps the rollout would keep."""
    kept = 0
    drop_unfinished = spec.rollout.drop_unfinished
    for planned in episodes:
        observation, info = env.reset(seed=planned.seed)
        policy.reset(env, planned.seed)
        length, failed, terminated = 0, False, False
        while True:
            try:
                action = policy.act(observation, info)
            except EpisodeFailed:
                failed = True
                break
            observation, _, terminated, truncated, info = env.step(action)
            length += 1
            if terminated or truncated:
                break
        if not failed and not (drop_unfinished and not terminated):
            kept += length
    return kept


def run_bare(spec: TaskSpec, kind: str, episodes: list[PlannedEpisode]) -> Sample:
    env = make_env(spec)
    policy = make_policy(kind, spec, env)
    started, cpu = time.perf_counter(), time.thread_time()
    kept = play(env, policy, spec, episodes)
    sample = Sample(kept, time.perf_counter() - started, time.thread_time() - cpu)
    env.close()
    return sample


class _RolloutWatch:
    """Watches a rollout from this process: when its first shard file appears under `.tmp/`, and
    the CPU time of its actors (children of the Ray cluster this process started)."""

    def __init__(self, out: str, workers: int) -> None:
        self.tmp = os.path.join(out, TMP_DIR)
        self.workers = workers
        self.first: float | None = None
        self.actors: dict[int, psutil.Process] = {}
        self.stale = set(self._actor_processes())  # the previous run's actors, maybe still exiting
        self.cpu_now: dict[int, float] = {}
        self.cpu_at_first: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    @staticmethod
    def _actor_processes() -> dict[int, psutil.Process]:
        found = {}
        for proc in psutil.Process().children(recursive=True):
            try:
                if proc.name().startswith(ACTOR_PREFIX):
                    found[proc.pid] = proc
            except psutil.Error:
                continue
        return found

    def _find_actors(self) -> None:
        for pid, proc in self._actor_processes().items():
            if pid not in self.stale:
                self.actors.setdefault(pid, proc)

    def _poll(self) -> None:
        next_scan = 0.0
        while not self._stop.wait(0.05):
            if len(self.actors) < self.workers and time.monotonic() >= next_scan:
                self._find_actors()
                next_scan = time.monotonic() + 0.25
            for pid, proc in self.actors.items():
                try:
                    times = proc.cpu_times()
                    self.cpu_now[pid] = times.user + times.system
                except psutil.Error:
                    continue
            if self.first is None:
                try:
                    started = any(name.endswith(".parquet") for name in os.listdir(self.tmp))
                except FileNotFoundError:
                    started = False
                if started:
                    self.first = time.time()
                    self.cpu_at_first = dict(self.cpu_now)

    def stop(self) -> float:
        """Stop watching; returns the actors' CPU seconds since the first shard appeared."""
        self._stop.set()
        self._thread.join()
        if self.first is None or not self.cpu_now:
            return float("nan")
        return sum(cpu - self.cpu_at_first.get(pid, 0.0) for pid, cpu in self.cpu_now.items())


def run_ours(
    config: str, kind: str, count: int, workers: int, seed: int, scratch: str
) -> tuple[Sample, Sample]:
    """`rollout` with the Ray cluster already up: (end-to-end, steady) samples."""
    from pipeline.rollout.run import RolloutConfig, rollout

    out = tempfile.mkdtemp(dir=scratch, prefix=f"ours-{config}-")
    request = RolloutConfig(
        out=out, tasks=(config,), episodes=count, workers=workers, policy=kind, seed=seed, progress=False
    )
    watch = _RolloutWatch(out, workers)
    started = time.perf_counter()
    summary = rollout(request)
    seconds = time.perf_counter() - started
    cpu = watch.stop()
    records = glob.glob(os.path.join(out, SHARD_RECORD_DIR.format(config=config), "*.json"))
    last = max((os.stat(r).st_mtime for r in records), default=None)
    steady = last - watch.first if last is not None and watch.first is not None else float("nan")
    shutil.rmtree(out, ignore_errors=True)
    steps = summary.total_steps
    return Sample(steps, seconds), Sample(steps, steady, cpu)


def _minari_env(spec: TaskSpec, data_format: str) -> Any:
    """Our env under Minari's DataCollector, with two adjustments that only spare Minari work:

    - its `env.spec` is saved as JSON, and ours holds callables (Meta-World's entry point, the
      MuJoCo float32 cast): a pass-through wrapper shows a spec without them (metadata only);
    - BabyAI's Text space has gymnasium's alphanumeric charset and missions have spaces, so every
      step would warn (formatting the whole observation): Minari gets a printable charset.
    Atari frames are stored raw: Minari's default JPEG encoding cannot hold 4 channels.
    """
    import gymnasium as gym
    from minari import DataCollector

    class JsonableSpec(gym.Wrapper):
        @property
        def spec(self) -> Any:
            inner = self.env.spec
            if inner is None:
                return None
            entry = inner.entry_point if isinstance(inner.entry_point, str) else inner.id
            return dataclasses.replace(inner, entry_point=entry, additional_wrappers=())

    env = JsonableSpec(make_env(spec))
    extra: dict[str, Any] = {}
    if spec.suite == "babyai":
        printable = "".join(chr(c) for c in range(32, 127))
        extra["observation_space"] = gym.spaces.Dict(
            {
                "text_observations": gym.spaces.Text(max_length=512, charset=printable),
                "discrete_observations": env.observation_space["discrete_observations"],
            }
        )
    return DataCollector(
        env, record_infos=False, data_format=data_format, jpeg_encoding=spec.suite != "atari", **extra
    )


def run_minari(
    spec: TaskSpec, kind: str, episodes: list[PlannedEpisode], data_format: str, scratch: str
) -> Sample:
    """The same env and policy under `minari.DataCollector`, timed through `create_dataset`."""
    os.environ["MINARI_DATASETS_PATH"] = tempfile.mkdtemp(dir=scratch, prefix="minari-")
    env = _minari_env(spec, data_format)
    policy = make_policy(kind, spec, env)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started, cpu = time.perf_counter(), time.thread_time()
        kept = play(env, policy, spec, episodes)
        env.create_dataset(dataset_id=f"bench/{spec.config}-v0", algorithm_name=kind, description="benchmark")
        sample = Sample(kept, time.perf_counter() - started, time.thread_time() - cpu)
    env.close()
    shutil.rmtree(os.environ["MINARI_DATASETS_PATH"], ignore_errors=True)
    return sample


def minari_available() -> str | None:
    """Minari's version, or None when it (or jax, which its DataCollector needs) is missing."""
    try:
        import jax.tree_util  # noqa: F401
        import minari
    except ImportError:
        return None
    return str(minari.__version__)


# --- planning and the run -------------------------------------------------------------------------
def planned(config: str, count: int, seed: int) -> list[PlannedEpisode]:
    """The rollout's own episodes 0..count-1 (seeds depend on seed, config and id only)."""
    return plan_episodes(config, 0, count, seed, 0.1, ensure_test=False)


def calibrate(spec: TaskSpec, kind: str, seed: int, seconds: float) -> int:
    """Episodes the bare loop plays in `seconds`, estimated from a run of at most 3 s."""
    env = make_env(spec)
    policy = make_policy(kind, spec, env)
    plan = planned(spec.config, 100_000, seed)
    played, started = 0, time.perf_counter()
    while time.perf_counter() - started < min(3.0, seconds):
        play(env, policy, spec, plan[played : played + 1])
        played += 1
    rate = played / (time.perf_counter() - started)
    env.close()
    return max(4, math.ceil(rate * seconds))


def measure_task(result: TaskResult, args: argparse.Namespace, scratch: str) -> None:
    config, kind, count = result.config, result.policy, result.episodes
    spec = get_task(config)
    episodes = planned(config, count, args.seed)

    def record(mode: str, sample: Sample) -> None:
        result.add(mode, sample)
        console.log(
            f"{config:<16} {mode:<12} {sample.kept:>8} steps {sample.seconds:7.2f} s "
            f"{sample.rate:8.0f}/s {sample.cpu_us:8.0f} cpu-us/step"
        )

    bare = run_bare(spec, kind, episodes)
    record("bare", bare)
    for workers in args.workers:
        e2e, steady = run_ours(config, kind, count * workers, workers, args.seed, scratch)
        record(f"ours x{workers} e2e", e2e)
        record(f"ours x{workers}", steady)
        if workers == 1 and e2e.kept != bare.kept:
            result.notes.append(
                f"ours x1 kept {e2e.kept} steps, the bare loop {bare.kept}: not the same work"
            )
    if args.minari:
        record("minari", run_minari(spec, kind, episodes, args.minari_format, scratch))


# --- report ---------------------------------------------------------------------------------------
def _ratios(result: TaskResult, top: str, bottom: str, scale: float = 1.0) -> list[float]:
    """Per-repeat ratios: the modes of one repeat ran back to back, under the same load."""
    pairs = zip(result.rates(top), result.rates(bottom), strict=False)
    return [a / b / scale for a, b in pairs if b > 0 and math.isfinite(a)]


def _verdict(values: list[float], target: float) -> str:
    text = spread(values, 2)
    if text == "-":
        return text
    return text + (" ok" if statistics.median(values) >= target else " LOW")


def print_tables(results: list[TaskResult], workers: list[int], with_minari: bool) -> None:
    modes = ["bare"] + [m for w in workers for m in (f"ours x{w}", f"ours x{w} e2e")]
    modes += ["minari"] if with_minari else []
    rates = Table(title=escape("Collected steps/s, median [min-max] over repeats"))
    cpu = Table(title=escape("CPU microseconds per collected step, median [min-max]"))
    for table in (rates, cpu):
        table.add_column("task")
    rates.add_column("episodes (x1)", justify="right")
    for mode in modes:
        rates.add_column(mode, justify="right")
        if "e2e" not in mode:
            cpu.add_column(mode, justify="right")
    for r in results:
        rates.add_row(r.config, str(r.episodes), *(spread(r.rates(m), 0) for m in modes))
        cpu.add_row(
            r.config, *(spread([s.cpu_us for s in r.samples.get(m, [])], 0) for m in modes if "e2e" not in m)
        )
    console.print(rates)
    console.print(cpu)

    ratios = Table(title=escape("Ratios of per-repeat rates, median [min-max]; ok/LOW against the target"))
    ratios.add_column("task")
    for w in workers:
        ratios.add_column(f"x{w}/bare per worker, steady (>= {TARGET_RATIO}, Atari {TARGET_RATIO_ATARI})")
        ratios.add_column(f"x{w}/bare per worker, e2e")
    if 1 in workers and 2 in workers:
        ratios.add_column(f"x2/x1 steady (>= {TARGET_SCALING})")
    ratios.add_column("x1/bare by CPU time per step")
    if with_minari:
        ratios.add_column("x1/minari steady (> 1)")
        ratios.add_column("x1/minari e2e")
    for r in results:
        target = TARGET_RATIO_ATARI if r.config.startswith("atari") else TARGET_RATIO
        row = [r.config]
        for w in workers:
            row.append(_verdict(_ratios(r, f"ours x{w}", "bare", w), target))
            row.append(spread(_ratios(r, f"ours x{w} e2e", "bare", w), 2))
        if 1 in workers and 2 in workers:
            row.append(_verdict(_ratios(r, "ours x2", "ours x1"), TARGET_SCALING))
        cpu_pairs = zip(r.samples.get("bare", []), r.samples.get("ours x1", []), strict=False)
        row.append(spread([b.cpu_us / o.cpu_us for b, o in cpu_pairs if o.cpu_us > 0], 2))
        if with_minari:
            row.append(_verdict(_ratios(r, "ours x1", "minari"), 1.0))
            row.append(spread(_ratios(r, "ours x1 e2e", "minari"), 2))
        ratios.add_row(*row)
    console.print(ratios)
    for r in results:
        for note in r.notes:
            console.print(f"[yellow]{r.config}: {escape(note)}")


def match_worker_niceness() -> None:
    """Run this thread (bare loop, Minari) at the niceness Ray gives its workers (15 by default).

    Otherwise, on a machine shared with other jobs, the actors would lose CPU to them while the
    bare loop would not, and the ratio would measure priorities rather than recording overhead.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for proc in psutil.Process().children(recursive=True):
            try:
                if proc.name().startswith(("ray::IDLE", ACTOR_PREFIX)):
                    target = proc.nice()
                    os.nice(target - os.nice(0))  # per thread on Linux: this (main) thread
                    console.print(f"bare loop and Minari run at niceness {target}, as Ray's workers")
                    return
            except psutil.Error:
                continue
        time.sleep(0.2)
    console.print("[yellow]no idle Ray worker found: the bare loop keeps this process's niceness")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated configs (one per suite)")
    p.add_argument("--seconds", type=float, default=12.0, help="target length of the bare run per task")
    p.add_argument("--episodes", type=int, help="episodes per task for bare/x1 (default: from --seconds)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median and spread)")
    p.add_argument("--workers", default="1,2", help="worker counts to measure, e.g. 1,2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-minari", dest="minari", action="store_false", help="skip the Minari column")
    p.add_argument("--minari-format", default="hdf5", choices=["hdf5", "arrow"], help="Minari's storage")
    p.add_argument("--json", help="also write every sample to this JSON file")
    args = p.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.seconds <= 0 or args.repeats < 1 or not args.workers or min(args.workers) < 1:
        p.error("--seconds must be > 0, --repeats >= 1 and every --workers value >= 1")
    if args.episodes is not None and args.episodes < 1:
        p.error("--episodes must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.minari:
        version = minari_available()
        if version is None:
            console.print(
                "[yellow]minari (with jax) is not importable: no Minari column (benchmarks/README.md)"
            )
            args.minari = False
        else:
            console.print(f"minari {version}, {args.minari_format} storage")
    results: list[TaskResult] = []
    with local_ray("jat-bench-", num_cpus=max(args.workers)) as scratch:  # its start-up is never timed
        match_worker_niceness()
        for config in args.tasks:
            spec = get_task(config)
            kind = DEFAULT_TASKS.get(config) or spec.rollout.policy
            results.append(
                TaskResult(config, kind, args.episodes or calibrate(spec, kind, args.seed, args.seconds))
            )
        for repeat in range(args.repeats):
            console.rule(f"repeat {repeat + 1}/{args.repeats}, 1-min load average {os.getloadavg()[0]:.2f}")
            for result in results:
                measure_task(result, args, scratch)
    print_tables(results, args.workers, args.minari)
    if args.json:
        write_json(args.json, [dataclasses.asdict(r) for r in results])
    return 0


if __name__ == "__main__":
    sys.exit(main())
