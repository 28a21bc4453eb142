"""Run state (pipeline/rollout/run_state.py): what the driver tracks per config, without Ray or envs.

Units' results here are made by hand (drops only, no shard), which is all the bookkeeping reads:
that each unit counts once, that budgets plan their rounds and that a resume refuses another plan.
"""

from __future__ import annotations

import json

import pytest

from pipeline.errors import PipelineError
from pipeline.format.plan import RunPlan
from pipeline.format.schema import PLAN_PATH
from pipeline.rollout.collector import UnitResult
from pipeline.rollout.run_state import SPLIT_RULE, ConfigRun
from pipeline.runtime.storage import open_location
from pipeline.tasks.registry import get_task
from pipeline.tasks.sections import Budget

SPEC = get_task("mujoco-hopper")


def _run(budget: Budget, seed: int = 0) -> ConfigRun:
    plan = RunPlan(seed, budget, 0.1, "random", None, None, SPLIT_RULE)
    return ConfigRun(SPEC, plan, per_unit=100)


def _dropped(unit, steps: int = 10) -> UnitResult:
    dropped = [{"episode_id": e.episode_id, "seed": e.seed, "reason": "test"} for e in unit.episodes]
    return UnitResult(unit, None, dropped=dropped, steps=steps)


def test_an_episode_budget_is_planned_at_once_with_a_test_split_and_saved(tmp_path):
    location = open_location(str(tmp_path))
    run = _run(Budget(episodes=3))
    units = run.first_round(location, workers=2)
    episodes = [e for u in units for e in u.episodes]
    assert sorted(e.episode_id for e in episodes) == list(range(3))
    assert {e.split for e in episodes} == {"train", "test"}  # 10% of 3 spaces none: the last is forced
    saved = json.loads((tmp_path / PLAN_PATH.format(config=SPEC.config)).read_text())
    assert saved["planned_episodes"] == 3 and saved["budget"] == {"episodes": 3}
    assert saved["forced_test"] == [2]  # recorded, so a resume plans the same splits
    assert run.outstanding == len(units)


def test_a_result_delivered_twice_counts_once(tmp_path):
    location = open_location(str(tmp_path))
    run = _run(Budget(episodes=4))
    units = run.first_round(location, workers=2)
    result = _dropped(units[0])
    run.take(result, location, workers=2)
    outstanding = run.outstanding
    assert run.take(result, location, workers=2) == []  # e.g. again from the record of a lost worker
    assert run.outstanding == outstanding and list(run.results) == [units[0].key]


def test_a_step_budget_plans_rounds_until_it_is_met(tmp_path):
    location = open_location(str(tmp_path))
    run = _run(Budget(steps=100))
    first = run.first_round(location, workers=2)
    assert sum(len(u.episodes) for u in first) == 2  # one per worker, at least two
    follow = []
    for unit in first:
        run.steps += 20  # what the collector reports for the unit's episodes
        follow += run.take(UnitResult(unit, None, steps=20), location, workers=2)
    assert follow and run.next_id > 2  # the remaining 60 steps are planned at the mean length seen


def test_a_resume_with_another_plan_is_refused_naming_each_difference(tmp_path):
    location = open_location(str(tmp_path))
    _run(Budget(episodes=4), seed=0).first_round(location, workers=1)
    with pytest.raises(PipelineError, match=r"different settings \(seed: was 0, now 1\)"):
        _run(Budget(episodes=4), seed=1).resume(location, workers=1)
