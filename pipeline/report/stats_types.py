"""The typed form of `meta/<config>/stats.json`: what `pipeline.report.stats` computes and the card reads.

Frozen dataclasses from `ConfigStats` down to `Summary`, each field documented. `ConfigStats.to_dict`
is the one writer of the JSON and `ConfigStats.from_dict` the one reader (a published config's file
is read back when another config joins the card): it refuses an unknown or missing key by name
rather than rendering a card from a file this pipeline did not write.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from pipeline.errors import PipelineError
from pipeline.format.columns import CONTINUOUS_ACTIONS, CONTINUOUS_OBSERVATIONS, DISCRETE_ACTIONS, REWARDS
from pipeline.format.plan import HistoryPlan, RunPlan
from pipeline.format.schema import SPLITS
from pipeline.tasks.sections import Budget, check_keys, read_section

STATS_VERSION = 1
HISTOGRAM_BINS = 20
BATCH_EPISODES = 32
# Per-step columns whose per-feature moments are computed: JAT's continuous vectors.
VECTOR_COLUMNS = (CONTINUOUS_OBSERVATIONS, CONTINUOUS_ACTIONS)


def _keys(where: str, data: Any, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """`data` as a mapping with every `required` key and no key outside `required` and `optional`."""
    if not isinstance(data, dict):
        raise PipelineError(f"{where} must be a mapping, got {type(data).__name__}")
    check_keys(where, data, {*required, *optional})
    missing = [k for k in required if k not in data]
    if missing:
        raise PipelineError(f"{where}: missing key(s) {missing}")
    return data


def as_floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(values, dtype=np.float64).ravel())


def finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


class _Flat:
    """A statistics entry whose JSON keys are its fields (its one writer and one reader)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Any:
        """Every field's key present, no other key, each value checked against its type."""
        names = [f.name for f in fields(cls)]
        _keys(where, data, tuple(names))
        return read_section(cls, data, where)


@dataclass(frozen=True)
class Summary(_Flat):
    """Mean, population std, min and max of a set of numbers (episode returns or lengths, step rewards)."""

    mean: float
    """Arithmetic mean."""
    std: float
    """Population standard deviation (ddof 0, numpy's default)."""
    min: float
    """Smallest value."""
    max: float
    """Largest value."""

    @classmethod
    def of(cls, values: np.ndarray) -> Summary | None:
        """The summary of `values`; None when there are none."""
        if values.size == 0:
            return None
        return cls(float(values.mean()), float(values.std()), float(values.min()), float(values.max()))


@dataclass(frozen=True)
class FeatureMoments:
    """Per-feature moments of a vector column over every step of a split (what states are normalised with)."""

    count: int = 0
    """Steps the moments are over; 0 leaves the per-feature tuples empty."""
    mean: tuple[float, ...] = ()
    """Per feature: mean."""
    std: tuple[float, ...] = ()
    """Per feature: population standard deviation."""
    min: tuple[float, ...] = ()
    """Per feature: smallest value."""
    max: tuple[float, ...] = ()
    """Per feature: largest value."""

    def to_dict(self) -> dict[str, Any]:
        if not self.count:
            return {"count": 0}
        return {
            "count": self.count,
            "mean": list(self.mean),
            "std": list(self.std),
            "min": list(self.min),
            "max": list(self.max),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> FeatureMoments:
        if isinstance(data, dict) and data.get("count") == 0:
            return cls(**_keys(where, data, ("count",)))
        data = _keys(where, data, ("count", "mean", "std", "min", "max"))
        return cls(int(data["count"]), *(tuple(data[k]) for k in ("mean", "std", "min", "max")))


@dataclass(frozen=True)
class RewardMoments:
    """Moments of the per-step rewards of a split."""

    count: int = 0
    """Steps the moments are over."""
    summary: Summary | None = None
    """Of the per-step rewards; None without steps."""

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, **(self.summary.to_dict() if self.summary else {})}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RewardMoments:
        if isinstance(data, dict) and data.get("count") == 0:
            return cls(**_keys(where, data, ("count",)))
        data = _keys(where, data, ("count", "mean", "std", "min", "max"))
        return cls(
            int(data["count"]), Summary.from_dict({k: v for k, v in data.items() if k != "count"}, where)
        )


