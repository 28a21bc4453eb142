"""Each backend trains on a real task, checkpoints, resumes, saves, reloads and acts in rollout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from expert_helpers import tiny_plan

from experts.base import BACKENDS, get_backend, read_curve
from experts.store import ExpertStore
from experts.training import FAILED, train_expert
from pipeline.errors import PipelineError
from pipeline.format.plan import PlannedEpisode
from pipeline.rollout.policy_factory import make_policy
from pipeline.rollout.recorder import record_episode
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task

HOPPER = get_task("mujoco-hopper")


def _check_stored(root: Path, backend: str, first, second) -> dict:
    assert first.status != FAILED, first.error
    assert second.status != FAILED, second.error
    meta = json.loads((root / "mujoco-hopper" / "metadata.json").read_text())
    assert meta["backend"] == backend
    assert meta["resumed_from_step"] == first.steps  # resume continued from the last checkpoint...
    assert meta["steps_trained"] >= 2 * first.steps - 256  # ...and trained on to the new budget
    assert meta["steps_trained"] > first.steps
    for key in ("versions", "hyperparameters", "env_spec", "wall_time_s", "seed", "evaluation", "status"):
        assert key in meta, key
    assert meta["env_spec"]["env_id"] == "Hopper-v5"
    passes = meta["evaluation"]["normalised"] >= meta["gate"]["threshold"]
    assert meta["status"] == ("accepted" if passes else "rejected"), meta["gate"]
    curve = read_curve(str(root / "mujoco-hopper" / "learning_curve.csv"))
    assert curve and curve[-1]["steps"] > first.steps  # one curve across both runs
    assert [r["steps"] for r in curve] == sorted(r["steps"] for r in curve)
    return meta


def _acts_in_rollout(root: Path) -> None:
    env = make_env(HOPPER)
    policy = make_policy("expert", HOPPER, env, experts_dir=str(root), allow_weak=True)
    episode = record_episode(env, policy, HOPPER, PlannedEpisode(0, 123, "train"))
    assert not isinstance(episode, str)
    actions = np.asarray(episode.actions)
    assert actions.shape[1] == 3 and np.all(np.abs(actions) <= 1.0)
    replay = record_episode(env, policy, HOPPER, PlannedEpisode(0, 123, "train"))
    np.testing.assert_allclose(actions, np.asarray(replay.actions))  # deterministic expert, same seed


def test_sample_factory_trains_resumes_and_acts(sf_hopper):
    root, first, second = sf_hopper
    meta = _check_stored(root, "sample-factory", first, second)
    assert meta["algo"] == "APPO"
    assert meta["hyperparameters"]["encoder_mlp_layers"] == [64, 64]  # JAT's MuJoCo network
    assert (root / "mujoco-hopper" / "model" / "model.pth").is_file()
    _acts_in_rollout(root)


def test_sb3_trains_resumes_and_acts(sb3_hopper):
    root, first, second = sb3_hopper
    meta = _check_stored(root, "sb3", first, second)
    assert meta["algo"] == "PPO"
    assert (root / "mujoco-hopper" / "model" / "model.zip").is_file()
    _acts_in_rollout(root)


def test_corrupt_checkpoint_is_named(sf_hopper, tmp_path):
    root = tmp_path / "experts"
    shutil.copytree(sf_hopper[0], root)
    folder = root / "mujoco-hopper" / "checkpoints" / "sf" / "checkpoint_p0"
    checkpoints = sorted(folder.glob("checkpoint_*.pth"))
    checkpoints[-1].write_bytes(b"not a checkpoint")
    result = train_expert(tiny_plan("mujoco-hopper", "sample-factory", 6000, resume=True), str(root))
    assert result.status == FAILED
    assert "partial or damaged" in result.error and checkpoints[-1].name in result.error


def test_sample_factory_resume_applies_new_settings_but_not_a_new_network(sf_hopper, tmp_path):
    root = tmp_path / "experts"
    shutil.copytree(sf_hopper[0], root)
    steps = sf_hopper[2].steps + 500
    changed_net = tiny_plan("mujoco-hopper", "sample-factory", steps, resume=True, encoder_mlp_layers=[32])
    result = train_expert(changed_net, str(root))
    assert result.status == FAILED and "encoder_mlp_layers: was [64, 64], now [32]" in result.error
    new_rate = tiny_plan("mujoco-hopper", "sample-factory", steps, resume=True, learning_rate=1.234e-4)
    result = train_expert(new_rate, str(root))
    assert result.status != FAILED, result.error
    saved = json.loads((root / "mujoco-hopper" / "checkpoints" / "sf" / "config.json").read_text())
    assert saved["learning_rate"] == 1.234e-4  # the override reached the resumed run


def test_corrupt_sb3_checkpoint_is_named(sb3_hopper, tmp_path):
    root = tmp_path / "experts"
    shutil.copytree(sb3_hopper[0], root)
    checkpoints = sorted((root / "mujoco-hopper" / "checkpoints" / "sb3").glob("model_*_steps.zip"))
    checkpoints[-1].write_bytes(b"garbage")
    result = train_expert(tiny_plan("mujoco-hopper", "sb3", 6000, resume=True), str(root))
    assert result.status == FAILED and "corrupt checkpoint" in result.error


def test_missing_model_is_a_clear_error(sb3_hopper, tmp_path):
    root = tmp_path / "experts"
    shutil.copytree(sb3_hopper[0], root)
    (root / "mujoco-hopper" / "model" / "model.zip").unlink()
    with pytest.raises(PipelineError, match="cannot load the sb3 expert"):
        ExpertStore(str(root)).load_policy(HOPPER)


@pytest.mark.parametrize(
    ("config", "backend", "hyperparameters", "match"),
    [
        ("atari-pong", "sb3", {"algo": "sac"}, "needs continuous actions"),
        ("mujoco-hopper", "sb3", {"algo": "dqn"}, "needs discrete actions"),
        ("mujoco-hopper", "sb3", {"algo": "ppo", "n_stepz": 3}, "unknown hyperparameter"),
        ("mujoco-hopper", "sample-factory", {"learning_rat": 1.0}, "unknown hyperparameter"),
        ("babyai-go-to", "sample-factory", {}, "text observations"),
        ("mujoco-hopper", "babyai-bot", {}, "BabyAI tasks only"),
        ("babyai-go-to", "metaworld-scripted", {}, "Meta-World tasks only"),
    ],
)
def test_backend_refuses_configs_it_cannot_use(config, backend, hyperparameters, match):
    with pytest.raises(PipelineError, match=match):
        get_backend(backend).check(get_task(config), hyperparameters)


def test_unknown_backend():
    with pytest.raises(PipelineError, match="unknown expert backend 'ppo2'"):
        get_backend("ppo2")


def test_importing_one_backend_imports_no_other():
    import subprocess
    import sys

    code = (
        "import sys, experts.base, experts.sb3, experts.scripted, experts.store, experts.training\n"
        "assert 'sample_factory' not in sys.modules and 'experts.sample_factory' not in sys.modules\n"
        "import experts.sample_factory\n"
        "assert 'stable_baselines3' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert set(BACKENDS) == {"sample-factory", "sb3", "rllib", "babyai-bot", "metaworld-scripted"}


def test_rollout_refuses_a_weak_trained_expert(sf_hopper, tmp_path):
    from pipeline.rollout.run import RolloutConfig, rollout

    root = sf_hopper[0]
    meta = json.loads((root / "mujoco-hopper" / "metadata.json").read_text())
    if meta["status"] != "rejected":  # a few thousand steps never reach half of JAT's Hopper expert
        pytest.fail(f"tiny expert unexpectedly {meta['status']}: {meta['evaluation']}")
    config = RolloutConfig(
        out=str(tmp_path / "data"),
        tasks=("mujoco-hopper",),
        episodes=1,
        workers=0,
        policy="expert",
        experts_dir=str(root),
        progress=False,
    )
    with pytest.raises(PipelineError, match=r"mujoco-hopper .* is rejected: normalised score .*--allow-weak"):
        rollout(config)
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_watchdog_stops_a_run_that_makes_no_progress(tmp_path):
    # Parallel mode; a stall limit shorter than sample-factory's start-up trips the watchdog for sure.
    plan = tiny_plan("mujoco-hopper", "sample-factory", 10**6, serial_mode=False, stall_timeout_s=0.5)
    result = train_expert(plan, str(tmp_path))
    assert result.status == FAILED and "no progress" in result.error and "sf_log.txt" in result.error


def test_sync_mode_batch_mismatch_is_named_up_front():
    from experts.sample_factory import _check_sync_batches

    settings = get_task("atari-pong").expert.settings("sample-factory")
    for workers in (1, 2, 8):  # the shipped Atari settings work at any worker count
        _check_sync_batches("atari-pong", {**settings, "num_workers": workers})
    with pytest.raises(
        PipelineError, match=r"multiple of num_workers x num_envs_per_worker x rollout \(2048\)"
    ):
        _check_sync_batches("atari-pong", {**settings, "num_workers": 2, "num_envs_per_worker": 8})


def test_variant_configs_use_the_base_tasks_expert(sb3_hopper, tmp_path):
    """`--min-return-fraction` records `mujoco-hopper-top1` with the expert stored for mujoco-hopper."""
    from pipeline.rollout.run import RolloutConfig, rollout

    config = RolloutConfig(
        out=str(tmp_path / "data"),
        tasks=("mujoco-hopper",),
        episodes=2,
        workers=0,
        policy="expert",
        experts_dir=str(sb3_hopper[0]),
        allow_weak=True,
        min_return_fraction=0.01,
        progress=False,
    )
    summary = rollout(config)
    manifest = json.loads((tmp_path / "data" / "meta" / "mujoco-hopper-top1" / "manifest.json").read_text())
    assert manifest["provenance"]["backend"] == "sb3"
    assert sum(summary.configs["mujoco-hopper-top1"][k] for k in ("train_episodes", "dropped")) >= 1


def test_sb3_off_policy_resume_keeps_its_replay_buffer(tmp_path):
    from sb3_contrib import TQC

    from experts.training import ExpertPlan

    tqc = {"algo": "tqc", "learning_starts": 100, "buffer_size": 5000, "batch_size": 32}
    tqc |= {"checkpoint_every": 200, "policy_kwargs": {"net_arch": [16]}}

    def plan(steps: int, resume: bool) -> ExpertPlan:
        return ExpertPlan(
            "mujoco-hopper", "sb3", tqc, steps, 0, 1, 1, 0.5, True, resume=resume, evaluate=False
        )

    first = train_expert(plan(300, resume=False), str(tmp_path))
    folder = tmp_path / "mujoco-hopper" / "checkpoints" / "sb3"
    buffers = sorted(folder.glob("*_replay_buffer.pkl"))
    assert [b.name for b in buffers] == [f"model_{first.steps}_steps_replay_buffer.pkl"]  # the newest only
    second = train_expert(plan(600, resume=True), str(tmp_path))
    assert second.status != FAILED, second.error
    model = TQC.load(folder / f"model_{second.steps}_steps.zip", device="cpu")
    model.load_replay_buffer(folder / f"model_{second.steps}_steps_replay_buffer.pkl")
    assert model.replay_buffer.size() == second.steps  # both runs' transitions, not just the second's
