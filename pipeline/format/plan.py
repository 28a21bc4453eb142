"""Episode planning: every episode's id, seed and split are fixed before any env steps.

Planning up front is what makes a run reproducible and re-doable: episode `i` of a config
always gets the same seed and split for a given `--seed`, whichever worker records it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from typing import Any

from pipeline.errors import PipelineError
from pipeline.format.schema import SPLITS
from pipeline.tasks.sections import Budget

FILTER_REASON = "below min return"
"""How a drop by `--min-return-fraction`'s filter begins: a selection, never replaced (the `-topNN`
variant is the top of the episodes recorded), unlike an episode the policy did not finish."""


@dataclass(frozen=True)
class PlannedEpisode:
    episode_id: int
    seed: int
    split: str
    checkpoint: int | None = None
    """Learning histories: the training step of the expert snapshot that plays this episode."""


@dataclass(frozen=True)
class WorkUnit:
    """A batch of same-split episodes of one config that one worker records into one shard."""

    config: str
    split: str
    shard_index: int
    episodes: tuple[PlannedEpisode, ...]

    @property
    def key(self) -> tuple[str, str, int]:
        """What names the unit for good: its shard, record and result are keyed by it."""
        return (self.config, self.split, self.shard_index)

    def describe(self) -> str:
        ids = [e.episode_id for e in self.episodes]
        span = f"episodes {ids[0]}-{ids[-1]}" if ids else "no episodes"
        return f"{self.config} {self.split} shard {self.shard_index} ({span})"


def episode_seed(seed: int, config: str, episode_id: int) -> int:
    """A stable 31-bit seed per (run seed, config, episode id), independent of scheduling."""
    digest = hashlib.sha256(f"{seed}:{config}:{episode_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def is_test(episode_id: int, test_fraction: float) -> bool:
    """Evenly spaced test episodes: every prefix of the plan holds `test_fraction` of them.

    Seeds are already random, so spacing the test ids evenly gives a random split whose
    proportion also holds for step budgets, where the episode count is not known up front.
    """
    f = test_fraction
    return math.floor((episode_id + 1) * f + 0.5) > math.floor(episode_id * f + 0.5)


def plan_episodes(
    config: str,
    first_id: int,
    count: int,
    seed: int,
    test_fraction: float,
    *,
    ensure_test: bool,
    history: HistoryPlan | None = None,
    forced_test: frozenset[int] = frozenset(),
    forced_train: frozenset[int] = frozenset(),
) -> list[PlannedEpisode]:
    """Plan `count` episodes starting at `first_id`.

    With `ensure_test`, a plan of two or more episodes always has at least one test episode
    (its last one), so both splits exist even for tiny runs. `forced_test` names ids that are
    test episodes whatever the spacing says (the run records them in its plan.json, so a resume
    plans the same splits); `forced_train` likewise names ids that are train episodes (replacements
    of dropped train episodes, split rule 3). With a `history`, consecutive episode ids go to
    successive expert snapshots, so ids follow training order.
    """
    ids = range(first_id, first_id + count)
    splits = [
        "test" if (is_test(i, test_fraction) or i in forced_test) and i not in forced_train else "train"
        for i in ids
    ]
    if ensure_test and count >= 2 and test_fraction > 0 and "test" not in splits:
        splits[-1] = "test"
    return [
        PlannedEpisode(i, episode_seed(seed, config, i), s, history.checkpoint(i) if history else None)
        for i, s in zip(ids, splits, strict=True)
    ]


@dataclass(frozen=True)
class HistoryPlan:
    """A learning history: `episodes_per_snapshot` episodes from each snapshot, in training order."""

    snapshots: tuple[int, ...]  # training steps of the expert's snapshots, ascending
    episodes_per_snapshot: int

    @property
    def episodes(self) -> int:
        return len(self.snapshots) * self.episodes_per_snapshot

    def checkpoint(self, episode_id: int) -> int:
        return self.snapshots[episode_id // self.episodes_per_snapshot]


def make_units(
    config: str,
    episodes: list[PlannedEpisode],
    max_per_unit: int,
    workers: int,
    next_index: dict[str, int],
) -> list[WorkUnit]:
    """Group planned episodes into split-homogeneous units, enough of them to keep workers busy.

    `next_index` holds the next free shard index per split and is advanced in place.
    """
    units = []
    for split in SPLITS:
        chosen = [e for e in episodes if e.split == split]
        if not chosen:
            continue
        per_unit = max(1, min(max_per_unit, math.ceil(len(chosen) / max(1, workers))))
        for start in range(0, len(chosen), per_unit):
            units.append(WorkUnit(config, split, next_index[split], tuple(chosen[start : start + per_unit])))
            next_index[split] += 1
    return units


@dataclass(frozen=True)
class RunPlan:
    """What makes a config's episodes what they are: seeds, splits, policy, horizon, batching.

    `meta/<config>/plan.json` and the manifest store it (plus the ids planned so far); `--resume`
    compares it with the command's field by field and refuses any difference, naming it.
    """

    seed: int
    budget: Budget
    test_fraction: float
    policy: str
    max_episode_steps: int | None
    """The CLI's `--max-episode-steps`, else the task's horizon (None: the env's own)."""
    min_return_fraction: float | None
    """`--min-return-fraction` (the `-topNN` variants): episodes below it are dropped."""
    split_rule: int
    """How splits are planned (`run_state.SPLIT_RULE`); plans from before it was recorded are rule 1."""
    history: HistoryPlan | None = None
    """Learning histories: the expert snapshots that play, in training order."""
    envs_per_worker: int | None = None
    """Trained experts only: envs per forward pass, which fixes how their actions round."""
    atari_semantics: str | None = None
    """Atari only: how its envs acted (`EnvSection.atari_semantics`), so that replay builds the env
    that recorded, whatever the registry's default is by then. None in plans from before it was
    recorded: unknown, so neither compared by `--resume` nor replaced by replay."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (keys as plan.json always had them; optional ones only when set)."""
        out: dict[str, Any] = {
            "seed": self.seed,
            "budget": self.budget.to_dict(),
            "test_fraction": self.test_fraction,
            "policy": self.policy,
            "max_episode_steps": self.max_episode_steps,
            "min_return_fraction": self.min_return_fraction,
            "split_rule": self.split_rule,
        }
        if self.envs_per_worker is not None:
            out["envs_per_worker"] = self.envs_per_worker
        if self.atari_semantics is not None:
            out["atari_semantics"] = self.atari_semantics
        if self.history is not None:
            out["history"] = {
                "snapshots": list(self.history.snapshots),
                "episodes_per_snapshot": self.history.episodes_per_snapshot,
            }
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> RunPlan:
        """Read a stored plan (plan.json or a manifest's `plan`); one line when it is incomplete."""
        try:
            history = data.get("history")
            return cls(
                seed=int(data["seed"]),
                budget=Budget(**data["budget"]),
                test_fraction=float(data["test_fraction"]),
                policy=str(data.get("policy", "")),
                max_episode_steps=data.get("max_episode_steps"),
                min_return_fraction=data.get("min_return_fraction"),
                split_rule=int(data.get("split_rule", 1)),
                history=HistoryPlan(tuple(history["snapshots"]), int(history["episodes_per_snapshot"]))
                if history
                else None,
                envs_per_worker=data.get("envs_per_worker"),
                atari_semantics=data.get("atari_semantics"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PipelineError(
                f"{where}: the stored plan is incomplete ({exc!r}): re-run the rollout"
            ) from None

    def differences(self, other: RunPlan) -> list[str]:
        """'field: was X, now Y' for every field where `other` (the command's) differs from this one."""
        unknown = {"atari_semantics"} if self.atari_semantics is None else set()  # not recorded then
        return [
            f"{f.name}: was {getattr(self, f.name)!r}, now {getattr(other, f.name)!r}"
            for f in fields(self)
            if f.name not in unknown and getattr(self, f.name) != getattr(other, f.name)
        ]
