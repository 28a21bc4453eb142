"""What every CLI module shares: the console user errors go to, and small argument types."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True, soft_wrap=True)


def csv_list(value: str) -> list[str]:
    """`--tasks a,b` → ["a", "b"]."""
    return [v.strip() for v in value.split(",") if v.strip()]


def fmt_number(value: float | None, digits: int = 2) -> str:
    """A table cell: "-" for a missing value."""
    return "-" if value is None else f"{value:.{digits}f}"