@dataclass(frozen=True)
class FeatureStats:
    """Per-step statistics of one split, streamed from its shards (`feature_stats`)."""

    rewards: RewardMoments
    """Moments of the per-step rewards."""
    continuous_observations: FeatureMoments | None = None
    """Per-feature moments of the observation vectors; None for suites without them (Atari, BabyAI)."""
    continuous_actions: FeatureMoments | None = None
    """Per-feature moments of the action vectors; None for suites with discrete actions."""
    discrete_action_counts: tuple[int, ...] | None = None
    """How often each action index was taken (index i: action i); None for continuous actions."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in VECTOR_COLUMNS:
            if (moments := getattr(self, name)) is not None:
                out[name] = moments.to_dict()
        out[REWARDS] = self.rewards.to_dict()
        if self.discrete_action_counts is not None:
            out[DISCRETE_ACTIONS] = {"counts": list(self.discrete_action_counts)}
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> FeatureStats:
        data = _keys(where, data, (REWARDS,), (*VECTOR_COLUMNS, DISCRETE_ACTIONS))
        vectors = {
            name: FeatureMoments.from_dict(data[name], f"{where}.{name}")
            for name in VECTOR_COLUMNS
            if name in data
        }
        counts = None
        if DISCRETE_ACTIONS in data:
            actions = _keys(f"{where}.discrete_actions", data[DISCRETE_ACTIONS], ("counts",))
            counts = tuple(int(c) for c in actions["counts"])
        rewards = RewardMoments.from_dict(data[REWARDS], f"{where}.rewards")
        return cls(rewards, discrete_action_counts=counts, **vectors)


@dataclass(frozen=True)
class NormalisedScore(_Flat):
    """Episode returns on JAT's scale: 0 is JAT's random policy, 1 its expert."""

    mean: float | None
    """(mean return - random) / (expert - random); None where it is not finite (expert = random)."""
    std: float | None
    """Std of the returns over |expert - random|; None where it is not finite."""


@dataclass(frozen=True)
class SplitStats:
    """One split of a config: counts, sizes and episode statistics from the manifest, and per-step
    statistics from the shards when they were streamed."""

    episodes: int
    """Episodes kept (rows of the split)."""
    steps: int
    """Env steps over those episodes."""
    shards: int
    """Parquet files of the split."""
    length: Summary
    """Of the episode lengths in steps."""
    episode_return: Summary
    """Of the undiscounted episode returns (`return` in the JSON)."""
    normalised_score: NormalisedScore
    """The returns on JAT's expert-normalised scale."""
    human_normalised_score: float | None
    """Mean return on the human-normalised scale (Atari); None where JAT has no human score."""
    success_rate: float | None
    """Share of successful episodes; None where the suite records no success (MuJoCo, Atari)."""
    histogram: tuple[int, ...]
    """Episodes per bin of `ConfigStats.histogram_edges` (the same bins for every split)."""
    bytes: int = 0
    """Size of the split's shards on disk (0 in a stats.json written before sizes were recorded)."""
    features: FeatureStats | None = None
    """Per-step statistics (`feature_stats`); None when only the manifest was read."""

    def to_dict(self) -> dict[str, Any]:
        out = {
            "episodes": self.episodes,
            "steps": self.steps,
            "shards": self.shards,
            "bytes": self.bytes,
            "length": self.length.to_dict(),
            "return": self.episode_return.to_dict(),
            "normalised_score": self.normalised_score.to_dict(),
            "human_normalised_score": self.human_normalised_score,
            "success_rate": self.success_rate,
            "histogram": list(self.histogram),
        }
        if self.features is not None:
            out["features"] = self.features.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SplitStats:
        keys = ("episodes", "steps", "shards", "length", "return", "normalised_score")
        keys += ("human_normalised_score", "success_rate", "histogram")
        data = _keys(where, data, keys, optional=("bytes", "features"))
        optional: dict[str, Any] = {}  # absent: the field's default
        if "bytes" in data:
            optional["bytes"] = int(data["bytes"])
        if "features" in data:
            optional["features"] = FeatureStats.from_dict(data["features"], f"{where}.features")
        return cls(
            episodes=int(data["episodes"]),
            steps=int(data["steps"]),
            shards=int(data["shards"]),
            length=Summary.from_dict(data["length"], f"{where}.length"),
            episode_return=Summary.from_dict(data["return"], f"{where}.return"),
            normalised_score=NormalisedScore.from_dict(data["normalised_score"], f"{where}.normalised_score"),
            human_normalised_score=data["human_normalised_score"],
            success_rate=data["success_rate"],
            histogram=tuple(int(c) for c in data["histogram"]),
            **optional,
        )


