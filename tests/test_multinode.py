"""A real multi-node Ray cluster on this machine loses nodes mid-rollout.

Three raylets (a head with no CPU for work, two 1-CPU workers) run in `ray.cluster_utils.Cluster`;
the rollout CLI drives them from its own process, as on a real cluster. A node is killed without
warning (its raylet and its actor, as a lost machine), first with a survivor to take over, then
with no capacity left at all: the run must finish exactly once on the survivor, or stop with one
line after its placement timeout and be completed by `--resume` once a node is back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rollout_helpers import serial_run, stored_episodes, wait_for_records

from pipeline.checks.validate import validate
from pipeline.configs.datasets import ValidateConfig
from pipeline.runtime.faults import FAULTS_ENV

pytestmark = pytest.mark.ray
CONFIG = "metaworld-reach"
EPISODES, PER_SHARD, SEED = 150, 2, 5  # enough work (~10 s) that a node is always lost mid-run


def _episodes(dataset: Path) -> list[tuple]:
    return stored_episodes(dataset, CONFIG)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[tuple]:
    return serial_run(tmp_path_factory.mktemp("reference") / "ds", CONFIG, EPISODES, PER_SHARD, SEED)


@pytest.fixture(scope="module")
def _cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    yield cluster
    cluster.shutdown()


@pytest.fixture
def cluster(_cluster):
    """The module's cluster with exactly two live 1-CPU worker nodes (tests remove and add nodes)."""
    while len(_cluster.worker_nodes) < 2:
        _cluster.add_node(num_cpus=1)
    _cluster.wait_for_nodes()
    return _cluster, sorted(_cluster.worker_nodes, key=id)


def _start(cluster, out: Path, workers: int, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in (FAULTS_ENV, "RAY_ADDRESS")}
    command = [
        sys.executable, "-m", "pipeline.cli", "rollout", "--tasks", CONFIG,
        "--episodes", str(EPISODES), "--episodes-per-shard", str(PER_SHARD), "--seed", str(SEED),
        "--workers", str(workers), "--address", cluster.address, "--shared-fs", "--no-progress",
        "--out", str(out), *extra,
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_records(out: Path, count: int, process: subprocess.Popen) -> None:
    wait_for_records(out, CONFIG, count, process)


def _said(output: str) -> str:
    return " ".join(output.split())  # log lines may wrap


def test_a_local_folder_is_refused_on_a_multi_node_cluster_unless_declared_shared(tmp_path, cluster):
    cluster, _ = cluster
    command = [sys.executable, "-m", "pipeline.cli", "rollout", "--tasks", CONFIG, "--episodes", "4",
               "--workers", "2", "--address", cluster.address, "--out", str(tmp_path / "ds")]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in (FAULTS_ENV, "RAY_ADDRESS")}
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    said = _said(refused.stdout + refused.stderr)
    assert "has 2 nodes that run workers" in said and "s3://" in said and "--shared-fs" in said
    assert not (tmp_path / "ds").exists()  # refused before anything was written
    train = [sys.executable, "-m", "pipeline.cli", "train-experts", "--tasks", "babyai-go-to",
             "--address", cluster.address, "--out", str(tmp_path / "experts")]  # fmt: skip
    refused = subprocess.run(train, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--shared-fs" in _said(refused.stdout + refused.stderr)
    assert not (tmp_path / "experts").exists()


def test_a_lost_node_leaves_the_work_to_the_survivor(tmp_path, cluster, reference):
    cluster, (lost, _) = cluster
    out = tmp_path / "ds"
    process = _start(cluster, out, 2)
    _wait_for_records(out, 2, process)
    cluster.remove_node(lost, allow_graceful=False)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert "a worker died" in _said(output)
    assert validate(ValidateConfig(str(out))).ok
    assert _episodes(out) == reference


def test_no_capacity_left_stops_with_one_line_and_resume_completes(tmp_path, cluster, reference):
    cluster, nodes = cluster
    out = tmp_path / "ds"
    process = _start(cluster, out, 2, "--placement-timeout", "15")
    _wait_for_records(out, 2, process)
    for node in nodes:
        cluster.remove_node(node, allow_graceful=False)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 2, output
    error = [line for line in output.splitlines() if "error:" in line]
    said = _said(output)
    assert "no Ray node could place a worker" in said and "--resume" in said, output
    assert len(error) == 1

    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    resumed = _start(cluster, out, 2, "--resume")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert validate(ValidateConfig(str(out))).ok
    assert _episodes(out) == reference
