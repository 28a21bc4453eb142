"""A real multi-node Ray cluster loses the node an expert trains on; the expert resumes elsewhere.

Three raylets (a head with no CPU for work, two 1-CPU workers) run in `ray.cluster_utils.Cluster`
and `pipeline train-experts` drives them from its own process, its experts store on S3 (moto on
127.0.0.1). Once the store holds an uploaded checkpoint, the node running the training task is
removed without warning (its raylet and its processes, as a lost machine): the driver must run the
task again on the survivor, resumed from that upload, and exit 0 with an expert that evaluates.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_s3 import s3_server  # noqa: F401  (the module's real moto server fixture)

sys.path.insert(0, str(Path(__file__).parent / "experts"))
from expert_helpers import TINY_SB3_PPO

from experts.store import ExpertStore
from pipeline.runtime.faults import FAULTS_ENV

pytestmark = [pytest.mark.ray, pytest.mark.s3, pytest.mark.slow]
CONFIG, STEPS = "mujoco-hopper", 4096
TASK_TITLE = f"ray::task-{CONFIG}"  # the process title Ray gives the task (`run_tasks` names it)


@pytest.fixture(scope="module")
def cluster(s3_server, tmp_path_factory):  # noqa: F811
    """Started once the S3 variables are set: the nodes' workers inherit them (a real cluster's nodes
    have their own), and a staging cache of this test's own (all nodes share this machine's disk)."""
    from ray.cluster_utils import Cluster

    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("node-caches"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in (FAULTS_ENV, "RAY_ADDRESS")}


def training_task(cluster) -> tuple[object, int] | None:
    """The worker node whose raylet started the training task's process, and that process's pid."""
    for node in cluster.worker_nodes:
        raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
        for child in raylet.children(recursive=True):
            try:
                if child.cmdline()[:1] == [TASK_TITLE] or child.name() == TASK_TITLE[:15]:
                    return node, child.pid
            except psutil.Error:
                continue
    return None


def _wait(condition, process: subprocess.Popen, what: str, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if process.poll() is not None:
            pytest.fail(f"train-experts ended before {what}:\n{process.communicate()[0]}")
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.2)
    return found


def test_a_lost_node_resumes_the_expert_elsewhere_from_its_last_upload(cluster, s3_server, tmp_path):  # noqa: F811
    uri = f"{s3_server}/experts-{tmp_path.name}"
    sets = [arg for k, v in TINY_SB3_PPO.items() for arg in ("--set", f"{k}={json.dumps(v)}")]
    command = [
        sys.executable, "-m", "pipeline.cli", "train-experts", "--tasks", CONFIG, "--backend", "sb3",
        "--steps", str(STEPS), "--num-cpus", "1", *sets, "--eval-episodes", "2", "--upload-every", "1",
        "--address", cluster.address, "--no-progress", "--out", uri,
    ]  # fmt: skip
    process = subprocess.Popen(
        command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        store = ExpertStore(uri, cache_dir=str(tmp_path / "reader"))
        _wait(lambda: store.uploaded_checkpoint_step(CONFIG, "sb3"), process, "uploaded checkpoint")
        node, _ = _wait(lambda: training_task(cluster), process, "training task")
        children = psutil.Process(node.all_processes["raylet"][0].process.pid).children(recursive=True)
        cluster.remove_node(node, allow_graceful=False)
        for child in children:  # a lost machine's processes die with it (its uploads too)
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(children, timeout=30)
        uploaded = store.uploaded_checkpoint_step(CONFIG, "sb3")
        output, _ = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, output
    said = " ".join(output.split())
    assert 0 < uploaded < STEPS, said
    assert f"{CONFIG}: the node it ran on died" in said or f"{CONFIG}: its worker process died" in said, said
    assert f"training again (retry 1 of 2) from step {uploaded:,}, its last checkpoint in {uri}" in said, said

    meta = json.loads(store.location.read_bytes(f"{CONFIG}/metadata.json"))
    assert meta["resumed_from_step"] == uploaded and meta["steps_trained"] == STEPS
    assert meta["resources"]["ray"]["node_id"] != node.node_id  # it ran on the survivor
    assert meta["status"] in ("accepted", "rejected") and meta["evaluation"]
    steps = [row["steps"] for row in store.curve(CONFIG)]
    assert steps and all(b > a for a, b in itertools.pairwise(steps)), steps  # no row twice

    evaluated = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "evaluate-experts", uri, "--tasks", CONFIG, "--episodes", "2"],
        env=_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