@dataclass(frozen=True)
class Space:
    """An observation space as the registry declares it (`pipeline.tasks.registry.SpaceSpec`)."""

    type: str
    """image, discrete or continuous."""
    shape: tuple[int, ...]
    """Shape of one step's value (the card prints it as a list)."""

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Space:
        data = _keys(where, data, ("type", "shape"))
        return cls(data["type"], tuple(data["shape"]))


@dataclass(frozen=True)
class ActionSpace(Space):
    """An action space: a space and, when discrete, its number of actions."""

    n: int | None = None
    """Number of discrete actions; None for continuous actions."""

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "n": self.n}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ActionSpace:
        data = _keys(where, data, ("type", "shape", "n"))
        return cls(data["type"], tuple(data["shape"]), data["n"])


@dataclass(frozen=True)
class ReferenceScores(_Flat):
    """JAT's reference episode returns for the task (the registry's `scores`)."""

    expert: float
    """Mean return of JAT's expert: normalised score 1."""
    random: float
    """Mean return of a uniformly random policy: normalised score 0."""
    human: float | None
    """Human mean return (Atari); None where JAT has none."""


@dataclass(frozen=True)
class PolicyInfo(_Flat):
    """Which policy played the episodes, and where it came from."""

    kind: str | None
    """expert, scripted or random (the run plan's policy); None if the plan does not say."""
    provenance: dict[str, Any]
    """The manifest's provenance of the policy (checkpoint, versions, bot settings...)."""
    backend: str
    """The suite's expert backend in the registry (sample-factory, sb3, babyai-bot...)."""
    jat_expert: str | None
    """How JAT's own expert for the task was obtained; None where the registry does not say."""


