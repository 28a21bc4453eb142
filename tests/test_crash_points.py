"""Every moment a rollout can die at, hit on purpose: the result is exactly-once episodes.

`pipeline.runtime.faults` names the moments (a worker between its shard and its record, between its
record and the driver taking the result, the driver right after taking it, and every file the
driver commits); each test arms one and checks the folder against an uninterrupted run,
episode by episode, after the run itself or after `--resume`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rollout_helpers import serial_run, stored_episodes

from pipeline.checks.validate import validate
from pipeline.configs.datasets import ValidateConfig
from pipeline.runtime.faults import FAULTS_ENV

CONFIG = "metaworld-reach"
ARGS = ["--tasks", CONFIG, "--episodes", "12", "--episodes-per-shard", "2", "--seed", "3"]


def _episodes(dataset: Path) -> list[tuple]:
    return stored_episodes(dataset, CONFIG)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[tuple]:
    return serial_run(tmp_path_factory.mktemp("reference") / "ds", CONFIG, 12, 2, 3)


def _rollout(out: Path, *extra: str, faults: str = "", timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != FAULTS_ENV}
    if faults:
        env[FAULTS_ENV] = faults
    command = [sys.executable, "-m", "pipeline.cli", "rollout", *ARGS, "--no-progress", "--out", str(out)]
    return subprocess.run(
        [*command, *extra], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _check(out: Path, reference: list[tuple]) -> None:
    report = validate(ValidateConfig(str(out)))
    assert report.ok, report.errors
    assert _episodes(out) == reference  # no duplicate, no gap, the same content
    assert not (out / ".tmp").exists()


@pytest.mark.ray
def test_workers_killed_at_each_point_of_a_unit_end_change_nothing(tmp_path, reference):
    """Three workers die in one run, each at another moment of a unit's end (one marker each, so a
    replacement reaching the same point goes on): between shard and record (the unit runs again),
    between record and delivery, and right after the driver took the result (both: taken once)."""
    out = tmp_path / "ds"
    points = {
        "unit.shard_committed": 1,  # shard in place, no record yet
        "unit.record_written": 1,  # record in place, result not sent
        "driver.received.UnitResult": 3,  # result taken, stream still open: the driver kills the actor
    }
    faults = ",".join(f"{point}={hit}@{tmp_path / point}" for point, hit in points.items())
    done = _rollout(out, "--workers", "2", faults=faults)
    assert done.returncode == 0, done.stdout + done.stderr
    assert all((tmp_path / point).exists() for point in points), "a crash point was never reached"
    said = " ".join((done.stderr + done.stdout).split())  # log lines may wrap
    assert said.count("a worker died") == 3
    assert "running it again" in said and "its result was already committed" in said
    _check(out, reference)


def _driver_crash_then_resume(tmp_path: Path, point: str, hit: int, reference: list[tuple]) -> bool:
    """Crash the in-process driver at the `hit`-th `point`; resume; False once the run outlives it."""
    out = tmp_path / f"ds-{point}-{hit}"
    crashed = _rollout(out, "--workers", "0", faults=f"{point}={hit}")
    if crashed.returncode == 0:
        _check(out, reference)
        return False
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    resumed = _rollout(out, "--workers", "0", "--resume")
    assert resumed.returncode == 0, f"{point}={hit}: " + resumed.stdout + resumed.stderr
    _check(out, reference)
    return True


def _sweep(tmp_path: Path, point: str, hits: list[int], reference: list[tuple]) -> int:
    crashed = 0
    for hit in hits:
        if not _driver_crash_then_resume(tmp_path, point, hit, reference):
            break
        crashed += 1
    return crashed


def test_a_driver_killed_around_its_first_writes_resumes(tmp_path, reference):
    """The first seconds: before and after the probe, info.json, the lease and the first plan."""
    assert _sweep(tmp_path, "storage.commit", [1, 2, 3, 4], reference) == 4
    assert _sweep(tmp_path, "storage.committed", [1, 2, 3], reference) == 3


@pytest.mark.slow
@pytest.mark.parametrize("point", ["storage.commit", "storage.committed"])
def test_a_driver_killed_after_any_write_resumes(tmp_path, reference, point):
    """From the first byte written to the last: every committed file is a crash point."""
    crashed = _sweep(tmp_path, point, list(range(1, 200)), reference)
    assert crashed > 20  # 6 shards and their records, plans, manifest, info, README
