"""The executor (pipeline/runtime/executor.py): its serial mode, its address check and its work queue.

Its Ray paths (actors lost, nodes lost, placement timeouts) are tested with real clusters in
test_fault_tolerance.py, test_multinode.py, test_crash_points.py and test_gpu_requests.py.
"""

from __future__ import annotations

import itertools
import socket
import time

import pytest

from pipeline.configs.datasets import ValidateConfig
from pipeline.errors import PipelineError
from pipeline.runtime.executor import check_ray_address, run_streaming


class Doubler:
    """A worker whose units are numbers: it yields the number, then its double."""

    def __init__(self) -> None:
        self.calls = 0

    def work(self, unit: int):
        self.calls += 1
        yield unit
        yield 2 * unit


def test_serial_mode_streams_every_item_and_runs_follow_up_units_in_this_process():
    seen: list[int] = []
    workers: list[Doubler] = []

    def factory() -> Doubler:
        workers.append(Doubler())
        return workers[-1]

    def on_item(item: int) -> list[int]:
        seen.append(item)
        return [item + 100] if item == 1 else []  # a follow-up unit, e.g. the next round

    run_streaming(factory, "work", [1, 2], on_item, workers=0)
    assert seen == [1, 2, 2, 4, 101, 202]  # follow-ups queue behind the units already there
    assert len(workers) == 1 and workers[0].calls == 3  # one worker, built once


def test_a_unit_that_raises_stops_the_run_with_its_error():
    class Broken:
        def work(self, unit: int):
            yield unit
            raise ValueError(f"unit {unit} is bad")

    with pytest.raises(ValueError, match="unit 7 is bad"):
        run_streaming(Broken, "work", [7], lambda item: [], workers=0)


@pytest.mark.parametrize("address", ["nohost", "host:port", "ray://host:"])
def test_an_address_that_is_not_host_port_is_refused(address):
    with pytest.raises(PipelineError, match="is not host:port"):
        check_ray_address(address)


def test_an_address_where_nothing_listens_is_refused_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(PipelineError, match=rf"no Ray cluster at 127\.0\.0\.1:{port} .*ray start --head"):
        check_ray_address(f"127.0.0.1:{port}")
    assert time.monotonic() - started < 10  # refused, not retried


def test_an_address_where_something_listens_passes_and_ray_words_are_left_to_ray():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_ray_address(f"127.0.0.1:{server.getsockname()[1]}")
        check_ray_address(f"ray://127.0.0.1:{server.getsockname()[1]}")
    check_ray_address("auto")
    check_ray_address("local")


@pytest.mark.ray
def test_a_stale_cluster_file_does_not_capture_a_local_run(tmp_path):
    """A `ray start` that crashed leaves `ray_current_cluster` behind; a local run must not attach to it."""
    import os
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from pipeline.checks.validate import validate

    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # Ray's socket paths must stay short
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text("127.0.0.1:1\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": str(ray_tmp)}
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "pipeline.cli", "rollout", "--tasks", "babyai-go-to", "--episodes", "4"]
    result = subprocess.run(
        [*cmd, "--workers", "1", "--out", str(out), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert validate(ValidateConfig(str(out))).ok


@pytest.mark.slow
def test_a_local_ray_that_cannot_start_is_one_line(tmp_path):
    """Its GCS port taken (RAY_GCS_SERVER_PORT, Ray's own setting), the local cluster cannot start:
    one line, the run's last, exit 2, nothing written. Ray's messages span lines (it quotes its log
    files), and a node that does not come up in 30 s (seen at load 48 on 2 cores) raises a bare
    `Exception`, which was a traceback with exit 1: both are one line now."""
    import os
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["RAY_GCS_SERVER_PORT"] = str(taken.getsockname()[1])
        out = tmp_path / "data"
        cmd = [sys.executable, "-m", "pipeline.cli", "rollout", "--tasks", "babyai-go-to", "--episodes", "2"]
        result = subprocess.run(
            [*cmd, "--workers", "1", "--out", str(out), "--no-progress"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
            check=False,
        )
    last = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 2, result.stdout[-2000:]
    assert last.startswith("error: cannot start or reach Ray at a local cluster: "), result.stdout[-2000:]
    assert "Traceback" not in result.stdout
    assert not out.exists() or not any(out.glob("data/**/*.parquet"))


def _timed(job: int, report) -> tuple[int, float, float]:
    """A Ray task that reports, then holds its CPU briefly: (job, start, end) on the node's clock."""
    start = time.monotonic()
    report(job)
    time.sleep(0.3)
    return job, start, time.monotonic()


@pytest.mark.ray
def test_run_tasks_keeps_at_most_max_running_tasks_in_flight(ray_cluster):
    """`train-experts --workers 1` on a 2-CPU cluster: each task starts only after the last one ended."""
    import sys

    from ray import cloudpickle

    from pipeline.runtime.executor_tasks import TaskRequest, run_tasks

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    progress: list[int] = []
    jobs = [(TaskRequest(f"t{i}", 1, 0), i) for i in range(3)]
    results = run_tasks(_timed, jobs, progress.append, on_failure=lambda r, e: None, max_running=1)
    spans = sorted((start, end) for _, start, end in results)
    assert sorted(job for job, _, _ in results) == [0, 1, 2]
    assert all(later[0] >= earlier[1] for earlier, later in itertools.pairwise(spans)), spans
    assert set(progress) <= {0, 1, 2}


def _dies_until(job: tuple[int, int], report) -> int:
    """A Ray task whose worker process dies (SIGKILL, as the kernel's OOM killer or a lost node would
    end it) while `attempt < survives_at`; then it returns the attempt that survived."""
    import os
    import signal

    attempt, survives_at = job
    if attempt < survives_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return attempt


def _raises(job, report):
    raise ValueError(f"job {job} is wrong")


@pytest.mark.ray
def test_run_tasks_runs_a_lost_task_again_as_on_lost_says_and_at_most_retries_times(ray_cluster):
    import sys

    from ray import cloudpickle

    from pipeline.runtime.executor_tasks import TaskRequest, is_lost, run_tasks

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    lost: list[tuple[str, tuple[int, int], str]] = []
    failures: list[tuple[str, Exception]] = []

    def on_lost(request, job, exc):
        lost.append((request.key, job, type(exc).__name__))
        return (job[0] + 1, job[1])  # the next attempt, as train-experts resumes the plan

    def on_failure(request, exc):
        failures.append((request.key, exc))
        return f"{request.key} failed"

    jobs = [(TaskRequest("survives", 1), (0, 2)), (TaskRequest("keeps-dying", 1), (0, 99))]
    results = run_tasks(_dies_until, jobs, lambda p: None, on_failure, on_lost=on_lost, retries=2)
    assert sorted(map(str, results)) == ["2", "keeps-dying failed"]  # the survivor's third attempt
    assert [(k, j) for k, j, _ in lost if k == "survives"] == [("survives", (0, 2)), ("survives", (1, 2))]
    assert [j for k, j, _ in lost if k == "keeps-dying"] == [(0, 99), (1, 99)]  # then no more retries
    assert {name for _, _, name in lost} == {"WorkerCrashedError"}
    assert [k for k, _ in failures] == ["keeps-dying"] and is_lost(failures[0][1])

    # an exception of the task's own code is its failure: never run again
    lost.clear()
    failures.clear()
    results = run_tasks(
        _raises, [(TaskRequest("wrong", 1), 7)], lambda p: None, on_failure, on_lost=on_lost, retries=2
    )
    assert results == ["wrong failed"] and lost == []
    assert not is_lost(failures[0][1]) and "job 7 is wrong" in str(failures[0][1])