@dataclass(frozen=True)
class PlanSummary:
    """The part of the config's `RunPlan` the card shows: what reproduces its episodes."""

    seed: int
    """The run's `--seed`: every episode's seed derives from it."""
    budget: Budget
    """Episodes or env steps recorded."""
    test_fraction: float
    """Share of episodes planned for the test split."""
    max_episode_steps: int | None
    """Horizon in steps; None: the env's own."""
    history: HistoryPlan | None
    """Learning histories: the expert snapshots that played, in training order."""

    @classmethod
    def of(cls, plan: RunPlan) -> PlanSummary:
        return cls(plan.seed, plan.budget, plan.test_fraction, plan.max_episode_steps, plan.history)

    def to_dict(self) -> dict[str, Any]:
        history = self.history
        return {
            "seed": self.seed,
            "budget": self.budget.to_dict(),
            "test_fraction": self.test_fraction,
            "max_episode_steps": self.max_episode_steps,
            "history": {
                "snapshots": list(history.snapshots),
                "episodes_per_snapshot": history.episodes_per_snapshot,
            }
            if history
            else None,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> PlanSummary:
        data = _keys(where, data, ("seed", "budget", "test_fraction", "max_episode_steps", "history"))
        history = None
        if data["history"] is not None:
            stored = _keys(f"{where}.history", data["history"], ("snapshots", "episodes_per_snapshot"))
            history = HistoryPlan(tuple(stored["snapshots"]), int(stored["episodes_per_snapshot"]))
        return cls(
            seed=int(data["seed"]),
            budget=read_section(Budget, data["budget"], f"{where}.budget"),
            test_fraction=data["test_fraction"],
            max_episode_steps=data["max_episode_steps"],
            history=history,
        )


@dataclass(frozen=True)
class ConfigStats:
    """`meta/<config>/stats.json`: what the card and its figures show of one config, and the per-feature
    moments that sequence-model users normalise with."""

    config: str
    """Config name, e.g. `mujoco-hopper`."""
    suite: str
    """atari, babyai, metaworld or mujoco."""
    env_id: str
    """The gymnasium id the episodes were recorded with."""
    jat_env_id: str
    """The env id JAT recorded the task with (may be an older version)."""
    make_kwargs: dict[str, Any]
    """Keyword arguments of `gym.make`."""
    observation: Space
    """The stored observations."""
    action: ActionSpace
    """The stored actions."""
    reference_scores: ReferenceScores
    """JAT's reference returns that normalised scores are relative to."""
    policy: PolicyInfo
    """The policy that played."""
    plan: PlanSummary
    """How the episodes were planned (seeds, budget, split, horizon)."""
    dropped: int
    """Episodes played but not kept (the manifest lists each with its reason)."""
    data_files: dict[str, str]
    """Per split, the shard pattern `datasets` loads (the card's `configs:` entry) as published."""
    histogram_edges: tuple[float, ...]
    """Bin edges of every split's return histogram (HISTOGRAM_BINS bins over all returns)."""
    splits: dict[str, SplitStats]
    """Per split with episodes, in SPLITS order."""
    format_version: int = STATS_VERSION
    """Layout of this file; a reader refuses another."""

    @property
    def total_episodes(self) -> int:
        return sum(s.episodes for s in self.splits.values())

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.splits.values())

    def episodes(self, split: str) -> int:
        """Episodes of `split`; 0 when it has none."""
        return self.splits[split].episodes if split in self.splits else 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the one writer of stats.json)."""
        return {
            "format_version": self.format_version,
            "config": self.config,
            "suite": self.suite,
            "env_id": self.env_id,
            "jat_env_id": self.jat_env_id,
            "make_kwargs": self.make_kwargs,
            "observation": self.observation.to_dict(),
            "action": self.action.to_dict(),
            "reference_scores": self.reference_scores.to_dict(),
            "policy": self.policy.to_dict(),
            "plan": self.plan.to_dict(),
            "dropped": self.dropped,
            "data_files": dict(self.data_files),
            "histogram_edges": list(self.histogram_edges),
            "splits": {name: split.to_dict() for name, split in self.splits.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ConfigStats:
        """Read a stats.json (the one reader); one line naming the key when it is not this pipeline's."""
        try:
            return cls._read(data, where)
        except PipelineError as exc:
            raise PipelineError(
                f"{exc} (not a stats.json this version writes: publish that config again with this version)"
            ) from None
        except (TypeError, ValueError) as exc:
            raise PipelineError(
                f"{where}: unreadable statistics ({exc}): publish that config again with this version"
            ) from None

    @classmethod
    def _read(cls, data: Any, where: str) -> ConfigStats:
        keys = tuple(f.name for f in fields(cls))  # the JSON keys are the fields
        data = _keys(where, data, keys)
        if data["format_version"] != STATS_VERSION:
            raise PipelineError(
                f"{where} has format_version {data['format_version']!r}, this pipeline reads {STATS_VERSION}"
            )
        unknown = sorted(set(data["splits"]) - set(SPLITS))
        if unknown:
            raise PipelineError(f"{where} splits: unknown split(s) {unknown}; splits are {list(SPLITS)}")
        return cls(
            config=data["config"],
            suite=data["suite"],
            env_id=data["env_id"],
            jat_env_id=data["jat_env_id"],
            make_kwargs=dict(data["make_kwargs"]),
            observation=Space.from_dict(data["observation"], f"{where} observation"),
            action=ActionSpace.from_dict(data["action"], f"{where} action"),
            reference_scores=ReferenceScores.from_dict(data["reference_scores"], f"{where} reference_scores"),
            policy=PolicyInfo.from_dict(data["policy"], f"{where} policy"),
            plan=PlanSummary.from_dict(data["plan"], f"{where} plan"),
            dropped=int(data["dropped"]),
            data_files=dict(data["data_files"]),
            histogram_edges=tuple(float(e) for e in data["histogram_edges"]),
            splits={s: SplitStats.from_dict(v, f"{where} splits.{s}") for s, v in data["splits"].items()},
        )
