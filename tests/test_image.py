"""The Docker image, built and run on this project's machines with podman (slow).

These machines reach neither Docker Hub nor PyTorch's index, so docker/build-local.sh builds
docker/Dockerfile, unchanged, on a python base made from Debian's packages (docker/local-base.sh),
with pip resolving from the host's local wheels. The test then runs `pipeline demo` in the image as
its user `jat`, validates the output inside and again with the checkout's code, which reads the
dataset the image wrote. Podman here needs runc and explicit ulimits (see docker/local-base.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TAG = "localhost/jat-pipeline:test"
# A fresh base (debootstrap) takes ~2.5 min, the image build ~9-15 min (vfs storage copies every layer).
BUILD_TIMEOUT = 2700
RUN_TIMEOUT = 900
RUN = [
    "podman", "--runtime", "runc", "run", "--rm",
    "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
    "--shm-size", "2g", "-e", "RAY_AUTH_MODE=disabled",
]  # fmt: skip
IN_IMAGE = """set -e
test "$(id -u)" = 1000
python -c 'import torch; print("torch", torch.__version__)'
pipeline demo --out /out/demo --episodes 2 --workers 2
pipeline validate /out/demo
"""


def _missing_tools() -> list[str]:
    return [tool for tool in ("podman", "debootstrap", "runc") if shutil.which(tool) is None]


@pytest.mark.slow
@pytest.mark.timeout(BUILD_TIMEOUT + 2 * RUN_TIMEOUT + 120)
def test_image_builds_and_runs_the_demo() -> None:
    if missing := _missing_tools():
        pytest.skip(f"{', '.join(missing)} not installed: the image needs podman, runc and debootstrap")
    if os.geteuid() != 0:
        pytest.skip("building the base with debootstrap and running rootful podman needs root")
    build = subprocess.run(
        ["bash", "docker/build-local.sh"],
        cwd=ROOT,
        env={**os.environ, "JAT_IMAGE": TAG},
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    config = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Config.User}} {{json .Config.Env}}", TAG],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert config.startswith("jat ") and "HF_HOME=/cache/huggingface" in config, config

    with tempfile.TemporaryDirectory() as tmp:
        os.chown(tmp, 1000, 1000)  # the image's user writes the dataset
        run = subprocess.run(
            [*RUN, "-v", f"{tmp}:/out", TAG, "bash", "-c", IN_IMAGE],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        # The CPU variant's torch is the CPU build: no CUDA runtime in the image.
        assert "torch 2.13.0+cpu" in run.stdout, run.stdout[-3000:]
        assert "4/4 configs valid" in run.stdout, run.stdout[-3000:]
        host = subprocess.run(
            [str(Path(sys.executable).parent / "pipeline"), "validate", f"{tmp}/demo"],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        assert host.returncode == 0, host.stdout + host.stderr
