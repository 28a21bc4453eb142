"""`pipeline.rollout.collector`: a worker records planned units into shards and unit records, in plan
order."""

from __future__ import annotations

import hashlib
import json

import pyarrow.parquet as pq
import pytest

from pipeline.format.plan import PlannedEpisode, WorkUnit, episode_seed
from pipeline.format.schema import RUN_LEASE_PATH
from pipeline.format.shards import EpisodeRecord, ShardRecord
from pipeline.rollout.collector import Progress, RolloutWorker, UnitResult, WorkerSettings, _in_plan_order
from pipeline.rollout.recorder import record_episode
from pipeline.runtime.storage import open_location
from pipeline.tasks.envs import make_env
from pipeline.tasks.policies import RandomPolicy
from pipeline.tasks.registry import get_task

HOPPER = "mujoco-hopper"  # random Hopper episodes are short (a few dozen steps) and replay from their seed


def _unit(ids: range, split: str = "train", index: int = 0, config: str = HOPPER) -> WorkUnit:
    episodes = tuple(PlannedEpisode(i, episode_seed(3, config, i), split) for i in ids)
    return WorkUnit(config, split, index, episodes)


def _settings(out, config: str = HOPPER, policy: str = "random", **overrides) -> WorkerSettings:
    return WorkerSettings(out=str(out), policies={config: policy}, **overrides)


def _run(worker: RolloutWorker, unit: WorkUnit) -> tuple[list[Progress], UnitResult]:
    *progress, result = list(worker.run_unit(unit))
    assert all(isinstance(p, Progress) and p.unit == unit for p in progress)
    assert isinstance(result, UnitResult)
    return progress, result


def _alone(config: str, planned: PlannedEpisode, max_episode_steps: int | None = None):
    """The same planned episode recorded on its own, with a fresh env and policy."""
    spec = get_task(config)
    env = make_env(spec, max_episode_steps=max_episode_steps)
    return record_episode(env, RandomPolicy(env.action_space), spec, planned)


def test_a_unit_lands_one_shard_and_its_record_holding_the_episodes_in_plan_order(tmp_path):
    unit = _unit(range(4, 7), split="test", index=2)
    progress, result = _run(RolloutWorker(_settings(tmp_path)), unit)

    shard = result.shard
    assert shard is not None
    assert (shard.path, shard.split, shard.index) == (f"data/{HOPPER}/test-00002.parquet", "test", 2)
    expected = [_alone(HOPPER, p) for p in unit.episodes]
    assert [(e.episode_id, e.seed) for e in shard.episodes] == [(p.episode_id, p.seed) for p in unit.episodes]
    assert [e.digest for e in shard.episodes] == [e.digest() for e in expected]
    assert [e.length for e in shard.episodes] == [e.length for e in expected]
    assert result.steps == sum(e.length for e in expected)
    assert (result.dropped, result.leftover) == ([], ())
    assert result.provenance == {"policy": "random"}

    # progress reports add up to the unit, whenever they were sent
    assert sum(p.episodes for p in progress) == 3 and sum(p.steps for p in progress) == result.steps

    data = (tmp_path / shard.path).read_bytes()
    assert (len(data), hashlib.sha256(data).hexdigest()) == (shard.num_bytes, shard.sha256)
    assert pq.read_metadata(tmp_path / shard.path).num_rows == 3
    assert not list((tmp_path / ".tmp").glob("*"))  # the temporary file was moved, not copied

    record = json.loads((tmp_path / f"meta/{HOPPER}/shards/test-00002.json").read_text())
    assert result.record_path == f"meta/{HOPPER}/shards/test-00002.json"
    assert record == result.to_dict()
    assert UnitResult.from_dict(record) == result


def test_an_episode_does_not_depend_on_what_the_worker_recorded_before(tmp_path):
    """Envs and policies are kept across units; the content still follows from the seed alone."""
    busy = RolloutWorker(_settings(tmp_path / "a"))
    _run(busy, _unit(range(0, 3)))
    _, after_others = _run(busy, _unit(range(3, 5), index=1))
    _, fresh = _run(RolloutWorker(_settings(tmp_path / "b")), _unit(range(3, 5), index=1))
    assert [e.digest for e in after_others.shard.episodes] == [e.digest for e in fresh.shard.episodes]
    assert len(busy._envs[HOPPER]) == 1  # one env per config, built once


def test_episodes_below_the_min_return_fraction_are_dropped_with_their_score(tmp_path):
    spec = get_task(HOPPER)
    unit = _unit(range(3))
    _, result = _run(RolloutWorker(_settings(tmp_path, min_return_fraction=0.5)), unit)
    assert result.shard is None and result.steps == 0
    scores = [spec.scores.normalise(_alone(HOPPER, p).episode_return) for p in unit.episodes]
    assert all(score < 0.5 for score in scores)  # a random Hopper scores near JAT's random reference
    assert result.dropped == [
        {
            "episode_id": p.episode_id,
            "seed": p.seed,
            "reason": f"below min return: normalised score {score:.3f} < 0.5",
        }
        for p, score in zip(unit.episodes, scores, strict=True)
    ]
    assert not (tmp_path / "data").exists()  # an empty shard is aborted, never committed
    assert not list((tmp_path / ".tmp").glob("*.parquet"))
    record = json.loads((tmp_path / result.record_path).read_text())
    assert record["shard"] is None and UnitResult.from_dict(record) == result


