"""`pipeline submit`: a stage runs as a batch job on a real Ray cluster (head started by the test)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import requests

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.submit import SubmitConfig
from pipeline.validate import validate

AGENT_PORT_FLAGS = (
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
    "ray-client-server-port",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """A separate single-node Ray cluster with its job server, as `ray start --head` on a head node."""
    bin_dir = Path(sys.executable).parent
    port, dashboard = _free_port(), _free_port()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    temp = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # Ray's socket paths must stay short
    head = subprocess.Popen(
        [
            str(bin_dir / "ray"),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
            # Free ports for every agent: the defaults (e.g. 52365) clash with another Ray on this machine.
            *(f"--{flag}={_free_port()}" for flag in AGENT_PORT_FLAGS),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{address}/api/version", timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    else:
        os.killpg(head.pid, signal.SIGKILL)
        pytest.fail("the Ray head did not start")
    yield address
    os.killpg(head.pid, signal.SIGKILL)  # the whole head: gcs, raylet, workers (same session)
    head.wait()
    for process in psutil.process_iter(["cmdline"]):
        if str(temp) in " ".join(process.info["cmdline"] or []):
            process.kill()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.mark.ray
def test_rollout_as_a_cluster_job(ray_head, tmp_path, capsys):
    out = tmp_path / "job-out"
    code = main(
        [
            "submit",
            "--address",
            ray_head,
            "--",
            "rollout",
            "--tasks",
            "mujoco-hopper",
            "--episodes",
            "3",
            "--policy",
            "random",
            "--workers",
            "1",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr()
    assert "SUCCEEDED" in capsys.readouterr().err
    assert validate(str(out)).ok


@pytest.mark.ray
def test_a_failing_job_fails_the_command(ray_head, tmp_path, capsys):
    """The stage's exit code comes back (2: bad input), with its last log line and where the log is."""
    code = main(
        [
            "submit",
            "--address",
            ray_head,
            "--",
            "rollout",
            "--tasks",
            "pongg",
            "--episodes",
            "2",
            "--out",
            str(tmp_path / "never"),
        ]
    )
    assert code == 2
    assert not (tmp_path / "never").exists()
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "FAILED, exit 2" in last and "pongg" in last and "ray job logs" in last, last


def test_bad_submissions_fail_before_reaching_a_cluster():
    with pytest.raises(PipelineError, match="name the stage"):
        SubmitConfig(command=())
    with pytest.raises(PipelineError, match="cannot be submitted"):
        SubmitConfig(command=("submit",))
    with pytest.raises(PipelineError, match="unset variable"):
        SubmitConfig(command=("validate", "x"), env=("JAT_SURELY_UNSET_VARIABLE",))
    assert main(["submit", "--address", "127.0.0.1:6379", "--", "validate", "x"]) == 2
