"""The manifest's per-episode claims, recomputed: seeds and splits from the plan, and each
episode's digest, return and success from the rows `pipeline validate` read.

A checksum over a shard only proves the file is the one the manifest names; these checks prove
the manifest tells the truth about what is inside it. An episode's seed and split follow from
the plan alone (`pipeline.format.plan`), and its digest, return and (BabyAI) success from its stored
steps, so an edited manifest, or a shard rewritten together with its checksum, shows up here.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np

from pipeline.errors import PipelineError
from pipeline.format.columns import EPS32, StepBytes
from pipeline.format.manifest import Manifest
from pipeline.format.plan import FILTER_REASON, PlannedEpisode, RunPlan, plan_episodes
from pipeline.format.schema import SPLITS
from pipeline.format.shards import ShardRecord
from pipeline.suites import get_suite


@dataclass(frozen=True)
class StoredSteps:
    """A shard's per-step values, flattened across its rows, as the validator read them (once).

    `observations` and `actions` are numeric arrays of shape (steps, values per step), or for
    Atari frames `StepBytes`; `texts` are BabyAI's missions.
    """

    lengths: np.ndarray
    observations: np.ndarray | StepBytes
    texts: StepBytes | None
    actions: np.ndarray
    rewards: np.ndarray  # float32

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)


def _rows(values: np.ndarray | StepBytes, first: int, end: int) -> memoryview | np.ndarray:
    return values.steps(first, end) if isinstance(values, StepBytes) else values[first:end]


def episode_digests(steps: StoredSteps) -> list[str]:
    """Each row's digest, hashing the same bytes in the same order as `Episode.digest()` did.

    The writer hashed each step's observation (its PNG, or the float32/int64 vector), then the
    texts, then the actions and the float32 rewards: exactly the stored values of those columns,
    step after step, since the writer stores them with the types it hashed (a clean dataset
    validating proves it, `tests/test_validate_manifest.py`).
    """
    digests = []
    for first, length in zip(steps.starts.tolist(), steps.lengths.tolist(), strict=True):
        end = first + length
        h = hashlib.blake2b(digest_size=16)
        h.update(_rows(steps.observations, first, end))
        if steps.texts is not None:
            h.update(steps.texts.steps(first, end))
        h.update(np.ascontiguousarray(steps.actions[first:end]))
        h.update(np.ascontiguousarray(steps.rewards[first:end]))
        digests.append(h.hexdigest())
    return digests


def return_tolerance(lengths: np.ndarray, abs_sums: np.ndarray) -> np.ndarray:
    """How far a recorded return may be from the float64 sum of its stored float32 rewards.

    The writer sums the float32 rewards in float64 (`Episode.episode_return`): it differs from
    the sum recomputed here by float64 rounding only. The bound allows any sound float32 sum
    too, numpy's pairwise one included: (ceil(log2 n) + 1) float32 epsilons of sum |r|. For a
    1000-step return of 3000 that is 0.004, where a relative tolerance of 1e-4 allowed 0.3.
    """
    terms = np.ceil(np.log2(np.maximum(lengths, 1))) + 1
    return terms * EPS32 * abs_sums + 1e-9


def check_rows(where: str, shard: ShardRecord, steps: StoredSteps, suite: str) -> list[str]:
    """Every row whose manifest record disagrees with its stored steps: return, digest, success."""
    starts = steps.starts
    rewards = steps.rewards.astype(np.float64)
    sums = np.add.reduceat(rewards, starts)
    tolerance = return_tolerance(steps.lengths, np.add.reduceat(np.abs(rewards), starts))
    digests = episode_digests(steps)
    # Where success is exactly a positive reward (BabyAI's goal, `Suite.success_from_rewards`), the
    # stored rows prove it; other suites' success comes from env info that is not stored.
    by_rewards = get_suite(suite).success_from_rewards
    success = np.add.reduceat(steps.rewards > 0, starts) > 0 if by_rewards else None
    errors = []
    for row, record in enumerate(shard.episodes):
        at = f"{where} row {row} (episode {record.episode_id})"
        recorded = record.episode_return if isinstance(record.episode_return, int | float) else math.nan
        if not abs(sums[row] - recorded) <= tolerance[row]:  # NaN (an edited or missing return) fails
            errors.append(
                f"{at}: rewards sum to {sums[row]:.6f}, the manifest records return "
                f"{recorded:.6f} (allowed difference {tolerance[row]:.1e}): "
                "the manifest or the rewards were edited; re-run the rollout of this config"
            )
        if record.digest != digests[row]:
            errors.append(
                f"{at}: the stored steps' digest {digests[row]} differs from the manifest's "
                f"{record.digest or '(none)'}: the manifest or the shard was edited; re-run the rollout"
            )
        if success is not None and record.success is not bool(success[row]):
            errors.append(
                f"{at}: the manifest says success={record.success}, the rewards say "
                f"{bool(success[row])} (BabyAI succeeds on a positive reward): the manifest was edited"
            )
    return errors


def planned_episodes(manifest: Manifest) -> tuple[dict[int, PlannedEpisode], bool] | str:
    """Every planned episode by id, as the rollout planned it, and whether its split is known.

    Splits follow `is_test` plus the ids the run forced to test (split rule 2, recorded in the
    plan) or, replacing dropped train episodes, to train (rule 3). Rule 1 (manifests without
    `split_rule`) forced the last episode of an episode budget to test when the spacing gave none,
    as `plan_episodes(ensure_test=True)` still does. Any other rule is unknown to this version:
    seeds are still checked, splits are not.
    """
    try:
        plan = RunPlan.from_dict(manifest.plan, f"{manifest.config}: the manifest")
        forced = frozenset(int(i) for i in manifest.plan.get("forced_test", ()))
        forced_train = frozenset(int(i) for i in manifest.plan.get("forced_train", ()))
    except (PipelineError, TypeError, ValueError) as exc:
        return f"{manifest.config}: the manifest's plan is incomplete ({exc}): re-run the rollout"
    rule = plan.split_rule
    planned = plan_episodes(
        manifest.config,
        0,
        manifest.planned_episodes,
        plan.seed,
        plan.test_fraction,
        ensure_test=rule == 1 and plan.budget.episodes is not None,
        history=plan.history,
        forced_test=forced if rule in (2, 3) else frozenset(),
        forced_train=forced_train if rule in (2, 3) else frozenset(),
    )
    return {p.episode_id: p for p in planned}, rule in (1, 2, 3)


def check_plan(manifest: Manifest) -> list[str]:
    """Each stored or dropped episode's seed, split and snapshot step against the plan."""
    result = planned_episodes(manifest)
    if isinstance(result, str):
        return [result]
    planned, splits_known = result
    config, errors = manifest.config, []
    rule = f"episode_seed({manifest.plan['seed']}, {config!r}, id)"
    for shard in manifest.shards:
        for row, record in enumerate(shard.episodes):
            at = f"{config}: {shard.path} row {row} (episode {record.episode_id})"
            plan = planned.get(record.episode_id)
            if plan is None:
                errors.append(
                    f"{at}: not a planned episode id (the plan has {manifest.planned_episodes}): "
                    "the manifest was edited; re-run the rollout"
                )
                continue
            if record.seed != plan.seed:
                errors.append(
                    f"{at}: seed {record.seed}, the plan gives {plan.seed} ({rule}): the manifest was edited"
                )
            if splits_known and shard.split != plan.split:
                errors.append(
                    f"{at}: stored in a {shard.split} shard, the plan puts it in {plan.split}: "
                    "the manifest or the shard was moved; re-run the rollout"
                )
            if plan.checkpoint is not None and record.checkpoint_step != plan.checkpoint:
                errors.append(
                    f"{at}: checkpoint_step {record.checkpoint_step}, the plan's snapshot is "
                    f"{plan.checkpoint}: the manifest was edited"
                )
    for dropped in manifest.dropped:
        plan = planned.get(dropped.get("episode_id"))
        if plan is not None and dropped.get("seed") != plan.seed:
            errors.append(
                f"{config}: dropped episode {plan.episode_id} has seed {dropped.get('seed')}, "
                f"the plan gives {plan.seed} ({rule}): the manifest was edited"
            )
    return errors + _budget_errors(manifest, planned)


