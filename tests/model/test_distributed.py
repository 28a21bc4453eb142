"""Data-parallel training on Ray Train: 2 CPU workers (gloo) on the local cluster, tiny model.

The global batch is drawn from one stream that every rank advances alike, each rank decoding its
own slice, and each rank's loss is weighted by its share of the global batch's steps before DDP
averages the gradients: 2 workers compute the gradient 1 process computes on the same batch. What
differs is float summation order (two half-batch forward passes and a gloo all-reduce instead of
one pass), ~1e-7 relative per step; through Adam over 10 steps that stays far below the tolerance
of 1e-4 (relative) used here, while a wrong slice, a missing weighting or an unsynchronised rank
changes losses at the 1e-2 level from the first steps on.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_s3 import s3_server  # noqa: F401 (the moto S3 server fixture)

from pipeline.errors import PipelineError
from pipeline.model.train import TrainModelConfig, train_model
from pipeline.runtime.faults import FAULTS_ENV

TOLERANCE = 1e-4


def _losses(out: Path) -> list[tuple[int, str, float]]:
    with open(out / "losses.csv", newline="") as f:
        return [(int(r["step"]), r["config"], float(r["loss"])) for r in csv.DictReader(f)]


def _config(data: Path, out: Path, steps: int, **overrides) -> TrainModelConfig:
    settings = dict(
        data=str(data),
        configs=("metaworld-reach:2", "mujoco-hopper"),
        steps=10,
        batch_size=4,
        context_steps=8,
        checkpoint_every=5,
        eval_batches=1,
        out=str(out),
        progress=False,
        threads=1,
    )
    config = TrainModelConfig(**{**settings, **overrides})
    return replace(config, steps=steps)


def _interrupted_then_resumed(data: Path, out: Path, **overrides) -> None:
    """5 steps of a 10-step run (the schedule is the 10-step one), then --resume to 10."""
    first = _config(data, out, 10, **overrides)
    # stop after the checkpoint at step 5 as an interruption would: a 10-step schedule, 5 steps done
    train_model(replace(first, steps=5, warmup_steps=1))
    train_model(replace(first, steps=10, warmup_steps=1, resume=True))


@pytest.mark.ray
def test_two_workers_train_checkpoint_and_match_one_process(sample_dataset, tmp_path, ray_cluster):
    train_model(_config(sample_dataset, tmp_path / "one", 10))
    storage = tmp_path / "ray-storage" / "run"
    train_model(_config(sample_dataset, tmp_path / "two", 10, num_workers=2, storage=str(storage)))

    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert [r[:2] for r in two] == [r[:2] for r in one] and len(two) == 10  # the same task every step
    np.testing.assert_allclose([r[2] for r in two], [r[2] for r in one], rtol=TOLERANCE)
    assert len({r[1] for r in two}) == 2
    checkpoints = [p for p in storage.iterdir() if p.is_dir() and p.name.startswith("checkpoint_")]
    assert len(checkpoints) == 2  # step 5's and the final one (CheckpointConfig(num_to_keep=2))
    for name in ("model.safetensors", "config.json", "tokenizer.json", "training.json", "checkpoint"):
        assert (tmp_path / "two" / name).exists(), name
    from pipeline.model.evaluate import load_model

    load_model(str(tmp_path / "two"))  # the final model loads like a one-process run's

    with pytest.raises(PipelineError, match="holds checkpoints of an earlier run"):
        train_model(_config(sample_dataset, tmp_path / "three", 10, num_workers=2, storage=str(storage)))


@pytest.mark.ray
def test_workers_that_cannot_be_placed_stop_with_one_line(sample_dataset, tmp_path, ray_cluster):
    config = _config(
        sample_dataset, tmp_path / "gpu", 2, num_workers=2, gpus_per_worker=1, placement_timeout_s=1.0
    )
    with pytest.raises(PipelineError) as caught:
        train_model(config)
    message = str(caught.value)
    assert "2 training workers (1 CPU + 1 GPU each) could not be placed" in message
    assert "CPU" in message.split("free in the cluster:")[1] and "\n" not in message
    assert not (tmp_path / "gpu" / "model.safetensors").exists()


@pytest.mark.ray
@pytest.mark.s3
@pytest.mark.slow
def test_checkpoints_on_s3_resume_like_one_process(sample_dataset, tmp_path, ray_cluster, s3_server):  # noqa: F811
    import boto3

    _interrupted_then_resumed(sample_dataset, tmp_path / "one")
    storage = f"{s3_server}/runs/tiny"
    _interrupted_then_resumed(sample_dataset, tmp_path / "two", num_workers=2, storage=storage)
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert [r[:2] for r in two] == [r[:2] for r in one] and len(two) == 10
    np.testing.assert_allclose([r[2] for r in two], [r[2] for r in one], rtol=TOLERANCE)
    keys = [
        o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="jat", Prefix="runs/tiny/")["Contents"]
    ]
    assert any("/checkpoint_" in k and k.endswith("model.safetensors") for k in keys)


@pytest.mark.ray
@pytest.mark.slow
def test_a_worker_lost_mid_run_stops_with_one_line_and_resume_matches_one_process(sample_dataset, tmp_path):
    """A Ray Train worker SIGKILLed after its 7th step (past the step-5 checkpoint), as an OOM kill or
    a lost node would: no retry is configured, so the run exits 2 with one line naming --resume as
    its last (Ray's own log lines come before it), and `--resume` ends with one process's losses."""
    train_model(_config(sample_dataset, tmp_path / "one", 10))
    out, marker = tmp_path / "two", tmp_path / "fired"
    options = "--configs metaworld-reach:2,mujoco-hopper --steps 10 --batch-size 4 --context 8 "
    options += "--checkpoint-every 5 --eval-batches 1 --threads 1 --no-progress --num-workers 2"
    argv = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "train-model",
        "--data",
        str(sample_dataset),
        *options.split(),
    ]
    argv += ["--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k not in (FAULTS_ENV, "RAY_ADDRESS")}  # its own Ray

    def run(*extra: str, faults: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [*argv, *extra],
            env={**env, FAULTS_ENV: faults} if faults else env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # one stream, in the order it was written
            text=True,
            timeout=300,
            check=False,
        )

    killed = run(faults=f"model.train_step=7@{marker}")  # only the first rank to get there dies
    assert marker.exists()
    last = killed.stdout.strip().splitlines()[-1]
    assert killed.returncode == 2, killed.stdout[-3000:]
    assert last.startswith("error: training worker rank ") and "died" in last, killed.stdout[-3000:]
    assert f"--resume to continue from the run's last checkpoint in {out / 'ray-checkpoints'}" in last
    assert not (out / "model.safetensors").exists()

    resumed = run("--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    one, two = _losses(tmp_path / "one"), _losses(out)
    assert [r[:2] for r in two] == [r[:2] for r in one] and len(two) == 10
    np.testing.assert_allclose([r[2] for r in two], [r[2] for r in one], rtol=TOLERANCE)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_workers": 3}, "multiple of --num-workers 3"),
        ({"gpus_per_worker": 1}, "need --num-workers"),
        ({"storage": "s3://b/run"}, "need --num-workers"),
        ({"num_workers": 2, "placement_timeout_s": 0}, "--placement-timeout positive"),
        ({"num_workers": 2, "device": "cuda"}, "needs --gpus-per-worker"),
    ],
)
def test_bad_data_parallel_settings_fail_at_once(tmp_path, overrides, message):
    with pytest.raises(PipelineError, match=message):
        _config(tmp_path, tmp_path / "out", 10, **overrides)
