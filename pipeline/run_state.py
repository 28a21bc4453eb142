"""Driver-side state of one config in a rollout, persisted so a killed run can resume.

`meta/<config>/plan.json` fixes what the run is (seed, budget, split share, policy, horizon)
and how many episodes are planned so far; each finished unit leaves a record next to its
shard. Resuming reads both, deletes shards no record vouches for (a crash between commit
and record), and plans the episodes that are neither stored nor dropped again. Because an
episode's content depends only on (seed, config, episode id), the resumed dataset holds the
same episodes as an uninterrupted run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pipeline.collector import UnitResult
from pipeline.errors import PipelineError
from pipeline.plan import HistoryPlan, PlannedEpisode, WorkUnit, make_units, plan_episodes
from pipeline.registry import TaskSpec
from pipeline.schema import DATA_DIR, SHARD_RECORD_DIR, SPLITS
from pipeline.storage import Location

log = logging.getLogger(__name__)
PLAN_PATH = "meta/{config}/plan.json"
# Settings that change what an episode contains: a resume must use the same ones.
FIXED_SETTINGS = (
    "seed",
    "budget",
    "test_fraction",
    "policy",
    "max_episode_steps",
    "min_return_fraction",
    "history",
    "envs_per_worker",
)


@dataclass
class ConfigRun:
    """What the driver tracks for one config."""

    spec: TaskSpec
    settings: dict[str, Any]  # FIXED_SETTINGS
    per_unit: int
    next_id: int = 0
    next_index: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    outstanding: int = 0
    episodes: int = 0
    steps: int = 0
    results: list[UnitResult] = field(default_factory=list)

    @property
    def budget(self) -> dict[str, int]:
        return self.settings["budget"]

    @property
    def needs_more_steps(self) -> bool:
        return "steps" in self.budget and self.outstanding == 0 and self.steps < self.budget["steps"]

    @property
    def history(self) -> HistoryPlan | None:
        history = self.settings.get("history")
        if not history:
            return None
        return HistoryPlan(tuple(history["snapshots"]), int(history["episodes_per_snapshot"]))

    def _planned(self, first: int, count: int) -> list[PlannedEpisode]:
        return plan_episodes(
            self.spec.config,
            first,
            count,
            self.settings["seed"],
            self.settings["test_fraction"],
            ensure_test="episodes" in self.budget,
            history=self.history,
        )

    def units_for(self, episodes: list[PlannedEpisode], workers: int) -> list[WorkUnit]:
        units = make_units(self.spec.config, episodes, self.per_unit, workers, self.next_index)
        self.outstanding += len(units)
        return units

    def plan(self, location: Location, count: int, workers: int) -> list[WorkUnit]:
        """Plan `count` more episodes, record the plan, and return their units."""
        episodes = self._planned(self.next_id, count)
        self.next_id += count
        self.save(location)
        return self.units_for(episodes, workers)

    def next_round(self, location: Location, workers: int) -> list[WorkUnit]:
        """Step budgets: plan enough episodes for the remaining steps, at the mean length so far."""
        kept = [e for r in self.results if r.shard for e in r.shard.episodes]
        mean_length = max(sum(e.length for e in kept) / len(kept), 1.0) if kept else 1.0
        count = max(1, -(-(self.budget["steps"] - self.steps) // int(mean_length)))
        return self.plan(location, count, workers)

    def save(self, location: Location) -> None:
        location.write_json(
            PLAN_PATH.format(config=self.spec.config), {**self.settings, "planned_episodes": self.next_id}
        )

    def resume(self, location: Location, workers: int) -> list[WorkUnit]:
        """Pick up an interrupted run: keep recorded units, drop orphans, re-plan the rest."""
        config = self.spec.config
        saved = location.read_json(PLAN_PATH.format(config=config))
        changed = [k for k in FIXED_SETTINGS if saved.get(k) != self.settings.get(k)]
        if changed:
            details = ", ".join(f"{k}: was {saved.get(k)!r}, now {self.settings.get(k)!r}" for k in changed)
            raise PipelineError(
                f"--resume of {config} with different settings ({details}): use the original ones, "
                "or --overwrite to start again"
            )
        self.next_id = saved["planned_episodes"]
        records = [
            i for i in location.list(SHARD_RECORD_DIR.format(config=config)) if i.path.endswith(".json")
        ]
        self.results = [UnitResult.from_dict(location.read_json(location.relative(i.path))) for i in records]
        vouched = {r.shard.path for r in self.results if r.shard}
        for info in location.list(DATA_DIR.format(config=config)):
            if location.relative(info.path) not in vouched:
                log.info("%s: deleting %s (written, but its unit never finished)", config, info.base_name)
                location.fs.delete_file(info.path)
        for result in self.results:
            split, index = result.unit.split, result.unit.shard_index
            self.next_index[split] = max(self.next_index[split], index + 1)
            self.steps += result.steps
            self.episodes += len(result.shard.episodes) if result.shard else 0
            self.episodes += len(result.dropped)
        done = {e.episode_id for r in self.results if r.shard for e in r.shard.episodes}
        done |= {d["episode_id"] for r in self.results for d in r.dropped}
        remaining = [e for e in self._planned(0, self.next_id) if e.episode_id not in done]
        log.info("%s: resuming, %d episodes recorded, %d to go", config, len(done), len(remaining))
        return self.units_for(remaining, workers)
