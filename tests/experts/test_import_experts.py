"""`pipeline import-experts`: released sample-factory experts, in their exact published layout, made by
sample-factory itself, imported from a mirror and from the tests' Hub server; our policy acts exactly
as sample-factory's own evaluation (`sample_factory.enjoy`) on the same observations; a rollout with
the imported expert validates and replays; bad input is one line, exit 2, and nothing is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from expert_helpers import nothing_written, one_line_exit_2

from experts.metadata import ExpertStatus
from experts.store import ExpertStore
from pipeline.cli import main
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task

REPO = "edbeeching/mujoco_hopper_1111"
HOPPER = get_task("mujoco-hopper")


def _import(*argv: str) -> int:
    return main(["import-experts", *argv])


@pytest.mark.parametrize(
    ("config", "repo", "trained_on", "trained_env_id"),
    [
        ("mujoco-hopper", REPO, "mujoco_hopper", "Hopper-v4"),
        ("atari-breakout", "edbeeching/atari_2B_atari_breakout_1111", "atari_breakout", "Breakout-v5"),
    ],
)
def test_a_mirror_import_stores_an_expert_that_rollout_validates_and_replays(
    sf_released, tmp_path, caplog, config, repo, trained_on, trained_env_id
):
    experts = tmp_path / "experts"
    argv = ["--tasks", config, "--source", str(sf_released), "--eval-episodes", "2", "--out", str(experts)]
    assert _import(*argv) == 0
    meta = json.loads((experts / config / "metadata.json").read_text())
    source = meta["source"]
    release = sf_released / repo
    newest = sorted(p.name for p in (release / "checkpoint_p0").glob("checkpoint_*.pth"))[-1]
    assert source["repo"] == repo and source["framework"] == "sample-factory"
    assert source["checkpoint"] == f"checkpoint_p0/{newest}" and source["trained_on"] == trained_on
    assert set(source["files"]) == {"cfg.json", f"checkpoint_p0/{newest}", "README.md"}  # no milestone
    assert source["license"] == "apache-2.0" and source["revision"] is None
    assert source["trained_env_id"] == trained_env_id and source["acts_on"] == get_task(config).env_id
    version_changed = "trained on Hopper-v4; here it acts on Hopper-v5" in caplog.text
    assert version_changed == (config == "mujoco-hopper")  # Atari: gym's NoFrameskip-v4 is envpool's v5
    assert meta["deterministic"] is False  # JAT sampled its Atari and MuJoCo experts' actions
    assert meta["status"] in (ExpertStatus.ACCEPTED, ExpertStatus.REJECTED) and meta["evaluation"]
    state = torch.load(release / "checkpoint_p0" / newest, weights_only=False)
    assert meta["steps_trained"] == state["env_steps"]

    data = tmp_path / "data"
    rollout = [
        "rollout", "--tasks", config, "--policy", "expert", "--experts-dir", str(experts),
        "--allow-weak", "--episodes", "3", "--workers", "0", "--out", str(data),
    ]  # fmt: skip
    assert main(rollout) == 0
    assert main(["validate", str(data), "--replay", "3"]) == 0
    manifest = json.loads((data / "meta" / config / "manifest.json").read_text())
    assert manifest["provenance"]["backend"] == "sample-factory"


def test_a_meta_world_import_keeps_the_better_of_it_and_the_scripted_policy_on_the_same_seeds(
    sf_released, tmp_path
):
    """JAT's Meta-World experts acted in v2 envs; on v3 each is scored against the scripted policy."""
    experts = tmp_path / "experts"
    argv = ["--tasks", "metaworld-reach", "--source", str(sf_released), "--eval-episodes", "3"]
    assert _import(*argv, "--out", str(experts)) == 0
    meta = json.loads((experts / "metaworld-reach" / "metadata.json").read_text())
    assert meta["deterministic"] is True  # JAT took the most likely action of its Meta-World experts
    assert meta["source"]["trained_on"] == "reach-v2"
    scores = {name: c["evaluation"]["normalised"] for name, c in meta["candidates"].items()}
    assert set(scores) == {"sample-factory", "metaworld-scripted"}
    best = (
        "sample-factory" if scores["sample-factory"] > scores["metaworld-scripted"] else "metaworld-scripted"
    )
    assert meta["chosen"] == best and meta["evaluation"]["normalised"] == scores[best]
    seeds = {tuple(c["evaluation"]["seeds"]) for c in meta["candidates"].values()}
    assert len(seeds) == 1  # the same episodes


