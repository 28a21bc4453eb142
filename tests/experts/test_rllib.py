"""The RLlib backend on real parts: InvertedPendulum, RLlib's env runners as Ray actors, real rollouts.

A tiny PPO budget (two 256-step batches, then resumed to four) on the session's local Ray
cluster with 2 env runners; the expert is stored, resumed, evaluated, gated and recorded with
`rollout --policy expert --allow-weak`. Requests the cluster can never place, or cannot place
now, fail with one line. The multi-node test runs `train-experts --workers 0` against a
three-raylet `ray.cluster_utils.Cluster` (a head with no CPU, two 1-CPU nodes): the two env
runners can only land one on each node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from expert_helpers import TINY_RLLIB
from test_s3 import s3_server  # noqa: F401  (the module's real moto server fixture)

from experts.base import get_backend, read_curve
from experts.rllib import CHECKPOINTS, RUNNER_NODES
from experts.store import ExpertStore
from experts.training import FAILED, ExpertPlan, train_expert
from pipeline.checks.validate import validate
from pipeline.configs.datasets import ValidateConfig
from pipeline.errors import PipelineError
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task

pytestmark = pytest.mark.ray
CONFIG = "mujoco-pendulum"
PENDULUM = get_task(CONFIG)


def _plan(steps: int, resume: bool = False, **overrides) -> ExpertPlan:
    settings = {**PENDULUM.expert.settings("rllib"), **TINY_RLLIB, **overrides}
    return ExpertPlan(
        config=CONFIG,
        backend="rllib",
        hyperparameters=settings,
        steps=steps,
        seed=0,
        num_cpus=1,
        eval_episodes=2,
        threshold=0.5,
        deterministic=True,
        resume=resume,
        history_every=256,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_cluster):
    """512 steps, then resumed to 1024, in this process on the local 2-CPU Ray cluster (read-only)."""
    root = tmp_path_factory.mktemp("rllib") / "experts"
    first = train_expert(_plan(512), str(root))
    second = train_expert(_plan(1024, resume=True), str(root))
    return root, first, second


def test_rllib_trains_resumes_and_records_valid_data(trained, tmp_path):
    root, first, second = trained
    assert first.status != FAILED, first.error
    assert second.status != FAILED, second.error
    meta = json.loads((root / CONFIG / "metadata.json").read_text())
    assert meta["backend"] == "rllib" and meta["algo"] == "PPO"
    assert meta["resumed_from_step"] == first.steps >= 512  # resume continued from the last checkpoint
    assert meta["steps_trained"] == second.steps >= 1024 > first.steps
    assert meta["hyperparameters"]["num_env_runners"] == 2
    assert meta["hyperparameters"]["model_config"]["fcnet_hiddens"] == [64, 64]
    assert meta["status"] in ("accepted", "rejected") and "normalised" in meta["evaluation"]
    curve = read_curve(str(root / CONFIG / "learning_curve.csv"))
    assert curve and curve[-1]["steps"] == second.steps and curve[0]["steps"] <= first.steps
    checkpoints = sorted((root / CONFIG / "checkpoints" / CHECKPOINTS).glob("checkpoint_*"))
    assert 1 <= len(checkpoints) <= 2 and checkpoints[-1].name == f"checkpoint_{second.steps:012d}"
    history = ExpertStore(str(root)).history_steps(CONFIG)
    assert history[-1] == second.steps and len(history) >= 3  # snapshots across both runs
    nodes = json.loads((root / CONFIG / "checkpoints" / CHECKPOINTS / RUNNER_NODES).read_text())
    assert len(nodes["env_runner_nodes"]) == 2  # the env runners were Ray actors

    out = tmp_path / "dataset"
    rollout(
        RolloutConfig(
            out=str(out), tasks=(CONFIG,), episodes=3, workers=0, policy="expert",
            experts_dir=str(root), allow_weak=True, progress=False, envs_per_worker=2,
        )
    )  # fmt: skip
    assert validate(ValidateConfig(str(out))).ok
    manifest = json.loads((out / "meta" / CONFIG / "manifest.json").read_text())
    assert "rllib" in json.dumps(manifest)


def test_a_batch_row_gets_the_greedy_action_act_gives(trained):
    policy = ExpertStore(str(trained[0])).load_policy(PENDULUM)
    assert policy.batchable()
    env = make_env(PENDULUM)
    rows = np.stack([env.reset(seed=seed)[0] for seed in range(4)])
    batch = policy.act_batch(rows)
    assert batch.shape == (4, 1) and batch.dtype == np.float32
    assert np.all(np.abs(batch) <= PENDULUM.action.high)
    for row, action in zip(rows, batch, strict=True):
        np.testing.assert_allclose(policy.act(row, {}), action, atol=1e-6)


def test_unknown_rllib_settings_are_refused_by_name():
    backend = get_backend("rllib")
    with pytest.raises(
        PipelineError, match=r"unknown hyperparameter\(s\) \['num_env_runnerz'\].*num_env_runners"
    ):
        backend.check(PENDULUM, {"num_env_runnerz": 2})
    with pytest.raises(PipelineError, match=r"model_config: unknown hyperparameter\(s\) \['fcnet_hiden'\]"):
        backend.check(PENDULUM, {"model_config": {"fcnet_hiden": [8]}})
    with pytest.raises(PipelineError, match="unknown rllib algo 'dqn'"):
        backend.check(PENDULUM, {"algo": "dqn"})
    with pytest.raises(PipelineError, match="text observations"):
        backend.check(get_task("babyai-go-to"), {})
    assert {"vf_loss_coeff", "num_learners"} <= backend.hyperparameter_keys(
        get_task("atari-pong"), {"algo": "appo"}
    )


def test_more_env_runners_than_the_cluster_has_fail_at_once_in_one_line(ray_cluster, tmp_path):
    result = train_expert(_plan(256, num_env_runners=8), str(tmp_path / "experts"))
    assert result.status == FAILED
    assert "8 env runner(s)" in result.error and "need 8 CPU" in result.error and "\n" not in result.error


def test_env_runners_waiting_on_busy_cpus_fail_after_the_placement_timeout(ray_cluster, tmp_path):
    from ray.util import placement_group, remove_placement_group

    held = placement_group([{"CPU": 2}])  # another job holds both CPUs of the cluster
    ray_cluster.get(held.ready(), timeout=60)
    try:
        result = train_expert(_plan(256, placement_timeout_s=2), str(tmp_path / "experts"))
    finally:
        remove_placement_group(held)
    assert result.status == FAILED
    assert "could not be placed for 2 s" in result.error and "\n" not in result.error


@pytest.fixture
def three_raylets():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    yield cluster, nodes
    cluster.shutdown()


def test_env_runners_spread_over_the_nodes_of_a_multi_node_cluster(three_raylets, tmp_path):
    cluster, nodes = three_raylets
    out = tmp_path / "experts"
    sets = [item for k, v in TINY_RLLIB.items() for item in ("--set", f"{k}={v}")]
    command = [sys.executable, "-m", "pipeline.cli", "train-experts", "--tasks", CONFIG, "--backend", "rllib",
               "--steps", "256", "--workers", "0", "--no-eval", "--no-progress", "--out", str(out),
               *sets]  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads((out / CONFIG / "checkpoints" / CHECKPOINTS / RUNNER_NODES).read_text())
    assert sorted(found["env_runner_nodes"]) == sorted(node.node_id for node in nodes)


def test_rllib_keeps_its_own_sub_section():
    assert PENDULUM.expert.settings("rllib")["algo"] == "ppo"
    assert get_task("atari-pong").expert.settings("rllib")["algo"] == "appo"
    plan = replace(_plan(256), hyperparameters={})
    assert get_backend("rllib").task_cpus(plan.hyperparameters) == 1


@pytest.mark.s3
def test_rllib_expert_on_s3_uploads_resumes_elsewhere_and_acts(s3_server, ray_cluster, tmp_path, monkeypatch):  # noqa: F811
    """A remote EXPERTS_DIR: checkpoints reach S3, a 'fresh machine' resumes from them and acts."""
    import pyarrow.fs as pafs

    from pipeline.format.plan import PlannedEpisode
    from pipeline.rollout.policy_factory import make_policy
    from pipeline.rollout.recorder import record_episode

    uri = f"{s3_server}/rllib-experts"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-a"))
    first = train_expert(_plan(256), uri)
    assert first.status != FAILED, first.error
    fs, root = pafs.FileSystem.from_uri(uri)
    names = {
        i.path.split("/rllib-experts/", 1)[1]
        for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
    }
    assert f"{CONFIG}/metadata.json" in names
    assert any(n.startswith(f"{CONFIG}/checkpoints/{CHECKPOINTS}/checkpoint_") for n in names), sorted(names)
    assert not any(".partial" in n for n in names)  # never a half-written checkpoint

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-b"))  # nothing local: resume from S3
    second = train_expert(_plan(512, resume=True), uri)
    assert second.status != FAILED, second.error
    with fs.open_input_stream(f"{root}/{CONFIG}/metadata.json") as f:
        meta = json.loads(f.read())
    assert meta["resumed_from_step"] == first.steps and meta["steps_trained"] == second.steps >= 512

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-c"))
    env = make_env(PENDULUM)
    policy = make_policy("expert", PENDULUM, env, experts_dir=uri, allow_weak=True)
    episode = record_episode(env, policy, PENDULUM, PlannedEpisode(0, 7, "train"))
    assert not isinstance(episode, str) and episode.length > 0
