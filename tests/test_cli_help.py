"""Every option of every subcommand says what it does in `--help`, and --help stays fast."""

from __future__ import annotations

import argparse
import subprocess
import sys

from pipeline.cli import build_parser


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_option_has_help():
    missing = [
        f"{name} {'/'.join(action.option_strings)}"
        for name, parser in _subcommands().items()
        for action in parser._actions
        if action.option_strings and not action.help
    ]
    assert not missing, f"options without help: {missing}"


def test_model_flags_named_in_errors_exist():
    """train-model's own checks name its flags: each must be one the parser knows."""
    options = {o for action in _subcommands()["train-model"]._actions for o in action.option_strings}
    assert {"--lr", "--weight-decay", "--grad-clip"} <= options


def test_help_imports_no_heavy_library():
    """`pipeline --help` and every subcommand's --help import no heavy library (seconds on every call)."""
    code = "import sys; from pipeline.cli import build_parser; build_parser(); print(sorted(sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    heavy = [m for m in ("torch", "ray", "datasets", "gymnasium", "pyarrow", "numpy") if f"'{m}'" in loaded]
    assert not heavy, f"building the CLI imports {heavy}"
