"""Exactly-once episodes when a Ray worker or the driver itself is killed with SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from datasets import load_dataset
from rollout_helpers import serial_run, stored_episodes, wait_for_records

from pipeline.checks.validate import validate
from pipeline.configs.datasets import ValidateConfig
from pipeline.rollout.run import RolloutConfig, rollout

CONFIG = "metaworld-reach"
ARGS = ["--tasks", CONFIG, "--episodes", "24", "--episodes-per-shard", "3", "--seed", "7"]


def _episodes(dataset: Path) -> list[tuple]:
    return stored_episodes(dataset, CONFIG)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[tuple]:
    return serial_run(tmp_path_factory.mktemp("reference") / "ds", CONFIG, 24, 3, 7)


def _start(out: Path, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "rollout",
        *ARGS,
        "--workers",
        "2",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )


def _wait_for_records(out: Path, count: int, process: subprocess.Popen) -> None:
    wait_for_records(out, CONFIG, count, process)


@pytest.mark.ray
def test_killed_worker_is_replaced_and_every_episode_lands_once(tmp_path, reference):
    out = tmp_path / "ds"
    process = _start(out)
    _wait_for_records(out, 1, process)
    actors = [
        p
        for p in psutil.Process(process.pid).children(recursive=True)
        if "ray::_Remote" in " ".join(p.cmdline())
    ]
    assert actors, "no Ray rollout actor found"
    actors[0].send_signal(signal.SIGKILL)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert "worker died" in output
    assert validate(ValidateConfig(str(out))).ok
    assert _episodes(out) == reference  # exactly once: no duplicates, no gaps, same content


@pytest.mark.ray
def test_killed_driver_resumes_to_the_same_dataset(tmp_path, reference):
    out = tmp_path / "ds"
    process = _start(out)
    _wait_for_records(out, 2, process)
    # As a machine crash would: the driver, the local Ray cluster it started, and the rollout actors,
    # which Ray puts in process groups of their own (killing the driver's group alone leaves them
    # a second or two to finish their units).
    descendants = psutil.Process(process.pid).children(recursive=True)
    os.killpg(process.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()
    process.wait()
    psutil.wait_procs(descendants, timeout=30)
    assert not (out / "meta" / CONFIG / "manifest.json").exists()
    # What a crash can leave: a truncated temporary shard, and a shard committed without its record.
    (out / ".tmp").mkdir(exist_ok=True)
    (out / ".tmp" / "dead-train-00009.parquet").write_bytes(b"PAR1 trunc")
    orphan = out / "data" / CONFIG / "train-00042.parquet"
    orphan.write_bytes(b"PAR1 committed but unrecorded")

    refused = _start(out)  # without --resume the run refuses to touch the folder
    output, _ = refused.communicate(timeout=120)
    assert refused.returncode == 2 and "--resume" in output

    resumed = _start(out, "--resume")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert not orphan.exists() and not (out / ".tmp").exists()
    assert validate(ValidateConfig(str(out))).ok
    assert _episodes(out) == reference
    loaded = load_dataset(str(out), CONFIG)
    assert loaded["train"].num_rows + loaded["test"].num_rows == 24


def test_resume_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "ds"
    rollout(
        RolloutConfig(
            out=str(out), tasks=("mujoco-hopper",), episodes=3, policy="random", workers=0, progress=False
        )
    )
    from pipeline.errors import PipelineError

    with pytest.raises(PipelineError, match="seed: was 0, now 1"):
        rollout(
            RolloutConfig(
                out=str(out),
                tasks=("mujoco-hopper",),
                episodes=3,
                policy="random",
                seed=1,
                workers=0,
                resume=True,
                progress=False,
            )
        )
    assert validate(ValidateConfig(str(out))).ok


def test_a_worker_of_a_superseded_run_commits_nothing(tmp_path):
    """An actor that outlives its killed driver must not land its unit in the resumed run's folder."""
    from pipeline.errors import PipelineError
    from pipeline.format.plan import make_units, plan_episodes
    from pipeline.format.schema import RUN_LEASE_PATH, SPLITS
    from pipeline.rollout.collector import RolloutWorker, WorkerSettings
    from pipeline.runtime.storage import open_location

    location = open_location(str(tmp_path / "ds"))
    location.write_json(RUN_LEASE_PATH, {"run_id": "resumed-run"})
    episodes = plan_episodes(CONFIG, 0, 2, 7, 0.0, ensure_test=False)
    unit = make_units(CONFIG, episodes, 2, 1, dict.fromkeys(SPLITS, 0))[0]
    settings = WorkerSettings(out=location.uri, policies={CONFIG: "scripted"}, run_id="killed-run")
    with pytest.raises(PipelineError, match="now written by rollout run resumed-run"):
        list(RolloutWorker(settings).run_unit(unit))
    assert not (tmp_path / "ds" / "data").exists() and not (tmp_path / "ds" / "meta" / CONFIG).exists()
    assert not list((tmp_path / "ds" / ".tmp").glob("*.parquet"))  # the half shard was dropped too