def test_best_is_the_checkpoint_sample_factory_would_load(sf_released_hopper, tmp_path):
    experts = tmp_path / "experts"
    argv = ["--tasks", "hopper", "--suite", "mujoco", "--source", str(sf_released_hopper), "--no-eval"]
    assert _import(*argv, "--checkpoint", "best", "--out", str(experts)) == 0
    meta = json.loads((experts / "mujoco-hopper" / "metadata.json").read_text())
    best = sorted((sf_released_hopper / REPO / "checkpoint_p0").glob("best_*.pth"))[-1].name
    assert meta["source"]["checkpoint"] == f"checkpoint_p0/{best}" and meta["status"] == "unevaluated"


class _Recorded(gym.Wrapper):
    """Our env as sample-factory's `enjoy` plays it (images channels first, as in training): seeded
    like our episodes, every observation it sees and every action it sends recorded.

    The episode is truncated after `limit` steps, so that it always ends: `enjoy` divides by the
    number of finished episodes, and a sampled Breakout policy trained in the fixture sometimes
    keeps its lives past any frame cap (a ZeroDivisionError in CI)."""

    def __init__(self, env: gym.Env, seed: int, log: dict, limit: int = 300) -> None:
        super().__init__(env)
        self.seed, self.log, self.limit = seed, log, limit

    def reset(self, **kwargs):
        torch.manual_seed(self.seed)  # what our policy's reset does for a sampled episode
        obs, info = self.env.reset(seed=self.seed)
        self.log["obs"].append(np.array(obs))
        return obs, info

    def step(self, action):
        self.log["actions"].append(np.array(action))
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log["obs"].append(np.array(obs))
        truncated = truncated or len(self.log["actions"]) >= self.limit
        return obs, reward, terminated, truncated, info


