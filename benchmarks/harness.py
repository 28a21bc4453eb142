"""What the benchmark scripts share: the repository's paths, the tests' servers on `sys.path`, the
`pipeline` CLI as a subprocess, child processes that answer with one JSON line, CPU and memory
readings, how results are printed (spreads, numbers, sizes, the rich console, JSON files) and the
Jinja environment of generated Markdown (benchmarks/templates/).

The scripts run as `python benchmarks/NAME.py`, so this folder is first on `sys.path` and
`import harness` finds this module. It imports only the standard library at import time:
jat_throughput_child.py runs under JAT's own venv, which has neither rich, psutil nor jinja2 (each is
imported where it is used).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
"""The repository: the benchmarks run from its root with its packages importable."""
TEMPLATES = Path(__file__).resolve().parent / "templates"
"""Jinja templates of the Markdown the benchmarks write (`markdown_environment`)."""


# ------------------------------------------------------------------------------------------ paths


def import_from_tests(*subfolders: str) -> None:
    """Put tests/ (and `tests/<subfolder>` for each one given) first on `sys.path`, for the tests' own
    servers and helpers (tests/hub_server.py, tests/publish_helpers.py, ...), which are no package."""
    folders = [str(ROOT / "tests"), *(str(ROOT / "tests" / sub) for sub in subfolders)]
    sys.path[:0] = [folder for folder in folders if folder not in sys.path]


@contextlib.contextmanager
def local_ray(prefix: str, num_cpus: int) -> Iterator[str]:
    """A scratch folder (yielded) holding a private local Ray cluster started with `num_cpus`
    (`pipeline.runtime.executor.init_ray`, outside any timing), for the `with` block; on the way out Ray is
    shut down before its folder is removed, as it writes there until then."""
    scratch = tempfile.mkdtemp(prefix=prefix)
    try:
        private_ray(os.path.join(scratch, "ray"))
        from pipeline.runtime.executor import init_ray

        init_ray(num_cpus=num_cpus)
        yield scratch
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)


def private_ray(tmpdir: str, force: bool = False) -> None:
    """Make the Ray cluster this process (or a child) starts a private one under `tmpdir`, never a
    shared one; `force` also overrides a RAY_TMPDIR or RAY_ADDRESS set in the environment."""
    if force:
        os.environ["RAY_TMPDIR"] = tmpdir
        os.environ.pop("RAY_ADDRESS", None)
    else:
        os.environ.setdefault("RAY_TMPDIR", tmpdir)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


# -------------------------------------------------------------------------------------- processes


def cli_command(*argv: str) -> list[str]:
    """`python -m pipeline.cli ARGV...` with this interpreter: the CLI of the tree being measured."""
    return [sys.executable, "-m", "pipeline.cli", *argv]


def last_json_line(stdout: str) -> dict[str, Any] | None:
    """A child's answer: the last line of its output that is a JSON object (None if it printed none)."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def children_cpu() -> float:
    """CPU seconds (user + system) of the children this process has waited for, and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class TreeCPU:
    """CPU seconds (user + system) of this process's descendants (and of itself, `include_self`),
    sampled by pid every `interval` seconds from creation until `total()`: a descendant that exits
    between two samples loses at most one interval."""

    def __init__(self, include_self: bool = True, interval: float = 0.5) -> None:
        import psutil

        self.root, self.include_self, self.interval = psutil.Process(), include_self, interval
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        processes = self.root.children(recursive=True)
        for process in [self.root, *processes] if self.include_self else processes:
            try:
                times = process.cpu_times()
            except Exception:  # exited meanwhile
                continue
            self.seen[process.pid] = max(self.seen.get(process.pid, 0.0), times.user + times.system)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def total(self) -> float:
        """Stop sampling; the CPU seconds of every process seen."""
        self._stop.set()
        self._thread.join()
        self._sample()
        return sum(self.seen.values())


def rss_mb() -> float:
    """This process's resident set now, in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MiB (`ru_maxrss` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------- results


def spread(values: Iterable[float | None], digits: int = 1) -> str:
    """Median [min-max] of the finite values ("-" if none, the value alone if one)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "-"
    median = statistics.median(finite)
    if len(finite) == 1:
        return f"{median:,.{digits}f}"
    return f"{median:,.{digits}f} [{min(finite):,.{digits}f}-{max(finite):,.{digits}f}]"


def number(value: Any, digits: int = 0) -> str:
    """A figure with thousands separators; "-" for a missing (None or NaN) one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


SIZE_UNITS = (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3))


def size(num_bytes: float, largest: str = "TB", smallest: str = "MB") -> str:
    """Bytes in the largest decimal unit from `largest` down to `smallest` they fill, else in bytes."""
    names = [name for name, _ in SIZE_UNITS]
    for unit, scale in SIZE_UNITS[names.index(largest) : names.index(smallest) + 1]:
        if num_bytes >= scale:
            return f"{num_bytes / scale:,.2f} {unit}"
    return f"{num_bytes:,.0f} B"


def make_console(width: int = 160):
    """A rich console as wide as the terminal, or `width` columns when the output is not one (a log)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else width)


def write_json(path: str | Path, data: Any, indent: int | None = 1) -> None:
    """The raw figures as a JSON file (values JSON does not know, such as paths, as strings)."""
    Path(path).write_text(json.dumps(data, indent=indent, default=str) + "\n")


def markdown_environment():
    """Jinja for generated Markdown: the project cards' environment (`pipeline.release.card.card_environment`:
    strict, no escaping, block tags take their line with them) loading benchmarks/templates/, with
    the filters `number`, `size` and `fmt` (Python's `format(value, spec)`) added."""
    import jinja2

    from pipeline.release.card import card_environment

    env = card_environment().overlay(loader=jinja2.FileSystemLoader(TEMPLATES))
    env.filters.update(number=number, size=size, fmt=format)
    return env
