"""`pipeline import-experts` on RL Zoo's releases (`sb3/<algo>-<EnvId>`): a repo in RL Zoo's exact
published layout, its model trained by stable-baselines3 itself (with VecNormalize, and on Atari
with sb3's AtariWrapper and a 4-frame stack), imported from a mirror and from the tests' Hub
server; our policy acts as RL Zoo's `enjoy` does on the same observations (VecNormalize's
`normalize_obs`, then `model.predict`), bit for bit; a rollout with it validates and replays; bad
input is one line, exit 2, and nothing is written."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from expert_helpers import nothing_written, one_line_exit_2

from experts.store import ExpertStore
from pipeline.cli import main
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task

HOPPER = get_task("mujoco-hopper")
BREAKOUT = get_task("atari-breakout")
REPO = "sb3/ppo-Hopper-v4"


def _release(dest: Path, model, algo: str, env_id: str, config: dict, vec_normalize=None) -> Path:
    """What RL Zoo's `push_to_hub` leaves in a repo: the model zip and its unzipped copy, the sorted
    hyperparameters as an OrderedDict dump, the args, the env kwargs, the VecNormalize pickle, a card
    with its metadata, a clip, the evaluation results and the training metrics."""
    name = f"{algo}-{env_id}"
    dest.mkdir(parents=True)
    model.save(dest / name)
    with zipfile.ZipFile(dest / f"{name}.zip") as archive:
        archive.extractall(dest / name)
    (dest / "config.yml").write_text(yaml.dump(OrderedDict(sorted(config.items()))))
    args = OrderedDict([("algo", algo), ("env_kwargs", None), ("seed", 0), ("n_timesteps", -1)])
    (dest / "args.yml").write_text(yaml.dump(args))
    (dest / "env_kwargs.yml").write_text(yaml.dump({}))
    if vec_normalize is not None:
        vec_normalize.save(str(dest / "vec_normalize.pkl"))
    (dest / "README.md").write_text(
        f"---\nlibrary_name: stable-baselines3\ntags:\n- {env_id}\n- deep-reinforcement-learning\n"
        f"model-index:\n- name: {algo.upper()}\n---\n# **{algo.upper()}** Agent playing **{env_id}**\n"
    )
    (dest / "replay.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a real clip")
    (dest / "results.json").write_text(json.dumps({"mean_reward": 1.0, "std_reward": 0.0}))
    with zipfile.ZipFile(dest / "train_eval_metrics.zip", "w") as archive:
        archive.writestr("0.monitor.csv", "r,l,t\n")
    return dest


@pytest.fixture(scope="module")
def rlzoo_hopper(tmp_path_factory) -> Path:
    """A PPO Hopper-v4 model trained 256 steps by sb3 with VecNormalize, as `sb3/ppo-Hopper-v4`
    publishes one: the mirror folder holding `sb3/ppo-Hopper-v4/` (read-only)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    config = {
        "n_envs": 1, "n_timesteps": 256, "normalize": True, "policy": "MlpPolicy", "n_steps": 128,
        "batch_size": 64, "n_epochs": 1, "learning_rate": "lin_3e-4",
        "policy_kwargs": "dict(log_std_init=-1, activation_fn=nn.ReLU, net_arch=dict(pi=[32], vf=[32]))",
    }  # fmt: skip
    venv = VecNormalize(make_vec_env("Hopper-v4", n_envs=1, seed=0))
    kwargs = {"log_std_init": -1, "activation_fn": torch.nn.ReLU, "net_arch": {"pi": [32], "vf": [32]}}
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=64, n_epochs=1, seed=0, policy_kwargs=kwargs)
    model.learn(256)
    mirror = tmp_path_factory.mktemp("rlzoo") / "mirror"
    _release(mirror / REPO, model, "ppo", "Hopper-v4", config, venv)
    return mirror


def _import(*argv: str) -> int:
    return main(["import-experts", *argv])


def _hopper_import(mirror: Path, out: Path, *extra: str) -> int:
    repo = ["--repo", "sb3/ppo-{game}-v4", "--source", str(mirror), "--out", str(out)]
    return _import("--tasks", "mujoco-hopper", *repo, *extra)


