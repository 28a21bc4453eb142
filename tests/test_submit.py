"""`pipeline submit`: a stage runs as a batch job on a real Ray cluster (head started by the test)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from ray_head import ray_head as start_ray_head

from pipeline.checks.validate import validate
from pipeline.cli import main
from pipeline.configs.datasets import ValidateConfig
from pipeline.errors import PipelineError
from pipeline.runtime.submit import SubmitConfig


@pytest.fixture(scope="module")
def ray_head():
    """A separate single-node Ray cluster with its job server, as `ray start --head` on a head node."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with start_ray_head(Path(sys.executable), env) as address:
        yield address


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
    assert validate(ValidateConfig(str(out))).ok


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
