"""The suites, found by their files: `env_configs/<name>.yaml` (the tasks) + `pipeline/suites/<name>.py`.

The list of suites is the list of YAML files in `env_configs/` (`pipeline.tasks.registry.suite_names`);
a suite's module is imported the first time the suite is asked for, so listing suites or playing
one suite never imports the simulators of the others. Each suite module defines `SUITE`, an instance of its
`pipeline.suites.base.Suite` subclass, named as its file.
"""

from __future__ import annotations

import difflib
import importlib
from functools import cache
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError
from pipeline.tasks.registry import suite_names

if TYPE_CHECKING:
    from pipeline.suites.base import Suite


@cache
def get_suite(name: str) -> Suite:
    """The suite's code (imported on first use); one line naming the suites when `name` is none."""
    names = suite_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PipelineError(f"unknown suite {name!r}{hint} (the suites are {', '.join(names)})")
    try:
        module = importlib.import_module(f"pipeline.suites.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"pipeline.suites.{name}":
            raise
        raise PipelineError(
            f"env_configs/{name}.yaml declares a suite without its module pipeline/suites/{name}.py: add it"
        ) from None
    from pipeline.suites.base import Suite  # here: listing suites must not import pyarrow and datasets

    suite = getattr(module, "SUITE", None)
    if not isinstance(suite, Suite) or suite.name != name:
        raise PipelineError(f"pipeline/suites/{name}.py must define SUITE, a Suite named {name!r}")
    return suite


def suite_packages() -> tuple[str, ...]:
    """The distributions whose versions decide some suite's episodes (`Suite.packages`), each once."""
    return tuple(dict.fromkeys(p for name in suite_names() for p in get_suite(name).packages))
