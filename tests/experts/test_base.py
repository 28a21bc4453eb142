"""`experts.base`: the backend registry, hyperparameter key checks, learning curves and snapshots."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from experts.base import (
    BACKENDS,
    CURVE_COLUMNS,
    CURVE_FILE,
    CurveRecorder,
    HistoryKeeper,
    TrainJob,
    backend_names,
    check_hyperparameters,
    fps_since,
    get_backend,
    history_steps,
    read_curve,
)
from pipeline.errors import PipelineError
from pipeline.tasks.registry import get_task
from pipeline.tasks.sections import closest_keys

HOPPER = get_task("mujoco-hopper")


def test_backends_are_found_by_name_and_an_unknown_one_lists_the_valid_names():
    names = ["sample-factory", "sb3", "rllib", "babyai-bot", "metaworld-scripted"]
    assert backend_names() == names == list(BACKENDS)
    bot = get_backend("babyai-bot")
    assert (bot.name, bot.trainable) == ("babyai-bot", False)
    assert (get_backend("metaworld-scripted").name, get_backend("sb3").trainable) == (
        "metaworld-scripted",
        True,
    )
    with pytest.raises(PipelineError) as info:
        get_backend("ppo")
    assert str(info.value) == (f"unknown expert backend 'ppo'; choose one of {', '.join(names)}")


def test_unknown_hyperparameters_are_named_with_the_closest_valid_ones():
    allowed = {"learning_rate", "batch_size", "gamma"}
    check_hyperparameters("expert.sb3", {"gamma": 0.9}, allowed)  # known keys pass
    with pytest.raises(PipelineError) as info:
        check_hyperparameters("expert.sb3", {"learning_rat": 1, "zzz": 2}, allowed)
    assert str(info.value) == (
        "expert.sb3: unknown hyperparameter(s) ['learning_rat', 'zzz'] (did you mean learning_rate?); "
        "check env_configs/ (expert section)"
    )
    assert closest_keys(["qqqq"], allowed) == ""
    assert closest_keys(["batch", "batch_sise"], allowed) == " (did you mean batch_size?)"  # listed once


def test_the_curve_gets_one_row_per_interval_aggregating_the_episodes_since_the_last(tmp_path):
    curve = CurveRecorder(str(tmp_path / "work"), every_s=3600)
    path = tmp_path / "work" / CURVE_FILE
    assert path.read_text().splitlines() == [",".join(CURVE_COLUMNS)]
    curve.maybe_write(100)  # nothing finished yet: no row
    curve.episode(10.0, 5)
    curve.episode(20.0, 7)
    assert curve.latest_return == 20.0
    curve.maybe_write(200)  # the interval has not passed
    assert read_curve(str(path)) == []
    curve.maybe_write(300, force=True)
    curve.maybe_write(400, force=True)  # no episode since: no row
    curve.episode(-3.0, 2)
    curve.maybe_write(500, force=True)
    rows = read_curve(str(path))
    assert [(r["steps"], r["episodes"], r["mean_return"], r["mean_length"]) for r in rows] == [
        (300.0, 2.0, 15.0, 6.0),
        (500.0, 1.0, -3.0, 2.0),
    ]
    assert 0.0 <= rows[0]["wall_time_s"] <= rows[1]["wall_time_s"]


def test_a_resumed_curve_continues_the_file_and_the_wall_clock(tmp_path):
    path = tmp_path / CURVE_FILE
    path.write_text(",".join(CURVE_COLUMNS) + "\n100,42.5,3,1.5,9.0\n")
    curve = CurveRecorder(str(tmp_path), every_s=0.0, resumed_from=100)
    assert curve.wall_offset == 42.5 and curve.wall_time >= 42.5
    curve.episode(4.0, 4)
    curve.maybe_write(250)  # every_s=0: every call with episodes writes
    rows = read_curve(str(path))
    assert [r["steps"] for r in rows] == [100.0, 250.0] and rows[1]["wall_time_s"] >= 42.5


@pytest.mark.parametrize(("resumed_from", "kept"), [(200, [100.0, 200.0]), (0, [])])
def test_a_resume_drops_the_rows_written_after_its_checkpoint(tmp_path, resumed_from, kept):
    """A run killed after its checkpoint at 200 steps wrote rows to 400; the resume undid them."""
    path = tmp_path / CURVE_FILE
    rows = ["100,10.0,3,1.5,9.0", "200,20.0,3,2.5,9.0", "300,30.0,3,3.5,9.0", "400,40.0,3,4.5,9.0"]
    path.write_text(",".join(CURVE_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    curve = CurveRecorder(str(tmp_path), every_s=0.0, resumed_from=resumed_from)
    assert [r["steps"] for r in read_curve(str(path))] == kept
    assert curve.wall_offset == 40.0  # the killed run's time was spent all the same
    curve.episode(4.0, 4)
    curve.maybe_write(resumed_from + 150)
    assert [r["steps"] for r in read_curve(str(path))] == [*kept, resumed_from + 150.0]
    assert not (tmp_path / f"{CURVE_FILE}.partial").exists()


def test_reading_a_missing_or_header_only_curve_gives_no_rows(tmp_path):
    assert read_curve(str(tmp_path / "none.csv")) == []
    (tmp_path / "empty.csv").write_text(",".join(CURVE_COLUMNS) + "\n")
    assert read_curve(str(tmp_path / "empty.csv")) == []


def test_history_steps_lists_finished_snapshots_in_training_order(tmp_path):
    assert history_steps(str(tmp_path / "absent")) == []
    for name in ("000000002048", "000000000512", "000000004096.partial", "notes"):
        (tmp_path / name).mkdir()
    assert history_steps(str(tmp_path)) == [512, 2048]


def _job(tmp_path: Path, every: int = 0) -> TrainJob:
    return TrainJob(
        HOPPER, {}, 100, 0, str(tmp_path), "", history_dir=str(tmp_path / "h"), history_every=every
    )


def test_without_an_interval_no_snapshot_is_kept_even_when_forced(tmp_path):
    keeper = HistoryKeeper(_job(tmp_path))
    assert not keeper.enabled and not keeper.due(10**9)
    keeper.save(50, lambda folder: Path(folder, "m").write_text("x"), force=True)
    assert not (tmp_path / "h").exists()


def test_the_final_policy_closes_the_history_once(tmp_path):
    keeper = HistoryKeeper(_job(tmp_path, every=40))
    writes: list[str] = []

    def write(folder: str) -> None:
        writes.append(Path(folder).name)
        Path(folder, "m").write_text("x")

    keeper.save(30, write)  # before the first mark: nothing
    keeper.save(45, write)
    keeper.save(70, write, force=True)  # the final policy, between marks
    keeper.save(70, write, force=True)  # already there: not written again
    assert history_steps(str(tmp_path / "h")) == [45, 70]
    assert writes == ["000000000045.partial", "000000000070.partial"]
    assert not keeper.due(79) and keeper.due(80)


def test_fps_counts_only_this_runs_steps():
    started = time.monotonic() - 1000.0  # a late call changes the rate by a millionth per millisecond
    assert fps_since(1000, 1400, started) == pytest.approx(0.4, rel=1e-3)
    assert math.isnan(fps_since(0, 10, time.monotonic() + 60))  # no time elapsed yet


def test_a_resume_from_no_checkpoint_keeps_no_row_and_steps_never_repeat(tmp_path):
    """Killed after its first row (sample-factory reports the first episodes at step 0, before it
    trains) and before any checkpoint: the resume starts again at 0 and reports its own first
    episodes at step 0, and the curve showed step 0 twice (found by benchmarks/chaos_stages.py)."""
    path = tmp_path / CURVE_FILE
    path.write_text(",".join(CURVE_COLUMNS) + "\n0,15.2,6,13.4979,17.3\n")
    curve = CurveRecorder(str(tmp_path), every_s=0.0, resumed_from=0)
    assert read_curve(str(path)) == []
    curve.episode(4.0, 4)
    curve.maybe_write(0, force=True)
    curve.maybe_write(0, force=True)  # still no training step: one row at 0 only
    curve.episode(6.0, 6)
    curve.maybe_write(0, force=True)
    curve.episode(8.0, 8)
    curve.maybe_write(128)
    rows = read_curve(str(path))
    assert [(r["steps"], r["episodes"]) for r in rows] == [(0.0, 1.0), (128.0, 2.0)]


def test_a_resumed_learners_first_episodes_go_into_a_row_past_its_checkpoint(tmp_path):
    path = tmp_path / CURVE_FILE
    path.write_text(",".join(CURVE_COLUMNS) + "\n100,10.0,3,1.5,9.0\n200,20.0,3,2.5,9.0\n")
    curve = CurveRecorder(str(tmp_path), every_s=0.0, resumed_from=200)
    curve.episode(4.0, 4)
    curve.maybe_write(200, force=True)  # reported before the first training step after the resume
    curve.episode(6.0, 6)
    curve.maybe_write(328)
    rows = read_curve(str(path))
    assert [(r["steps"], r["episodes"], r["mean_return"]) for r in rows] == [
        (100.0, 3.0, 1.5),
        (200.0, 3.0, 2.5),
        (328.0, 2.0, 5.0),
    ]
