"""An expert store on S3 (moto on 127.0.0.1): train, upload, resume on a 'fresh machine', load and act."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from expert_helpers import tiny_plan
from test_s3 import s3_server  # noqa: F401  (the module's real moto server fixture)

from experts.store import ExpertStore, PeriodicUpload
from experts.training import FAILED, train_expert
from pipeline.format.plan import PlannedEpisode
from pipeline.rollout.policy_factory import make_policy
from pipeline.rollout.recorder import record_episode
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task


@pytest.mark.s3
def test_train_resume_and_load_from_s3(s3_server, tmp_path, monkeypatch):  # noqa: F811
    uri = f"{s3_server}/experts"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-a"))
    first = train_expert(tiny_plan("mujoco-hopper", "sb3", 512, history_every=512), uri)
    assert first.status != FAILED, first.error
    fs, root = pafs.FileSystem.from_uri(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    names = {i.path.split("/experts/", 1)[1] for i in infos}
    for name in ("metadata.json", "model/model.zip", "learning_curve.csv"):
        assert f"mujoco-hopper/{name}" in names
    assert any(n.startswith("mujoco-hopper/checkpoints/sb3/model_") for n in names)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-b"))  # nothing local: resume from S3
    second = train_expert(tiny_plan("mujoco-hopper", "sb3", 1024, resume=True, history_every=512), uri)
    assert second.status != FAILED, second.error
    with fs.open_input_stream(f"{root}/mujoco-hopper/metadata.json") as f:
        meta = json.loads(f.read())
    assert meta["resumed_from_step"] == first.steps and meta["steps_trained"] >= 1024
    # the first machine's history snapshot survived the resume elsewhere, and the new ones joined it
    assert ExpertStore(uri).history_steps("mujoco-hopper") == [512, 1024]

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "machine-c"))
    spec = get_task("mujoco-hopper")
    assert ExpertStore(uri).configs() == ["mujoco-hopper"]
    env = make_env(spec)
    policy = make_policy("expert", spec, env, experts_dir=uri, allow_weak=True)
    episode = record_episode(env, policy, spec, PlannedEpisode(0, 7, "train"))
    assert not isinstance(episode, str) and episode.length > 0


@pytest.mark.s3
def test_periodic_upload_mirrors_checkpoints_while_training_runs(s3_server, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    store = ExpertStore(f"{s3_server}/periodic")
    staged = store.stage("mujoco-hopper", resume=False)
    checkpoints = Path(staged.workdir) / "sb3"
    checkpoints.mkdir(parents=True)
    (checkpoints / "model_100_steps.zip").write_bytes(b"first")
    (checkpoints / ".tmp_model_200.zip").write_bytes(b"being written")

    def remote() -> set[str]:
        infos = store.location.list("mujoco-hopper", recursive=True)
        return {store.location.relative(i.path) for i in infos if i.type == pafs.FileType.File}

    with PeriodicUpload(store, staged, every_s=0.2):
        _wait_for(lambda: "mujoco-hopper/checkpoints/sb3/model_100_steps.zip" in remote())
        (checkpoints / "model_200_steps.zip").write_bytes(b"second")
        (checkpoints / "model_100_steps.zip").unlink()  # rotated, as the trainer does
        _wait_for(lambda: "mujoco-hopper/checkpoints/sb3/model_100_steps.zip" not in remote())
    assert remote() == {  # temporary files stay home; the list names the files of the last round
        "mujoco-hopper/checkpoints/sb3/model_200_steps.zip",
        "mujoco-hopper/checkpoints/.uploaded.json",
    }
    assert store.uploaded_checkpoint_files("mujoco-hopper") == {
        "mujoco-hopper/checkpoints/sb3/model_200_steps.zip"
    }


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the periodic upload did not happen"
        time.sleep(0.1)
