"""The task registry: all 157 JAT tasks, loaded from the YAML files in `env_configs/`.

One YAML per suite holds suite defaults (env, rollout, expert sections) and per-task entries
(env id, make kwargs, spaces, reference scores). This module turns them into frozen, typed
specs and rejects unknown keys by name, so a typo in a config fails at load time.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from typing import Any

import yaml

from pipeline.errors import PipelineError
from pipeline.tasks.sections import (
    EnvSection,
    ExpertSection,
    RolloutSection,
    check_keys,
    read_expert_section,
    read_section,
)

_TASK_KEYS = {
    "env_id",
    "jat_env_id",
    "env_name",
    "make_kwargs",
    "observation",
    "action",
    "has_fire",
    "sample_factory_env",
    "max_episode_steps",
    "jat_obs_dim",
    "scores",
    "expert_source",
    "notes",
    "expert",
}
_SUITE_KEYS = {"suite", "defaults", "tasks", "required_task_keys"}
_DEFAULT_SECTIONS = {"env", "rollout", "expert"}

# libyaml's safe loader reads the four suite files ~9x faster than the pure-Python one (0.07 s
# against 0.63 s): every CLI call and every rollout actor loads the registry.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class SpaceSpec:
    """An observation or action space as stored in the dataset."""

    type: str  # image | discrete | continuous
    shape: tuple[int, ...] = ()
    n: int | None = None
    low: float = -math.inf
    high: float = math.inf
    text: bool = False  # BabyAI: a mission string accompanies every step

    @property
    def dim(self) -> int:
        return int(math.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True)
class Scores:
    """Reference episode returns from JAT (expert = JAT dataset, random, human for Atari)."""

    expert_mean: float
    random_mean: float
    expert_std: float | None = None
    random_std: float | None = None
    human_mean: float | None = None

    def normalise(self, score: float) -> float:
        """(score - random) / (expert - random), JAT's expert-normalised score."""
        return (score - self.random_mean) / (self.expert_mean - self.random_mean)

    def human_normalise(self, score: float) -> float | None:
        if self.human_mean is None:
            return None
        return (score - self.random_mean) / (self.human_mean - self.random_mean)


@dataclass(frozen=True)
class TaskSpec:
    """One JAT task: its config name, how to build its env, and what its data must look like."""

    config: str  # JAT config name, e.g. "atari-pong"
    suite: str
    task: str  # short name, e.g. "pong"
    env_id: str
    jat_env_id: str
    make_kwargs: dict[str, Any]
    observation: SpaceSpec
    action: SpaceSpec
    scores: Scores
    env: EnvSection = field(default_factory=EnvSection)  # the suite's env section (wrappers, horizon…)
    rollout: RolloutSection = field(default_factory=RolloutSection)  # the suite's rollout section
    expert: ExpertSection = field(default_factory=ExpertSection)  # the suite's, merged with the task's
    max_episode_steps: int | None = None
    env_name: str | None = None  # Meta-World task name (e.g. "assembly-v3")
    # JAT's stored observation size, declared apart from `observation` (MuJoCo): a v5 layout cannot slip in
    jat_obs_dim: int | None = None
    has_fire: bool = False
    sample_factory_env: str | None = None
    expert_source: str = ""
    notes: tuple[str, ...] = ()
    variant: str | None = None  # "top80", "history": a dataset variant of the task (own config name)

    @property
    def base_config(self) -> str:
        """The task's own config name, also for a variant ("mujoco-hopper" for "mujoco-hopper-top80"):
        what experts are stored under."""
        return self.config[: -len(self.variant) - 1] if self.variant else self.config


def _space(data: dict[str, Any]) -> SpaceSpec:
    return SpaceSpec(
        type=data["type"],
        shape=tuple(data.get("shape", ())),
        n=data.get("n"),
        low=float(data.get("low", "-inf")),
        high=float(data.get("high", "inf")),
        text=bool(data.get("text", False)),
    )


