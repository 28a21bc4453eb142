"""CLI subcommand `publish`."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from pipeline.cli.options import add_config, config_from
from pipeline.configs.publish import PublishConfig


# --- publish -----------------------------------------------------------------------------------
def _add_publish(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "publish", PublishConfig, _cmd_publish)


def _cmd_publish(args: argparse.Namespace) -> int:
    from pipeline.publish import publish

    summary = publish(config_from(PublishConfig, args))
    table = Table(title=f"publish → {summary.target} ({summary.seconds:.1f} s)")
    for column in ("configs published", "files uploaded", "MB", "MB/s", "unchanged", "deleted", "commits"):
        table.add_column(column)
    table.add_row(
        ", ".join(summary.configs),
        str(summary.uploaded_files),
        f"{summary.uploaded_bytes / 1e6:.1f}",
        f"{summary.throughput_mb_s:.1f}",
        str(summary.unchanged_files),
        str(summary.deleted_files),
        str(summary.commits),
    )
    out = Console(soft_wrap=True)
    out.print(table)
    out.print(f"the card lists {len(summary.card_configs)} config(s): {', '.join(summary.card_configs)}")
    if summary.tag:
        out.print(f"tag {summary.tag} names {summary.head}")
    return 0
