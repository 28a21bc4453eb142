"""The one table style of the command line: rich's simple head, no edges, one space between columns.

Every table a stage or subcommand prints (rollout, report, info, the expert stages, publishing, the
demo) is built here, so they fit 80 columns the same way and look alike.
"""

from __future__ import annotations

from rich import box
from rich.table import Table


def narrow_table(title: str | None = None) -> Table:
    """An empty table in that style, titled on the left."""
    return Table(
        title=title,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        title_justify="left",
    )
