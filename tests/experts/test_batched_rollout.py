"""Experts act for several lockstep envs per forward pass; episodes still depend on their seed only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from experts.store import ExpertStore
from pipeline.errors import PipelineError
from pipeline.format.plan import PlannedEpisode
from pipeline.rollout.recorder import can_batch, record_batched
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task

HOPPER = get_task("mujoco-hopper")


def _rollout(out: Path, experts: Path, **overrides) -> dict[int, str]:
    settings = {"tasks": ("mujoco-hopper",), "episodes": 7, "workers": 0, "policy": "expert"}
    settings |= {"experts_dir": str(experts), "allow_weak": True, "progress": False, **overrides}
    rollout(RolloutConfig(out=str(out), **settings))
    manifest = json.loads((out / "meta" / "mujoco-hopper" / "manifest.json").read_text())
    rows = [e for s in manifest["shards"] for e in s["episodes"]]
    for shard in manifest["shards"]:  # rows stay in plan order inside each shard
        ids = [e["episode_id"] for e in shard["episodes"]]
        assert ids == sorted(ids)
    return {e["episode_id"]: e["digest"] for e in rows}


@pytest.mark.parametrize("fixture", ["sb3_hopper", "sf_hopper"])
def test_episodes_do_not_depend_on_who_shares_the_batch(fixture, request, tmp_path):
    root = request.getfixturevalue(fixture)[0]
    assert can_batch(ExpertStore(str(root)).load_policy(HOPPER))
    one_unit = _rollout(tmp_path / "a", root, envs_per_worker=4)
    small_units = _rollout(tmp_path / "b", root, envs_per_worker=4, episodes_per_shard=2)
    assert len(one_unit) == 7 and one_unit == small_units
    manifest = json.loads((tmp_path / "a" / "meta" / "mujoco-hopper" / "manifest.json").read_text())
    assert manifest["plan"]["envs_per_worker"] == 4


@pytest.mark.parametrize("fixture", ["sb3_hopper", "sf_hopper"])
def test_a_batch_row_gets_the_action_act_gives(fixture, request):
    policy = ExpertStore(str(request.getfixturevalue(fixture)[0])).load_policy(HOPPER)
    envs = [make_env(HOPPER) for _ in range(3)]
    planned = [PlannedEpisode(i, 100 + i, "train") for i in range(5)]
    finished = dict(record_batched(envs, policy, HOPPER, planned))
    assert sorted(e.episode_id for e in finished) == list(range(5))
    env = make_env(HOPPER)
    for episode, result in finished.items():
        observation, info = env.reset(seed=episode.seed)
        policy.reset(env, episode.seed)
        np.testing.assert_allclose(result.observations[0], observation)
        expected = np.clip(policy.act(observation, info), HOPPER.action.low, HOPPER.action.high)  # as stored
        np.testing.assert_allclose(result.actions[0], expected, atol=1e-5)


def test_resume_refuses_another_batch_width(sb3_hopper, tmp_path):
    _rollout(tmp_path / "data", sb3_hopper[0], envs_per_worker=4)
    with pytest.raises(PipelineError, match=r"envs_per_worker: was 4, now 2"):
        _rollout(tmp_path / "data", sb3_hopper[0], envs_per_worker=2, resume=True)
