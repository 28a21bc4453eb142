"""`pipeline evaluate --workers N`: episodes on Ray actors give exactly the serial run's results."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pipeline.format.plan import episode_seed
from pipeline.model.evaluate import (
    EpisodeUnit,
    EvaluateConfig,
    EvaluateWorker,
    WorkerSettings,
    evaluate,
)

TASKS = ("babyai-go-to", "metaworld-reach")  # sampled discrete actions, and a continuous env


def _tasks_without_timing(path):
    tasks = json.loads(path.read_text())["tasks"]
    return [{k: v for k, v in t.items() if k != "seconds"} for t in tasks]


@pytest.mark.ray
def test_two_actors_give_the_serial_rows(trained_model, tmp_path, ray_cluster):
    common = dict(model=str(trained_model), tasks=TASKS, episodes=3, max_episode_steps=15, progress=False)
    common["bootstrap_reps"] = 50
    serial = evaluate(EvaluateConfig(**common, out=str(tmp_path / "serial")))
    parallel = evaluate(EvaluateConfig(**common, out=str(tmp_path / "parallel"), workers=2))
    assert parallel.rows() == serial.rows()
    for s, p in zip(serial.tasks, parallel.tasks, strict=True):
        assert dataclasses.asdict(p.model) == dataclasses.asdict(s.model)
        assert dataclasses.asdict(p.baseline) == dataclasses.asdict(s.baseline)
    assert parallel.aggregates == serial.aggregates
    assert _tasks_without_timing(tmp_path / "parallel" / "results.json") == _tasks_without_timing(
        tmp_path / "serial" / "results.json"
    )
    returns = [r for t in serial.tasks for r in t.model.returns]
    assert len(set(returns)) > 1  # the episodes differ, so matching them means something


def test_an_episode_does_not_depend_on_what_the_worker_played_before(trained_model):
    """Why the order in which actors take episodes cannot matter: each outcome is a function of its unit."""
    settings = WorkerSettings(
        model=str(trained_model),
        device="cpu",
        precision="fp32",
        greedy=False,
        seed=0,
        max_episode_steps=12,
        threads=1,
    )
    units = [
        EpisodeUnit(config, policy, i, episode_seed(0, f"eval:{config}", i))
        for config in TASKS
        for policy in ("model", "random")
        for i in range(2)
    ]

    def play(order):
        worker = EvaluateWorker(settings)
        try:
            found = {}
            for unit in order:
                (outcome,) = worker.play(unit)
                found[unit] = (outcome.total, outcome.length, outcome.success, outcome.truncated)
            return found
        finally:
            worker.close()

    forward = play(units)
    assert play(units[::-1]) == forward
    interleaved = units[::2] + units[1::2]
    assert play(interleaved) == forward
