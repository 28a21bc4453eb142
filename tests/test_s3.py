"""Object-store output: rollout → validate → load against a real S3 server (moto) on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.checks.validate import validate
from pipeline.configs.datasets import ValidateConfig
from pipeline.errors import PipelineError
from pipeline.release.loading import load_config, mirror_config
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.runtime.storage import open_location


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 server as a separate process, with the standard AWS variables pointing at it."""
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import boto3

    for _ in range(100):
        try:
            boto3.client("s3").create_bucket(Bucket="jat")
            break
        except Exception:  # the server is still starting
            time.sleep(0.1)
    yield "s3://jat"
    server.terminate()
    server.wait()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.mark.s3
@pytest.mark.ray
def test_rollout_validate_load_on_s3(s3_server, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # as `make test` and CI run it
    uri = f"{s3_server}/run"
    command = [
        sys.executable,
        "-m",
        "pipeline.cli",
        "rollout",
        "--tasks",
        "mujoco-hopper,atari-breakout",
        "--episodes",
        "4",
        "--policy",
        "random",
        "--workers",
        "2",
        "--no-progress",
        "--out",
        uri,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    report = validate(ValidateConfig(uri))
    assert report.ok, report.errors
    import boto3

    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="jat", Prefix="run/")["Contents"]]
    assert not [k for k in keys if k.startswith("run/.tmp")]  # temporary objects are gone
    assert "run/meta/mujoco-hopper/manifest.json" in keys and "run/README.md" in keys
    hopper = load_config(uri, "mujoco-hopper")
    assert hopper["train"].num_rows + hopper["test"].num_rows == 4
    assert list(hopper["train"].features) == ["continuous_observations", "continuous_actions", "rewards"]
    frames = load_config(uri, "atari-breakout", split="train")[0]["image_observations"]
    assert frames[0].size == (84, 84) and frames[0].mode == "RGBA"


@pytest.mark.s3
def test_s3_corruption_is_caught(s3_server):
    from pipeline.rollout.run import RolloutConfig, rollout

    uri = f"{s3_server}/corrupt"
    rollout(
        RolloutConfig(
            out=uri, tasks=("mujoco-hopper",), episodes=3, policy="random", workers=0, progress=False
        )
    )
    import boto3

    client = boto3.client("s3")
    objects = client.list_objects_v2(Bucket="jat", Prefix="corrupt/data/")["Contents"]
    key = next(o["Key"] for o in objects if o["Key"].endswith(".parquet"))
    body = bytearray(client.get_object(Bucket="jat", Key=key)["Body"].read())
    body[100] ^= 0xFF
    client.put_object(Bucket="jat", Key=key, Body=bytes(body))
    report = validate(ValidateConfig(uri))
    assert not report.ok and any("sha256" in e and key.removeprefix("corrupt/") in e for e in report.errors)


def test_mirror_refetches_only_changed_shards_and_rejects_bad_checksums(s3_server, tmp_path):
    """Loading from S3 works with HF_HUB_OFFLINE=1 because shards are mirrored and verified."""
    uri = f"{s3_server}/mirror"
    config = RolloutConfig(out=uri, tasks=("mujoco-hopper",), episodes=3, policy="random", workers=0)
    rollout(replace(config, progress=False))
    location = open_location(uri)
    cache = tmp_path / "cache"
    root = mirror_config(location, "mujoco-hopper", cache_dir=cache)
    shards = sorted(root.glob("data/mujoco-hopper/*.parquet"))
    assert shards and (root / "README.md").exists()
    before = {p: p.stat().st_mtime_ns for p in shards}
    mirror_config(location, "mujoco-hopper", cache_dir=cache)
    assert {p: p.stat().st_mtime_ns for p in shards} == before  # verified copies are not fetched again
    shards[0].write_bytes(b"damaged")
    mirror_config(location, "mujoco-hopper", cache_dir=cache)
    assert shards[0].stat().st_size > len(b"damaged")  # a damaged copy is fetched again
    relative = location.relative(location.list("data/mujoco-hopper")[0].path)
    location.write_bytes(relative, b"not the shard the manifest describes")
    with pytest.raises(PipelineError, match="checksum"):
        mirror_config(location, "mujoco-hopper", cache_dir=tmp_path / "other")
    assert not list((tmp_path / "other").rglob("*.partial"))  # nothing half-written left behind
