"""GPU experts: `expert.num_gpus` reaches Ray, `--device` the backends; impossible asks fail in one line.

There is no GPU on this machine, but Ray schedules on GPUs a node merely declares. A real
multi-node cluster (`ray.cluster_utils.Cluster`) starts with a head that has no GPU, then gets a
node declaring one; the CLI drives it from its own process with `--address`, as on a cluster.
With `--device auto` the task placed on the declared GPU must train on the CPU (torch sees no
CUDA) and record both what Ray gave it and what it used.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from experts.base import BACKENDS
from experts.device import RayPlacement, resolve_device
from pipeline.errors import PipelineError
from pipeline.expert_stages.train_experts import TrainExpertsConfig, plan_expert
from pipeline.tasks import registry
from pipeline.tasks.registry import all_tasks, get_task
from pipeline.tasks.sections import EXPERT_BACKEND_SECTIONS

TASK = "mujoco-pendulum"
# The quickest trained expert: sb3 PPO, two rollouts of 128 steps, no evaluation.
TRAIN = [
    "train-experts", "--tasks", TASK, "--backend", "sb3", "--steps", "256", "--no-eval", "--no-progress",
    "--shared-fs", "--num-cpus", "1", "--set", "algo=ppo", "--set", "n_steps=128", "--set", "batch_size=64",
]  # fmt: skip
NO_CUDA = pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="these tests are about machines without CUDA"
)

# `main` in a fresh interpreter, optionally on a copy of env_configs/ (argv[1], or "-"); says whether
# it started or joined Ray, so a check that must come first shows it did.
_PROBE = """
import pathlib, sys
from pipeline.tasks import registry
if sys.argv[1] != "-":
    files, configs = registry.resources.files, pathlib.Path(sys.argv[1])
    registry.resources.files = lambda package: configs if package == "env_configs" else files(package)