def _enjoy(release: Path, env_name: str, spec, deterministic: bool, seed: int, monkeypatch) -> dict:
    """One episode of sample-factory's own evaluation on the released folder, recorded (cut at 300
    steps by `_Recorded`).

    `sample_factory.enjoy` imports its Hub helpers, which import `huggingface_hub.Repository`, gone
    since huggingface_hub 1.0; evaluation never calls them, so a placeholder lets the module load."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "Repository", object, raising=False)
    from sample_factory.algo.utils.context import global_env_registry
    from sample_factory.cfg.arguments import parse_full_cfg, parse_sf_args
    from sample_factory.enjoy import enjoy

    from experts.sample_factory_policy import ChannelsFirst

    def make(*args, **kwargs) -> gym.Env:
        env = make_env(spec)
        return _Recorded(ChannelsFirst(env) if spec.observation.type == "image" else env, seed, log)

    log: dict = {"obs": [], "actions": []}
    # Registered for this test only: sample-factory pickles its whole env registry into the processes
    # of every later training in this session, and a local function does not pickle.
    monkeypatch.setitem(global_env_registry(), env_name, make)
    argv = [
        f"--env={env_name}", f"--train_dir={release.parent}", f"--experiment={release.name}",
        "--no_render", "--max_num_episodes=1", "--max_num_frames=1000", "--device=cpu",
        f"--eval_deterministic={deterministic}",
    ]  # fmt: skip
    parser, _ = parse_sf_args(argv=argv, evaluation=True)
    status, _ = enjoy(parse_full_cfg(parser, argv))
    assert status == 0 and log["actions"]
    return log


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize(
    ("config", "env_name", "repo"),
    [
        ("mujoco-hopper", "mujoco_hopper", REPO),
        ("atari-breakout", "atari_breakout", "edbeeching/atari_2B_atari_breakout_1111"),
        ("metaworld-reach", "reach-v2", "qgallouedec/reach-v2"),
    ],
)
def test_our_actions_equal_sample_factorys_own_evaluation(
    sf_released, tmp_path, monkeypatch, config, env_name, repo, deterministic
):
    """Same observations in, the same actions out, bit for bit: argmax, and sampled from the same seed."""
    from dataclasses import replace

    spec = get_task(config)
    release = tmp_path / repo
    shutil.copytree(sf_released / repo, release)  # enjoy renames cfg.json in place
    experts_dir = tmp_path / "experts"
    argv = ["--tasks", config, "--source", str(tmp_path), "--no-eval", "--out", str(experts_dir)]
    assert _import(*argv) == 0
    seed = 7
    theirs = _enjoy(release, env_name, spec, deterministic, seed, monkeypatch)
    store = ExpertStore(str(experts_dir))
    metadata = replace(store.read_metadata(config), deterministic=deterministic)
    policy = store.load_policy(spec, metadata)
    policy.reset(make_env(spec), seed)
    seen = theirs["obs"][: len(theirs["actions"])]
    if spec.observation.type == "image":
        seen = [np.moveaxis(obs, 0, -1) for obs in seen]  # as stored: channels last
    ours = [policy.act(obs, {}) for obs in seen]
    assert len(ours) > 5
    np.testing.assert_array_equal(
        np.asarray(ours).reshape(len(ours), -1), np.stack(theirs["actions"]).reshape(len(ours), -1)
    )


def test_an_expert_for_another_task_is_refused(sf_released_hopper, tmp_path, capsys):
    experts = tmp_path / "experts"
    hopper_as_walker = ["--tasks", "mujoco-walker", "--repo", REPO, "--source", str(sf_released_hopper)]
    code = _import(*hopper_as_walker, "--out", str(experts))
    one_line_exit_2(capsys, code, "mujoco-walker", "trained on 'mujoco_hopper'")
    assert nothing_written(experts)


def test_a_network_that_does_not_fit_the_spaces_is_refused(sf_released_hopper, tmp_path, capsys):
    """A Hopper network whose config claims Walker2d: the names agree, the first layer does not."""
    mirror = tmp_path / "mirror"
    release = mirror / "edbeeching" / "mujoco_walker_1111"
    shutil.copytree(sf_released_hopper / REPO, release)
    cfg = json.loads((release / "cfg.json").read_text())
    (release / "cfg.json").write_text(json.dumps({**cfg, "env": "mujoco_walker"}))
    experts = tmp_path / "experts"
    code = _import("--tasks", "mujoco-walker", "--source", str(mirror), "--out", str(experts))
    one_line_exit_2(capsys, code, "does not fit mujoco-walker's spaces", "(17,)")
    assert nothing_written(experts)


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("no-repo", "no edbeeching/mujoco_hopper_1111 in the mirror"),
        ("no-checkpoint", "no checkpoint_*.pth in checkpoint_p0/"),
        ("no-config", "no sample-factory config"),
        ("architecture", "cannot rebuild the network"),
        ("foreign-global", "refused to load"),
    ],
)
def test_bad_releases_are_one_line_and_nothing_is_written(
    sf_released_hopper, tmp_path, capsys, damage, needle
):
    mirror = tmp_path / "mirror"
    release = mirror / REPO
    shutil.copytree(sf_released_hopper / REPO, release)
    if damage == "no-repo":
        shutil.rmtree(release)
    elif damage == "no-checkpoint":
        for path in (release / "checkpoint_p0").glob("checkpoint_*.pth"):
            path.unlink()
    elif damage == "no-config":
        (release / "cfg.json").unlink()
    elif damage == "architecture":
        cfg = json.loads((release / "cfg.json").read_text())
        (release / "cfg.json").write_text(json.dumps({**cfg, "encoder_mlp_layers": "not a list"}))
    else:
        newest = sorted((release / "checkpoint_p0").glob("checkpoint_*.pth"))[-1]
        state = torch.load(newest, weights_only=False)
        state["extra"] = _RunsCode()
        torch.save(state, newest)
    experts = tmp_path / "experts"
    code = _import("--tasks", "mujoco-hopper", "--source", str(mirror), "--out", str(experts))
    one_line_exit_2(capsys, code, needle, "nothing imported")
    assert nothing_written(experts)


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_a_task_jat_recorded_without_a_released_expert_is_named(tmp_path, capsys):
    code = _import("--tasks", "babyai-go-to", "--source", str(tmp_path), "--out", str(tmp_path / "e"))
    one_line_exit_2(capsys, code, "babyai-go-to", "pipeline train-experts")


def test_the_hub_import_fetches_only_what_it_needs_pinned_and_offline_afterwards(
    sf_released_hopper, hub, tmp_path, monkeypatch
):
    from huggingface_hub import HfApi, constants

    hub.orgs = (*hub.orgs, "edbeeching")  # the server lets its user publish as JAT's expert author
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the tests' server speaks LFS only
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(REPO, repo_type="model", exist_ok=True)
    api.upload_folder(repo_id=REPO, folder_path=str(sf_released_hopper / REPO), repo_type="model")
    commit = hub.head(REPO, kind="model")
    experts = tmp_path / "experts"
    assert _import("--tasks", "mujoco-hopper", "--no-eval", "--out", str(experts)) == 0
    meta = json.loads((experts / "mujoco-hopper" / "metadata.json").read_text())
    assert meta["source"]["revision"] == commit and meta["source"]["from"] == hub.url
    snapshot = tmp_path / "hf-home" / "hub" / "models--edbeeching--mujoco_hopper_1111" / "snapshots" / commit
    fetched = {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()}
    assert fetched == set(meta["source"]["files"]) and len(fetched) == 3  # no milestone, clip or summary
    files = hub.files(REPO, kind="model")
    for name, digest in meta["source"]["files"].items():
        assert files[name].get("sha256", digest) == digest
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    again = tmp_path / "again"
    assert _import("--tasks", "mujoco-hopper", "--no-eval", "--out", str(again)) == 0
    assert (
        json.loads((again / "mujoco-hopper" / "metadata.json").read_text())["source"]["files"]
        == (meta["source"]["files"])
    )


def test_resume_keeps_what_an_earlier_run_imported_and_imports_the_rest(sf_released, tmp_path, capsys):
    experts = tmp_path / "experts"
    first = ["--tasks", "mujoco-hopper", "--source", str(sf_released), "--no-eval", "--out", str(experts)]
    assert _import(*first) == 0
    kept = (experts / "mujoco-hopper" / "metadata.json").read_bytes()
    both = ["--tasks", "mujoco-hopper,atari-breakout", "--source", str(sf_released), "--no-eval"]
    code = _import(*both, "--out", str(experts))
    one_line_exit_2(capsys, code, "mujoco-hopper", "--overwrite", "--resume")
    assert _import(*both, "--resume", "--out", str(experts)) == 0
    assert (experts / "mujoco-hopper" / "metadata.json").read_bytes() == kept  # not imported again
    assert json.loads((experts / "atari-breakout" / "metadata.json").read_text())["source"]["repo"] == (
        "edbeeching/atari_2B_atari_breakout_1111"
    )
    # an expert this import did not store (trained, or from another repo) is not silently kept
    meta = json.loads((experts / "mujoco-hopper" / "metadata.json").read_text())
    (experts / "mujoco-hopper" / "metadata.json").write_text(json.dumps({**meta, "source": None}))
    code = _import(*both, "--resume", "--out", str(experts))
    one_line_exit_2(capsys, code, "did not store", "mujoco-hopper")
