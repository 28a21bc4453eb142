"""The RLlib backend when a Ray actor of its Algorithm dies: each test puts the moment a randomised
kill of `benchmarks/chaos_stages.py --kinds train-rllib` found, on real parts (the session's local Ray
cluster, RLlib's env runners as Ray actors, a real SIGKILL of the env runner's process).

RLlib restarts a dead env runner (`restart_failed_env_runners`, its default) and goes on sampling
with the others; what it does not survive is reported as one line, and `--resume` completes the run.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

import psutil
import pytest
from expert_helpers import tiny_plan

from experts.training import FAILED, train_expert

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # 70-230 s: it builds an RLlib Algorithm twice
CONFIG = "mujoco-pendulum"


def _kill_env_runner(group, actor_id: int) -> int:
    """SIGKILL the process of env runner `actor_id` of `group` and wait until it is gone; its pid."""
    (pid,) = group.foreach_env_runner(lambda runner: os.getpid(), remote_worker_ids=[actor_id])
    process = psutil.Process(pid)
    process.kill()
    process.wait(timeout=30)
    return pid


def test_an_env_runner_killed_while_the_algorithm_is_built_is_met_by_building_it_again(
    ray_cluster, tmp_path, monkeypatch
):
    # RLlib's setup asks its first env runner for the spaces; with that runner dead (restarting), its
    # fault tolerance drops the error and the setup indexes an empty list: IndexError, run failed.
    from ray.rllib.env.env_runner_group import EnvRunnerGroup

    get_spaces, killed = EnvRunnerGroup.get_spaces, []

    def first_runner_dies(group):
        if not killed:  # the first build only
            killed.append(_kill_env_runner(group, group.healthy_env_runner_ids()[0]))
        return get_spaces(group)

    monkeypatch.setattr(EnvRunnerGroup, "get_spaces", first_runner_dies)
    plan = replace(tiny_plan(CONFIG, "rllib", 256), evaluate=False)
    result = train_expert(plan, str(tmp_path / "experts"))
    assert killed
    assert result.status != FAILED, result.error
    meta = json.loads((tmp_path / "experts" / CONFIG / "metadata.json").read_text())
    assert meta["steps_trained"] == 256 and meta["resumed_from_step"] == 0