def test_a_mirror_import_stores_an_sb3_expert_that_rollout_validates_and_replays(rlzoo_hopper, tmp_path):
    experts = tmp_path / "experts"
    assert _hopper_import(rlzoo_hopper, experts) == 0
    meta = json.loads((experts / "mujoco-hopper" / "metadata.json").read_text())
    source = meta["source"]
    assert meta["backend"] == "sb3" and meta["algo"] == "PPO" and source["framework"] == "rl-zoo"
    assert source["repo"] == REPO and source["trained_on"] == "Hopper-v4"
    assert source["checkpoint"] == "ppo-Hopper-v4.zip"
    wanted = {"ppo-Hopper-v4.zip", "config.yml", "env_kwargs.yml", "vec_normalize.pkl", "README.md"}
    assert set(source["files"]) == wanted  # no clip, metrics, args or unzipped copy
    assert source["system_info"]["Stable-Baselines3"] in source["framework_version"]
    assert meta["deterministic"] is True  # RL Zoo's enjoy acts deterministically outside Atari
    assert meta["steps_trained"] == 256 and meta["hyperparameters"]["normalize"] is True
    assert meta["hyperparameters"]["algo"] == "ppo" and meta["evaluation"]
    assert sorted(p.name for p in (experts / "mujoco-hopper" / "model").iterdir()) == [
        "model.zip",
        "obs_norm.npz",
    ]

    data = tmp_path / "data"
    rollout = [
        "rollout", "--tasks", "mujoco-hopper", "--policy", "expert", "--experts-dir", str(experts),
        "--allow-weak", "--episodes", "3", "--workers", "0", "--out", str(data),
    ]  # fmt: skip
    assert main(rollout) == 0
    assert main(["validate", str(data), "--replay", "3"]) == 0
    manifest = json.loads((data / "meta" / "mujoco-hopper" / "manifest.json").read_text())
    assert manifest["provenance"]["backend"] == "sb3"


def _enjoy(release: Path, algo_class, spec, deterministic: bool, seed: int, steps: int) -> tuple[list, list]:
    """RL Zoo's enjoy loop on the released files, in our env: the zip loaded by sb3 with the schedules
    replaced (enjoy's custom_objects), the env wrapped in the saved VecNormalize (not training, no
    reward normalisation), `model.predict` on what it returns. The raw observations and actions."""
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    zero = {"learning_rate": 0.0, "lr_schedule": lambda _: 0.0, "clip_range": lambda _: 0.0}
    model = algo_class.load(release / f"{release.name}.zip", custom_objects=zero, device="cpu")
    env = DummyVecEnv([lambda: make_env(spec)])
    if (release / "vec_normalize.pkl").exists():
        env = VecNormalize.load(str(release / "vec_normalize.pkl"), env)
        env.training, env.norm_reward = False, False
    env.seed(seed)
    obs = env.reset()
    torch.manual_seed(seed)  # what our policy's reset does before a sampled episode
    raw, actions = [], []
    for _ in range(steps):
        raw.append(env.get_original_obs()[0] if isinstance(env, VecNormalize) else obs[0])
        action, _ = model.predict(obs, deterministic=deterministic)
        actions.append(action[0])
        obs, _, done, _ = env.step(action)
        if done[0]:
            break
    return raw, actions


def _ours(experts: Path, spec, deterministic: bool, seed: int, observations: list) -> np.ndarray:
    store = ExpertStore(str(experts))
    metadata = replace(store.read_metadata(spec.config), deterministic=deterministic)
    policy = store.load_policy(spec, metadata)
    policy.reset(make_env(spec), seed)
    return np.stack([policy.act(obs, {}) for obs in observations])


@pytest.mark.parametrize("deterministic", [True, False])
def test_our_actions_equal_rl_zoos_enjoy(rlzoo_hopper, tmp_path, deterministic):
    """Same observations in, the same actions out, bit for bit: the mean action, and sampled from
    the same seed (the normaliser, the network, its log std and the clipping all agree)."""
    from stable_baselines3 import PPO

    experts = tmp_path / "experts"
    assert _hopper_import(rlzoo_hopper, experts, "--no-eval") == 0
    raw, theirs = _enjoy(rlzoo_hopper / REPO, PPO, HOPPER, deterministic, seed=3, steps=60)
    assert len(raw) > 5
    ours = _ours(experts, HOPPER, deterministic, 3, raw)
    np.testing.assert_array_equal(ours, np.stack(theirs).astype(np.float32))


