"""`pipeline rollout`: record episodes of one or more tasks into a JAT-format dataset.

The driver only plans and schedules: it fixes every episode's id, seed and split, hands
batches of them (work units) to workers (Ray actors, or this process with `workers=0`), and
merges the shard records the workers return into one manifest per config. Workers own their
envs, policies and shard writers, so episodes never pass through the driver.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from functools import partial

from pipeline.configs.datasets import RolloutConfig
from pipeline.errors import PipelineError
from pipeline.format.manifest import read_info, read_manifest, write_info, write_manifest
from pipeline.format.plan import HistoryPlan, RunPlan, WorkUnit
from pipeline.format.schema import DATA_DIR, INFO_PATH, META_DIR, PLAN_PATH, RUN_LEASE_PATH, TMP_DIR
from pipeline.release.card import write_readme
from pipeline.rollout.collector import Progress, RolloutWorker, UnitResult, WorkerSettings
from pipeline.rollout.policy_factory import check_policy, history_snapshots
from pipeline.rollout.returns import write_returns_to_go
from pipeline.rollout.run_state import SPLIT_RULE, ConfigRun
from pipeline.runtime.executor import require_shared_storage, run_streaming
from pipeline.runtime.progress import Bars
from pipeline.runtime.storage import Location, check_writable, open_location
from pipeline.suites import get_suite
from pipeline.tasks.registry import get_task, resolve_tasks, variant_config
from pipeline.tasks.sections import Budget

log = logging.getLogger(__name__)
HISTORY_EPISODES = 10  # episodes per expert snapshot in a learning history, unless --episodes says


@dataclass
class RolloutSummary:
    out: str
    configs: dict[str, dict[str, int]]
    seconds: float

    @property
    def total_steps(self) -> int:
        return sum(c["steps"] for c in self.configs.values())


def _prepare_output(location: Location, configs: list[str], overwrite: bool, resume: bool) -> set[str]:
    """Refuse to mix runs silently; return the configs to resume (they have a plan on disk).

    Existing configs need --overwrite (start again) or --resume (finish an interrupted run);
    folders that are not jat-pipeline datasets are refused either way. A folder a rollout
    left in its first moments (a lease or temporary files, no `meta/info.json` yet) is ours.
    """
    if location.is_empty():
        return set()
    if read_info(location) is None and not _only_startup_files(location):  # read_info checks the version
        raise PipelineError(
            f"output {location.uri} is not empty and is not a jat-pipeline dataset: choose an empty --out"
        )
    present = sorted(c for c in configs if _has_content(location, c))
    if present and not (overwrite or resume):
        raise PipelineError(
            f"output {location.uri} already holds {', '.join(present)} (finished or interrupted): "
            "pass --resume to finish an interrupted run, --overwrite to replace them, or choose another --out"
        )
    if resume:
        unplanned = [c for c in present if not location.exists(PLAN_PATH.format(config=c))]
        if unplanned:
            raise PipelineError(
                f"cannot resume {', '.join(unplanned)} in {location.uri}: no plan.json (not written by a "
                "rollout of this version); use --overwrite to record them again"
            )
        return set(present)
    for name in present:
        location.delete(DATA_DIR.format(config=name))
        location.delete(META_DIR.format(config=name))
    return set()


def _only_startup_files(location: Location) -> bool:
    """What a rollout killed before `meta/info.json` can leave: `.tmp/`, `meta/run.json`, empty dirs."""
    for info in location.list("", recursive=True):
        relative = location.relative(info.path)
        if relative.startswith(f"{TMP_DIR}/") or relative == TMP_DIR:
            continue
        if info.type.name == "Directory" or relative == RUN_LEASE_PATH:
            continue
        return False
    return True


def _has_content(location: Location, config: str) -> bool:
    """A config counts as present once a file of it exists (an empty folder is a crash's leftover)."""
    return any(
        info.type.name == "File"
        for folder in (META_DIR.format(config=config), DATA_DIR.format(config=config))
        for info in location.list(folder, recursive=True)
    )


def _config_runs(config: RolloutConfig) -> dict[str, ConfigRun]:
    """Resolve tasks and policies, all checked before any work starts."""
    runs: dict[str, ConfigRun] = {}
    for spec in resolve_tasks(config.suite, list(config.tasks) or None):
        history = None
        if config.min_return_fraction is not None:
            spec = get_task(variant_config(spec.config, f"top{round(config.min_return_fraction * 100)}"))
        if config.learning_history:
            spec = get_task(variant_config(spec.config, "history"))
            kind = "expert"
            history = HistoryPlan(
                tuple(history_snapshots(spec, config.experts_dir)), config.episodes or HISTORY_EPISODES
            )
        else:
            kind = config.policy or spec.rollout.policy
            check_policy(kind, spec, config.experts_dir, config.allow_weak)
        budget = (
            Budget(episodes=history.episodes)
            if history
            else Budget(episodes=config.episodes)
            if config.episodes
            else Budget(steps=config.steps)
            if config.steps
            else spec.rollout.budget
        )
        fraction = config.test_fraction if config.test_fraction is not None else spec.rollout.test_fraction
        _check_both_splits(spec.config, budget, fraction)
        width = config.envs_per_worker or spec.rollout.envs_per_worker
        run_plan = RunPlan(
            seed=config.seed,
            budget=budget,
            test_fraction=fraction,
            policy=kind,
            max_episode_steps=config.max_episode_steps or spec.max_episode_steps,
            min_return_fraction=config.min_return_fraction,
            split_rule=SPLIT_RULE,
            history=history,
            envs_per_worker=int(width) if kind == "expert" else None,  # fixes how expert actions round
            atari_semantics=get_suite(spec.suite).atari_semantics(spec),
        )
        per_unit = config.episodes_per_shard or spec.rollout.episodes_per_shard
        runs[spec.config] = ConfigRun(spec, run_plan, per_unit)
    return runs


def _check_both_splits(config: str, budget: Budget, test_fraction: float) -> None:
    """JAT's format has a train and a test split: refuse, before any work, a run that cannot."""
    if test_fraction <= 0:
        raise PipelineError(
            f"{config}: a test fraction of 0 makes no test split, which the JAT format needs: "
            "give --test-fraction a value in (0, 1)"
        )
    if budget.episodes is not None and budget.episodes < 2:
        raise PipelineError(
            f"{config}: {budget.episodes} episode cannot fill a train and a test split: "
            "record at least 2 (--episodes 2)"
        )


def rollout(config: RolloutConfig) -> RolloutSummary:
    """Record the configured tasks into `config.out`; returns per-config counts.

    Each config is committed (manifest, then `meta/info.json` and the README's `configs:`) as
    soon as its last unit is in, so an interrupted multi-config run leaves every finished
    config valid and loadable, and `--resume` completes the rest.
    """
    runs = _config_runs(config)
    require_shared_storage(
        {"--out": config.out, "--experts-dir": config.experts_dir},
        config.address,
        config.workers,
        config.shared_fs,
    )
    location = open_location(config.out)
    to_resume = _prepare_output(location, list(runs), config.overwrite, config.resume)
    check_writable(location)
    location.delete(TMP_DIR)  # temporary files of an interrupted run are never resumed
    if not location.exists(INFO_PATH):
        write_info(location)  # first: from here on the folder is recognisably a dataset
    run_id = uuid.uuid4().hex
    location.write_json(RUN_LEASE_PATH, {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid()})

    workers = config.workers
    units: list[WorkUnit] = []
    for name, run in runs.items():
        units += run.resume(location, workers) if name in to_resume else run.first_round(location, workers)

    display = _Display(runs, config.progress)
    started = time.monotonic()
    counted: dict[tuple[str, str, int], list[int]] = {}  # progress reported by a unit's current attempt

    def forget(unit: WorkUnit) -> None:
        episodes, steps = counted.pop(unit.key, [0, 0])
        runs[unit.config].episodes -= episodes
        runs[unit.config].steps -= steps

    def take(result: UnitResult) -> list[WorkUnit]:
        run = runs[result.unit.config]
        if result.unit.key in run.results:
            return []
        forget(result.unit)  # the result's own counts replace what its attempt reported
        run.episodes += len(result.unit.episodes) - len(result.leftover)
        run.steps += result.steps
        follow = run.take(result, location, workers)
        if run.finished:
            _commit(location, run)
        display.update(runs)
        return follow

    def on_item(item: Progress | UnitResult) -> list[WorkUnit]:
        if isinstance(item, UnitResult):
            return take(item)
        if item.unit.key not in runs[item.unit.config].results:
            progress = counted.setdefault(item.unit.key, [0, 0])
            progress[0] += item.episodes
            progress[1] += item.steps
            runs[item.unit.config].episodes += item.episodes
            runs[item.unit.config].steps += item.steps
            display.update(runs)
        return []

    def on_lost(unit: WorkUnit) -> list[WorkUnit]:
        """A worker died mid-unit: use what it committed, else run the unit again."""
        run = runs[unit.config]
        if unit.key in run.results:
            return []
        forget(unit)
        committed = run.recorded(location, unit)
        return take(committed) if committed is not None else [unit]

    settings = WorkerSettings(
        out=location.uri,
        policies={c: r.run_plan.policy for c, r in runs.items()},
        experts_dir=config.experts_dir,
        allow_weak=config.allow_weak,
        max_shard_bytes=config.max_shard_bytes,
        max_episode_steps=config.max_episode_steps,
        min_return_fraction=config.min_return_fraction,
        envs_per_worker={c: r.run_plan.envs_per_worker or 1 for c, r in runs.items()},
        run_id=run_id,
    )
    try:
        for run in runs.values():  # a resume of a finished run has nothing to record
            if run.finished:
                _commit(location, run)
        run_streaming(
            partial(RolloutWorker, settings),
            "run_unit",
            units,
            on_item,
            workers,
            config.address,
            on_lost,
            config.placement_timeout_s,
        )
    finally:
        display.close()
    unfinished = [name for name, run in runs.items() if not run.committed]
    if unfinished:  # the executor returned with units outstanding: a bug, never exit 0 on it
        raise PipelineError(f"{', '.join(unfinished)} did not finish: re-run the same command with --resume")
    location.delete(TMP_DIR)
    summary = _summary(location, runs, time.monotonic() - started)
    if config.returns_to_go:
        for name in runs:
            write_returns_to_go(location, name)
    return summary


def _commit(location: Location, run: ConfigRun) -> None:
    """Write a finished config's checked manifest, then list it in info.json and the README."""
    manifest = run.build_manifest(location)
    write_manifest(location, manifest)
    run.committed = True
    write_info(location)
    write_readme(location)
    totals = manifest.totals()
    log.info(
        "%s: committed %d train + %d test episodes, %d dropped",
        run.spec.config,
        totals["train"]["episodes"],
        totals["test"]["episodes"],
        len(manifest.dropped),
    )


def _summary(location: Location, runs: dict[str, ConfigRun], seconds: float) -> RolloutSummary:
    summary: dict[str, dict[str, int]] = {}
    for name in runs:
        manifest = read_manifest(location, name)
        totals = manifest.totals()
        summary[name] = {
            "train_episodes": totals["train"]["episodes"],
            "test_episodes": totals["test"]["episodes"],
            "steps": totals["train"]["steps"] + totals["test"]["steps"],
            "dropped": len(manifest.dropped),
        }
    return RolloutSummary(location.uri, summary, seconds)


class _Display:
    """A progress bar per config: episodes, steps and steps/s."""

    def __init__(self, runs: dict[str, ConfigRun], enabled: bool) -> None:
        self.bars = Bars(
            enabled,
            lambda rp: (
                rp.TextColumn("{task.description:<28}"),
                rp.BarColumn(),
                rp.TextColumn("{task.fields[episodes]:>7} episodes {task.fields[steps]:>9} steps"),
                rp.TextColumn("{task.fields[rate]:>8.0f} steps/s"),
                rp.TimeElapsedColumn(),
            ),
        )
        self.started = time.monotonic()
        for name, run in runs.items():
            self.bars.add(name, run.budget.episodes or run.budget.steps, episodes=0, steps=0, rate=0.0)

    def update(self, runs: dict[str, ConfigRun]) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        for name, run in runs.items():
            done = run.episodes if run.budget.episodes is not None else run.steps
            self.bars.update(
                name, completed=done, episodes=run.episodes, steps=run.steps, rate=run.steps / elapsed
            )

    def close(self) -> None:
        self.bars.close()
