"""`experts.store`: one folder per config under EXPERTS_DIR, local or remote (moto S3 on 127.0.0.1).

Experts here are real store folders written through `ExpertStore`; the experts that train nothing
(the BabyAI bot) load without any model file, so nothing is trained.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.fs as pafs
import pytest
from test_s3 import s3_server  # noqa: F401  (the real moto server fixture)

from experts.metadata import ExpertMetadata, ExpertStatus
from experts.store import CHECKPOINT_DIR, HISTORY_DIR, MODEL_DIR, UPLOADED, ExpertStore, PeriodicUpload
from pipeline.errors import PipelineError
from pipeline.suites.babyai import BabyAIBotPolicy
from pipeline.tasks.registry import get_task

GOTO = get_task("babyai-go-to")
CURVE = "steps,wall_time_s,episodes,mean_return,mean_length\n1000,2.5,10,0.5,30\n2000,5.0,22,0.75,25\n"


def _metadata(config: str = "babyai-go-to", **kw) -> ExpertMetadata:
    return ExpertMetadata(config, config.split("-")[0], "babyai-bot", status=ExpertStatus.ACCEPTED, **kw)


def _write_tree(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_metadata_round_trips_and_marks_a_finished_expert(tmp_path):
    store = ExpertStore(str(tmp_path))
    assert store.read_metadata("babyai-go-to") is None
    assert store.configs() == [] and not store.has_training_state("babyai-go-to")
    metadata = _metadata(gate={"threshold": 0.5, "reason": "ok"})
    store.write_metadata("babyai-go-to", metadata)
    assert store.read_metadata("babyai-go-to") == metadata
    assert json.loads((tmp_path / "babyai-go-to" / "metadata.json").read_text())["status"] == "accepted"
    (tmp_path / "babyai-pickup" / CHECKPOINT_DIR).mkdir(parents=True)  # training, not finished
    assert store.configs() == ["babyai-go-to"]
    assert store.has_training_state("babyai-pickup") and store.has_training_state("babyai-go-to")
    assert not list(tmp_path.rglob(".tmp/*"))  # written atomically: nothing left behind
    store.delete("babyai-go-to")
    assert store.read_metadata("babyai-go-to") is None and not (tmp_path / "babyai-go-to").exists()


def test_unreadable_metadata_is_one_line_naming_the_file(tmp_path):
    store = ExpertStore(str(tmp_path))
    _write_tree(tmp_path, {"babyai-go-to/metadata.json": "{"})
    with pytest.raises(PipelineError) as info:
        store.read_metadata("babyai-go-to")
    message = str(info.value)
    assert message.startswith(f"corrupt expert metadata {tmp_path}/babyai-go-to/metadata.json: ")
    assert message.endswith("(retrain with `pipeline train-experts --overwrite`)") and "\n" not in message
    (tmp_path / "babyai-go-to" / "metadata.json").write_text(json.dumps({**_metadata().to_dict(), "x": 1}))
    with pytest.raises(
        PipelineError, match=r"metadata.json: unknown key\(s\) \['x'\]; it was written by another"
    ):
        store.read_metadata("babyai-go-to")


def test_history_steps_are_the_snapshot_folders_in_training_order(tmp_path):
    store = ExpertStore(str(tmp_path))
    assert store.history_steps("mujoco-hopper") == []
    history = tmp_path / "mujoco-hopper" / HISTORY_DIR
    for name in (f"{20000:012d}", f"{3000:012d}", f"{100000:012d}", "000000004000.partial"):
        (history / name).mkdir(parents=True)
    (history / "000000005000").write_text("a file, not a snapshot")
    assert store.history_steps("mujoco-hopper") == [3000, 20000, 100000]


def test_a_local_store_trains_in_place(tmp_path):
    store = ExpertStore(str(tmp_path))
    staged = store.stage("mujoco-hopper", resume=False)
    root = str(tmp_path / "mujoco-hopper")
    assert (staged.root, staged.workdir, staged.model_dir, staged.history_dir) == (
        root,
        os.path.join(root, CHECKPOINT_DIR),
        os.path.join(root, MODEL_DIR),
        os.path.join(root, HISTORY_DIR),
    )
    assert os.path.isdir(root)
    assert store.local_model_dir("mujoco-hopper") == os.path.join(root, MODEL_DIR)
    assert store.local_model_dir("mujoco-hopper", step=2048) == os.path.join(
        root, HISTORY_DIR, "000000002048"
    )
    _write_tree(Path(staged.workdir), {"learning_curve.csv": CURVE})
    assert store.curve("mujoco-hopper") == []  # not next to metadata.json yet
    store.copy_curve(staged)
    assert store.curve("mujoco-hopper")[-1] == {
        "steps": 2000.0,
        "wall_time_s": 5.0,
        "episodes": 22.0,
        "mean_return": 0.75,
        "mean_length": 25.0,
    }
    store.publish(staged)  # nothing to upload for a local store
    with PeriodicUpload(store, staged, every_s=0.01) as upload:
        assert upload._thread is None  # no uploader thread for a local store


def test_load_policy_builds_the_stored_experts_policy(tmp_path):
    store = ExpertStore(str(tmp_path))
    with pytest.raises(PipelineError, match=rf"no expert for babyai-go-to in {tmp_path}: train one with"):
        store.load_policy(GOTO)
    store.write_metadata("babyai-go-to", _metadata())
    assert isinstance(store.load_policy(GOTO), BabyAIBotPolicy)
    assert isinstance(store.load_policy(get_task("babyai-go-to-top50")), BabyAIBotPolicy)  # a variant's task
    with pytest.raises(PipelineError, match=r"has no learning-history snapshot at step 1024$"):
        store.load_policy(GOTO, step=1024)


def test_an_unknown_backend_in_metadata_is_refused(tmp_path):
    store = ExpertStore(str(tmp_path))
    metadata = ExpertMetadata("babyai-go-to", "babyai", "dqn-zoo", status=ExpertStatus.ACCEPTED)
    with pytest.raises(
        PipelineError, match=r"unknown expert backend 'dqn-zoo'; choose one of sample-factory"
    ):
        store.load_policy(GOTO, metadata)


@pytest.mark.s3
def test_a_remote_store_mirrors_its_staging_copy_and_resumes_from_it(s3_server, tmp_path):  # noqa: F811
    uri = f"{s3_server}/experts-{tmp_path.name}"
    store = ExpertStore(uri, cache_dir=str(tmp_path / "cache"))
    staged = store.stage("mujoco-hopper", resume=False)
    assert staged.root == str(tmp_path / "cache" / "mujoco-hopper")
    _write_tree(
        Path(staged.root),
        {
            "checkpoints/ckpt_1.pth": "one",
            "checkpoints/ckpt_1.pth_temp": "being written",  # sample-factory's temporary file
            "checkpoints/.tmp_ckpt.zip": "being written",  # sb3's
            "history/000000001000/model.pth": "h1",
            "history/000000002000.partial/model.pth": "not whole yet",
            "model/model.pth": "final",
            "checkpoints/learning_curve.csv": CURVE,
        },
    )
    store.publish(staged)
    files = store.location.list("", recursive=True)
    remote = {store.location.relative(i.path) for i in files if i.type == pafs.FileType.File}
    assert remote == {
        "mujoco-hopper/checkpoints/ckpt_1.pth",
        "mujoco-hopper/checkpoints/learning_curve.csv",
        "mujoco-hopper/checkpoints/.uploaded.json",  # the files of the last whole upload round
        "mujoco-hopper/history/000000001000/model.pth",
        "mujoco-hopper/model/model.pth",
        "mujoco-hopper/learning_curve.csv",
    }
    assert store.history_steps("mujoco-hopper") == [1000]
    assert store.curve("mujoco-hopper")[0]["mean_return"] == 0.5

    # a rotated checkpoint disappears from the store too; an unchanged file is not sent again
    os.remove(os.path.join(staged.workdir, "ckpt_1.pth"))
    _write_tree(Path(staged.workdir), {"ckpt_2.pth": "two"})
    before = store.location.fs.get_file_info(store.location.path("mujoco-hopper/model/model.pth")).mtime
    store.publish(staged)
    assert not store.location.exists("mujoco-hopper/checkpoints/ckpt_1.pth")
    assert store.location.read_bytes("mujoco-hopper/checkpoints/ckpt_2.pth") == b"two"
    after = store.location.fs.get_file_info(store.location.path("mujoco-hopper/model/model.pth")).mtime
    assert after == before

    # a fresh machine: resume downloads checkpoints and history, never trusting an old staging copy
    fresh = ExpertStore(uri, cache_dir=str(tmp_path / "fresh"))
    _write_tree(tmp_path / "fresh" / "mujoco-hopper", {"checkpoints/stale.pth": "from an older run"})
    resumed = fresh.stage("mujoco-hopper", resume=True)
    assert sorted(os.listdir(resumed.workdir)) == ["ckpt_2.pth", "learning_curve.csv"]
    assert Path(resumed.history_dir, "000000001000", "model.pth").read_text() == "h1"
    assert not os.path.exists(resumed.model_dir)  # the final model is not training state
    local = fresh.local_model_dir("mujoco-hopper", step=1000)
    assert local == str(tmp_path / "fresh" / "mujoco-hopper" / HISTORY_DIR / "000000001000")
    assert Path(local, "model.pth").read_text() == "h1"
    assert Path(fresh.local_model_dir("mujoco-hopper"), "model.pth").read_text() == "final"


class NodeLost(Exception):
    """The node an upload round ran on died: nothing after this point of the round happened."""


@pytest.mark.s3
def test_a_resume_takes_the_last_whole_upload_round_not_a_checkpoint_half_uploaded(
    s3_server,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """A node lost inside an upload round leaves a new sb3 zip in the store without its normaliser
    stats: the resume elsewhere must take the previous checkpoint, whole, and say so."""
    uri = f"{s3_server}/half-{tmp_path.name}"
    store = ExpertStore(uri, cache_dir=str(tmp_path / "node-a"))
    staged = store.stage("mujoco-hopper", resume=False)
    first = {"sb3/model_512_steps.zip": "512", "sb3/model_512_steps_vecnormalize.pkl": "stats 512"}
    _write_tree(Path(staged.workdir), {**first, "learning_curve.csv": CURVE})
    store.publish(staged, names=(CHECKPOINT_DIR,))
    assert store.uploaded_checkpoint_step("mujoco-hopper", "sb3") == 512

    _write_tree(
        Path(staged.workdir),
        {"sb3/model_1024_steps.zip": "1024", "sb3/model_1024_steps_vecnormalize.pkl": "stats 1024"},
    )
    kind = type(store.location)  # a frozen dataclass: its methods are patched on the class
    upload, write_json = kind.upload, kind.write_json

    def upload_until_lost(location, local: str, relative: str) -> None:
        if not relative.endswith("1024_steps_vecnormalize.pkl"):  # the node dies before sending it
            upload(location, local, relative)

    def lost_before_the_list(location, relative: str, data) -> None:
        if relative.endswith(UPLOADED):
            raise NodeLost
        write_json(location, relative, data)

    monkeypatch.setattr(kind, "upload", upload_until_lost)
    monkeypatch.setattr(kind, "write_json", lost_before_the_list)
    with pytest.raises(NodeLost):
        store.publish(staged, names=(CHECKPOINT_DIR,))
    assert store.location.exists("mujoco-hopper/checkpoints/sb3/model_1024_steps.zip")  # half a checkpoint

    elsewhere = ExpertStore(uri, cache_dir=str(tmp_path / "node-b"))
    assert elsewhere.uploaded_checkpoint_step("mujoco-hopper", "sb3") == 512
    resumed = elsewhere.stage("mujoco-hopper", resume=True)
    assert sorted(os.listdir(Path(resumed.workdir) / "sb3")) == sorted(Path(p).name for p in first)
    assert sorted(os.listdir(resumed.workdir)) == ["learning_curve.csv", "sb3"]  # no list downloaded

    # the next whole round lists the new checkpoint, and only then deletes the one rotated away
    monkeypatch.undo()
    for name in first:
        os.remove(Path(staged.workdir) / name)
    store.publish(staged, names=(CHECKPOINT_DIR,))
    assert (
        ExpertStore(uri, cache_dir=str(tmp_path / "node-c")).uploaded_checkpoint_step("mujoco-hopper", "sb3")
        == 1024
    )
    assert not store.location.exists("mujoco-hopper/checkpoints/sb3/model_512_steps.zip")
