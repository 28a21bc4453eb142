"""`pipeline.runtime.faults`: named crash points, armed by JAT_PIPELINE_FAULTS in the process that reads it.

Each case runs a real Python process (the variable is read at import), which reaches crash points
and prints as it goes: a crash is the process's own SIGKILL, so nothing after it is printed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from pipeline.runtime import faults

SCRIPT = """
import sys
from pipeline.runtime import faults
print("active", faults.active(), flush=True)
for i in range(1, 5):
    for point in sys.argv[1:]:
        faults.hit(point, crash=(lambda: print("callback", flush=True)) if point == "soft" else None)
        print(point, i, flush=True)
"""


def _run(spec: str | None, *points: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != faults.FAULTS_ENV}
    if spec is not None:
        env[faults.FAULTS_ENV] = spec
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *points], env=env, capture_output=True, text=True, timeout=60
    )


def test_nothing_is_armed_without_the_variable():
    assert not faults.active()  # the test process itself runs without crash points
    faults.hit("storage.commit")  # a no-op
    result = _run(None, "storage.commit")
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["active False", *(f"storage.commit {i}" for i in range(1, 5))]


def test_the_process_kills_itself_at_the_nth_hit_of_the_armed_point():
    result = _run("unit.record_written=3", "other", "unit.record_written")
    assert result.returncode == -signal.SIGKILL
    assert result.stdout.splitlines() == [
        "active True",
        "other 1",
        "unit.record_written 1",
        "other 2",
        "unit.record_written 2",
        "other 3",  # the third hit never returns
    ]


def test_several_points_entries_and_spaces():
    result = _run(" a=9 , b=2,", "a", "b")
    assert result.returncode == -signal.SIGKILL
    assert result.stdout.splitlines()[-2:] == ["b 1", "a 2"]


def test_a_point_without_a_count_crashes_at_its_first_hit():
    result = _run("a=", "a")
    assert result.returncode == -signal.SIGKILL and result.stdout.splitlines() == ["active True"]


def test_a_crash_callback_replaces_the_kill():
    result = _run("soft=2", "soft")
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["active True", "soft 1", "callback", "soft 2", "soft 3", "soft 4"]


def test_a_marker_lets_only_the_first_process_crash(tmp_path):
    marker = tmp_path / "claimed"
    first = _run(f"p=2@{marker}", "p")
    assert first.returncode == -signal.SIGKILL and first.stdout.splitlines() == ["active True", "p 1"]
    assert marker.exists()
    second = _run(f"p=2@{marker}", "p")  # a replacement reaching the point again goes on
    assert second.returncode == 0 and second.stdout.splitlines()[-1] == "p 4"


def test_an_empty_marker_is_no_marker():
    result = _run("p=1@", "p")
    assert result.returncode == -signal.SIGKILL and result.stdout.splitlines() == ["active True"]


def test_a_count_that_is_not_a_number_fails_the_process_at_import():
    result = _run("p=x", "p")
    assert result.returncode == 1 and result.stdout == ""
    assert "invalid literal for int() with base 10: 'x'" in result.stderr
