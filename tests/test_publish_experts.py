"""`pipeline publish-experts` and `rollout --experts-dir hf://…` against the tests' local Hub server.

Real experts (a PPO network trained for 2048 steps, the BabyAI bot), the real `huggingface_hub`
client uploading through LFS to tests/hub_server.py, and real rollouts from the local store and
from the published repos, compared shard by shard.
"""

from __future__ import annotations

import ctypes.util
import json
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image
from publish_helpers import local_digests

from experts.store import ExpertStore
from pipeline.browse.render import CLIP_MUJOCO_SIZE
from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.expert_stages.train_experts import TrainExpertsConfig, train_experts
from pipeline.format.manifest import read_manifest
from pipeline.release.publish_experts import PublishExpertsConfig, publish_experts
from pipeline.rollout.policy_factory import history_snapshots
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.runtime.storage import open_location
from pipeline.tasks.registry import get_task

pytestmark = pytest.mark.hub
PREFIX = "jat-org/jat-expert"
PENDULUM = "mujoco-pendulum"
OSMESA = ctypes.util.find_library("OSMesa")
TINY_PPO = {"algo": "ppo", "n_steps": 256, "batch_size": 64, "n_epochs": 2, "checkpoint_every": 512}


@pytest.fixture(scope="module")
def experts(tmp_path_factory) -> Path:
    """A trained PPO expert for mujoco-pendulum (evaluated, rejected: 2048 steps) and an unevaluated bot."""
    out = tmp_path_factory.mktemp("experts") / "experts"
    common = {"out": str(out), "workers": 0, "progress": False}
    ppo = TrainExpertsConfig(
        tasks=(PENDULUM,), backend="sb3", steps=2048, hyperparameters=TINY_PPO, eval_episodes=2, **common
    )
    bot = TrainExpertsConfig(tasks=("babyai-go-to",), evaluate=False, **common)
    for config in (ppo, bot):
        assert not train_experts(config).failed
    return out


def _publish(experts: Path, **kwargs: object):
    """The fixture's experts are weak by design (a 2048-step PPO, an unevaluated bot): --allow-weak
    unless a test says otherwise."""
    settings = {"repo_prefix": PREFIX, "xet": False, "allow_weak": True, **kwargs}
    return publish_experts(PublishExpertsConfig(str(experts), **settings))


def _rollout(out: Path, experts_dir: str) -> None:
    rollout(
        RolloutConfig(
            out=str(out),
            tasks=(PENDULUM,),
            episodes=3,
            workers=0,
            policy="expert",
            experts_dir=experts_dir,
            allow_weak=True,
            progress=False,
        )
    )


