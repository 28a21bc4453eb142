"""CLI subcommand `publish`."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from pipeline.cli.common import csv_list
from pipeline.errors import PipelineError


# --- publish -----------------------------------------------------------------------------------
def _add_publish(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "publish",
        help="push validated configs to a Hub dataset repo (or a folder) with a dataset card",
        description="Validate, then upload configs in bounded commits with a generated card; re-running "
        "resumes and uploads only what is missing. Hub endpoint: HF_ENDPOINT; token: HF_TOKEN "
        "or `hf auth login`. Without --repo-id, writes the same layout to --to-folder.",
    )
    p.add_argument("dir", help="dataset folder or URI written by `pipeline rollout`")
    p.add_argument("--repo-id", help="Hub dataset repo ORG/NAME")
    p.add_argument(
        "--configs",
        type=csv_list,
        help="comma-separated configs (default: all); others on the target are kept",
    )
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to commit to (created from main if missing)")
    p.add_argument(
        "--to-folder", help="write the publishable layout here (default without --repo-id: DIR-publish)"
    )
    p.add_argument("--max-commit-files", type=int, default=100, help="files per commit (default 100)")
    p.add_argument(
        "--max-commit-mb", type=int, default=1024, help="MB of new files per commit (default 1024)"
    )
    p.add_argument("--no-xet", action="store_true", help="plain LFS upload (servers without Xet storage)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.set_defaults(handler=_cmd_publish)


def _cmd_publish(args: argparse.Namespace) -> int:
    from pipeline.publish import PublishConfig, publish

    if args.max_commit_mb < 1:
        raise PipelineError(f"--max-commit-mb must be at least 1, got {args.max_commit_mb}")
    summary = publish(
        PublishConfig(
            data_dir=args.dir,
            repo_id=args.repo_id,
            configs=tuple(args.configs or ()),
            private=args.private,
            revision=args.revision,
            to_folder=args.to_folder,
            max_commit_files=args.max_commit_files,
            max_commit_bytes=args.max_commit_mb * 1024 * 1024,
            xet=not args.no_xet,
            progress=not args.no_progress,
        )
    )
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
    return 0
