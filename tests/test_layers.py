"""Imports flow one way: core -> experts -> stages -> CLI, with no cycle, also inside functions.

A lazy import inside a function hides a cycle from Python but not from a reader: these tests read
every `import` of the package's modules (module level and function level alike) from their source.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CORE = {
    "pipeline.errors",
    "pipeline.faults",
    "pipeline.noise",
    "pipeline.schema",
    "pipeline.columns",
    "pipeline.registry",
    "pipeline.envs",
    "pipeline.storage",
    "pipeline.policies",
    "pipeline.episodes",
    "pipeline.sections",
    "pipeline.plan",
    "pipeline.shards",
    "pipeline.manifest",
    "pipeline.executor",
}
"""Errors, schema and paths, registry, envs, storage, the `Policy` interface, plans and manifests,
the executor that owns Ray, the suites (`pipeline.suites.*`: everything that differs between
suites), and the stages' configs (`pipeline.configs.*`, the typed interface the
CLI and the Python API share): what every stage and the expert backends stand on."""
LAYERS = ("core", "experts", "stages", "cli")


def layer(module: str) -> str:
    if module in CORE or module == "pipeline" or module.startswith(("pipeline.configs", "pipeline.suites")):
        return "core"
    if module == "experts" or module.startswith("experts."):
        return "experts"
    if module == "pipeline.cli" or module.startswith("pipeline.cli."):
        return "cli"
    return "stages"


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


def test_the_scan_sees_the_imports_it_checks():
    """A scan that found nothing would pass both tests above: check it against known edges."""
    g = graph()
    assert "pipeline.errors" in g["pipeline.storage"]
    assert "experts.store" in g["pipeline.policy_factory"]
    assert {"pipeline.rollout", "pipeline.submit"} <= g["pipeline.cli.datasets"]  # function-level
    assert layer("pipeline.rollout") == "stages" and layer("pipeline.cli.datasets") == "cli"


RAY_ALLOWED = {
    "pipeline.executor": "owns Ray: connection, actors, tasks",
    "experts.device": "reads, inside a training task, what Ray gave it (runtime context)",
    "pipeline.submit": "the Jobs API client: HTTP to a cluster's job server, it schedules nothing",
    "experts.rllib": "RLlib trains on the cluster it is given; scheduling stays in the executor",
    "experts.rllib_policy": "loads an RLlib RLModule to act; no scheduling",
    "pipeline.executor_train": (
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
    assert not offenders, f"Ray imported outside pipeline/executor.py: {offenders}"
