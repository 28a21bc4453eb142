"""Generate a subcommand's options from its stage's config dataclass (`pipeline.configs`).

A field becomes one option: its type gives the parser (int, float, str; a tuple of str is a
comma-separated list; a `Literal` gives the choices; a bool is a switch, `--no-x` when it defaults
to True), its default the default, and its docstring the help, with the default appended. A
`--no-x` flag's help is its `Cli.negated` text (what the flag does), then the docstring as what
happens by default. What a type cannot say comes from the field's `Cli` record.
`config_from(cls, args)` builds the config back from the parsed arguments, so each option is
declared once, in the config, and the config's own checks run on the values as given. The same
idea as tyro or LeRobot's draccus, small enough to keep argparse (and with it `pipeline submit`'s
check of the command it forwards).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import itertools
import textwrap
import types
import typing
from functools import cache
from typing import Any

from pipeline.configs import Cli, cli_of

__all__ = ["VERBOSE_HELP", "add_config", "config_from", "csv_list", "field_docs"]


def csv_list(value: str) -> list[str]:
    """`--tasks a,b` → ["a", "b"]."""
    return [v.strip() for v in value.split(",") if v.strip()]


def integer(text: str) -> int:
    """An int option's token, with a message that says what was expected."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def number(text: str) -> float:
    """A float option's token, with a message that says what was expected."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number such as 0.5, got {text!r}") from None


PARSERS = {int: integer, float: number, str: str}
VERBOSE_HELP = (
    "Debug logging, and the messages of the libraries underneath shown as they come (by default each "
    "kind is counted and summed up in one line at the end)"
)


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal right below it in the class body), one line."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _summary(cls: type) -> tuple[str, str]:
    """(one-line help, description) from the config's class docstring: its first paragraph, the rest."""
    first, _, rest = inspect.cleandoc(cls.__doc__ or "").partition("\n\n")
    return " ".join(first.split()).rstrip("."), rest or first


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type inside Optional[...], whether None was allowed)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def _flag(field: dataclasses.Field, cli: Cli) -> str:
    if cli.flag:
        return cli.flag
    name = field.name.replace("_", "-")
    return f"--no-{name}" if field.default is True else f"--{name}"


def _help(field: dataclasses.Field, cli: Cli, doc: str) -> str:
    if not doc:
        raise TypeError(f"config field {field.name!r} has no docstring: it is the option's help")
    if field.default is True:  # `--no-x`: say what the flag does, then what happens without it
        if not cli.negated:
            raise TypeError(
                f"config field {field.name!r}: give option(True, negated=...), the help of --no-x"
            )
        first = doc.split(" ", 1)[0]
        doc = doc[0].lower() + doc[1:] if first[1:] == first[1:].lower() else doc  # not "JAT", "MuJoCo"
        return f"{cli.negated.rstrip('.')}. By default: {doc}".replace("%", "%%")
    default = cli.default_text if cli.default_text is not None else field.default
    shown = default not in (None, False, True, (), dataclasses.MISSING, "")
    if shown and "default" not in doc.lower():
        doc = f"{doc.rstrip('.')} (default: {default})."
    return doc.replace("%", "%%")  # argparse formats help with %


def add_config(
    sub: argparse._SubParsersAction, name: str, cls: type, handler: Any
) -> argparse.ArgumentParser:
    """Add subcommand `name` with one option per (non-hidden) field of config class `cls`."""
    help_line, description = _summary(cls)
    parser = sub.add_parser(name, help=help_line, description=description)
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for field in dataclasses.fields(cls):
        cli = cli_of(field)
        if cli.hidden:
            continue
        target: Any = parser
        if cli.group:
            if cli.group not in groups:
                groups[cli.group] = parser.add_mutually_exclusive_group()
            target = groups[cli.group]
        kind, _ = _unwrap(hints[field.name])
        kwargs: dict[str, Any] = {"help": _help(field, cli, docs.get(field.name, ""))}
        if cli.remainder:
            target.add_argument(field.name, nargs=argparse.REMAINDER, metavar=cli.metavar, **kwargs)
            continue
        if kind is bool:
            action = "store_false" if field.default is True else "store_true"
            target.add_argument(_flag(field, cli), dest=field.name, action=action, **kwargs)
            continue
        origin = typing.get_origin(kind)
        if origin is typing.Literal:
            kwargs["choices"] = typing.get_args(kind)
        elif cli.parse is not None:
            kwargs["type"] = cli.parse
        elif origin is tuple:
            kwargs["type"] = csv_list
        elif kind in PARSERS:
            kwargs["type"] = PARSERS[kind]
        else:
            raise TypeError(f"config field {cls.__name__}.{field.name}: give option(parse=...) for {kind}")
        if cli.repeat:
            kwargs.update(action="append", default=[])
        elif field.default is not dataclasses.MISSING:
            kwargs["default"] = field.default
        kwargs["metavar"] = cli.metavar
        if cli.positional:
            target.add_argument(field.name, **kwargs)
        else:
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            target.add_argument(_flag(field, cli), dest=field.name, required=required, **kwargs)
    # not a config field: how much the process prints, the same flag as `pipeline --verbose COMMAND`
    parser.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    parser.set_defaults(handler=handler, config_class=cls)
    return parser


def config_from(cls: type, args: argparse.Namespace) -> Any:
    """The config of class `cls` from parsed arguments: lists become tuples, repeated pairs a dict."""
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        if cli_of(field).hidden:
            continue
        value = getattr(args, field.name)
        kind, _ = _unwrap(hints[field.name])
        origin = typing.get_origin(kind) or kind
        if isinstance(value, list):
            value = dict(value) if origin is dict else tuple(value)
        values[field.name] = value
    return cls(**values)