def _scores(data: dict[str, Any]) -> Scores:
    return Scores(
        expert_mean=data["expert"]["mean"],
        expert_std=data["expert"].get("std"),
        random_mean=data["random"]["mean"],
        random_std=data["random"].get("std"),
        human_mean=data.get("human", {}).get("mean"),
    )


_REQUIRED_WHY = {"jat_obs_dim": "the observation size in JAT's {jat_env_id} data"}
"""What a key a suite requires of every task (`required_task_keys` in its YAML) means."""


def _check_required(where: str, entry: dict[str, Any], required: list[str], jat_env_id: str) -> None:
    for key in required:
        if key not in entry:
            why = _REQUIRED_WHY.get(key, "which this suite requires of every task").format(
                jat_env_id=jat_env_id
            )
            raise PipelineError(f"{where}: add `{key}`, {why}")


def _check_jat_size(where: str, spec: TaskSpec) -> None:
    """Refuse a task that would not store JAT's observation size, where JAT's size is declared.

    JAT's model expands any vector cyclically, so a different size (Humanoid-v5's 348 for JAT's 376)
    trains without error but puts every feature where JAT's model does not expect it. A suite whose
    tasks JAT recorded requires the key (`required_task_keys: [jat_obs_dim]`, MuJoCo).
    """
    if spec.jat_obs_dim is None:
        return
    if spec.observation.dim != spec.jat_obs_dim:
        raise PipelineError(
            f"{where}: observation shape {list(spec.observation.shape)} is not JAT's {spec.jat_obs_dim} "
            f"values; use an env with JAT's layout ({spec.jat_env_id}, or make_kwargs that restore it)"
        )


