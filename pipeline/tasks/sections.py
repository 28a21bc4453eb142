"""The sections of `env_configs/<suite>.yaml` as typed, frozen dataclasses: each default declared once.

A suite's `defaults:` (and a task's own `expert:`) are read into these, and every stage reads the
fields instead of `dict.get(key, default)`: a misspelt key is refused by name when the registry
loads (not silently replaced by a default in whichever module reads it), a value of the wrong type
is refused with its place, and changing a default is one line here.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from pipeline.errors import PipelineError

EXPERT_BACKEND_SECTIONS = ("sample-factory", "sb3", "rllib", "babyai-bot", "metaworld-scripted")
"""A backend's own `expert:` sub-section (its hyperparameters, checked by the backend when it trains);
the names of `experts.base.BACKENDS`, which the registry must not import (experts import it)."""

ATARI_SEMANTICS = ("gymnasium", "envpool")
"""How Atari envs act (`EnvSection.atari_semantics`)."""


@dataclass(frozen=True)
class AtariWrappers:
    """`defaults.env.wrappers` (Atari): gymnasium's `AtariPreprocessing` and frame stack, as JAT recorded."""

    noop_max: int = 30
    frame_skip: int = 4
    screen_size: int = 84
    frame_stack: int = 4
    terminal_on_life_loss: bool = False
    """Stored episodes run to game over; training may end them at a life loss (`TrainingWrappers`)."""
    clip_rewards: bool = False
    """Stored rewards are the game's; training may clip them (`TrainingWrappers`)."""
    step_limit: int = 27000
    """`atari_semantics: envpool` only: agent steps per game before truncation (envpool's
    `max_episode_steps`, 108000 frames); the gymnasium path keeps ALE v5's 108000-frame limit."""

    def __post_init__(self) -> None:
        for name in ("noop_max", "frame_skip", "screen_size", "frame_stack", "step_limit"):
            if getattr(self, name) < (0 if name == "noop_max" else 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class TrainingWrappers:
    """`expert.training_wrappers`: wrappers used while training only, never when recording."""

    episodic_life: bool = False
    """End a training episode at a life loss (Atari)."""
    clip_rewards: bool = False
    """Train on the sign of the reward (Atari)."""


@dataclass(frozen=True)
class EnvSection:
    """`defaults.env`: how the suite's envs are built (the same for every task of the suite)."""

    make_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of `gym.make`, under the task's own `make_kwargs`."""
    wrappers: AtariWrappers = field(default_factory=AtariWrappers)
    """Atari: preprocessing and frame stack (unused by the other suites)."""
    max_episode_steps: int | None = None
    """The suite's horizon when a task sets none (Meta-World: JAT's 100 steps)."""
    goal_hidden: bool = True
    """Meta-World: zero the goal in stored observations, as JAT did (the scripted policy sees it)."""
    atari_semantics: str = "gymnasium"
    """Atari: `gymnasium` (`AtariPreprocessing`: no FIRE, a life loss changes nothing) or `envpool`
    (`pipeline.suites.atari_envpool`: what JAT's Sample Factory experts saw, FIRE on reset and envpool's
    life-loss reset, the stored episode still one whole game with unclipped rewards)."""

    def __post_init__(self) -> None:
        if self.atari_semantics not in ATARI_SEMANTICS:
            raise ValueError(
                f"atari_semantics must be one of {list(ATARI_SEMANTICS)}, got {self.atari_semantics!r}"
            )
        w = self.wrappers
        if self.atari_semantics == "envpool" and (
            w.terminal_on_life_loss or w.clip_rewards or w.noop_max < 1
        ):
            raise ValueError(
                "atari_semantics envpool handles life loss itself and stores unclipped rewards: "
                "set wrappers terminal_on_life_loss and clip_rewards to false and noop_max >= 1"
            )


@dataclass(frozen=True)
class Budget:
    """How much one config records: a number of episodes or of env steps (exactly one)."""

    episodes: int | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if (self.episodes is None) == (self.steps is None):
            raise ValueError("give exactly one of `episodes` and `steps`")
        for name in ("episodes", "steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")

    def to_dict(self) -> dict[str, int]:
        """As plans and manifests store it: {"episodes": N} or {"steps": N}."""
        return {"episodes": self.episodes} if self.episodes is not None else {"steps": self.steps}


@dataclass(frozen=True)
class RolloutSection:
    """`defaults.rollout`: what a rollout of the suite records and how, unless the CLI says otherwise."""

    budget: Budget = field(default_factory=lambda: Budget(episodes=100))
    """Per config; the CLI's `--episodes` / `--steps` replace it."""
    test_fraction: float = 0.1
    """Share of episodes in the test split (JAT: 10%, BabyAI 2%)."""
    episodes_per_shard: int = 100
    drop_unfinished: bool = False
    """Drop episodes that end at the step limit instead of a terminal state (BabyAI, as JAT did)."""
    policy: str = "random"
    """The policy when `--policy` is not given: expert, scripted or random."""
    envs_per_worker: int = 1
    """Envs a trained expert acts for per forward pass (lockstep, `pipeline.rollout.recorder`)."""
    episode_timeout_s: float = 600.0
    """Wall-clock seconds one episode may take, checked between steps (`pipeline.tasks.episodes`)."""
    bot_replan_timeout_s: float = 0.02
    """BabyAI bot: CPU seconds one `replan` may take before the episode is dropped (JAT's bound,
    data/envs/babyai/create_babyai_dataset.py)."""
    bot_replan_max_subgoals: int = 100
    """BabyAI bot: subgoals one replan may push before the episode is dropped. A healthy replan pushes
    at most 8 (39 tasks x 10 episodes measured), a runaway one hundreds within milliseconds; unlike
    time, the count depends on the env state alone, so drops do not depend on the machine's load."""

    def __post_init__(self) -> None:
        for name in ("episode_timeout_s", "bot_replan_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)!r}")
        for name in ("bot_replan_max_subgoals", "episodes_per_shard", "envs_per_worker"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"test_fraction must be in [0, 1), got {self.test_fraction!r}")


def check_threshold(threshold: float) -> float:
    """`threshold` as a float if it is a normalised score >= 0 (the gate never accepts below random)."""
    if not isinstance(threshold, int | float) or math.isnan(threshold) or threshold < 0:
        raise PipelineError(
            f"the gate threshold must be a normalised score >= 0 (0 = random), got {threshold!r}"
        )
    return float(threshold)


def check_num_gpus(where: str, value: Any) -> float:
    """GPUs per training task as Ray takes them: 0, a fraction of one GPU (shared), or whole GPUs."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else -1
    if not (number == 0 or 0 < number < 1 or (number >= 1 and float(number).is_integer())):
        raise PipelineError(
            f"{where} must be 0, a fraction below 1 (a shared GPU) or a whole number of GPUs, got {value!r}"
        )
    return float(number)


@dataclass(frozen=True)
class ExpertSection:
    """`defaults.expert` merged with a task's own `expert:`: how its expert is trained and gated."""

    backend: str = "sample-factory"
    steps: int = 0
    """Env steps of training (0: the backend trains nothing)."""
    num_cpus: int = 1
    """CPUs Ray gives each training task."""
    num_gpus: float = 0.0
    """GPUs Ray gives each training task (a fraction shares one); 0 trains on the CPU."""
    history_snapshots: int = 0
    """Learning-history snapshots kept per expert, evenly spaced over `steps`."""
    upload_every_s: float = 300.0
    """Remote EXPERTS_DIR: upload checkpoints this often while training."""
    eval_episodes: int = 20
    """Evaluation episodes per expert, on fresh seeds."""
    threshold: float = 0.5
    """Minimum normalised score the gate accepts."""
    deterministic: bool = True
    """Evaluate and record with the expert's most likely action, not a sample."""
    released_deterministic: bool = True
    """Imported released experts (`pipeline import-experts`) act as JAT acted with them: the most
    likely action (Meta-World), or a sample (false: Atari and MuJoCo, JAT ran no --eval_deterministic)."""
    training_wrappers: TrainingWrappers = field(default_factory=TrainingWrappers)
    """Wrappers used while training only (Atari: episodic life, reward clipping; set in atari.yaml)."""
    hyperparameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per backend (`sample-factory:`, `sb3:` ... sub-sections): its own settings."""

    def __post_init__(self) -> None:
        try:
            check_num_gpus("num_gpus", self.num_gpus)
        except PipelineError as exc:
            raise ValueError(str(exc)) from None
        if self.num_cpus < 1:
            raise ValueError(f"num_cpus must be a positive integer, got {self.num_cpus!r}")

    def settings(self, backend: str) -> dict[str, Any]:
        """The hyperparameters of `backend` from the YAML ({} when it has no section)."""
        return dict(self.hyperparameters.get(backend, {}))


def check_keys(
    where: str,
    data: dict[str, Any],
    allowed: set[str] | frozenset[str],
    *,
    what: str = "key(s)",
    fix: str | None = None,
) -> None:
    """Refuse keys not in `allowed` in one line: the unknown ones, the nearest valid ones, and the fix
    (default: the allowed keys). The one key check of every typed record the package reads: registry
    sections, hyperparameters, stats, dataset info, expert metadata."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        fix = fix or f"allowed keys are {sorted(allowed)}"
        raise PipelineError(f"{where}: unknown {what} {unknown}{closest_keys(unknown, allowed)}; {fix}")


def closest_keys(unknown: list[str], allowed: set[str] | frozenset[str]) -> str:
    """The valid keys nearest to the unknown ones as `" (did you mean a, b?)"`; "" if none is near."""
    near: list[str] = []
    for key in unknown:
        near += [k for k in difflib.get_close_matches(key, sorted(allowed), n=3) if k not in near]
    return f" (did you mean {', '.join(near)}?)" if near else ""


def read_section(cls: type, data: Any, where: str) -> Any:
    """`cls` from its YAML mapping: unknown keys refused by name, each value checked against its type."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PipelineError(f"{where} must be a mapping, got {type(data).__name__} (fix the file)")
    check_keys(where, data, {f.name for f in fields(cls)})
    hints = typing.get_type_hints(cls)
    values = {name: _typed(f"{where} {name}", hints[name], value) for name, value in data.items()}
    try:
        return cls(**values)
    except ValueError as exc:
        raise PipelineError(f"{where}: {exc}") from None


def read_expert_section(data: dict[str, Any], where: str) -> ExpertSection:
    """The expert section, its backend sub-sections gathered under `hyperparameters`."""
    data = dict(data or {})
    backends = {name: data.pop(name) for name in EXPERT_BACKEND_SECTIONS if name in data}
    for name, settings in backends.items():
        if not isinstance(settings, dict):
            raise PipelineError(f"{where} {name} must be a mapping of hyperparameters, got {settings!r}")
    if "hyperparameters" in data:
        raise PipelineError(f"{where}: put a backend's settings under its name (sample-factory:, sb3:)")
    return read_section(ExpertSection, {**data, "hyperparameters": backends}, where)


def _typed(where: str, hint: Any, value: Any) -> Any:
    """`value` checked against the annotation `hint` (int, float, bool, str, dict, X | None, dataclass)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (hint,) = [o for o in options if o is not type(None)]
        origin = typing.get_origin(hint)
    if is_dataclass(hint):
        return read_section(hint, value, where)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise PipelineError(f"{where} must be a mapping, got {value!r} (fix the file)")
        return dict(value)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - a field type this reader does not know is a bug here
        raise TypeError(f"{where}: unsupported field type {hint!r}")
    if not ok:
        raise PipelineError(f"{where} must be {hint.__name__}, got {value!r} (fix the file)")
    return value
