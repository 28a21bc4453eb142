"""CLI subcommand `publish`."""

from __future__ import annotations

import argparse

from rich.console import Console

from pipeline.cli.options import add_config, config_from
from pipeline.configs.publish import PublishConfig


# --- publish -----------------------------------------------------------------------------------
def _add_publish(sub: argparse._SubParsersAction) -> None:
    add_config(sub, "publish", PublishConfig, _cmd_publish)


def _cmd_publish(args: argparse.Namespace) -> int:
    from pipeline.release.publish import publish

    summary = publish(config_from(PublishConfig, args))
    out = Console(soft_wrap=True)  # paths stay whole, for copying
    configs = ", ".join(summary.configs)
    megabytes = summary.uploaded_bytes / 1e6
    kept = f"{summary.unchanged_files} unchanged, {summary.deleted_files} deleted"
    if summary.hub:
        out.print(
            f"published {configs} to the Hub dataset {summary.target} in {summary.seconds:.1f} s",
            highlight=False,
        )
        out.print(
            f"{summary.uploaded_files} file(s) uploaded ({megabytes:.1f} MB, "
            f"{summary.throughput_mb_s:.1f} MB/s) in {summary.commits} commit(s); {kept}",
            highlight=False,
        )
    else:
        out.print(
            f"wrote {configs} to the folder {summary.target} in {summary.seconds:.1f} s", highlight=False
        )
        out.print(f"{summary.uploaded_files} file(s) written ({megabytes:.1f} MB); {kept}", highlight=False)
    out.print(f"the card lists {len(summary.card_configs)} config(s): {', '.join(summary.card_configs)}")
    if summary.tag:
        out.print(f"tag {summary.tag} names {summary.head}")
    return 0
