"""The `pipeline` command: one subcommand per stage. The only package that parses arguments.

Each subcommand is generated from its stage's config dataclass (`pipeline/configs/`, through
`pipeline/cli/options.py`), builds that config from the parsed arguments and calls the stage's
function; the modules here only render results. Bad arguments, and user errors
(`PipelineError`) print as one line naming the cause and the fix, with exit code 2. So does a
full disk (ENOSPC/EDQUOT, also from inside a Ray worker), which any writing stage can meet: every
stage commits atomically, so the answer is always "free space, then re-run". The subcommands live
in one module per area (datasets, experts, model, publishing).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import NoReturn
from urllib.parse import urlparse

from rich.logging import RichHandler
from rich.markup import escape

from pipeline.cli.browse import _add_info, _add_view
from pipeline.cli.common import console, disk_full_cause
from pipeline.cli.datasets import _add_demo, _add_rollout, _add_submit, _add_tasks, _add_validate
from pipeline.cli.experts import _add_evaluate_experts, _add_import_experts, _add_train_experts
from pipeline.cli.hub_release import _add_publish_experts, _add_publish_model
from pipeline.cli.model import _add_convert_jat, _add_evaluate, _add_train_model
from pipeline.cli.options import VERBOSE_HELP
from pipeline.cli.publishing import _add_publish
from pipeline.cli.replay import _add_render, _add_replay
from pipeline.cli.report import _add_report
from pipeline.errors import PipelineError
from pipeline.runtime import noise

__all__ = ["build_parser", "main"]

log = logging.getLogger(__name__)

# The argument naming where each writing stage writes; how it continues after a failure is
# `--resume` where the stage has one, a plain re-run where re-running resumes by itself (publish).
_OUTPUT_ARG = {
    "rollout": "out",
    "train-experts": "out",
    "import-experts": "out",
    "train-model": "out",
    "publish": "to_folder",
    "evaluate": "out",
    "demo": "out",
    "render": "out",
    "publish-experts": "to_folder",
    "publish-model": "to_folder",
    "convert-jat": "out",
}
_RESUMABLE = {"rollout", "train-experts", "train-model", "import-experts"}


# --- main --------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as the pipeline's one line (cause, then where to look) and exit 2."""

    def error(self, message: str) -> NoReturn:
        match = re.fullmatch(r"argument (--[\w-]+|[\w-]+)(?:/\S+)?: (.*)", message, re.S)
        if match and match[2].startswith(match[1]):  # our own parsers name the flag already
            message = match[2]
        elif match:
            message = f"{match[1]}: {match[2]}"
        raise PipelineError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pipeline", description="jat-pipeline: build, validate and publish JAT-format datasets."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    for add in (
        _add_tasks,
        _add_rollout,
        _add_validate,
        _add_replay,
        _add_render,
        _add_report,
        _add_info,
        _add_view,
        _add_demo,
        _add_publish,
        _add_train_model,
        _add_evaluate,
        _add_convert_jat,
        _add_train_experts,
        _add_evaluate_experts,
        _add_import_experts,
        _add_publish_experts,
        _add_publish_model,
        _add_submit,
    ):
        add(sub)
    # `submit` checks the command it sends with this same parser (its module cannot import this one)
    parser.set_defaults(parse_command=parser.parse_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except PipelineError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    noise.set_verbose(args.verbose)
    noise.install()
    noise.take()  # this command's messages only (the tests call main() many times in one process)
    try:
        return _run(args)
    finally:
        _noise_summary()


def _noise_summary() -> None:
    """One line per kind of third-party message suppressed (`pipeline.runtime.noise`); before an error line,
    which stays the last one."""
    for line in noise.summary():
        console.print(line, markup=False, highlight=False)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.handler(args)
    except PipelineError as exc:
        _noise_summary()
        console.print(f"[red]error:[/] {escape(str(exc))}", markup=True, highlight=False)
        return 2
    except Exception as exc:
        full = disk_full_cause(exc)
        if full is None:
            raise
        log.debug("full disk", exc_info=exc)  # the traceback, with -v
        _noise_summary()
        console.print(f"[red]error:[/] {escape(disk_full_message(args, full))}", markup=True, highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted: nothing partial was committed; re-run the same command with --resume")
        return 130


def disk_full_message(args: argparse.Namespace, exc: OSError) -> str:
    """One line: the disk is full, where (the file if known, else the stage's output), and the fix."""
    path = exc.filename or _output_path(args)
    where = f" writing {path}" if path else " (the output or the temporary folder)"
    detail = " ".join(str(exc).split())  # pyarrow's text may span lines
    rerun = "re-run the same command"
    if args.subcommand in _RESUMABLE and getattr(args, "overwrite", False):
        rerun += " with --resume in place of --overwrite"
    elif args.subcommand in _RESUMABLE and not getattr(args, "resume", False):
        rerun += " with --resume"
    return f"disk full{where} ({detail}): free space there, then {rerun}; what was committed before is kept"


def _output_path(args: argparse.Namespace) -> str | None:
    """The stage's output when it is a local folder (a full remote store reports itself otherwise)."""
    value = getattr(args, _OUTPUT_ARG.get(args.subcommand, ""), None)
    if value is None and args.subcommand == "publish" and not args.repo_id:
        from pipeline.configs.publish import DEFAULT_FOLDER_SUFFIX

        value = args.data_dir.rstrip("/") + DEFAULT_FOLDER_SUFFIX
    if not isinstance(value, str) or urlparse(value).scheme not in ("", "file"):
        return None
    return value


if __name__ == "__main__":
    sys.exit(main())
