"""`pipeline rollout`: record episodes of one or more tasks into a JAT-format dataset.

The driver only plans and schedules: it fixes every episode's id, seed and split, hands
batches of them (work units) to workers (Ray actors, or this process with `workers=0`), and
merges the shard records the workers return into one manifest per config. Workers own their
envs, policies and shard writers, so episodes never pass through the driver.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

from pipeline.collector import Progress, RolloutWorker, UnitResult, WorkerSettings
from pipeline.errors import PipelineError
from pipeline.executor import run_streaming
from pipeline.layout import write_readme
from pipeline.manifest import Manifest, dataset_configs, write_info, write_manifest
from pipeline.plan import WorkUnit, make_units, plan_episodes
from pipeline.policies import check_policy
from pipeline.registry import TaskSpec, resolve_tasks
from pipeline.schema import DATA_DIR, TMP_DIR
from pipeline.shards import DEFAULT_MAX_SHARD_BYTES
from pipeline.storage import Location, check_writable, open_location

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutConfig:
    """What to record, where, and how."""

    out: str
    """Dataset root: a local folder or a `pyarrow.fs` URI such as s3://bucket/prefix."""
    suite: str | None = None
    """Suite to record (atari, babyai, metaworld, mujoco); all its tasks unless `tasks` is set."""
    tasks: tuple[str, ...] = ()
    """Task names (short within the suite, or full config names like `babyai-go-to`)."""
    episodes: int | None = None
    """Episodes per task. With neither this nor `steps`, the registry's JAT budget is used."""
    steps: int | None = None
    """Steps per task instead of episodes: whole episodes are recorded until this many steps."""
    workers: int = 1
    """Ray actors recording in parallel; 0 runs everything in this process (debugging, tests)."""
    policy: str | None = None
    """expert | scripted | random; default: the suite's `rollout.policy` in env_configs/."""
    seed: int = 0
    """Run seed: episode seeds and splits derive from it, whoever records them."""
    test_fraction: float | None = None
    """Share of test episodes; default: JAT's per suite (Atari/Meta-World/MuJoCo 0.1, BabyAI 0.02)."""
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    """Size cap per Parquet shard."""
    episodes_per_shard: int | None = None
    """Episodes per work unit (and so per shard at most); default per suite in env_configs/."""
    max_episode_steps: int | None = None
    """Horizon override (Meta-World: 100 by default, JAT's); None keeps the registry's."""
    overwrite: bool = False
    """Replace configs that already exist in `out` (only those; other configs are kept)."""
    address: str | None = None
    """Ray cluster address; default RAY_ADDRESS, else a local cluster."""
    experts_dir: str | None = None
    """Where `train-experts` saved experts (for `--policy expert`)."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.episodes is not None and self.steps is not None:
            raise PipelineError("give --episodes or --steps, not both")
        for name in ("episodes", "steps", "max_shard_bytes", "episodes_per_shard", "max_episode_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise PipelineError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.workers < 0:
            raise PipelineError(f"--workers must be 0 (in-process) or more, got {self.workers}")
        if self.test_fraction is not None and not 0 <= self.test_fraction < 1:
            raise PipelineError(f"--test-fraction must be in [0, 1), got {self.test_fraction}")


@dataclass
class ConfigRun:
    """Driver-side state of one config during a run."""

    spec: TaskSpec
    policy: str
    test_fraction: float
    per_unit: int
    budget: dict[str, int]
    next_id: int = 0
    next_index: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})
    outstanding: int = 0
    episodes: int = 0
    steps: int = 0
    results: list[UnitResult] = field(default_factory=list)

    def plan(self, count: int, seed: int, workers: int) -> list[WorkUnit]:
        planned = plan_episodes(
            self.spec.config,
            self.next_id,
            count,
            seed,
            self.test_fraction,
            ensure_test="episodes" in self.budget,
        )
        self.next_id += count
        units = make_units(self.spec.config, planned, self.per_unit, workers, self.next_index)
        self.outstanding += len(units)
        return units


@dataclass
class RolloutSummary:
    out: str
    configs: dict[str, dict[str, int]]
    seconds: float

    @property
    def total_steps(self) -> int:
        return sum(c["steps"] for c in self.configs.values())


def _prepare_output(location: Location, configs: list[str], overwrite: bool) -> None:
    """Refuse to mix runs silently: existing configs need --overwrite; foreign folders are refused."""
    if location.is_empty():
        return
    existing = dataset_configs(location)
    if not existing and not location.exists("meta/info.json"):
        raise PipelineError(
            f"output {location.uri} is not empty and is not a jat-pipeline dataset: choose an empty --out"
        )
    clash = sorted(c for c in configs if c in existing or location.exists(DATA_DIR.format(config=c)))
    if clash and not overwrite:
        raise PipelineError(
            f"output {location.uri} already holds {', '.join(clash)} (finished or interrupted): "
            "pass --overwrite to replace them, or choose another --out"
        )
    for name in clash:
        location.delete(DATA_DIR.format(config=name))
        location.delete(f"meta/{name}")
    location.delete(TMP_DIR)


def run_rollout(config: RolloutConfig) -> RolloutSummary:
    """Record the configured tasks into `config.out`; returns per-config counts."""
    specs = resolve_tasks(config.suite, list(config.tasks) or None)
    runs: dict[str, ConfigRun] = {}
    for spec in specs:
        kind = config.policy or spec.rollout.get("policy", "random")
        check_policy(kind, spec, config.experts_dir)
        budget = (
            {"episodes": config.episodes}
            if config.episodes
            else {"steps": config.steps}
            if config.steps
            else dict(spec.rollout["budget"])
        )
        runs[spec.config] = ConfigRun(
            spec,
            kind,
            config.test_fraction
            if config.test_fraction is not None
            else spec.rollout.get("test_fraction", 0.1),
            config.episodes_per_shard or spec.rollout.get("episodes_per_shard", 100),
            budget,
        )
    location = open_location(config.out)
    _prepare_output(location, list(runs), config.overwrite)
    check_writable(location)

    workers = config.workers
    first_round = max(2 * max(workers, 1), 4)
    units: list[WorkUnit] = []
    for run in runs.values():
        count = run.budget.get("episodes") or first_round
        units += run.plan(count, config.seed, workers)

    display = _Display(runs, config.progress)
    started = time.monotonic()

    def on_item(item: Progress | UnitResult) -> Iterable[WorkUnit]:
        if isinstance(item, Progress):
            runs[item.config].episodes += item.episodes
            runs[item.config].steps += item.steps
            display.update(runs)
            return []
        run = runs[item.unit.config]
        run.results.append(item)
        run.outstanding -= 1
        follow: list[WorkUnit] = []
        if item.leftover:  # the shard filled up: the unplayed episodes get a shard of their own
            index = run.next_index[item.unit.split]
            run.next_index[item.unit.split] += 1
            follow.append(WorkUnit(item.unit.config, item.unit.split, index, item.leftover))
            run.outstanding += 1
        elif "steps" in run.budget and run.outstanding == 0 and run.steps < run.budget["steps"]:
            kept = [e for r in run.results if r.shard for e in r.shard.episodes]
            mean_length = (sum(e.length for e in kept) / len(kept)) if kept else 1.0
            count = max(1, math.ceil((run.budget["steps"] - run.steps) / max(mean_length, 1.0)))
            follow += run.plan(count, config.seed, workers)
        return follow

    settings = WorkerSettings(
        out=location.uri,
        policies={c: r.policy for c, r in runs.items()},
        experts_dir=config.experts_dir,
        max_shard_bytes=config.max_shard_bytes,
        max_episode_steps=config.max_episode_steps,
    )
    try:
        run_streaming(partial(RolloutWorker, settings), "run_unit", units, on_item, workers, config.address)
    finally:
        display.close()
    return _finish(location, runs, config, time.monotonic() - started)


def _finish(
    location: Location, runs: dict[str, ConfigRun], config: RolloutConfig, seconds: float
) -> RolloutSummary:
    """Merge unit results into manifests (written last, after every shard), then the README."""
    summary: dict[str, dict[str, int]] = {}
    for name, run in runs.items():
        provenance = next((r.provenance for r in run.results if r.provenance), {})
        manifest = Manifest(
            config=name,
            suite=run.spec.suite,
            env_id=run.spec.env_id,
            make_kwargs=run.spec.make_kwargs,
            plan={
                "seed": config.seed,
                "budget": run.budget,
                "test_fraction": run.test_fraction,
                "policy": run.policy,
                "planned_episodes": run.next_id,
                "max_episode_steps": config.max_episode_steps or run.spec.max_episode_steps,
            },
            provenance=provenance,
            shards=[r.shard for r in run.results if r.shard],
            dropped=[d for r in run.results for d in r.dropped],
        )
        write_manifest(location, manifest)
        totals = manifest.totals()
        summary[name] = {
            "train_episodes": totals["train"]["episodes"],
            "test_episodes": totals["test"]["episodes"],
            "steps": totals["train"]["steps"] + totals["test"]["steps"],
            "dropped": len(manifest.dropped),
        }
        log.info("%s: %s", name, summary[name])
    write_info(location)
    write_readme(location)
    location.delete(TMP_DIR)
    return RolloutSummary(location.uri, summary, seconds)


class _Display:
    """A rich progress bar per config: episodes, steps and steps/s."""

    def __init__(self, runs: dict[str, ConfigRun], enabled: bool) -> None:
        self.progress = None
        if not enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            TextColumn("{task.fields[episodes]:>7} episodes {task.fields[steps]:>9} steps"),
            TextColumn("{task.fields[rate]:>8.0f} steps/s"),
            TimeElapsedColumn(),
        )
        self.started = time.monotonic()
        self.tasks = {}
        for name, run in runs.items():
            total = run.budget.get("episodes") or run.budget.get("steps")
            self.tasks[name] = self.progress.add_task(name, total=total, episodes=0, steps=0, rate=0.0)
        self.progress.start()

    def update(self, runs: dict[str, ConfigRun]) -> None:
        if self.progress is None:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        for name, run in runs.items():
            done = run.episodes if "episodes" in run.budget else run.steps
            self.progress.update(
                self.tasks[name],
                completed=done,
                episodes=run.episodes,
                steps=run.steps,
                rate=run.steps / elapsed,
            )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