def test_a_fraction_every_episode_reaches_keeps_them_all(tmp_path):
    _, result = _run(RolloutWorker(_settings(tmp_path, min_return_fraction=-1e9)), _unit(range(3)))
    assert result.dropped == [] and [e.episode_id for e in result.shard.episodes] == [0, 1, 2]


def test_unfinished_babyai_episodes_are_dropped_and_counted_not_stored(tmp_path):
    config = "babyai-pickup"  # a random policy never finishes in 3 steps; BabyAI drops unfinished episodes
    unit = _unit(range(2), config=config)
    settings = _settings(tmp_path, config=config, max_episode_steps=3)
    progress, result = _run(RolloutWorker(settings), unit)
    reason = "unfinished: the episode hit the step limit"
    assert result.dropped == [
        {"episode_id": p.episode_id, "seed": p.seed, "reason": reason} for p in unit.episodes
    ]
    assert result.shard is None and result.steps == 0
    assert sum(p.episodes for p in progress) == 2 and sum(p.steps for p in progress) == 0


def test_a_full_shard_hands_back_the_unplayed_rest_of_the_unit(tmp_path):
    unit = _unit(range(4))
    progress, result = _run(RolloutWorker(_settings(tmp_path, max_shard_bytes=1)), unit)
    assert [e.episode_id for e in result.shard.episodes] == [0]  # the first episode is always kept
    assert result.leftover == unit.episodes[1:]
    assert result.steps == _alone(HOPPER, unit.episodes[0]).length
    assert sum(p.episodes for p in progress) == 1  # leftovers were never played
    record = json.loads((tmp_path / result.record_path).read_text())
    assert record["leftover"] == [[p.episode_id, p.seed] for p in unit.episodes[1:]]


def test_a_worker_of_the_current_run_commits(tmp_path):
    location = open_location(str(tmp_path))
    location.write_json(RUN_LEASE_PATH, {"run_id": "run-1"})
    _, result = _run(RolloutWorker(_settings(tmp_path, run_id="run-1")), _unit(range(2)))
    assert (tmp_path / result.shard.path).is_file() and (tmp_path / result.record_path).is_file()


def test_a_learning_history_unit_keeps_each_episodes_snapshot_through_its_record():
    episodes = (PlannedEpisode(0, 11, "train", 512), PlannedEpisode(1, 12, "train", 1024))
    unit = WorkUnit("mujoco-hopper-history", "train", 0, episodes)
    shard = ShardRecord(
        "data/mujoco-hopper-history/train-00000.parquet",
        "train",
        0,
        "ab" * 32,
        100,
        [EpisodeRecord(0, 11, 5, 1.5, None, "d0", 512)],
    )
    result = UnitResult(unit, shard, [], episodes[1:], 5, {"policy": "expert"})
    data = result.to_dict()
    assert data["unit"]["episodes"] == [[0, 11, 512], [1, 12, 1024]]
    assert data["leftover"] == [[1, 12, 1024]]
    assert data["shard"]["episodes"][0]["checkpoint_step"] == 512
    assert UnitResult.from_dict(json.loads(json.dumps(data))) == result


def test_a_plain_unit_record_stores_no_snapshot_fields():
    unit = WorkUnit(HOPPER, "test", 0, (PlannedEpisode(0, 11, "test"),))
    shard = ShardRecord("p", "test", 0, "0" * 64, 1, [EpisodeRecord(0, 11, 5, 1.5, None, "d0")])
    data = UnitResult(unit, shard).to_dict()
    assert data["unit"]["episodes"] == [[0, 11]] and "checkpoint_step" not in data["shard"]["episodes"][0]
    assert UnitResult.from_dict(data) == UnitResult(unit, shard)


@pytest.mark.parametrize(
    ("finished", "expected"),
    [
        ([2, 0, 1, 3], [0, 1, 2, 3]),  # out of order: held back until the earlier ones are in
        ([0, 1, 2, 3], [0, 1, 2, 3]),
        ([3, 2, 1, 0], [0, 1, 2, 3]),
        ([1, 2, 3], []),  # episode 0 never finished: nothing after it may be yielded
        ([0, 2, 3], [0]),
    ],
)
def test_lockstep_results_are_yielded_in_plan_order(finished, expected):
    planned = [PlannedEpisode(i, 100 + i, "train") for i in range(4)]
    results = ((planned[i], f"result {i}") for i in finished)
    out = list(_in_plan_order(results, planned))
    assert [(p.episode_id, r) for p, r in out] == [(i, f"result {i}") for i in expected]