@pytest.fixture(scope="module")
def rlzoo_breakout(tmp_path_factory) -> Path:
    """A PPO CnnPolicy trained 64 steps by sb3 on BreakoutNoFrameskip-v4 with RL Zoo's Atari recipe
    (AtariWrapper, VecFrameStack(4)), as `sb3/ppo-BreakoutNoFrameskip-v4` publishes one."""
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    config = {
        "env_wrapper": ["stable_baselines3.common.atari_wrappers.AtariWrapper"], "frame_stack": 4,
        "n_envs": 1, "n_timesteps": 64, "policy": "CnnPolicy", "n_steps": 64, "batch_size": 32, "n_epochs": 1,
    }  # fmt: skip
    env = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=1, seed=0), 4)
    model = PPO("CnnPolicy", env, n_steps=64, batch_size=32, n_epochs=1, seed=0)
    model.learn(64)
    mirror = tmp_path_factory.mktemp("rlzoo-atari") / "mirror"
    _release(mirror / "sb3" / "ppo-BreakoutNoFrameskip-v4", model, "ppo", "BreakoutNoFrameskip-v4", config)
    return mirror


def test_an_atari_model_acts_on_our_channels_last_stack_as_on_rl_zoos(rlzoo_breakout, tmp_path):
    """RL Zoo's Atari models see (4, 84, 84) (sb3 transposes the channels-last stack for its CNN);
    our stored (84, 84, 4) stack, oldest frame first, reaches the network as RL Zoo's VecFrameStack
    does. Sampled actions (RL Zoo's enjoy samples on Atari), bit for bit."""
    from stable_baselines3 import PPO

    experts = tmp_path / "experts"
    repo = ["--repo", "sb3/ppo-{game}NoFrameskip-v4", "--source", str(rlzoo_breakout), "--no-eval"]
    assert _import("--tasks", "atari-breakout", *repo, "--out", str(experts)) == 0
    meta = json.loads((experts / "atari-breakout" / "metadata.json").read_text())
    assert meta["deterministic"] is False and meta["source"]["trained_on"] == "BreakoutNoFrameskip-v4"
    release = rlzoo_breakout / "sb3" / "ppo-BreakoutNoFrameskip-v4"
    assert PPO.load(release / "ppo-BreakoutNoFrameskip-v4.zip").observation_space.shape == (4, 84, 84)
    for deterministic in (True, False):
        raw, theirs = _enjoy(release, PPO, BREAKOUT, deterministic, seed=5, steps=40)
        assert raw[0].shape == (84, 84, 4) and raw[0].dtype == np.uint8
        ours = _ours(experts, BREAKOUT, deterministic, 5, raw)
        np.testing.assert_array_equal(ours, np.stack(theirs))


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_a_model_for_another_env_is_refused(rlzoo_hopper, tmp_path, capsys):
    experts = tmp_path / "experts"
    code = _import(
        "--tasks", "mujoco-walker", "--repo", REPO, "--source", str(rlzoo_hopper), "--out", str(experts)
    )
    one_line_exit_2(capsys, code, "mujoco-walker", "trained on 'Hopper-v4'")
    assert nothing_written(experts)


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("renamed", "observes Box"),
        ("no-zip", "no <algo>-<EnvId>.zip"),
        ("foreign-global", "refused to load"),
        ("zip-global", "holds the global posix.getcwd"),
        ("yaml-object", "refused to read config.yml"),
        ("best", "--checkpoint best does not apply"),
    ],
)
def test_bad_releases_are_one_line_and_nothing_is_written(rlzoo_hopper, tmp_path, capsys, damage, needle):
    import base64

    mirror = tmp_path / "mirror"
    release = mirror / REPO
    shutil.copytree(rlzoo_hopper / REPO, release)
    task, extra = "mujoco-hopper", []
    if damage == "renamed":  # a Hopper model published as Walker2d: the name agrees, the spaces do not
        walker = mirror / "sb3" / "ppo-Walker2d-v4"
        release.rename(walker)
        (walker / "ppo-Hopper-v4.zip").rename(walker / "ppo-Walker2d-v4.zip")
        task = "mujoco-walker"
    elif damage == "no-zip":
        (release / "ppo-Hopper-v4.zip").unlink()
    elif damage == "foreign-global":
        stats = pickle.loads((release / "vec_normalize.pkl").read_bytes())
        stats.class_attributes, stats.returns = {}, None  # what VecNormalize.__getstate__ drops
        stats.extra = _RunsCode()
        (release / "vec_normalize.pkl").write_bytes(pickle.dumps(stats))
    elif damage == "zip-global":
        path = release / "ppo-Hopper-v4.zip"
        with zipfile.ZipFile(path) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        data = json.loads(members["data"])
        data["policy_class"][":serialized:"] = base64.b64encode(pickle.dumps(_RunsCode())).decode()
        members["data"] = json.dumps(data).encode()
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, content)
    elif damage == "yaml-object":
        (release / "config.yml").write_text("!!python/object/apply:os.getcwd []\n")
    else:
        extra = ["--checkpoint", "best"]
    experts = tmp_path / "experts"
    code = _import(
        "--tasks", task, "--repo", "sb3/ppo-{game}-v4", "--source", str(mirror), *extra, "--out", str(experts)
    )
    one_line_exit_2(capsys, code, needle, "nothing imported")
    assert nothing_written(experts)


