"""Episode planning (pipeline/format/plan.py): ids, seeds and splits fixed before any env steps."""

from __future__ import annotations

import pytest

from pipeline.format.plan import HistoryPlan, episode_seed, is_test, make_units, plan_episodes


def test_seeds_depend_on_run_seed_config_and_id_only():
    assert episode_seed(0, "mujoco-hopper", 7) == episode_seed(0, "mujoco-hopper", 7)
    others = {
        episode_seed(1, "mujoco-hopper", 7),
        episode_seed(0, "mujoco-ant", 7),
        episode_seed(0, "mujoco-hopper", 8),
    }
    assert episode_seed(0, "mujoco-hopper", 7) not in others and len(others) == 3
    assert all(0 <= episode_seed(s, "atari-pong", i) < 2**31 for s in range(3) for i in range(100))


@pytest.mark.parametrize("fraction", [0.02, 0.1, 0.25, 0.5])
def test_every_prefix_of_the_plan_holds_the_test_fraction(fraction):
    """Step budgets stop at an unknown episode count: the split must be right at any length."""
    tests = 0
    for n in range(1, 1001):
        tests += is_test(n - 1, fraction)
        assert abs(tests - n * fraction) <= 1, (n, tests)


def test_a_plan_is_the_same_however_it_is_cut():
    whole = plan_episodes("babyai-go-to", 0, 50, 3, 0.1, ensure_test=False)
    parts = plan_episodes("babyai-go-to", 0, 20, 3, 0.1, ensure_test=False) + plan_episodes(
        "babyai-go-to", 20, 30, 3, 0.1, ensure_test=False
    )
    assert whole == parts
    assert [e.episode_id for e in whole] == list(range(50))


def test_tiny_plans_get_a_test_episode_and_forced_ids_stay_test():
    two = plan_episodes("mujoco-hopper", 0, 2, 0, 0.1, ensure_test=True)
    assert [e.split for e in two] == ["train", "test"]
    assert plan_episodes("mujoco-hopper", 0, 2, 0, 0.1, ensure_test=False)[1].split == "train"
    assert plan_episodes("mujoco-hopper", 0, 1, 0, 0.1, ensure_test=True)[0].split == "train"
    forced = plan_episodes("mujoco-hopper", 0, 5, 0, 0.1, ensure_test=False, forced_test=frozenset({3}))
    assert [e.split for e in forced] == ["train", "train", "train", "test", "test"]  # 4: its own spacing


def test_history_episodes_follow_training_order():
    history = HistoryPlan(snapshots=(100, 200, 300), episodes_per_snapshot=2)
    plan = plan_episodes("mujoco-hopper", 0, history.episodes, 0, 0.0, ensure_test=False, history=history)
    assert [e.checkpoint for e in plan] == [100, 100, 200, 200, 300, 300]


def test_units_are_split_homogeneous_sized_for_the_workers_and_numbered_on():
    plan = plan_episodes("mujoco-hopper", 0, 40, 0, 0.1, ensure_test=False)
    next_index = {"train": 0, "test": 0}
    units = make_units("mujoco-hopper", plan, max_per_unit=100, workers=4, next_index=next_index)
    assert all(len({e.split for e in u.episodes}) == 1 and u.split == u.episodes[0].split for u in units)
    assert sorted(e.episode_id for u in units for e in u.episodes) == list(range(40))
    train = [u for u in units if u.split == "train"]
    assert len(train) == 4 and {len(u.episodes) for u in train} == {9}  # 36 train episodes, 4 workers
    test = [u for u in units if u.split == "test"]  # ids 4, 14, 24, 34: one per worker
    assert [u.shard_index for u in train] == [0, 1, 2, 3] and [len(u.episodes) for u in test] == [1] * 4
    assert next_index == {"train": 4, "test": 4}
    more = make_units("mujoco-hopper", plan[:3], max_per_unit=2, workers=1, next_index=next_index)
    assert [u.key for u in more] == [("mujoco-hopper", "train", 4), ("mujoco-hopper", "train", 5)]


def test_run_plan_round_trips_through_its_json_and_names_what_differs():
    from pipeline.errors import PipelineError
    from pipeline.format.plan import RunPlan
    from pipeline.tasks.sections import Budget

    plan = RunPlan(
        seed=3,
        budget=Budget(steps=500),
        test_fraction=0.1,
        policy="expert",
        max_episode_steps=None,
        min_return_fraction=None,
        split_rule=2,
        history=HistoryPlan((10, 20), 2),
        envs_per_worker=16,
    )
    stored = plan.to_dict()
    assert stored["budget"] == {"steps": 500} and stored["history"] == {
        "snapshots": [10, 20],
        "episodes_per_snapshot": 2,
    }
    assert RunPlan.from_dict({**stored, "planned_episodes": 9, "forced_test": [1]}, "plan.json") == plan
    other = RunPlan.from_dict({**stored, "seed": 4, "budget": {"episodes": 10}}, "plan.json")
    assert plan.differences(other) == [
        "seed: was 3, now 4",
        "budget: was Budget(episodes=None, steps=500), now Budget(episodes=10, steps=None)",
    ]
    without = {k: v for k, v in stored.items() if k not in ("history", "envs_per_worker", "split_rule")}
    assert "history" not in RunPlan.from_dict(without, "x").to_dict()
    assert RunPlan.from_dict(without, "x").split_rule == 1  # plans from before the rule was recorded
    with pytest.raises(PipelineError, match=r"plan\.json: the stored plan is incomplete"):
        RunPlan.from_dict({"seed": 1}, "plan.json")
