"""Episode planning: every episode's id, seed and split are fixed before any env steps.

Planning up front is what makes a run reproducible and re-doable: episode `i` of a config
always gets the same seed and split for a given `--seed`, whichever worker records it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from pipeline.schema import SPLITS


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
) -> list[PlannedEpisode]:
    """Plan `count` episodes starting at `first_id`.

    With `ensure_test`, a plan of two or more episodes always has at least one test episode
    (its last one), so both splits exist even for tiny runs. `forced_test` names ids that are
    test episodes whatever the spacing says (the run records them in its plan.json, so a resume
    plans the same splits). With a `history`, consecutive episode ids go to successive expert
    snapshots, so ids follow training order.
    """
    ids = range(first_id, first_id + count)
    splits = ["test" if is_test(i, test_fraction) or i in forced_test else "train" for i in ids]
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