def test_the_hub_import_fetches_only_what_it_needs_pinned(rlzoo_hopper, hub, tmp_path, monkeypatch):
    from huggingface_hub import HfApi, constants

    hub.orgs = (*hub.orgs, "sb3")  # the server lets its user publish as RL Zoo's organisation
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the tests' server speaks LFS only
    api = HfApi(endpoint=hub.url, token=hub.token)
    api.create_repo(REPO, repo_type="model", exist_ok=True)
    api.upload_folder(repo_id=REPO, folder_path=str(rlzoo_hopper / REPO), repo_type="model")
    commit = hub.head(REPO, kind="model")
    experts = tmp_path / "experts"
    argv = ["--tasks", "mujoco-hopper", "--repo", "sb3/ppo-{game}-v4", "--no-eval", "--out", str(experts)]
    assert _import(*argv) == 0
    meta = json.loads((experts / "mujoco-hopper" / "metadata.json").read_text())
    assert meta["source"]["revision"] == commit and meta["source"]["from"] == hub.url
    snapshot = tmp_path / "hf-home" / "hub" / "models--sb3--ppo-Hopper-v4" / "snapshots" / commit
    fetched = {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()}
    assert fetched == set(meta["source"]["files"]) and len(fetched) == 5
    files = hub.files(REPO, kind="model")
    for name, digest in meta["source"]["files"].items():
        assert files[name].get("sha256", digest) == digest


def test_the_safe_load_of_an_off_policy_contrib_model_acts_as_sb3s_own(tmp_path):
    """TQC (sb3-contrib, off-policy: train_freq, target entropy, replay buffer class in its data):
    loaded with nothing unpickled but the allow-list, it predicts as sb3's plain load does."""
    from sb3_contrib import TQC
    from stable_baselines3.common.env_util import make_vec_env

    from experts.sb3_safe import load_model

    model = TQC("MlpPolicy", make_vec_env("Hopper-v4", n_envs=1, seed=0), learning_starts=40, seed=0,
                policy_kwargs={"net_arch": [16], "n_critics": 2, "activation_fn": torch.nn.ELU})  # fmt: skip
    model.learn(60)
    model.save(tmp_path / "tqc-Hopper-v4")
    path = str(tmp_path / "tqc-Hopper-v4.zip")
    safe = load_model(TQC, path, off_policy=True)
    plain = TQC.load(path, device="cpu", buffer_size=1)
    obs = np.random.default_rng(0).normal(size=(16, 11)).astype(np.float32)
    assert safe.num_timesteps == 60 and safe.buffer_size == 1
    np.testing.assert_array_equal(
        safe.predict(obs, deterministic=True)[0], plain.predict(obs, deterministic=True)[0]
    )
