"""The `pipeline` command: one subcommand per stage. The only package that parses arguments.

Each subcommand builds the stage's typed config and calls the stage's function; user errors
(`PipelineError`) print as one line naming the cause and the fix, with exit code 2. The
subcommands live in one module per area (datasets, experts, model, publishing).
"""

from __future__ import annotations

import argparse
import logging
import sys

from rich.logging import RichHandler

from pipeline.cli.common import console
from pipeline.cli.datasets import _add_demo, _add_rollout, _add_submit, _add_tasks, _add_validate
from pipeline.cli.experts import _add_evaluate_experts, _add_train_experts
from pipeline.cli.model import _add_evaluate, _add_train_model
from pipeline.cli.publishing import _add_publish
from pipeline.errors import PipelineError

__all__ = ["build_parser", "main"]


# --- main --------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pipeline", description="jat-pipeline: build, validate and publish JAT-format datasets."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (
        _add_tasks,
        _add_rollout,
        _add_validate,
        _add_demo,
        _add_publish,
        _add_train_model,
        _add_evaluate,
        _add_train_experts,
        _add_evaluate_experts,
        _add_submit,
    ):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    try:
        return args.handler(args)
    except PipelineError as exc:
        console.print(f"[red]error:[/] {exc}", markup=True, highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted: nothing partial was committed; re-run the same command with --resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
