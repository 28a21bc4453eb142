"""Evaluation in the real environments, and the two CLI subcommands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from model_helpers import SAMPLE_CONFIGS

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.model.evaluate import EvaluateConfig, evaluate, resolve_eval_tasks, run_name
from pipeline.tasks.registry import get_task


def test_evaluate_runs_real_episodes_for_one_task_per_suite(trained_model, tmp_path):
    result = evaluate(
        EvaluateConfig(
            model=str(trained_model),
            tasks=SAMPLE_CONFIGS,
            episodes=2,
            max_episode_steps=30,
            bootstrap_reps=100,
            out=str(tmp_path / "eval"),
            progress=False,
        )
    )
    assert [t.config for t in result.tasks] == list(SAMPLE_CONFIGS)
    for task in result.tasks:
        spec = get_task(task.config)
        stats = task.model
        assert len(stats.returns) == 2 and all(1 <= n <= 30 for n in stats.lengths)
        expected = [
            (r - spec.scores.random_mean) / (spec.scores.expert_mean - spec.scores.random_mean)
            for r in stats.returns
        ]
        np.testing.assert_allclose(stats.normalised, expected)
        assert len(stats.successes) == (2 if spec.suite in ("babyai", "metaworld") else 0)
        assert (stats.human_normalised is not None) == (spec.suite == "atari")
        assert task.baseline is not None and len(task.baseline.returns) == 2
    kinds = {(a.domain, a.kind) for a in result.aggregates}
    assert kinds == {
        ("atari", "expert"),
        ("atari", "human"),
        ("babyai", "expert"),
        ("metaworld", "expert"),
        ("mujoco", "expert"),
    }
    for a in result.aggregates:
        assert a.iqm_ci[0] <= a.iqm <= a.iqm_ci[1]
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert [t["config"] for t in saved["tasks"]] == list(SAMPLE_CONFIGS)
    assert (tmp_path / "eval" / "results.csv").exists() and (tmp_path / "eval" / "scores.png").exists()
    name = run_name([get_task(c) for c in SAMPLE_CONFIGS])  # the default folder's name for them
    assert name.startswith("4-tasks-") and name == run_name([get_task(c) for c in SAMPLE_CONFIGS])
    assert run_name([get_task("babyai-go-to"), get_task("mujoco-hopper")]) == "babyai-go-to+mujoco-hopper"


def test_task_names_and_suites_resolve():
    specs = resolve_eval_tasks(("mujoco", "mujoco-hopper", "babyai-go-to"))
    assert len(specs) == 12 and specs[-1].config == "babyai-go-to"
    with pytest.raises(PipelineError, match="unknown task"):
        resolve_eval_tasks(("babyai-goto",))


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(PipelineError, match="no trained model"):
        evaluate(EvaluateConfig(model=str(tmp_path), tasks=("babyai-go-to",), progress=False))


def test_cli_train_model_and_evaluate(sample_dataset, tmp_path, capsys):
    out = tmp_path / "cli-model"
    code = main(
        [
            "train-model",
            "--data",
            str(sample_dataset),
            "--configs",
            "mujoco-hopper:2,metaworld-reach",
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--context",
            "8",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0 and (out / "model.safetensors").exists()
    assert "mujoco-hopper" in capsys.readouterr().out
    code = main(
        [
            "evaluate",
            "--model",
            str(out),
            "--tasks",
            "mujoco-hopper",
            "--episodes",
            "2",
            "--max-episode-steps",
            "10",
            "--bootstrap-reps",
            "50",
            "--no-progress",
        ]
    )
    assert code == 0 and (out / "eval" / "mujoco-hopper" / "scores.png").exists()
    assert "IQM" in capsys.readouterr().out
    # another config's evaluation goes beside it; the same one again needs --overwrite
    other = ["evaluate", "--model", str(out), "--episodes", "1", "--max-episode-steps", "5", "--no-baseline"]
    assert main([*other, "--tasks", "metaworld-reach", "--bootstrap-reps", "10", "--no-progress"]) == 0
    assert (out / "eval" / "metaworld-reach" / "results.json").exists()
    hopper = json.loads((out / "eval" / "mujoco-hopper" / "results.json").read_text())
    assert [t["config"] for t in hopper["tasks"]] == ["mujoco-hopper"]  # kept
    capsys.readouterr()
    assert main([*other, "--tasks", "mujoco-hopper", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds the results of an evaluation of mujoco-hopper" in err[0], err
    assert main([*other, "--tasks", "mujoco-hopper", "--no-progress", "--overwrite"]) == 0
    replaced = json.loads((out / "eval" / "mujoco-hopper" / "results.json").read_text())
    assert replaced["config"]["episodes"] == 1 and hopper["config"]["episodes"] == 2
    assert main(["train-model", "--data", str(sample_dataset), "--out", str(out), "--no-progress"]) == 2
    assert main(["evaluate", "--model", str(tmp_path / "none"), "--tasks", "babyai-go-to"]) == 2
