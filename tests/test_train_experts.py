"""The train-experts and evaluate-experts stages end to end: real envs, real Ray, real stores."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "experts"))
from expert_helpers import TINY_SB3_PPO, TINY_SF

from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.expert_stages.evaluate_experts import EvaluateExpertsConfig, evaluate_experts
from pipeline.expert_stages.train_experts import TrainExpertsConfig, train_experts


def _meta(root: Path, config: str) -> dict:
    return json.loads((root / config / "metadata.json").read_text())


def _train_on_ray(out: Path, backend: str, hyperparameters: dict, steps: int) -> None:
    summary = train_experts(
        TrainExpertsConfig(
            out=str(out),
            tasks=("metaworld-reach", "metaworld-push"),
            backend=backend,
            steps=steps,
            num_cpus=1,
            hyperparameters=hyperparameters,
            eval_episodes=2,
            progress=False,
        )
    )
    assert not summary.failed, [r.error for r in summary.failed]
    assert [r.config for r in summary.results] == ["metaworld-reach", "metaworld-push"]
    for config in ("metaworld-reach", "metaworld-push"):
        meta = _meta(out, config)
        assert meta["backend"] == backend and meta["steps_trained"] >= steps
        passes = meta["evaluation"]["normalised"] >= meta["gate"]["threshold"]
        assert meta["status"] == ("accepted" if passes else "rejected"), meta["gate"]
        assert meta["evaluation"]["episodes"] == 2
        assert meta["evaluation"]["success_rate"] is not None
        assert (out / config / "learning_curve.csv").is_file()
    rows = json.loads((out / "summary-metaworld.json").read_text())
    assert sorted(r["config"] for r in rows) == ["metaworld-push", "metaworld-reach"]
    for row, result in zip(rows, sorted(summary.results, key=lambda r: r.config), strict=True):
        # below JAT's level, the row says what budget the curve asks for (here: too short to tell)
        assert (row["budget"] is None) == (row["normalised"] >= 0.9), row
        assert row["budget"] is None or row["budget"]["reason"]
        assert bool(result.budget) == (row["budget"] is not None), (result, row)
    assert (out / "learning-curves-metaworld.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / ".tmp").exists()


@pytest.mark.ray
def test_one_ray_task_per_env(ray_cluster, tmp_path):
    out = tmp_path / "experts"
    _train_on_ray(out, "sb3", TINY_SB3_PPO, 512)
    # Re-evaluate with an impossible bar: the gate now rejects it, and says why.
    again = evaluate_experts(
        EvaluateExpertsConfig(str(out), tasks=("metaworld-reach",), episodes=2, threshold=100.0)
    )
    assert again.results[0].status == "rejected"
    assert _meta(out, "metaworld-reach")["gate"]["threshold"] == 100.0


@pytest.mark.ray
@pytest.mark.slow
def test_sample_factory_parallel_mode_inside_ray_tasks(ray_cluster, tmp_path):
    """sample-factory's own worker processes (spawned) inside Ray tasks, as on a cluster."""
    parallel = {**TINY_SF, "serial_mode": False}
    _train_on_ray(tmp_path / "experts", "sample-factory", parallel, 2048)


def test_a_failing_task_does_not_stop_the_others(tmp_path):
    out = tmp_path / "experts"
    summary = train_experts(
        TrainExpertsConfig(
            out=str(out),
            tasks=("mujoco-hopper", "babyai-go-to"),
            backend="babyai-bot",
            eval_episodes=2,
            workers=0,
            progress=False,
        )
    )
    assert [r.config for r in summary.failed] == ["mujoco-hopper"]
    assert "BabyAI tasks only" in summary.failed[0].error
    assert _meta(out, "babyai-go-to")["status"] == "accepted"
    assert not (out / "mujoco-hopper").exists()


