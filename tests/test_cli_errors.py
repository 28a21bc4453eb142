"""Failures the CLI turns into one line and exit code 2: a full disk, and unknown `--set` keys.

The full disk is real: a small tmpfs mounted for the test (we run as root; without the right
to mount, these tests skip saying so), filled by a real rollout or publish, then enlarged in
place so the same command can finish the job.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.checks.validate import validate
from pipeline.cli.common import disk_full_cause
from pipeline.configs.datasets import ValidateConfig

CONFIG = "mujoco-hopper"
# ~1.8 MB of random-policy Hopper episodes: more than the 1 MB disk holds, done in a few seconds.
ROLLOUT = ["rollout", "--tasks", CONFIG, "--policy", "random", "--no-progress", "--episodes", "1000"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, timeout=600
    )


def _episodes(dataset: Path) -> list[tuple]:
    manifest = json.loads((dataset / "meta" / CONFIG / "manifest.json").read_text())
    return sorted(
        (e["episode_id"], e["digest"], s["split"]) for s in manifest["shards"] for e in s["episodes"]
    )


@contextlib.contextmanager
def _small_disk(path: Path, size: str) -> Iterator[Callable[[str], None]]:
    """A tmpfs of `size` at `path`; yields `resize(new_size)`; always unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("filling a real disk needs a tmpfs mount, which needs root")
    path.mkdir(parents=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True
    )
    if mount.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here (needs CAP_SYS_ADMIN): {mount.stderr.strip()}")

    def resize(new_size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={new_size}", str(path)], check=True)

    try:
        yield resize
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)  # a straggling process: detach


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[tuple]:
    """The same rollout uninterrupted, on a roomy disk (also warms caches so stderr stays quiet)."""
    out = tmp_path_factory.mktemp("reference") / "ds"
    result = _cli(*ROLLOUT, "--workers", "0", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return _episodes(out)


@pytest.mark.parametrize("workers", [0, pytest.param(1, marks=[pytest.mark.ray, pytest.mark.slow])])
def test_a_full_disk_is_one_line_and_resume_finishes_the_same_dataset(tmp_path, reference, workers):
    disk = tmp_path / "disk"
    out = disk / "ds"
    command = [*ROLLOUT, "--workers", str(workers), "--out", str(out)]
    with _small_disk(disk, "1m") as resize:
        line = _one_error_line(_cli(*command))
        assert "disk full" in line and "No space left on device" in line, line
        assert str(out) in line and "--resume" in line and "free space" in line, line
        assert any((out / "data" / CONFIG).glob("*.parquet")), "the disk filled before any shard landed"

        resize("64m")
        resumed = _cli(*command, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming" in resumed.stderr
        assert validate(ValidateConfig(str(out))).ok
        assert _episodes(out) == reference


def test_publish_to_a_full_folder_is_one_line_and_a_rerun_finishes(tmp_path):
    source = tmp_path / "ds"  # 200 episodes, ~400 kB
    assert _cli(*ROLLOUT[:-1], "200", "--workers", "0", "--out", str(source)).returncode == 0
    disk = tmp_path / "disk"
    target = disk / "published"
    command = ["publish", str(source), "--to-folder", str(target), "--no-progress"]
    with _small_disk(disk, "128k") as resize:
        result = _cli(*command)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "disk full" in errors[0] and str(target) in errors[0], result.stderr
        assert (
            "re-run the same command" in errors[0] and "--resume" not in errors[0]
        )  # publish resumes itself

        resize("64m")
        again = _cli(*command)
        assert again.returncode == 0, again.stderr
        assert validate(ValidateConfig(str(target))).ok


def test_full_disk_is_recognised_through_wrappers_and_nothing_else_is():
    assert disk_full_cause(OSError(errno.ENOSPC, "No space left on device")) is not None
    assert disk_full_cause(OSError(errno.EDQUOT, "Disk quota exceeded")) is not None
    # pyarrow sometimes reports it in the text only.
    assert disk_full_cause(OSError("IOError: [errno 28] No space left on device")) is not None
    full = OSError(errno.ENOSPC, "No space left on device", "/data/x.parquet")
    try:
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("writing the shard failed") from exc
    except RuntimeError as wrapped:
        assert disk_full_cause(wrapped) is full
    assert disk_full_cause(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full_cause(ValueError("No space left on device")) is None


# --- unknown --set keys --------------------------------------------------------------------------
# Run `main` in a fresh interpreter and report whether Ray was started in it: the check must come
# before `init_ray` (which the stage calls before planning the tasks), not after.
_PROBE = """
import sys, ray
from pipeline.cli import main
code = main(sys.argv[1:])
print(f"exit={code} ray_initialized={ray.is_initialized()}")
sys.exit(code)
"""


@pytest.mark.parametrize(
    ("backend", "section"), [([], "expert.sample-factory"), (["--backend", "sb3"], "expert.sb3")]
)
def test_unknown_set_key_is_refused_before_ray_starts(tmp_path, backend, section):
    out = tmp_path / "experts"
    args = ["train-experts", "--tasks", CONFIG, *backend, "--set", "learning_ratee=0.1", "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *args, "--no-progress"], capture_output=True, text=True, timeout=300
    )
    assert result.stdout.strip().splitlines()[-1] == "exit=2 ray_initialized=False", result.stdout
    line = _one_error_line(result)
    assert "learning_ratee" in line and "did you mean learning_rate" in line, line
    assert section in line and "fix the key" in line, line
    assert "Started a local Ray instance" not in result.stdout + result.stderr
    assert not out.exists()


def test_an_unknown_algorithm_on_the_command_line_is_refused_before_any_work(tmp_path):
    from pipeline.errors import PipelineError
    from pipeline.expert_stages.train_experts import TrainExpertsConfig, train_experts

    config = TrainExpertsConfig(
        out=str(tmp_path / "x"), tasks=(CONFIG,), backend="sb3", hyperparameters={"algo": "ppo2"}
    )
    with pytest.raises(PipelineError, match="unknown sb3 algo 'ppo2'"):
        train_experts(config)  # not in-process: it would start Ray, were the check not first
    assert not (tmp_path / "x").exists()


def test_set_does_not_apply_to_experts_that_train_nothing(tmp_path):
    """The BabyAI bot takes no hyperparameters: a suite-wide --set leaves it alone, as documented."""
    from pipeline.expert_stages.train_experts import TrainExpertsConfig, train_experts

    summary = train_experts(
        TrainExpertsConfig(
            out=str(tmp_path / "experts"),
            tasks=("babyai-go-to",),
            hyperparameters={"learning_rate": 1e-4},
            eval_episodes=1,
            workers=0,
            progress=False,
        )
    )
    assert not summary.failed, [r.error for r in summary.failed]


# --- no cluster, no credentials ------------------------------------------------------------------
def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


@pytest.mark.parametrize("stage", ["rollout", "train-experts"])
def test_no_cluster_at_the_address_is_one_line_before_any_work(tmp_path, stage):
    """Ray's client retries an empty address for minutes; the stage must refuse it at once."""
    out = tmp_path / "out"
    address = f"127.0.0.1:{_closed_port()}"
    args = [stage, "--tasks", "babyai-go-to", "--address", address, "--out", str(out), "--no-progress"]
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *args, *(["--episodes", "4"] if stage == "rollout" else [])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip().splitlines()[-1] == "exit=2 ray_initialized=False", result.stdout
    line = _one_error_line(result)
    assert f"no Ray cluster at {address}" in line and "ray start --head" in line, line
    assert not out.exists()


def test_missing_s3_credentials_are_one_line_before_any_work(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none"))
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_ENDPOINT_URL="http://127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *ROLLOUT[:5], "--episodes", "2", "--out", "s3://bucket/jat"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    line = _one_error_line(result)
    assert "no S3 credentials for s3://bucket/jat" in line and "AWS_ACCESS_KEY_ID" in line, line
