"""Every option of every subcommand says what it does in `--help`, and --help stays fast."""

from __future__ import annotations

import argparse
import subprocess
import sys

from pipeline.cli import build_parser
from pipeline.cli.options import field_docs


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


def test_every_option_says_what_it_does_negated_flags_too():
    """The help of `--no-x` starts with what `--no-x` does, not with what the field means when True
    (it read "--no-wait  Follow the job's logs until it ends"); no help describes another flag first."""
    backwards = []
    for name, parser in _subcommands().items():
        docs = field_docs(parser.get_default("config_class"))
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "verbose"):
                continue
            flag, text = action.option_strings[0], " ".join(action.help.split())
            own = docs[action.dest]
            if flag.startswith("--no-"):
                assert isinstance(action, argparse._StoreFalseAction), f"{name} {flag}"
                first_sentence = own.split(".")[0].split(";")[0]
                if text.lower().startswith(first_sentence.lower()) or "By default: " not in text:
                    backwards.append(f"{name} {flag}: {text}")
            elif f"{flag}:" in text or f"; {flag} " in text:  # a flag's help names itself as an aside
                backwards.append(f"{name} {flag}: {text}")
    assert not backwards, "help that reads backwards:\n" + "\n".join(backwards)


def test_negated_help_as_printed():
    """What a user reads at 80 columns: the flag, what it does, then the default."""
    text = " ".join(_subcommands()["submit"].format_help().split())
    assert "--no-wait Return as soon as the job is submitted, printing its id. By default: follow" in text


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