import ray
from pipeline.cli import main
code = main(sys.argv[2:])
print(f"exit={code} ray_initialized={ray.is_initialized()}")
sys.exit(code)
"""


def _cli(*args: str, configs: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [sys.executable, "-c", _PROBE, str(configs or "-"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def _configs(tmp_path: Path, edit) -> Path:
    """A copy of env_configs/ with mujoco.yaml changed by `edit(data)`."""
    folder = tmp_path / "env_configs"
    shutil.copytree(Path(str(registry.resources.files("env_configs"))), folder)
    path = folder / "mujoco.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return folder


# --- the YAML: expert.num_gpus per suite and per task --------------------------------------------
def test_num_gpus_defaults_to_0_and_a_task_may_override_it(tmp_path, monkeypatch):
    assert {spec.expert.num_gpus for spec in all_tasks().values()} == {0}

    folder = _configs(tmp_path, lambda data: data["tasks"]["hopper"].update(expert={"num_gpus": 0.5}))
    monkeypatch.setattr(registry.resources, "files", lambda package: folder)
    specs = registry._load_suite("mujoco")
    assert specs["mujoco-hopper"].expert.num_gpus == 0.5
    assert specs["mujoco-ant"].expert.num_gpus == 0
    assert specs["mujoco-hopper"].expert.settings("sample-factory") == get_task(
        "mujoco-hopper"
    ).expert.settings("sample-factory")

    config = TrainExpertsConfig(out=str(tmp_path / "x"), backend="sb3")
    assert plan_expert(specs["mujoco-hopper"], config, None).num_gpus == 0.5
    assert plan_expert(specs["mujoco-ant"], config, None).num_gpus == 0
    override = replace(config, num_gpus=2)
    assert plan_expert(specs["mujoco-hopper"], override, None).num_gpus == 2  # --num-gpus wins


@pytest.mark.parametrize(
    ("where", "expert", "match"),
    [
        ("defaults", {"num_gpu": 1}, r"unknown key\(s\) \['num_gpu'\]"),
        ("task", {"num_gpu": 1}, r"task 'hopper' expert: unknown key\(s\) \['num_gpu'\]"),
        ("defaults", {"num_gpus": -1}, "defaults expert: num_gpus must be 0, a fraction below 1"),
        ("task", {"num_gpus": 1.5}, "a whole number of GPUs, got 1.5"),
        ("task", {"num_gpus": "one"}, "got 'one'"),
    ],
)
def test_bad_expert_gpu_settings_are_refused_by_name(tmp_path, monkeypatch, where, expert, match):
    def edit(data: dict) -> None:
        target = data["defaults"]["expert"] if where == "defaults" else data["tasks"]["hopper"]
        target.update(expert) if where == "defaults" else target.update(expert=expert)

    folder = _configs(tmp_path, edit)
    monkeypatch.setattr(registry.resources, "files", lambda package: folder)
    with pytest.raises(PipelineError, match=match):
        registry._load_suite("mujoco")


def test_backend_sections_the_registry_accepts_are_the_backends():
    assert set(BACKENDS) == set(EXPERT_BACKEND_SECTIONS)


# --- the device, decided in the worker -----------------------------------------------------------
@NO_CUDA
def test_auto_falls_back_to_cpu_with_one_warning_when_the_gpu_is_only_declared(caplog):
    placed = RayPlacement({"CPU": 1.0, "GPU": 1.0}, {"GPU": ["0"]}, "f" * 56)
    with caplog.at_level(logging.WARNING, logger="experts.device"):
        used = resolve_device("auto", 1, 1.0, placed, TASK)
    assert used.device == "cpu" and used.requested_device == "auto" and used.ray == placed
    assert (
        "asked for 1 GPU(s)" in used.note and "CPU-only build" in used.note and "GPU ids ['0']" in used.note
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage() and TASK in warnings[0].getMessage()

    caplog.clear()
    for requested, gpus in (("auto", 0.0), ("cpu", 1.0)):  # no GPU asked, or the CPU asked: no warning
        assert resolve_device(requested, 1, gpus, placed, TASK).device == "cpu"
    assert not caplog.records
    with pytest.raises(PipelineError, match=r"--device cuda but .* in the training worker \(Ray node f+"):
        resolve_device("cuda", 1, 1.0, placed, TASK)


@NO_CUDA
@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--device", "cuda"], ["--device cuda: torch", "CPU-only build on this machine", "--device auto"]),
        # On a cluster the driver's GPUs do not matter, but a CUDA task must reserve one.
        (["--device", "cuda", "--address", "127.0.0.1:1"], ["asks Ray for no GPU", "--num-gpus 1"]),
        (["--set", "device=gpu"], ["--set device='gpu'", "use --device auto|cpu|cuda"]),
    ],
)
def test_impossible_device_requests_fail_in_one_line_before_ray_starts(tmp_path, extra, expected):
    out = tmp_path / "experts"
    result = _cli(*TRAIN, "--out", str(out), *extra)
    assert result.stdout.strip().splitlines()[-1] == "exit=2 ray_initialized=False", result.stdout
    line = _one_error_line(result)
    assert all(part in line for part in expected), line
    assert not out.exists()


# --- a real Ray cluster: first without GPUs, then with a node declaring one ----------------------
@pytest.fixture(scope="module")
def cluster():
    """A head node without GPU; `gpu_node` adds one declaring a GPU. The test process never joins."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0, "include_dashboard": False}
    )
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="module")
def gpu_node(cluster):
    # Ray refuses to declare a GPU that CUDA_VISIBLE_DEVICES hides; this process's value is no one's
    # business here (the node's GPU is declared, not real), so the node starts without it.
    saved = os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    try:
        node = cluster.add_node(num_cpus=1, num_gpus=1)
    finally:
        if saved is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    cluster.wait_for_nodes()
    return node


