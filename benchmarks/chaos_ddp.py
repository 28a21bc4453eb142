"""chaos_release.py's train-model-ddp kind: the processes of a run's own Ray, and its checkpoint storage.

A `train-model --num-workers 2` run without RAY_ADDRESS starts its own Ray (GCS, raylet, Ray Train's
controller and workers) in the driver's session: the benchmark starts the driver in a new session,
so every process of the run, and nothing else on the machine, carries the driver's pid as its sid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import psutil

from pipeline.model.checkpoints import CHECKPOINT, read_checkpoint

WORKER_TITLE = "ray::RayTrainWorker"
# A Ray worker the raylet had just started (still importing, its title not yet set) when the driver's
# process group died waits for that raylet before it exits: 26 s at load 1 (measured by killing the
# group the moment such a process appeared, 3 of 3), longer when its imports are slow. 120 s, as
# chaos_rllib.GONE_S: what outlives that is a leak, what goes before it is Ray's own clean-up.
REAP_GRACE_S = 120.0


def _title(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(process.cmdline())
    return ""


def session_processes(sid: int) -> list[psutil.Process]:
    """Live processes of the session `sid` (the driver itself excluded)."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if process.pid != sid and os.getsid(process.pid) == sid and process.status() != "zombie":
                found.append(process)
    return found


def train_workers(sid: int) -> list[psutil.Process]:
    """The Ray Train worker processes of the run whose driver is `sid`."""
    return [p for p in session_processes(sid) if _title(p).startswith(WORKER_TITLE)]


def reap(sid: int) -> tuple[list[str], float]:
    """The titles of the run's processes still alive `REAP_GRACE_S` after its driver ended, which
    are then killed (what a killed run would leave running on the machine), and when the last of
    the others went (seconds after the call); its Ray folder goes too."""
    started = time.monotonic()
    deadline, last_gone = started + REAP_GRACE_S, 0.0
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.5)
        last_gone = time.monotonic() - started
    titles = [f"{p.pid} {_title(p)[:160]}" for p in left]
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    for folder in Path(tempfile.gettempdir(), "ray").glob(f"session_*_{sid}"):  # this run's logs
        shutil.rmtree(folder, ignore_errors=True)
    return titles, (0.0 if left else last_gone)


def storage_problems(storage: Path) -> list[str]:
    """What a reader of Ray Train's storage would find broken: the run's snapshot that does not
    parse, a checkpoint folder that does not load as a checkpoint."""
    problems = []
    snapshot = storage / "checkpoint_manager_snapshot.json"
    if snapshot.exists():
        try:
            json.loads(snapshot.read_text())
        except ValueError as exc:
            problems.append(f"{snapshot.name} does not parse: {exc}")
    for folder in sorted(p for p in storage.glob("checkpoint_*") if p.is_dir()):
        try:
            read_checkpoint(folder / CHECKPOINT)
        except Exception as exc:
            problems.append(f"{folder.name} does not load: {' '.join(str(exc).split())[:160]}")
    return problems
