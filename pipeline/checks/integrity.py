"""Damage on disk: a config's files checked against what its rollout recorded, and the repair.

A committed config is trustworthy only while its files are the ones the rollout wrote: the
manifest present and readable, every shard there with the size and sha256 recorded for it. A
truncated copy, a flipped bit or a deleted file breaks that silently. `pipeline validate` finds
such damage among its other checks; `pipeline report` and `pipeline publish` refuse it before any
work (`check_files`); `pipeline rollout --resume` repairs it (`pipeline.rollout.run_state`), re-recording
only the damaged units with their planned seeds. `resume_command` spells out that repair for the
config(s) at hand from their stored plan, so every refusal names the exact command.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pyarrow.fs as pafs

from pipeline.errors import PipelineError, ValidationFailed
from pipeline.format.manifest import read_manifest
from pipeline.format.plan import RunPlan
from pipeline.format.schema import MANIFEST_PATH, PLAN_PATH
from pipeline.runtime.storage import Location
from pipeline.suites import get_suite
from pipeline.tasks.registry import get_task


@dataclass(frozen=True)
class Damage:
    """One damaged file of a config: which, and what is wrong with it."""

    config: str
    path: str
    problem: str

    def line(self) -> str:
        return f"{self.config}: {self.path} {self.problem}"


def file_problem(location: Location, path: str, num_bytes: int, sha256: str) -> str | None:
    """What is wrong with a committed file against its recorded size and sha256, None if nothing.

    The size comes from a listing; only a file of the right size is read (once) for its checksum.
    """
    info = location.fs.get_file_info(location.path(path))
    if info.type == pafs.FileType.NotFound:
        return "is missing (deleted)"
    if info.type != pafs.FileType.File:
        return "is not a file"
    if info.size != num_bytes:
        return f"has {info.size} bytes, {num_bytes} were recorded (truncated or replaced)"
    if location.sha256(info.path) != sha256:
        return "has a sha256 other than the recorded one (corrupted)"
    return None


def config_damage(location: Location, config: str) -> list[Damage]:
    """The file-level checks of one config: manifest present and readable, every shard intact."""
    path = MANIFEST_PATH.format(config=config)
    if not location.exists(path):
        return [Damage(config, path, "is missing")]
    try:
        manifest = read_manifest(location, config)
    except PipelineError as exc:
        return [Damage(config, path, f"is unreadable ({inner_cause(str(exc))})")]
    found = []
    for shard in manifest.shards:
        problem = file_problem(location, shard.path, shard.num_bytes, shard.sha256)
        if problem:
            found.append(Damage(config, shard.path, problem))
    return found


def unfinished_configs(location: Location, requested: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Configs a rollout planned (`plan.json`) that have no manifest: deleted, or never committed.

    Of `requested` if given, else of the whole dataset (folder names that are no task are skipped).
    """
    if requested:
        names = list(requested)
    else:
        names = [i.base_name for i in location.list("meta") if i.type == pafs.FileType.Directory]
    return sorted(
        name
        for name in names
        if location.exists(PLAN_PATH.format(config=name))
        and not location.exists(MANIFEST_PATH.format(config=name))
        and _known(name)
    )


def _known(config: str) -> bool:
    try:
        get_task(config)
    except PipelineError:
        return False
    return True


def inner_cause(message: str) -> str:
    """The parenthesised cause inside a `read_manifest` error, else the whole message."""
    inner = message.partition("(")[2].rpartition(")")[0]
    return inner or message


def check_files(location: Location, configs: list[str], stage: str) -> None:
    """Refuse, in one line, configs whose files are damaged: before `stage` does any work."""
    damage = [d for config in configs for d in config_damage(location, config)]
    if not damage:
        return
    more = f" (and {len(damage) - 1} more damaged file(s))" if len(damage) > 1 else ""
    configs_hit = sorted({d.config for d in damage})
    raise ValidationFailed(
        f"{damage[0].line()}{more}: nothing was {stage}; "
        f"{repair_hint(location, configs_hit)}, then check with `pipeline validate {location.uri}`"
    )


def repair_hint(location: Location, configs: list[str]) -> str:
    """'re-record the damaged shards: pipeline rollout ... --resume', for the named configs."""
    return f"re-record the damaged shards: {resume_command(location, configs)}"


def resume_command(location: Location, configs: list[str]) -> str:
    """The `pipeline rollout ... --resume` that repairs `configs`, from their stored plans.

    Configs sharing their settings share one command; options the plan cannot tell (an expert's
    `--experts-dir`) are named as placeholders.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for config in configs:
        task, flags = _flags(location, config)
        groups.setdefault(flags, []).append(task)
    commands = []
    for flags, tasks in groups.items():
        words = ["pipeline", "rollout", "--out", location.uri, "--tasks", ",".join(tasks), *flags, "--resume"]
        commands.append(" ".join(w if w.startswith("<") else shlex.quote(w) for w in words))
    return "; ".join(commands)


def _stored_plan(location: Location, config: str) -> RunPlan | None:
    for path in (PLAN_PATH.format(config=config), MANIFEST_PATH.format(config=config)):
        try:
            data = location.read_json(path)
            return RunPlan.from_dict(data if path.endswith("plan.json") else data["plan"], path)
        except (OSError, ValueError, KeyError, TypeError, PipelineError):
            continue
    return None


def _flags(location: Location, config: str) -> tuple[str, tuple[str, ...]]:
    """(the task to name, the rollout flags that reproduce the config's stored plan)."""
    spec = get_task(config)
    plan = _stored_plan(location, config)
    if plan is None:
        return config, ("<the original options>",)
    flags: list[str] = []
    if plan.history is not None:
        flags += ["--learning-history", "--episodes", str(plan.history.episodes_per_snapshot)]
    elif plan.budget != spec.rollout.budget:
        kind, value = next(iter(plan.budget.to_dict().items()))
        flags += [f"--{kind}", str(value)]
    if plan.seed != 0:
        flags += ["--seed", str(plan.seed)]
    if plan.policy != spec.rollout.policy and plan.history is None:
        flags += ["--policy", plan.policy]
    if plan.test_fraction != spec.rollout.test_fraction:
        flags += ["--test-fraction", repr(plan.test_fraction)]
    if plan.max_episode_steps != spec.max_episode_steps:
        flags += ["--max-episode-steps", str(plan.max_episode_steps)]
    if plan.min_return_fraction is not None:
        flags += ["--min-return-fraction", repr(plan.min_return_fraction)]
    if plan.envs_per_worker is not None and plan.envs_per_worker != spec.rollout.envs_per_worker:
        flags += ["--envs-per-worker", str(plan.envs_per_worker)]
    if plan.policy == "expert" and get_suite(spec.suite).scripted_expert is None:
        flags += ["--experts-dir", "<the original experts dir>"]
    return spec.base_config, tuple(flags)
