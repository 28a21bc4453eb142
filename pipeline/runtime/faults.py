"""Named crash points, so that every "what if the process dies right here" is a test, not a race.

Writing code marks the moments a crash matters (`hit("unit.record_written")`, every storage
write, the driver receiving a unit's result). In production nothing is set and `hit` is one
dict lookup. Tests and `benchmarks/chaos.py` set `JAT_PIPELINE_FAULTS`, a comma-separated
list of `point=N` (crash at the N-th time this process reaches `point`) or `point=N@MARKER`
(the same, but only the first process to get there crashes: it claims the marker file, so a
replacement actor reaching the point again goes on). A crash is SIGKILL, the process's own:
no `finally`, no flush, exactly what a lost machine looks like to the files it was writing.

The variable is read by every process that imports this module (Ray workers inherit it from
the driver through the executor's runtime environment), each counting its own hits.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

FAULTS_ENV = "JAT_PIPELINE_FAULTS"
_counts: dict[str, int] = {}


def _parse(spec: str) -> dict[str, tuple[int, str | None]]:
    faults: dict[str, tuple[int, str | None]] = {}
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        point, _, rest = entry.partition("=")
        count, _, marker = rest.partition("@")
        faults[point] = (int(count or 1), marker or None)
    return faults


_faults = _parse(os.environ.get(FAULTS_ENV, ""))


def active() -> bool:
    """Whether any crash point is armed in this process."""
    return bool(_faults)


def _claim(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def hit(point: str, crash: Callable[[], None] | None = None) -> None:
    """Reach `point`; if it is armed for this hit, crash (SIGKILL ourselves, or call `crash`)."""
    if not _faults or point not in _faults:
        return
    _counts[point] = _counts.get(point, 0) + 1
    count, marker = _faults[point]
    if _counts[point] != count or (marker is not None and not _claim(marker)):
        return
    if crash is not None:
        crash()
        return
    os.kill(os.getpid(), signal.SIGKILL)
