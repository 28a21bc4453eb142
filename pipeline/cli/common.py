"""What every CLI module shares: the console user errors go to, small argument types, and telling a
full disk apart from other failures."""

from __future__ import annotations

import errno

from rich.console import Console

console = Console(stderr=True, soft_wrap=True)


def fmt_number(value: float | None, digits: int = 2) -> str:
    """A table cell: "-" for a missing value."""
    return "-" if value is None else f"{value:.{digits}f}"


# --- a full disk -------------------------------------------------------------------------------
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# pyarrow and some libraries report a full disk only in the message (errno unset); match it there too.
DISK_FULL_TEXTS = ("no space left on device", "disk quota exceeded")


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The full-disk `OSError` (ENOSPC, EDQUOT) behind `exc`, or None if the failure is something else.

    The error may come wrapped: a Ray worker's exception reaches the driver as a `RayTaskError`
    whose `cause` is the worker's own exception, and libraries re-raise with `from`; so the whole
    chain is searched (`cause`, `__cause__`, `__context__`). An error raised while handling a full
    disk (a cleanup that could not write either) counts as the full disk too.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and _is_disk_full(current):
            cause = getattr(current, "cause", None)  # a RayTaskError(OSError): report the worker's own error
            return cause if isinstance(cause, OSError) and _is_disk_full(cause) else current
        for linked in (getattr(current, "cause", None), current.__cause__, current.__context__):
            if isinstance(linked, BaseException):
                pending.append(linked)
    return None


def _is_disk_full(exc: OSError) -> bool:
    if exc.errno in DISK_FULL_ERRNOS:
        return True
    text = " ".join(str(a) for a in exc.args).lower()
    return any(t in text for t in DISK_FULL_TEXTS)