def _budget_errors(manifest: Manifest, planned: dict[int, PlannedEpisode]) -> list[str]:
    """Split rule 3, `--episodes N`: dropped episodes were replaced, so each split stores what the
    first N planned ids put in it, less the episodes `--min-return-fraction` filtered out."""
    plan = manifest.plan
    budget = plan.get("budget") or {}
    if int(plan.get("split_rule", 1)) < 3 or "episodes" not in budget or plan.get("history"):
        return []
    asked = int(budget["episodes"])
    target = Counter(planned[i].split for i in range(asked) if i in planned)
    filtered = Counter(
        planned[d["episode_id"]].split
        for d in manifest.dropped
        if str(d.get("reason", "")).startswith(FILTER_REASON) and d.get("episode_id") in planned
    )
    totals = manifest.totals()
    return [
        f"{manifest.config}: {totals[s]['episodes']} {s} episodes stored, --episodes {asked} asks for "
        f"{target[s] - filtered[s]} (dropped ones are replaced): re-run the rollout of this config"
        for s in SPLITS
        if totals[s]["episodes"] != target[s] - filtered[s]
    ]


def capped(config: str, errors: list[str], limit: int) -> list[str]:
    """At most `limit` lines of one kind per config: an edited plan would list every episode."""
    if len(errors) <= limit:
        return errors
    return [*errors[:limit], f"{config}: ... and {len(errors) - limit} more episodes disagree the same way"]
