"""Imports flow one way: core -> experts -> stages -> CLI, with no cycle, also inside functions.

A lazy import inside a function hides a cycle from Python but not from a reader: these tests read
every `import` of the package's modules (module level and function level alike) from their source.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LAYER_OF_PACKAGE = {
    "pipeline.format": "core",
    "pipeline.tasks": "core",
    "pipeline.suites": "core",
    "pipeline.runtime": "core",
    "pipeline.configs": "core",
    "experts": "experts",
    "pipeline.rollout": "stages",
    "pipeline.checks": "stages",
    "pipeline.report": "stages",
    "pipeline.release": "stages",
    "pipeline.browse": "stages",
    "pipeline.expert_stages": "stages",
    "pipeline.model": "stages",
    "pipeline.cli": "cli",
}
"""The layers are folders. core: the dataset's format, the tasks (registry, envs, the policy interface,
the episode loop), the suites (everything that differs between suites), the runtime (storage, the
executors that own Ray) and the stages' configs (the typed interface the CLI and the Python API
share): what every stage and the expert backends stand on. experts: the expert backends. stages:
rollout, checks, reports, release, browsing, the expert stages and the model. cli: the command line."""
TOP_LEVEL = {"pipeline": "core", "pipeline.errors": "core", "pipeline.dataset": "stages"}
"""The few modules directly in pipeline/: the package, its one exception type, and the episode API
users import (`pipeline.dataset.open_dataset`)."""
LAYERS = ("core", "experts", "stages", "cli")


def layer(module: str) -> str:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    for package, name in LAYER_OF_PACKAGE.items():
        if module == package or module.startswith(package + "."):
            return name
    raise AssertionError(f"{module} is in no layer's folder: put it in one (LAYER_OF_PACKAGE)")


def modules() -> dict[str, Path]:
    found = {}
    for package in ("pipeline", "experts"):
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules `name` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_import_goes_to_the_same_layer_or_below():
    upward = [
        f"{m} ({layer(m)}) imports {d} ({layer(d)})"
        for m, deps in sorted(graph().items())
        for d in sorted(deps)
        if LAYERS.index(layer(d)) > LAYERS.index(layer(m))
    ]
    assert not upward, "imports must flow core -> experts -> stages -> cli:\n" + "\n".join(upward)


def test_no_import_cycle_even_through_function_level_imports():
    g = graph()
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_every_module_lives_in_a_layers_folder():
    """The tree shows the architecture: no module of pipeline/ outside the folders above."""
    loose = [
        m
        for m in modules()
        if m.startswith("pipeline") and m not in TOP_LEVEL and m.count(".") < 2 and m not in LAYER_OF_PACKAGE
    ]
    assert not loose, f"modules directly in pipeline/ belong in a folder of their layer: {loose}"
    assert all(layer(m) in LAYERS for m in modules())


def test_the_scan_sees_the_imports_it_checks():
    """A scan that found nothing would pass both tests above: check it against known edges."""
    g = graph()
    assert "pipeline.errors" in g["pipeline.runtime.storage"]
    assert "experts.store" in g["pipeline.rollout.policy_factory"]
    assert {"pipeline.rollout.run", "pipeline.runtime.submit"} <= g["pipeline.cli.datasets"]  # function-level
    assert layer("pipeline.rollout.run") == "stages" and layer("pipeline.cli.datasets") == "cli"


RAY_ALLOWED = {
    "pipeline.runtime.executor": "owns Ray: connection, actors",
    "pipeline.runtime.executor_tasks": "one Ray task per long job (an expert training) on the executor's Ray",
    "experts.device": "reads, inside a training task, what Ray gave it (runtime context)",
    "pipeline.runtime.submit": "the Jobs API client: HTTP to a cluster's job server, it schedules nothing",
    "experts.rllib": "RLlib trains on the cluster it is given; scheduling stays in the executor",
    "experts.rllib_policy": "loads an RLlib RLModule to act; no scheduling",
    "pipeline.runtime.executor_train": (
        "Ray Train runs the model's data-parallel workers; the executor's counterpart for torch DDP"
    ),
}


def test_ray_is_imported_by_the_executor_alone():
    """One executor owns Ray: a stage that imports it has started its own scheduling."""
    offenders = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "ray" or n.startswith("ray.") for n in names) and name not in RAY_ALLOWED:
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, f"Ray imported outside pipeline/runtime/executor.py: {offenders}"