def _merge_expert(defaults: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Per-task `expert:` over the suite's: sections (dicts) merge key by key, other values replace."""
    merged = dict(defaults)
    for key, value in override.items():
        base = merged.get(key)
        merged[key] = {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
    return merged


def _load_suite(suite: str) -> dict[str, TaskSpec]:
    return parse_suite(suite, resources.files("env_configs").joinpath(f"{suite}.yaml").read_text())


def parse_suite(suite: str, text: str) -> dict[str, TaskSpec]:
    """The tasks of `env_configs/<suite>.yaml` from its text; any mistake is one PipelineError line."""
    where = f"env_configs/{suite}.yaml"
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise PipelineError(f"{where} is not valid YAML{at}: {problem} (fix the file)") from None
    if not isinstance(data, dict) or "tasks" not in data:
        raise PipelineError(f"{where} must be a mapping with `suite`, `defaults` and `tasks` (fix the file)")
    check_keys(where, data, _SUITE_KEYS)
    defaults = data.get("defaults") or {}
    check_keys(f"{where} defaults", defaults, _DEFAULT_SECTIONS)
    env = read_section(EnvSection, defaults.get("env"), f"{where} defaults env")
    rollout = read_section(RolloutSection, defaults.get("rollout"), f"{where} defaults rollout")
    read_expert_section(defaults.get("expert") or {}, f"{where} defaults expert")  # its own mistakes first
    required = data.get("required_task_keys") or []
    unknown = sorted(set(required) - _TASK_KEYS)
    if unknown:
        raise PipelineError(f"{where} required_task_keys names unknown task keys {unknown} (fix the file)")
    specs = {}
    for short, entry in data["tasks"].items():
        if isinstance(entry, dict):
            _check_required(f"{where} task {short!r}", entry, required, entry.get("jat_env_id", "?"))
        try:
            spec = _task_spec(suite, short, entry, (env, rollout, defaults.get("expert") or {}), where)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"misses the key {exc}" if isinstance(exc, KeyError) else f"is malformed: {exc}"
            raise PipelineError(f"{where} task {short!r} {what} (fix the file)") from None
        _check_jat_size(f"{where} task {short!r}", spec)
        specs[spec.config] = spec
    return specs


def _task_spec(
    suite: str,
    short: str,
    entry: dict[str, Any],
    defaults: tuple[EnvSection, RolloutSection, dict],
    where: str,
) -> TaskSpec:
    """One task's spec from its YAML entry and the suite's sections (keys checked, values typed)."""
    check_keys(f"{where} task {short!r}", entry, _TASK_KEYS)
    env, rollout, expert_defaults = defaults
    own_expert = entry.get("expert") or {}
    expert = read_expert_section(_merge_expert(expert_defaults, own_expert), f"{where} task {short!r} expert")
    spec = TaskSpec(
        config=f"{suite}-{short}",
        suite=suite,
        task=short,
        env_id=entry["env_id"],
        jat_env_id=entry["jat_env_id"],
        make_kwargs={**env.make_kwargs, **entry.get("make_kwargs", {})},
        observation=_space(entry["observation"]),
        action=_space(entry["action"]),
        scores=_scores(entry["scores"]),
        env=env,
        rollout=rollout,
        expert=expert,
        max_episode_steps=entry.get("max_episode_steps", env.max_episode_steps),
        env_name=entry.get("env_name"),
        jat_obs_dim=entry.get("jat_obs_dim"),
        has_fire=bool(entry.get("has_fire", False)),
        sample_factory_env=entry.get("sample_factory_env"),
        expert_source=entry.get("expert_source", ""),
        notes=tuple(entry.get("notes", ())),
    )
    return spec


@cache
def suite_names() -> tuple[str, ...]:
    """Every suite, in name order: one per `env_configs/*.yaml` (its code: `pipeline/suites/<name>.py`)."""
    files = resources.files("env_configs").iterdir()
    return tuple(sorted(p.name.removesuffix(".yaml") for p in files if p.name.endswith(".yaml")))


@cache
def all_tasks() -> dict[str, TaskSpec]:
    """Every registered task, keyed by JAT config name, in suite order."""
    tasks: dict[str, TaskSpec] = {}
    for suite in suite_names():
        tasks.update(_load_suite(suite))
    return tasks


def suite_tasks(suite: str) -> list[TaskSpec]:
    if suite not in suite_names():
        raise PipelineError(_unknown("suite", suite, list(suite_names())))
    return [t for t in all_tasks().values() if t.suite == suite]


def _unknown(kind: str, name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown {kind} {name!r}{hint} (`pipeline tasks` lists them all)"


# Dataset variants publish as configs of their own: "<config>-top80" keeps episodes scoring at
# least 0.8 on the expert-normalised scale (Gato's filter); "<config>-history" holds an expert's
# learning history (Algorithm Distillation).
_VARIANT = re.compile(r"^(?P<base>.+)-(?P<variant>top(?:100|[1-9][0-9]?)|history)$")


def variant_config(config: str, variant: str) -> str:
    return f"{config}-{variant}"


def get_task(name: str, suite: str | None = None) -> TaskSpec:
    """Look a task up by config name ("babyai-go-to") or, within a suite, by short name ("go-to").

    Variant configs ("mujoco-hopper-top80") resolve to their task, keeping their own config name.
    """
    tasks = all_tasks()
    match = _VARIANT.match(name)
    if name not in tasks and match and match["base"] in tasks:
        return replace(get_task(match["base"], suite), config=name, variant=match["variant"])
    if name in tasks:
        spec = tasks[name]
        if suite is not None and spec.suite != suite:
            raise PipelineError(f"task {name!r} belongs to suite {spec.suite!r}, not {suite!r}")
        return spec
    if suite is not None and f"{suite}-{name}" in tasks:
        return tasks[f"{suite}-{name}"]
    valid = [t.task for t in suite_tasks(suite)] if suite else list(tasks)
    raise PipelineError(_unknown("task", name, valid))


def resolve_tasks(suite: str | None, names: list[str] | None) -> list[TaskSpec]:
    """The tasks a command works on: named ones (checked up front), else the whole suite."""
    if not names:
        if suite is None:
            raise PipelineError("name a --suite or some --tasks (`pipeline tasks` lists them)")
        return suite_tasks(suite)
    if suite is not None:
        suite_tasks(suite)  # validates the suite name
    specs = [get_task(n, suite) for n in names]
    seen: set[str] = set()
    return [s for s in specs if not (s.config in seen or seen.add(s.config))]
