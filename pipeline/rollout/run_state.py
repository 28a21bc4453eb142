"""Driver-side state of one config in a rollout, persisted so a killed run can resume.

`meta/<config>/plan.json` fixes what the run is (seed, budget, split share, policy, horizon)
and which episodes are planned so far; each finished unit leaves a record next to its shard.
Those records are the one truth about what was recorded: the driver takes each unit's result
once (`take`), whether it arrives from a live worker or, after the worker died, from the record
it committed; the manifest is built from the records on storage, exactly as `--resume` reads
them; and it is checked (every planned episode stored or dropped exactly once, every shard
listed once, both splits present) before it is written. Because an episode's content depends
only on (seed, config, episode id), a resumed dataset holds the same episodes as an
uninterrupted run.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from pipeline.checks.manifest_checks import check_manifest, check_splits
from pipeline.errors import PipelineError
from pipeline.format.manifest import Manifest
from pipeline.format.plan import (
    FILTER_REASON,
    PlannedEpisode,
    RunPlan,
    WorkUnit,
    is_test,
    make_units,
    plan_episodes,
)
from pipeline.format.schema import DATA_DIR, PLAN_PATH, SHARD_RECORD_DIR, SPLITS
from pipeline.rollout.collector import UnitResult, unit_record_path
from pipeline.rollout.repair import survey
from pipeline.runtime.storage import Location
from pipeline.tasks.registry import TaskSpec
from pipeline.tasks.sections import Budget

log = logging.getLogger(__name__)
SPLIT_RULE = 3
"""Version of how splits are planned: 2 records forced test ids in plan.json (step budgets get a
test episode in their first round; a split emptied by drops is topped up); 3 also replaces the
dropped episodes of an episode budget (`ConfigRun._replace`), recording the replacement ids forced
to train as well. A rule-2 plan on disk is resumed under rule 2."""
MAX_TOP_UPS = 3
"""Extra rounds a run plans for a split whose every episode was dropped, before it gives up."""
MAX_REPLACEMENT_ROUNDS = 20
"""Rounds of replacements for dropped episodes an episode budget may take: at a drop rate p, the
shortfall after k rounds is N * p^k, so 20 rounds reach N up to a million episodes at p = 0.5."""
MAX_PLANNED_PER_EPISODE = 10
"""And at most this many episodes played per episode asked for (a drop rate up to 90%): a policy
that drops more is not worth the work; the run says so instead."""


@dataclass
class ConfigRun:
    """What the driver tracks for one config."""

    spec: TaskSpec
    run_plan: RunPlan
    """What fixes the config's episodes; plan.json and the manifest store it, --resume compares it."""
    per_unit: int
    next_id: int = 0
    forced_test: set[int] = field(default_factory=set)
    forced_train: set[int] = field(default_factory=set)
    next_index: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    outstanding: int = 0
    episodes: int = 0
    steps: int = 0
    results: dict[tuple[str, str, int], UnitResult] = field(default_factory=dict)
    top_ups: int = 0
    replacement_rounds: int = 0
    committed: bool = False

    @property
    def budget(self) -> Budget:
        return self.run_plan.budget

    @property
    def needs_more_steps(self) -> bool:
        steps = self.budget.steps
        return steps is not None and self.outstanding == 0 and self.steps < steps

    def _planned(self, first: int, count: int) -> list[PlannedEpisode]:
        return plan_episodes(
            self.spec.config,
            first,
            count,
            self.run_plan.seed,
            self.run_plan.test_fraction,
            ensure_test=False,
            history=self.run_plan.history,
            forced_test=frozenset(self.forced_test),
            forced_train=frozenset(self.forced_train),
        )

    def units_for(self, episodes: list[PlannedEpisode], workers: int) -> list[WorkUnit]:
        units = make_units(self.spec.config, episodes, self.per_unit, workers, self.next_index)
        self.outstanding += len(units)
        return units

    def plan(self, location: Location, count: int, workers: int, force_test: bool = False) -> list[WorkUnit]:
        """Plan `count` more episodes, record the plan, and return their units.

        With `force_test`, the last one is a test episode unless the spacing already gives one,
        so that a small first plan holds both splits.
        """
        ids = range(self.next_id, self.next_id + count)
        fraction = self.run_plan.test_fraction
        if force_test and count >= 2 and fraction > 0 and not any(is_test(i, fraction) for i in ids):
            self.forced_test.add(ids[-1])
        episodes = self._planned(self.next_id, count)
        self.next_id += count
        self.save(location)
        return self.units_for(episodes, workers)

    def first_round(self, location: Location, workers: int) -> list[WorkUnit]:
        """Episode budgets: every episode. Step budgets: one episode per worker (at least two),
        so the budget is overshot by at most the episodes in flight when it is reached."""
        if self.budget.episodes is not None:
            return self.plan(location, self.budget.episodes, workers, force_test=True)
        return self.plan(location, max(workers, 2), workers, force_test=True)

    def next_round(self, location: Location, workers: int) -> list[WorkUnit]:
        """Step budgets: plan enough episodes for the remaining steps, at the mean length so far."""
        kept = [e for r in self.results.values() if r.shard for e in r.shard.episodes]
        mean_length = max(sum(e.length for e in kept) / len(kept), 1.0) if kept else 1.0
        count = max(1, -(-((self.budget.steps or 0) - self.steps) // int(mean_length)))
        return self.plan(location, count, workers)

    def _stored_plan(self) -> dict[str, Any]:
        """The plan as plan.json and the manifest store it: the RunPlan, the ids planned so far, the
        ids forced to test and (rule 3) to train, and the replacement rounds taken."""
        stored = {
            **self.run_plan.to_dict(),
            "planned_episodes": self.next_id,
            "forced_test": sorted(self.forced_test),
        }
        if self.run_plan.split_rule >= 3:
            stored["forced_train"] = sorted(self.forced_train)
            stored["replacement_rounds"] = self.replacement_rounds
        return stored

    def save(self, location: Location) -> None:
        location.write_json(
            PLAN_PATH.format(config=self.spec.config),
            self._stored_plan(),
        )

    # --- results: each unit's counted once, from a live worker or from its record -------------

    def take(self, result: UnitResult, location: Location, workers: int) -> list[WorkUnit]:
        """Count a unit's result (the first delivery only) and return the units it calls for."""
        if result.unit.key in self.results:
            return []
        self.results[result.unit.key] = result
        self.outstanding -= 1
        if result.leftover:  # the shard filled up: the unplayed episodes get a shard of their own
            return self.units_for(list(result.leftover), 1)
        if self.needs_more_steps:
            return self.next_round(location, workers)
        if self.outstanding == 0:
            return self._more(location, workers)
        return []

    def _more(self, location: Location, workers: int) -> list[WorkUnit]:
        """Everything planned is in: replace dropped episodes, or top up a split drops emptied."""
        return self._replace(location, workers) if self.replaces_drops else self._top_up(location, workers)

    # --- dropped episodes: replaced (episode budgets), or an emptied split topped up ------------

    @property
    def replaces_drops(self) -> bool:
        """`--episodes N` stores N: dropped episodes are replaced (not for learning histories, whose
        ids map to snapshots, nor for plans of split rule 2, which predate replacement)."""
        plan = self.run_plan
        return plan.budget.episodes is not None and plan.history is None and plan.split_rule >= 3

    def targets(self) -> Counter[str]:
        """Episodes each split must store: the splits of the first N planned ids."""
        return Counter(e.split for e in self._planned(0, self.budget.episodes or 0))

    def shortfall(self, shards: list[Any], dropped: list[dict[str, Any]]) -> dict[str, int]:
        """Per split, the episodes still missing from the target: stored ones and episodes the
        `--min-return-fraction` filter removed (a selection, not replaced) count towards it."""
        split_of = {e.episode_id: e.split for e in self._planned(0, self.next_id)}
        have = Counter(s.split for s in shards for _ in s.episodes)
        have += Counter(split_of[d["episode_id"]] for d in dropped if d["reason"].startswith(FILTER_REASON))
        targets = self.targets()
        return {s: targets[s] - have[s] for s in SPLITS if targets[s] > have[s]}

    def _replace(self, location: Location, workers: int) -> list[WorkUnit]:
        """Plan one round of replacements for the dropped episodes, split by split.

        Replacements take the next ids, so their seeds follow from the plan like every other
        episode's (`episode_seed(seed, config, id)`): a resume or a re-run replaces the same drops
        with the same episodes. The first ids of a round go to test, the rest to train; ids whose
        spacing says otherwise are recorded in `forced_test`/`forced_train`.
        """
        results = list(self.results.values())
        missing = self.shortfall(
            [r.shard for r in results if r.shard], [d for r in results for d in r.dropped]
        )
        first, count = self.next_id, sum(missing.values())
        allowed = MAX_PLANNED_PER_EPISODE * (self.budget.episodes or 0)
        if not missing or self.replacement_rounds >= MAX_REPLACEMENT_ROUNDS or first + count > allowed:
            return []  # filled, or the bound is reached: `check_budget` fails the commit
        self.replacement_rounds += 1
        fraction = self.run_plan.test_fraction
        for offset, episode_id in enumerate(range(first, first + count)):
            wanted_test = offset < missing.get("test", 0)
            if wanted_test and not is_test(episode_id, fraction):
                self.forced_test.add(episode_id)
            elif not wanted_test and is_test(episode_id, fraction):
                self.forced_train.add(episode_id)
        log.info(
            "%s: %s dropped so far; recording %d replacement(s) with ids %d-%d (round %d of at most %d)",
            self.spec.config,
            " and ".join(f"{n} {s}" for s, n in missing.items()),
            count,
            first,
            first + count - 1,
            self.replacement_rounds,
            MAX_REPLACEMENT_ROUNDS,
        )
        episodes = self._planned(first, count)
        self.next_id += count
        self.save(location)
        return self.units_for(episodes, workers)

    def check_budget(self, manifest: Manifest) -> None:
        """A config whose episode budget replacements could not fill is not committed: one line
        naming the drop rate and its reasons, and what to change."""
        if not self.replaces_drops:
            return
        missing = self.shortfall(manifest.shards, manifest.dropped)
        if not missing:
            return
        asked = self.budget.episodes or 0
        stored = sum(len(s.episodes) for s in manifest.shards)
        played = manifest.planned_episodes
        unfinished = [d for d in manifest.dropped if not d["reason"].startswith(FILTER_REASON)]
        reasons = dict(Counter(d["reason"].split(":")[0] for d in unfinished))
        raise PipelineError(
            f"{self.spec.config}: {stored} of the {asked} episodes asked for are stored: "
            f"{len(unfinished)} of {played} played were dropped ({len(unfinished) / max(played, 1):.0%}; "
            f"{reasons}) and {self.replacement_rounds} rounds of replacements did not make up for "
            f"them (at most {MAX_REPLACEMENT_ROUNDS}, and {MAX_PLANNED_PER_EPISODE} played per episode "
            "asked for); nothing was committed for it: ask for fewer episodes (--episodes), or use a policy "
            "that finishes more of them (--policy)"
        )

    def recorded(self, location: Location, unit: WorkUnit) -> UnitResult | None:
        """The result a lost worker committed for `unit` before dying, if it got that far."""
        path = unit_record_path(*unit.key)
        if not location.exists(path):
            return None
        result = UnitResult.from_dict(location.read_json(path))
        return result if result.unit == unit else None

    def _top_up(self, location: Location, workers: int) -> list[WorkUnit]:
        """A split left empty because every one of its episodes was dropped gets another round."""
        stored = Counter(r.unit.split for r in self.results.values() if r.shard)
        planned = Counter(e.split for e in self._planned(0, self.next_id))
        empty = [s for s in SPLITS if planned[s] and not stored[s]]
        if not empty or self.top_ups >= MAX_TOP_UPS:
            return []
        self.top_ups += 1
        count = max(2, self.next_id // 4)
        log.warning(
            "%s: every %s episode was dropped; recording %d more (round %d of %d)",
            self.spec.config,
            " and ".join(empty),
            count,
            self.top_ups,
            MAX_TOP_UPS,
        )
        return self.plan(location, count, workers, force_test="test" in empty)

    @property
    def finished(self) -> bool:
        return self.outstanding == 0 and not self.needs_more_steps and not self.committed

    # --- resume and commit ----------------------------------------------------------------------

    def _records(self, location: Location) -> list[UnitResult]:
        infos = location.list(SHARD_RECORD_DIR.format(config=self.spec.config))
        return [
            UnitResult.from_dict(location.read_json(location.relative(i.path)))
            for i in infos
            if i.path.endswith(".json")
        ]

    def _delete_orphans(self, location: Location, results: list[UnitResult]) -> None:
        """Shards no record vouches for: committed by a worker that died before its record."""
        vouched = {r.shard.path for r in results if r.shard}
        for info in location.list(DATA_DIR.format(config=self.spec.config)):
            if location.relative(info.path) not in vouched:
                log.info(
                    "%s: deleting %s (written, but its unit never finished)", self.spec.config, info.base_name
                )
                location.fs.delete_file(info.path)

    def resume(self, location: Location, workers: int) -> list[WorkUnit]:
        """Pick up an interrupted or damaged run: keep the units whose record and shard are intact,
        re-record damaged ones under their own keys, drop orphans, re-plan the rest."""
        config = self.spec.config
        path = PLAN_PATH.format(config=config)
        saved = location.read_json(path)
        stored = RunPlan.from_dict(saved, f"{location.uri}/{path}")
        if stored.split_rule == 2 and self.run_plan.split_rule == 3:  # planned before replacements:
            self.run_plan = replace(self.run_plan, split_rule=2)  # finished as it was planned
        changed = stored.differences(self.run_plan)
        if changed:
            details = ", ".join(changed)
            raise PipelineError(
                f"--resume of {config} with different settings ({details}): use the original ones, "
                "or --overwrite to start again"
            )
        self.next_id = saved["planned_episodes"]
        self.forced_test = set(saved.get("forced_test", ()))
        self.forced_train = set(saved.get("forced_train", ()))
        self.replacement_rounds = int(saved.get("replacement_rounds", 0))
        planned = self._planned(0, self.next_id)
        found = survey(location, config, {e.episode_id: e for e in planned})
        for result in found.trusted:
            self.results[result.unit.key] = result
        self._delete_orphans(location, found.trusted)
        for result in found.trusted:
            split, index = result.unit.split, result.unit.shard_index
            self.next_index[split] = max(self.next_index[split], index + 1)
            self.steps += result.steps
            self.episodes += len(result.shard.episodes) if result.shard else 0
            self.episodes += len(result.dropped)
        repairs = [r.unit for r in found.repairs]
        for repair in found.repairs:
            log.warning("%s", repair.line())
            split, index = repair.unit.split, repair.unit.shard_index
            self.next_index[split] = max(self.next_index[split], index + 1)
        self.outstanding += len(repairs)
        done = _done_ids(found.trusted)
        again = {e.episode_id for u in repairs for e in u.episodes}
        remaining = [e for e in planned if e.episode_id not in done | again]
        log.info(
            "%s: resuming, %d episodes recorded, %d to re-record, %d to go",
            config,
            len(done),
            len(again),
            len(remaining),
        )
        units = repairs + self.units_for(remaining, workers)
        finished_before = not remaining and not self.needs_more_steps  # else a manifest is not due yet
        if found.manifest_problem and (finished_before or not found.manifest_problem.endswith("missing")):
            log.warning("%s: %s: it is rebuilt from the unit records", config, found.manifest_problem)
        if not units and self.needs_more_steps:
            units = self.next_round(location, workers)
        if not units:
            units = self._more(location, workers)
        return units

    def build_manifest(self, location: Location) -> Manifest:
        """The manifest from the unit records on storage, checked before anyone relies on it."""
        results = self._records(location)
        self._delete_orphans(location, results)
        manifest = Manifest(
            config=self.spec.config,
            suite=self.spec.suite,
            env_id=self.spec.env_id,
            make_kwargs=self.spec.make_kwargs,
            plan=self._stored_plan(),
            provenance=next((r.provenance for r in results if r.provenance), {}),
            shards=[r.shard for r in results if r.shard],
            dropped=[d for r in results for d in r.dropped],
        )
        check_manifest(manifest, location)
        self.check_budget(manifest)  # before the splits: an episode budget's shortfall says more
        check_splits(manifest)
        return manifest


def _done_ids(results: Any) -> set[int]:
    done = {e.episode_id for r in results if r.shard for e in r.shard.episodes}
    return done | {d["episode_id"] for r in results for d in r.dropped}
