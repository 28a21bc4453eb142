"""The stages' configs: one frozen dataclass per subcommand, and every option declared once, there.

`pipeline/cli/options.py` generates each subcommand from its config: a field's type, default and
docstring become the option's type, default and help; `option(...)` adds only what a type cannot
say (another flag name, a positional argument, a parser for one token, a mutually exclusive group).
Each config checks its own values in `__post_init__`, so the Python API refuses what the CLI
refuses, with the same one-line message naming the flag.

The configs live apart from the stages, in modules that import no heavy library, so that
`pipeline <command> --help` answers at once; the stages import them from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import PipelineError

__all__ = ["Cli", "cli_of", "megabytes", "option", "positive"]


@dataclass(frozen=True)
class Cli:
    """How one config field appears on the command line, beyond what its type and default say."""

    flag: str | None = None
    """The flag, when not `--field-name` (a bool defaulting to True: `--no-field-name`)."""
    positional: bool = False
    """A positional argument (named by `metavar`), not a flag."""
    parse: Callable[[str], Any] | None = None
    """Turns one command-line token into the field's value (default: from the field's type)."""
    metavar: str | None = None
    """The value's name in the usage line."""
    repeat: bool = False
    """The flag may be given several times; a dict field collects (key, value) pairs."""
    group: str | None = None
    """Fields sharing a group name exclude each other on the command line."""
    remainder: bool = False
    """Takes every token after it, unparsed (a command to forward)."""
    default_text: str | None = None
    """The default as the help shows it, when the stored value reads badly (bytes shown as MB)."""
    hidden: bool = False
    """Set by code only (filled in from another option), never a flag."""
    negated: str | None = None
    """What the `--no-x` flag of a bool defaulting to True does (its help; the field's docstring says
    what True means, shown after it as what happens without the flag). Required for such a bool."""


def option(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **cli: Any) -> Any:
    """A dataclass field with a `Cli` record in its metadata (the field's docstring stays its help)."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"cli": Cli(**cli)})


def cli_of(field: dataclasses.Field) -> Cli:
    """The field's `Cli` record (an empty one for a plain field)."""
    return field.metadata.get("cli", Cli())


def positive(name: str, value: Any, *, zero: bool = False) -> None:
    """Refuse a value that is not a positive integer (or 0 with `zero`), naming the flag."""
    low = 0 if zero else 1
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
        kind = "0 or a positive integer" if zero else "a positive integer"
        raise PipelineError(f"--{name.replace('_', '-')} must be {kind}, got {value!r}")


def megabytes(text: str) -> int:
    """A size given in MB on the command line, stored in bytes."""
    return int(text) * 1024 * 1024
