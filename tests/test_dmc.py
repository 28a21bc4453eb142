"""DeepMind Control, the suite added through the plugin alone: registry, env, and every stage on its data.

The dataset is recorded once per module with the real rollout (random policy, short episodes via
max_episode_steps), then validated, loaded with `datasets`, replayed, rendered, reported,
published to the tests' Hub-API server, and used to train and evaluate a tiny JAT model.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.suites import get_suite
from pipeline.suites.dmc import DMCEnv, dm_suite, domain_task
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task, parse_suite, suite_names, suite_tasks

CONFIG = "dmc-cartpole-swingup"
EPISODES = 10
STEPS = 40
OSMESA = ctypes.util.find_library("OSMesa")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A real DMC dataset: 10 random-policy episodes of 40 steps, recorded in-process."""
    from pipeline.rollout.run import RolloutConfig, rollout

    out = tmp_path_factory.mktemp("dmc") / "dataset"
    rollout(
        RolloutConfig(
            out=str(out),
            tasks=(CONFIG,),
            episodes=EPISODES,
            workers=0,
            policy="random",
            max_episode_steps=STEPS,
            progress=False,
        )
    )
    return out


def test_registry_holds_dm_controls_benchmarking_list_with_the_envs_own_spaces():
    """Every task of dm_control.suite.BENCHMARKING, and what the YAML says of it is what the env is."""
    assert "dmc" in suite_names() and get_suite("dmc").title == "DeepMind Control"
    specs = suite_tasks("dmc")
    suite = dm_suite()
    assert sorted(domain_task(s.env_id) for s in specs) == sorted(suite.BENCHMARKING)
    for spec in specs:
        domain, task = domain_task(spec.env_id)
        assert (
            spec.config == f"dmc-{domain}-{task}".replace("_", "-") and spec.jat_env_id == f"{domain}-{task}"
        )
        raw = suite.load(domain, task)  # dm_control's own env, its own time limit
        size = sum(int(np.prod(v.shape)) for v in raw.observation_spec().values())
        action = raw.action_spec()
        assert spec.observation.shape == (size,), spec.config
        assert spec.action.shape == action.shape, spec.config
        assert (spec.action.low, spec.action.high) == (action.minimum.min(), action.maximum.max())
        assert np.all(action.minimum == spec.action.low) and np.all(action.maximum == spec.action.high)
        assert spec.max_episode_steps == round(raw._step_limit) == 1000, spec.config
        assert spec.scores.random_mean < spec.scores.expert_mean == 1000
        raw.close()


def test_the_env_is_the_registrys_and_a_seed_alone_decides_the_episode():
    spec = get_task("dmc-reacher-easy")
    env = make_env(spec, max_episode_steps=7)
    assert env.observation_space.shape == spec.observation.shape and env.observation_space.dtype == np.float32
    assert env.action_space.shape == spec.action.shape
    actions = np.random.default_rng(0).uniform(-1, 1, (7, *spec.action.shape)).astype(np.float32)

    def episode(env, seed):
        observations = [env.reset(seed=seed)[0]]
        for action in actions:
            observation, reward, terminated, truncated, _ = env.step(action)
            observations.append(observation)
            rewards.append(reward)
        assert truncated and not terminated  # the horizon truncates; DMC tasks never terminate
        return np.array(observations)

    rewards: list[float] = []
    first = episode(env, 5)
    other = episode(env, 6)  # another episode in between must leave no trace
    again = episode(env, 5)
    fresh = episode(make_env(spec, max_episode_steps=7), 5)
    assert np.array_equal(first, again) and np.array_equal(first, fresh)
    assert not np.array_equal(first[0], other[0])  # the seed draws the target and arm
    assert first.dtype == np.float32 and all(0.0 <= r <= 1.0 for r in rewards)
    seeded_big = make_env(spec).reset(seed=2**40 + 5)[0]  # any int seeds it, none wraps onto another
    assert not np.array_equal(seeded_big, first[0])


def test_fps_follows_each_tasks_control_timestep():
    dmc = get_suite("dmc")
    assert dmc.fps_for(get_task("dmc-fish-swim")) == pytest.approx(25.0)  # 0.04 s a step: real time
    assert dmc.fps_for(get_task("dmc-walker-walk")) == pytest.approx(40.0)  # 0.025 s a step
    # 0.01 s a step would be a 10-ms GIF delay, which browsers show as 100 ms: capped at 50 fps (20 ms)
    assert dmc.fps_for(get_task("dmc-cartpole-swingup")) == pytest.approx(50.0)
    assert get_suite("mujoco").fps_for(get_task("mujoco-hopper")) == get_suite("mujoco").fps


def test_a_malformed_env_id_or_unknown_task_is_one_line():
    text = Path(__file__).parents[1].joinpath("env_configs", "dmc.yaml").read_text()
    spec = parse_suite("dmc", text.replace("dmc/cartpole-swingup-v0", "cartpole/swingup", 1))[CONFIG]
    with pytest.raises(PipelineError, match=r"no DeepMind Control env id: write dmc/<domain>-<task>-v0"):
        get_suite("dmc").make_env(spec, None)
    with pytest.raises(PipelineError, match="dm_control has no task cartpole-swingdown"):
        DMCEnv("cartpole", "swingdown")