def test_existing_experts_need_resume_or_overwrite(tmp_path):
    config = TrainExpertsConfig(
        out=str(tmp_path), tasks=("babyai-go-to",), eval_episodes=1, workers=0, progress=False
    )
    assert not train_experts(config).failed
    second = train_experts(config)
    assert second.failed and "--resume" in second.failed[0].error and "--overwrite" in second.failed[0].error
    third = train_experts(TrainExpertsConfig(**{**config.__dict__, "overwrite": True}))
    assert not third.failed


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tasks": ("mujoco-hoper",)}, "unknown task 'mujoco-hoper'; did you mean"),
        ({"suite": "mujoco", "backend": "ppo"}, "unknown expert backend 'ppo'"),
        ({"suite": "mujoco", "resume": True, "overwrite": True}, "not both"),
        ({"suite": "mujoco", "threshold": -1.0}, "threshold"),
        ({"suite": "mujoco", "steps": 0}, "--steps"),
        (  # a value of the wrong kind: one line, not sample-factory's 100 lines of usage
            {"tasks": ("mujoco-pendulum",), "hyperparameters": {"learning_rate": "fast"}},
            r"--set learning_rate='fast': sample-factory's learning_rate is a number",
        ),
    ],
)
def test_bad_input_is_refused_before_any_work(tmp_path, kwargs, match):
    with pytest.raises(PipelineError, match=match):
        train_experts(TrainExpertsConfig(out=str(tmp_path / "x"), workers=0, progress=False, **kwargs))
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_cli_exit_codes(tmp_path):
    out = str(tmp_path / "experts")
    common = ["--out", out, "--workers", "0", "--eval-episodes", "1", "--no-progress"]
    assert main(["train-experts", "--tasks", "babyai-go-to", *common]) == 0
    assert main(["train-experts", "--tasks", "babyai-go-to", "--backend", "nope", *common]) == 2
    # A task the backend cannot use fails alone; the exit code reports it.
    assert main(["train-experts", "--tasks", "mujoco-hopper", "--backend", "babyai-bot", *common]) == 1
    assert main(["evaluate-experts", out, "--tasks", "babyai-go-to", "--episodes", "1"]) == 0
    assert main(["evaluate-experts", out, "--tasks", "mujoco-hopper", "--episodes", "1"]) == 1  # none stored


def test_a_folder_that_is_not_an_experts_folder_is_refused(tmp_path, capsys):
    """`--out experts/` in a checkout is the source package: one line, exit 2, nothing written."""
    package = tmp_path / "experts"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text("")
    argv = [
        "train-experts",
        "--tasks",
        "babyai-go-to",
        "--out",
        str(package),
        "--workers",
        "0",
        "--no-progress",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not an experts folder (it holds __init__.py, base.py)" in err[0], err
    assert sorted(p.name for p in package.iterdir()) == ["__init__.py", "base.py"]
    # an experts folder (a config's folder, the suite summaries) is accepted, an empty one too
    store = tmp_path / "store"
    (store / "babyai-go-to").mkdir(parents=True)
    (store / "summary-babyai.json").write_text("[]")
    (store / "learning-curves-babyai.png").write_bytes(b"")
    from experts.store import ExpertStore
    from pipeline.tasks.registry import all_tasks

    assert ExpertStore(str(store)).foreign_entries(set(all_tasks())) == []
    assert ExpertStore(str(tmp_path / "new")).foreign_entries(set(all_tasks())) == []


def test_progress_ends_at_the_steps_really_trained_and_a_rounded_budget_is_said_once(tmp_path):
    """sample-factory trained 8,192 steps for --steps 4000 behind a bar that stayed at 0/4000."""
    from experts.base import TrainOutcome, TrainProgress
    from experts.training import ExpertResult, _report_final
    from pipeline.expert_stages.train_experts import plan_expert, rounded_up
    from pipeline.tasks.registry import get_task

    config = TrainExpertsConfig(out=str(tmp_path), tasks=("mujoco-pendulum",), steps=4000, workers=0)
    plan = plan_expert(get_task("mujoco-pendulum"), config, None)
    reports: list[TrainProgress] = []
    outcome = TrainOutcome(steps=8192, algo="APPO", hyperparameters={})
    _report_final(plan, outcome, 4.0, [], reports.append)
    assert reports == [TrainProgress("mujoco-pendulum", 8192, 8192, 2048.0, None)]
    exact = TrainOutcome(steps=4000, algo="APPO", hyperparameters={})
    last = TrainProgress("mujoco-pendulum", 3000, 4000, 900.0, 12.5)
    _report_final(plan, exact, 4.0, [last], reports.append)
    assert reports[-1] == TrainProgress("mujoco-pendulum", 4000, 4000, 900.0, 12.5)
    # the stage says it once, in the driver (a Ray task's log lines do not reach the user)
    over = ExpertResult("mujoco-pendulum", plan.backend, "rejected", steps=8192)
    assert rounded_up([plan], [over]) == [
        "mujoco-pendulum: sample-factory trained 8,192 env steps for a budget of 4,000 "
        "(it stops only between training rounds, so it rounds a budget up)"
    ]
    assert rounded_up([plan], [ExpertResult("mujoco-pendulum", plan.backend, "rejected", steps=4000)]) == []
