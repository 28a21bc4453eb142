"""`pipeline rollout` on a real local Ray cluster, real envs, then validate and load_dataset."""

from __future__ import annotations

import json

import pytest
from datasets import load_dataset

from pipeline.checks.validate import validate
from pipeline.cli import main
from pipeline.configs.datasets import ValidateConfig
from pipeline.errors import PipelineError
from pipeline.rollout.run import RolloutConfig, rollout


def _episodes(dataset, config):
    manifest = json.loads((dataset / "meta" / config / "manifest.json").read_text())
    return sorted(
        (e["episode_id"], e["seed"], e["length"], round(e["episode_return"], 4), s["split"])
        for s in manifest["shards"]
        for e in s["episodes"]
    )


@pytest.mark.ray
def test_ray_rollout_validates_loads_and_matches_serial(ray_cluster, tmp_path, sample_dataset, rollout):
    out = tmp_path / "ray"
    rollout(out, ("babyai-go-to", "metaworld-reach"), None, episodes=5, workers=2)
    rollout(out, ("mujoco-hopper", "atari-breakout"), "random", episodes=5, workers=2)
    report = validate(ValidateConfig(str(out)))
    assert report.ok, report.errors
    for config in ("babyai-go-to", "metaworld-reach", "mujoco-hopper", "atari-breakout"):
        # Same seed, same episodes, whichever worker recorded them (Ray here, in-process there).
        assert _episodes(out, config) == _episodes(sample_dataset, config)
        train = load_dataset(str(out), config, split="train")
        test = load_dataset(str(out), config, split="test")
        assert train.num_rows + test.num_rows == 5 and test.num_rows >= 1
    assert list(load_dataset(str(out), "babyai-go-to", split="train").features) == [
        "text_observations",
        "discrete_observations",
        "discrete_actions",
        "rewards",
    ]


def test_step_budget_records_whole_episodes(tmp_path):
    out = tmp_path / "steps"
    summary = rollout(
        RolloutConfig(
            out=str(out), tasks=("mujoco-hopper",), steps=300, workers=0, policy="random", progress=False
        )
    )
    steps = summary.configs["mujoco-hopper"]["steps"]
    assert 300 <= steps < 300 + 1000
    assert validate(ValidateConfig(str(out))).ok


def test_a_small_step_budget_gets_its_test_episode_and_a_bounded_overshoot(tmp_path):
    """500 Pong steps with random play: one round of one episode per worker, one of them a test episode."""
    out = tmp_path / "pong"
    summary = rollout(
        RolloutConfig(
            out=str(out), tasks=("atari-pong",), steps=500, workers=0, policy="random", progress=False
        )
    )
    counts = summary.configs["atari-pong"]
    assert counts["train_episodes"] == 1 and counts["test_episodes"] == 1  # both splits, nothing more
    assert validate(ValidateConfig(str(out))).ok
    plan = json.loads((out / "meta/atari-pong/plan.json").read_text())
    assert plan["planned_episodes"] == 2 and plan["forced_test"] == [1]


def test_runs_that_cannot_make_both_splits_are_refused_up_front(tmp_path):
    with pytest.raises(PipelineError, match="cannot fill a train and a test split"):
        rollout(RolloutConfig(out=str(tmp_path / "a"), tasks=("mujoco-hopper",), episodes=1, policy="random"))
    with pytest.raises(PipelineError, match="test fraction of 0 makes no test split"):
        rollout(
            RolloutConfig(
                out=str(tmp_path / "b"),
                tasks=("mujoco-hopper",),
                episodes=4,
                policy="random",
                test_fraction=0,
            )
        )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_an_interrupted_multi_config_run_keeps_its_finished_configs(tmp_path):
    """Killed during its second config, the first is committed, valid and loadable; --resume does the rest."""
    import os
    import subprocess
    import sys

    out = tmp_path / "interrupted"  # datasets caches by folder name and config: no other test uses this one
    command = [sys.executable, "-m", "pipeline.cli", "rollout", "--tasks", "metaworld-reach,babyai-go-to",
               "--episodes", "6", "--episodes-per-shard", "2", "--workers", "0", "--no-progress",
               "--out", str(out)]  # fmt: skip
    # metaworld-reach's 6 episodes make 4 units, 3 train and 1 test (the driver plans them first,
    # in-process runs them in order): the 5th unit record is babyai-go-to's first, and the machine dies.
    env = {**os.environ, "JAT_PIPELINE_FAULTS": "unit.record_written=5"}
    killed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert validate(ValidateConfig(str(out), configs=("metaworld-reach",))).ok
    assert "metaworld-reach" in (out / "README.md").read_text()  # listed in configs: loadable by name
    loaded = load_dataset(str(out), "metaworld-reach")
    assert loaded["train"].num_rows + loaded["test"].num_rows == 6
    assert not (out / "meta/babyai-go-to/manifest.json").exists()
    env.pop("JAT_PIPELINE_FAULTS")
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert validate(ValidateConfig(str(out))).ok