def test_rollout_validates_loads_with_datasets_and_replays(dataset, capsys):
    manifest = json.loads((dataset / "meta" / CONFIG / "manifest.json").read_text())
    episodes = [e for s in manifest["shards"] for e in s["episodes"]]
    assert len(episodes) == EPISODES and {e["length"] for e in episodes} == {STEPS}
    assert all(e["success"] is None for e in episodes)  # DMC has no success
    assert main(["validate", str(dataset)]) == 0
    assert main(["replay", str(dataset), "--config", CONFIG, "--episodes", "all", "--split", "both"]) == 0
    assert "reproduce" in capsys.readouterr().out

    from datasets import load_dataset

    loaded = load_dataset(str(dataset), CONFIG)
    rows = [row for split in loaded.values() for row in split]
    assert sum(len(split) for split in loaded.values()) == EPISODES
    observations = np.array(rows[0]["continuous_observations"], dtype=np.float32)
    assert observations.shape == (STEPS, 5) and len(rows[0]["continuous_actions"][0]) == 1


def test_report_scores_against_the_registry(dataset, tmp_path):
    out = tmp_path / "report.json"
    assert main(["report", str(dataset), "--json", str(out), "--bootstrap-reps", "50"]) == 0
    (row,) = json.loads(out.read_text())["configs"]
    spec = get_task(CONFIG)
    manifest = json.loads((dataset / "meta" / CONFIG / "manifest.json").read_text())
    returns = [e["episode_return"] for s in manifest["shards"] for e in s["episodes"]]
    assert (row["config"], row["suite"], row["policy_kind"]) == (CONFIG, "dmc", "random")
    assert row["reference"] == {"expert": 1000.0, "random": spec.scores.random_mean}
    assert row["success_rate"] is None
    assert row["normalised_score"] == pytest.approx(spec.scores.normalise(float(np.mean(returns))))


@pytest.mark.skipif(OSMESA is None, reason="libOSMesa not installed (apt-get install libosmesa6)")
def test_render_draws_the_scene_at_the_tasks_rate(dataset, tmp_path):
    """Drawn by `pipeline render` in a process of its own: dm_control's OSMesa context and gymnasium's
    in one long-lived process (this test session draws MuJoCo frames too) aborted it once."""
    from PIL import Image

    out = tmp_path / "cartpole.gif"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "render", str(dataset), "--config", CONFIG, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with Image.open(out) as gif:
        frame = np.asarray(gif.convert("RGB"))
        assert (
            gif.n_frames == STEPS and gif.info["duration"] == 20 and frame.std() > 10
        )  # a drawn scene, 50 fps


@pytest.mark.slow
@pytest.mark.hub
def test_publish_to_the_hub_and_load_back(dataset, hub, tmp_path):
    from publish_helpers import LOAD_SCRIPT, local_digests

    from pipeline.release.publish import PublishConfig, publish

    summary = publish(
        PublishConfig(str(dataset), repo_id="jat-org/dmc", xet=False, progress=False, clips=False)
    )
    assert summary.commits == 1
    files = hub.files("jat-org/dmc")
    assert f"meta/{CONFIG}/manifest.json" in files and "meta/plots/dmc.png" in files
    card = hub.read("jat-org/dmc", "README.md").decode()
    assert f"| [{CONFIG}](#{CONFIG}) | dmc | random | " in card  # the card's row of the config
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.token,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, "jat-org/dmc", CONFIG],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])[CONFIG] == local_digests(dataset, CONFIG)


@pytest.mark.slow
def test_train_model_on_dmc_data_and_evaluate(dataset, tmp_path):
    import torch

    from pipeline.model.evaluate import EvaluateConfig, evaluate
    from pipeline.model.train import TrainModelConfig, train_model

    torch.manual_seed(0)
    out = tmp_path / "model"
    train_model(
        TrainModelConfig(
            data=str(dataset),
            configs=(CONFIG,),
            steps=4,
            batch_size=2,
            context_steps=16,
            checkpoint_every=2,
            eval_batches=1,
            out=str(out),
            progress=False,
        )
    )
    assert (out / "model.safetensors").exists()
    result = evaluate(
        EvaluateConfig(
            model=str(out),
            tasks=(CONFIG,),
            episodes=2,
            max_episode_steps=20,
            bootstrap_reps=50,
            out=str(tmp_path / "eval"),
            progress=False,
        )
    )
    (task,) = result.tasks
    assert task.config == CONFIG and len(task.model.returns) == 2 and task.model.lengths == [20, 20]
    assert task.model.successes == [] and task.baseline is not None
    assert {(a.domain, a.kind) for a in result.aggregates} == {("dmc", "expert")}