def test_publish_then_rollout_from_the_hub_records_the_same_episodes(experts, hub, tmp_path):
    summary = _publish(experts, tasks=(PENDULUM,))
    repo = f"{PREFIX}-{PENDULUM}"
    assert [r.repo_id for r in summary.releases] == [repo]
    files = hub.files(repo, kind="model")
    assert set(files) == {
        ".gitattributes",
        "README.md",
        "metadata.json",
        "learning_curve.csv",
        "learning_curve.png",
        "model/model.zip",
        *(["replay.gif"] if OSMESA else []),  # MuJoCo draws its replay through OSMesa
    }  # no checkpoints/ (training state), no history/ without --with-history
    assert files["model/model.zip"]["lfs"]
    assert (
        hub.read(repo, "model/model.zip", kind="model")
        == (experts / PENDULUM / "model" / "model.zip").read_bytes()
    )
    metadata = json.loads((experts / PENDULUM / "metadata.json").read_text())
    text = hub.read(repo, "README.md", kind="model").decode()
    header = yaml.safe_load(text.split("---", 2)[1])
    assert header["library_name"] == "jat-pipeline"
    assert {"reinforcement-learning", "jat-pipeline", "InvertedPendulum-v5"} <= set(header["tags"])
    metric = header["model-index"][0]["results"][0]["metrics"][0]
    evaluation = metadata["evaluation"]
    assert metric["type"] == "mean_reward"
    assert metric["value"] == f"{evaluation['mean_return']:.2f} +/- {evaluation['std_return']:.2f}"
    assert "![learning curve](learning_curve.png)" in text and "**rejected**" in text
    assert f"--experts-dir hf://{PREFIX} --allow-weak" in text
    # the replay: one episode recorded with the expert and drawn, kept in the (local) store for re-runs
    kept = experts / PENDULUM / "replay.gif"
    if OSMESA:
        assert "![replay](replay.gif)" in text
        assert hub.read(repo, "replay.gif", kind="model") == kept.read_bytes()
        with Image.open(kept) as gif:
            assert gif.n_frames > 1 and gif.width == CLIP_MUJOCO_SIZE

    # a re-run with nothing changed uploads nothing and makes no commit
    commits = len(hub.history(repo, kind="model"))
    again = _publish(experts, tasks=(PENDULUM,))
    assert again.releases[0].result.uploaded == () and len(hub.history(repo, kind="model")) == commits

    # the published expert records the same episodes as the local one
    _rollout(tmp_path / "local", str(experts))
    infos = hub.counts["info"]
    _rollout(tmp_path / "remote", f"hf://{PREFIX}")
    # one fetch of the expert repo for the whole run, not one per look at the store (gate, metadata, model)
    assert hub.counts["info"] - infos == 1
    shards = [
        [(s.path, s.sha256) for s in read_manifest(open_location(str(tmp_path / d)), PENDULUM).shards]
        for d in ("local", "remote")
    ]
    assert shards[0] == shards[1] and shards[0]
    assert local_digests(tmp_path / "local", PENDULUM) == local_digests(tmp_path / "remote", PENDULUM)
    cached = next((tmp_path / "hf-home" / "jat-pipeline" / "experts").rglob(PENDULUM))
    assert (cached / "model" / "model.zip").is_file() and not (cached / "checkpoints").exists()


def test_only_changed_files_are_uploaded_and_history_on_request(experts, hub, tmp_path):
    local = tmp_path / "experts"
    shutil.copytree(experts, local)
    _publish(local, tasks=(PENDULUM,))
    repo = f"{PREFIX}-{PENDULUM}"
    curve = local / PENDULUM / "learning_curve.csv"
    curve.write_text(curve.read_text() + "4096,2.0,300,30.0,31.0\n")
    changed = _publish(local, tasks=(PENDULUM,)).releases[0].result
    assert set(changed.uploaded) == {"learning_curve.csv", "learning_curve.png"}
    assert hub.read(repo, "learning_curve.csv", kind="model") == curve.read_bytes()

    with_history = _publish(local, tasks=(PENDULUM,), with_history=True).releases[0].result
    snapshots = sorted(
        p.relative_to(local / PENDULUM).as_posix() for p in (local / PENDULUM / "history").rglob("*.zip")
    )
    assert snapshots and set(with_history.uploaded) == {*snapshots, "README.md"}  # the card lists them
    # rollout --learning-history reads the published snapshots
    steps = history_snapshots(get_task(PENDULUM), f"hf://{PREFIX}")
    assert steps == ExpertStore(str(local)).history_steps(PENDULUM) and len(steps) == len(snapshots)
    # a snapshot gone from the store is removed from the repo when history is published again
    shutil.rmtree((local / PENDULUM / snapshots[0]).parent)
    pruned = _publish(local, tasks=(PENDULUM,), with_history=True).releases[0].result
    assert pruned.deleted == (snapshots[0],) and pruned.uploaded == ("README.md",)
    assert snapshots[0] not in hub.files(repo, kind="model")