@pytest.mark.ray
def test_a_cluster_without_gpus_refuses_expert_num_gpus_at_once(cluster, tmp_path):
    def ask_one_gpu(data: dict) -> None:
        data["defaults"]["expert"]["num_gpus"] = 1

    out = tmp_path / "experts"
    started = time.monotonic()
    result = _cli(
        *TRAIN, "--out", str(out), "--address", cluster.address, configs=_configs(tmp_path, ask_one_gpu)
    )
    line = _one_error_line(result)
    assert (
        f"{TASK} asks Ray for 1 GPU(s) per training task but no node of the cluster has more than 0" in line
    )
    assert "add a GPU node" in line and "expert.num_gpus" in line, line
    assert time.monotonic() - started < 300  # refused, not left waiting for the 300 s placement timeout
    assert not (out / TASK).exists()


@pytest.mark.ray
def test_a_busy_gpu_stops_the_run_after_the_placement_timeout(cluster, gpu_node, tmp_path):
    holder = subprocess.Popen(  # another job holds the only GPU
        [sys.executable, "-c", _HOLD_GPU, cluster.address], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "holding", "the holder job could not take the GPU"
        out = tmp_path / "experts"
        result = _cli(*TRAIN, "--num-gpus", "1", "--placement-timeout", "3", "--out", str(out),
                      "--address", cluster.address)  # fmt: skip
        line = _one_error_line(result)
        assert f"{TASK} could not be placed on Ray for 3 s (each asks for 1 CPU + 1 GPU" in line, line
        assert "0/1 GPU" in line and "--resume" in line and "--placement-timeout" in line, line
        assert not (out / TASK / "metadata.json").exists()
    finally:
        holder.terminate()
        holder.wait(timeout=60)


_HOLD_GPU = """
import sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)

@ray.remote(num_cpus=0, num_gpus=1)
class Holder:
    def ping(self):
        return True

holder = Holder.remote()
ray.get(holder.ping.remote())
print("holding", flush=True)
import time
while True:  # until the test terminates this job, which frees the GPU
    time.sleep(60)
"""


@pytest.mark.ray
@NO_CUDA
def test_a_gpu_task_is_placed_on_the_declared_gpu_and_records_what_it_trained_with(
    cluster, gpu_node, tmp_path
):
    out = tmp_path / "experts"
    result = _cli(
        *TRAIN, "--num-gpus", "1", "--device", "auto", "--out", str(out), "--address", cluster.address
    )
    assert result.returncode == 0, result.stdout + result.stderr
    meta = json.loads((out / TASK / "metadata.json").read_text())
    assert meta["steps_trained"] >= 256 and meta["status"] == "unevaluated"
    resources = meta["resources"]
    assert resources["ray"]["assigned"] == {"CPU": 1.0, "GPU": 1.0}  # the request reached Ray
    assert resources["ray"]["accelerator_ids"] == {"GPU": ["0"]}
    assert resources["ray"]["node_id"] == gpu_node.node_id  # the only node with a GPU
    assert resources["num_gpus"] == 1.0 and resources["requested_device"] == "auto"
    assert resources["device"] == "cpu" and resources["cuda_devices"] == []  # declared, not real: CPU
    assert "asked for 1 GPU(s)" in resources["note"] and "trained on the CPU" in resources["note"]


@pytest.mark.slow  # two 15 s trainings
@pytest.mark.ray
def test_tasks_queued_behind_this_runs_own_gpu_task_wait_past_the_placement_timeout(
    cluster, gpu_node, tmp_path
):
    """Two experts share the only GPU one after the other: the second waits far longer than the timeout
    (the first trains 15 s, the timeout is 8 s), and that is not a placement failure."""
    out = tmp_path / "experts"
    tasks = f"{TASK},mujoco-doublependulum"
    # TRAIN with both tasks, a step budget they cannot reach, and 15 s of training each.
    swap = {TASK: tasks, "256": "10000000"}
    long = [swap.get(arg, arg) for arg in TRAIN] + ["--time-limit", "0.25", "--history-every", "0"]
    result = _cli(
        *long, "--num-gpus", "1", "--placement-timeout", "8", "--out", str(out), "--address", cluster.address
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for config in tasks.split(","):
        meta = json.loads((out / config / "metadata.json").read_text())
        assert meta["resources"]["ray"]["assigned"]["GPU"] == 1.0 and meta["wall_time_s"] >= 15