def test_size_cap_splits_into_more_shards(tmp_path):
    out = tmp_path / "capped"
    rollout(
        RolloutConfig(
            out=str(out),
            tasks=("metaworld-reach",),
            episodes=12,
            workers=0,
            max_shard_bytes=48 * 1024,
            episodes_per_shard=100,
            progress=False,
        )
    )
    manifest = json.loads((out / "meta/metaworld-reach/manifest.json").read_text())
    assert len([s for s in manifest["shards"] if s["split"] == "train"]) >= 2
    assert all(s["num_bytes"] <= 48 * 1024 for s in manifest["shards"])
    assert validate(ValidateConfig(str(out))).ok


def test_unfinished_bot_episodes_are_dropped_and_counted(tmp_path):
    out = tmp_path / "drops"
    summary = rollout(
        RolloutConfig(
            out=str(out),
            tasks=("babyai-go-to",),
            episodes=12,
            workers=0,
            max_episode_steps=30,
            test_fraction=0.5,
            progress=False,
        )
    )
    manifest = json.loads((out / "meta/babyai-go-to/manifest.json").read_text())
    assert summary.configs["babyai-go-to"]["dropped"] == len(manifest["dropped"]) > 0
    assert all(d["reason"].startswith("unfinished") for d in manifest["dropped"])
    kept = sum(len(s["episodes"]) for s in manifest["shards"])
    assert kept == 12  # dropped episodes are replaced
    assert kept + len(manifest["dropped"]) == manifest["plan"]["planned_episodes"]
    assert all(e["length"] <= 30 and e["success"] for s in manifest["shards"] for e in s["episodes"])


def test_bad_input_fails_before_any_work(tmp_path, sample_dataset):
    with pytest.raises(PipelineError, match="positive integer"):
        RolloutConfig(out=str(tmp_path / "a"), tasks=("mujoco-hopper",), episodes=0)
    with pytest.raises(PipelineError, match="no scripted policy"):
        rollout(
            RolloutConfig(out=str(tmp_path / "b"), tasks=("mujoco-hopper",), episodes=2, policy="scripted")
        )
    with pytest.raises(PipelineError, match="did you mean"):
        rollout(RolloutConfig(out=str(tmp_path / "c"), suite="babyai", tasks=("goto",), episodes=2))
    assert not any((tmp_path / name).exists() for name in "abc")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(PipelineError, match="not a jat-pipeline dataset"):
        rollout(RolloutConfig(out=str(foreign), tasks=("mujoco-hopper",), episodes=2, policy="random"))
    before = _episodes(sample_dataset, "mujoco-hopper")
    with pytest.raises(PipelineError, match="--overwrite"):
        rollout(RolloutConfig(out=str(sample_dataset), tasks=("mujoco-hopper",), episodes=2, policy="random"))
    assert (
        _episodes(sample_dataset, "mujoco-hopper") == before
        and validate(ValidateConfig(str(sample_dataset))).ok
    )


def test_cli_help_and_errors(tmp_path, capsys):
    for command in ("tasks", "rollout", "validate", "demo"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
    assert (
        main(["rollout", "--suite", "atari", "--tasks", "pongg", "--episodes", "2", "--out", str(tmp_path)])
        == 2
    )
    assert "did you mean pong" in capsys.readouterr().err
    assert main(["tasks", "--suite", "mujoco", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 11 and rows[0]["config"] == "mujoco-ant"


def test_a_config_with_every_episode_dropped_fails_without_breaking_the_others(tmp_path):
    """Exit 0 means valid data: a config left with no episode fails the run, the others stay usable."""
    out = tmp_path / "one-dropped"  # datasets caches by folder name, config set and config
    with pytest.raises(
        PipelineError, match=r"babyai-go-to: 0 of the 4 episodes asked for are stored: .*unfinished"
    ):
        rollout(
            RolloutConfig(
                out=str(out),
                tasks=("mujoco-hopper", "babyai-go-to"),
                episodes=4,
                workers=0,
                policy="random",
                max_episode_steps=2,
                progress=False,
            )
        )  # a random policy never finishes BabyAI in 2 steps, even with replacements
    assert not (out / "meta/babyai-go-to/manifest.json").exists()
    plan = json.loads((out / "meta/babyai-go-to/plan.json").read_text())
    assert plan["planned_episodes"] == 10 * 4  # replacement rounds up to 10 played per episode asked for
    assert plan["replacement_rounds"] == 9
    assert validate(ValidateConfig(str(out), configs=("mujoco-hopper",))).ok
    loaded = load_dataset(str(out), "mujoco-hopper")
    assert loaded["train"].num_rows + loaded["test"].num_rows == 4