def test_weak_and_failed_experts_are_refused_before_any_upload(experts, hub, tmp_path):
    """A rejected or unevaluated expert needs --allow-weak, as `rollout --policy expert` does."""
    weak = r"mujoco-pendulum was rejected by the quality gate; babyai-go-to was never evaluated: nothing"
    with pytest.raises(PipelineError, match=weak + r".*--allow-weak"):
        _publish(experts, allow_weak=False)  # every expert
    with pytest.raises(
        PipelineError, match=r"mujoco-pendulum was rejected by the quality gate: .*--allow-weak"
    ):
        _publish(experts, tasks=(PENDULUM,), allow_weak=False)  # published without a word before
    assert hub.head(f"{PREFIX}-{PENDULUM}", kind="model") is None  # refused before the first repo

    summary = _publish(experts, tasks=("babyai-go-to",))
    card = hub.read(f"{PREFIX}-babyai-go-to", "README.md", kind="model").decode()
    assert "Not evaluated" in card and "model-index" not in card
    replay = hub.read(f"{PREFIX}-babyai-go-to", "replay.gif", kind="model")  # the bot's replay, drawn
    assert (
        "![replay](replay.gif)" in card and replay == (experts / "babyai-go-to" / "replay.gif").read_bytes()
    )
    with Image.open(experts / "babyai-go-to" / "replay.gif") as gif:
        assert gif.n_frames > 1
    assert [r.status for r in summary.releases] == ["unevaluated"]

    local = tmp_path / "experts"
    shutil.copytree(experts, local)
    meta = local / PENDULUM / "metadata.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "status": "failed"}))
    with pytest.raises(PipelineError, match=r"mujoco-pendulum .* failed: nothing was published"):
        _publish(local, tasks=(PENDULUM,))
    with pytest.raises(PipelineError, match="holds no expert for mujoco-hopper"):
        _publish(local, tasks=("mujoco-hopper",))


def test_no_clips_draws_no_replay(experts, tmp_path):
    local = tmp_path / "experts"
    shutil.copytree(experts, local)
    (local / PENDULUM / "replay.gif").unlink(missing_ok=True)
    _publish(local, tasks=(PENDULUM,), to_folder=str(tmp_path / "repos"), clips=False)
    repo = tmp_path / "repos" / f"jat-expert-{PENDULUM}"
    assert (repo / "model" / "model.zip").is_file() and not (repo / "replay.gif").exists()
    assert "replay" not in (repo / "README.md").read_text().lower()
    assert not (local / PENDULUM / "replay.gif").exists()


def test_hf_experts_dir_without_a_repo_falls_back_like_a_local_store(hub, tmp_path):
    """No repo for a task is no expert for it: BabyAI falls back to its bot, MuJoCo is refused."""
    rollout(
        RolloutConfig(
            out=str(tmp_path / "bot"),
            tasks=("babyai-go-to",),
            episodes=2,
            workers=0,
            policy="expert",
            experts_dir=f"hf://{PREFIX}",
            progress=False,
        )
    )
    manifest = read_manifest(open_location(str(tmp_path / "bot")), "babyai-go-to")
    assert manifest.provenance["policy"] == "babyai-bot"  # the fallback, not a stored expert
    with pytest.raises(PipelineError, match=f"no trained expert for mujoco-hopper in hf://{PREFIX}"):
        _rollout_hopper(tmp_path)


def _rollout_hopper(tmp_path: Path) -> None:
    rollout(
        RolloutConfig(
            out=str(tmp_path / "hopper"),
            tasks=("mujoco-hopper",),
            episodes=2,
            workers=0,
            policy="expert",
            experts_dir=f"hf://{PREFIX}",
            progress=False,
        )
    )


def test_cli_never_prints_the_token_and_names_bad_input(experts, hub, tmp_path, capsys, caplog):
    caplog.set_level("DEBUG")
    argv = ["--repo-prefix", PREFIX, "--tasks", PENDULUM, "--no-xet", "--allow-weak"]
    code = main(["publish-experts", str(experts), *argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert f"hf://{PREFIX}" in out.out
    assert hub.token not in out.out + out.err + caplog.text

    for argv, message in (
        (["--repo-prefix", "no-slash"], "--repo-prefix: malformed repo id"),
        (["--repo-prefix", PREFIX, "--tasks", "mujoco-hopper"], "holds no expert for mujoco-hopper"),
    ):
        assert main(["publish-experts", str(experts), *argv]) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], errors

    folder = tmp_path / "folder"
    assert (
        main(
            [
                "publish-experts",
                str(experts),
                "--repo-prefix",
                PREFIX,
                "--tasks",
                PENDULUM,
                "--to-folder",
                str(folder),
                "--allow-weak",
            ]
        )
        == 0
    )
    assert (folder / f"jat-expert-{PENDULUM}" / "model" / "model.zip").is_file()
