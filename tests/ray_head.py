"""A Ray head with its job server, started as a user starts one (`ray start --head --block`).

Shared by `pipeline submit` tests and the installed-wheel test, which starts the head from the
wheel's venv so the job's `pipeline` entrypoint is the installed one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import requests

AGENT_PORT_FLAGS = (
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "metrics-export-port",
    "runtime-env-agent-port",
    "ray-client-server-port",
)
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_head(python: Path, env: dict[str, str], num_cpus: int = 2) -> Iterator[str]:
    """Yield the job server's address (http://127.0.0.1:PORT); kill the whole head afterwards.

    `python` runs Ray's CLI, so Ray's workers and job drivers use that interpreter's environment.
    """
    port, dashboard = free_port(), free_port()
    temp = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # Ray's socket paths must stay short
    head = subprocess.Popen(
        [
            str(python),
            "-c",
            "from ray.scripts.scripts import main; main()",
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--num-cpus={num_cpus}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
            # Free ports for every agent: the defaults (e.g. 52365) clash with another Ray on this machine.
            *(f"--{flag}={free_port()}" for flag in AGENT_PORT_FLAGS),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{address}/api/version", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        else:
            raise AssertionError(f"the Ray head did not start within {START_TIMEOUT_S} s")
        yield address
    finally:
        os.killpg(head.pid, signal.SIGKILL)  # the whole head: gcs, raylet, workers (same session)
        head.wait()
        for process in psutil.process_iter(["cmdline"]):
            if str(temp) in " ".join(process.info["cmdline"] or []):
                process.kill()
        shutil.rmtree(temp, ignore_errors=True)
