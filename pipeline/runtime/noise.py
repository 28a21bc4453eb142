"""Third-party noise, filtered where it is made and counted, so what a run prints is its own.

Libraries the pipeline drives print or log things a user cannot act on: minigrid prints
"Sampling rejected: ..." every time a BabyAI level redraws its room (774 of the 790 lines of a
BabyAI `--resume`), Ray warns at every start that token authentication is on, PyOpenGL logs that
its optional accelerator is missing, sample-factory raises `UserWarning`s about its own settings.
Each kind is recognised here, counted and dropped; the CLI ends with one line per kind
("minigrid: 774 'Sampling rejected' messages suppressed (--verbose shows them)"). With
`--verbose` they pass through as they come. The setting reaches Ray workers and the processes
libraries start through the environment (`JAT_PIPELINE_VERBOSE`), and the workers' counts reach
the driver through the executor (`take` there, `merge` here).

A new kind of noise gets one entry: a logger and message in `_LOGGED`, a package in `_WARNERS`,
or a patch like `quiet_minigrid` called where the library is first used. Processes a library
starts itself (sample-factory's learner) inherit `PYTHONWARNINGS` filters instead: their
warnings are dropped uncounted.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections import Counter
from typing import Any

__all__ = [
    "count",
    "install",
    "is_verbose",
    "merge",
    "quiet_ale",
    "quiet_minigrid",
    "set_verbose",
    "summary",
    "take",
]

VERBOSE_ENV = "JAT_PIPELINE_VERBOSE"
"""`1`: let third-party noise through (set by `pipeline --verbose`, inherited by workers)."""

_counts: Counter[tuple[str, str]] = Counter()  # (source, kind) -> messages dropped in this process
_lock = threading.Lock()

# (logger, source, kind, text that identifies the message)
_LOGGED = (
    ("ray._private.authentication.authentication_token_setup", "ray", "token authentication", "Token auth"),
    ("OpenGL.acceleratesupport", "PyOpenGL", "No OpenGL_accelerate", "OpenGL_accelerate"),
)
# packages whose UserWarnings are about their own internals (counted by category)
_WARNERS = {"sample_factory": "sample-factory"}
# the same warnings in the processes such a package starts itself (sample-factory's learner and
# rollout workers): dropped through PYTHONWARNINGS, which they inherit; those are not counted
_CHILD_FILTERS = ("ignore::UserWarning:sample_factory.algo.learning.learner",)


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def set_verbose(verbose: bool) -> None:
    """Let third-party noise through (or not), here and in every process started from here."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def count(source: str, kind: str, n: int = 1) -> None:
    with _lock:
        _counts[(source, kind)] += n


def take() -> dict[str, int]:
    """This process's counts since the last `take` ("source\\tkind" -> n), for the driver to merge."""
    with _lock:
        taken = {f"{source}\t{kind}": n for (source, kind), n in _counts.items()}
        _counts.clear()
    return taken


def merge(counts: dict[str, int] | None) -> None:
    """Add a worker's `take()`."""
    for key, n in (counts or {}).items():
        source, _, kind = key.partition("\t")
        count(source, kind, n)


def summary() -> list[str]:
    """One line per kind dropped in this run (workers' counts merged), then cleared."""
    lines = []
    for key, n in sorted(take().items()):
        source, _, kind = key.partition("\t")
        noun = "message" if n == 1 else "messages"
        lines.append(f"{source}: {n:,} '{kind}' {noun} suppressed (--verbose shows them)")
    return lines


class _Drop(logging.Filter):
    def __init__(self, source: str, kind: str, text: str) -> None:
        super().__init__()
        self.source, self.kind, self.text = source, kind, text

    def filter(self, record: logging.LogRecord) -> bool:
        if is_verbose() or self.text not in record.getMessage():
            return True
        count(self.source, self.kind)
        return False


def install() -> None:
    """Filter the known noise in this process (idempotent, and cheap: imports no library)."""
    if not is_verbose():
        inherited = [f for f in os.environ.get("PYTHONWARNINGS", "").split(",") if f]
        os.environ["PYTHONWARNINGS"] = ",".join(
            [*inherited, *(f for f in _CHILD_FILTERS if f not in inherited)]
        )
    for name, source, kind, text in _LOGGED:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) for f in logger.filters):
            logger.addFilter(_Drop(source, kind, text))
    if getattr(warnings.showwarning, "counts_noise", False):
        return
    shown = warnings.showwarning

    def showwarning(message: Any, category: type[Warning], filename: str, lineno: int, *rest: Any) -> None:
        package = next((p for p in _WARNERS if f"/{p}/" in filename.replace(os.sep, "/")), None)
        if package is None or is_verbose():
            shown(message, category, filename, lineno, *rest)
        else:
            count(_WARNERS[package], category.__name__)

    showwarning.counts_noise = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


def quiet_ale() -> None:
    """ale-py's emulator prints its banner ("A.L.E: Arcade Learning Environment ... [Powered by
    Stella]") from C++ on every ROM load: its logger is set to errors only (not counted: the lines are
    never made)."""
    import ale_py

    mode = ale_py.LoggerMode.Info if is_verbose() else ale_py.LoggerMode.Error
    ale_py.ALEInterface.setLoggerMode(mode)


def quiet_minigrid() -> None:
    """minigrid's BabyAI levels `print` each rejected room layout: count them instead."""
    from minigrid.envs.babyai.core import roomgrid_level

    if getattr(roomgrid_level, "print", None) is not None:
        return

    def minigrid_print(*args: Any, **kwargs: Any) -> None:
        first = str(args[0]) if args else ""
        kind = first.rstrip(":") if first.endswith(":") else None
        if kind is None or is_verbose():
            print(*args, **kwargs)
        else:
            count("minigrid", kind)

    roomgrid_level.print = minigrid_print  # the module's global `print`, its only output
