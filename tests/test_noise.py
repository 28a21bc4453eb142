"""Third-party noise is counted and summed up in one line per kind; `--verbose` shows it as it comes."""

from __future__ import annotations

import logging
import warnings

import pytest

from pipeline.cli import main
from pipeline.runtime import noise
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task

REJECTED_SEED = 3  # babyai-boss-level redraws its room once for this seed (minigrid 3.2.0)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv(noise.VERBOSE_ENV, "")  # recorded, so whatever main() sets is undone after the test
    monkeypatch.setenv("PYTHONWARNINGS", "")
    noise.take()
    yield
    noise.take()


def test_minigrid_rejections_are_counted_not_printed(capsys, monkeypatch):
    env = make_env(get_task("babyai-boss-level"))
    env.reset(seed=REJECTED_SEED)
    assert "Sampling rejected" not in capsys.readouterr().out
    assert noise.summary() == ["minigrid: 1 'Sampling rejected' message suppressed (--verbose shows them)"]
    monkeypatch.setenv(noise.VERBOSE_ENV, "1")
    env.reset(seed=REJECTED_SEED)
    assert capsys.readouterr().out.startswith("Sampling rejected: ")
    assert noise.summary() == []


def test_logged_and_warned_noise_is_counted(caplog):
    noise.install()
    with caplog.at_level(logging.INFO):
        logging.getLogger("OpenGL.acceleratesupport").info("No OpenGL_accelerate module loaded: %s", "x")
        logging.getLogger("OpenGL.acceleratesupport").info("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        noise.install()  # inside catch_warnings, which puts the original showwarning back on exit
        warnings.warn_explicit("internal", UserWarning, "/site-packages/sample_factory/algo/learner.py", 1)
        with pytest.warns(UserWarning, match="ours"):  # others' warnings pass
            warnings.warn_explicit("ours", UserWarning, "/work/pipeline/x.py", 1)
    assert noise.summary() == [
        "PyOpenGL: 1 'No OpenGL_accelerate' message suppressed (--verbose shows them)",
        "sample-factory: 1 'UserWarning' message suppressed (--verbose shows them)",
    ]
    assert "sample_factory.algo.learning.learner" in __import__("os").environ["PYTHONWARNINGS"]


@pytest.mark.ray
def test_ray_workers_counts_reach_the_summary_line(tmp_path, capsys):
    """A rollout on Ray workers: their minigrid messages end as one line of the driver's output."""
    argv = ["rollout", "--tasks", "babyai-boss-level", "--episodes", "40", "--out", str(tmp_path / "d")]
    assert main([*argv, "--workers", "2", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "Sampling rejected:" not in captured.out + captured.err
    summary = [line for line in captured.err.splitlines() if line.startswith("minigrid: ")]
    assert len(summary) == 1 and "'Sampling rejected' messages suppressed" in summary[0], captured.err


def test_the_cli_sums_noise_up_and_verbose_shows_it(tmp_path, capsys):
    """In this process (--workers 0): one line at the end; `rollout ... --verbose` prints each message."""
    argv = ["rollout", "--tasks", "babyai-boss-level", "--episodes", "40", "--workers", "0", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "quiet")]) == 0
    quiet = capsys.readouterr()
    assert "Sampling rejected:" not in quiet.out
    assert [line for line in quiet.err.splitlines() if line.startswith("minigrid: ")] == [
        "minigrid: 2 'Sampling rejected' messages suppressed (--verbose shows them)"
    ]
    assert main([*argv, "--out", str(tmp_path / "loud"), "--verbose"]) == 0
    loud = capsys.readouterr()
    assert loud.out.count("Sampling rejected: ") == 2 and "suppressed" not in loud.err


def test_the_atari_emulators_banner_is_not_printed(capfd, monkeypatch):
    """ale-py prints "A.L.E: Arcade Learning Environment ..." from C++ on every ROM load."""
    make_env(get_task("atari-breakout")).close()
    quiet = capfd.readouterr()
    assert "A.L.E" not in quiet.out + quiet.err
    monkeypatch.setenv(noise.VERBOSE_ENV, "1")
    make_env(get_task("atari-breakout")).close()
    loud = capfd.readouterr()
    assert "A.L.E: Arcade Learning Environment" in loud.out + loud.err
    monkeypatch.setenv(noise.VERBOSE_ENV, "")
    make_env(get_task("atari-breakout")).close()  # and quiet again for the tests after this one
