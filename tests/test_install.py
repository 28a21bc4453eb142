"""The installed package is the product: a wheel must hold every file the code reads at run time.

The project's own venv has jat-pipeline installed editable, which finds everything next to the
source, so only a wheel shows what a user of `pip install .` gets. The default set builds the wheel
(about a second), checks it against the resources the code loads, and runs a rollout from the
wheel alone; the slow test installs it into a fresh venv and runs every stage from outside the tree.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from ray_head import ray_head

ROOT = Path(__file__).resolve().parents[1]
CODE_PACKAGES = ("pipeline", "experts")
# Modules allowed to use `__file__`, and why: none of them locates a file to read.
FILE_ALLOWED = {"pipeline/format/manifest.py": "git_sha() asks git about the checkout, if there is one"}
SUBPROCESS_TIMEOUT = 600


def _python_files() -> list[Path]:
    return sorted(p for pkg in CODE_PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level `NAME = "text"` assignments (resource package names are often kept in one)."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    out[target.id] = node.value.value
    return out


def _is_resources_files(func: ast.expr) -> bool:
    """`files(...)`, `resources.files(...)` or `importlib.resources.files(...)`."""
    if isinstance(func, ast.Name):
        return func.id == "files"
    if isinstance(func, ast.Attribute) and func.attr == "files":
        value = func.value
        return (isinstance(value, ast.Name) and value.id == "resources") or (
            isinstance(value, ast.Attribute) and value.attr == "resources"
        )
    return False


def resource_packages() -> dict[str, list[str]]:
    """Every package the code reads files from with `importlib.resources.files(PKG)` -> where."""
    found: dict[str, list[str]] = {}
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        constants = _constants(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and _is_resources_files(node.func) and node.args):
                continue
            arg = node.args[0]
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                package = arg.value
            elif isinstance(arg, ast.Name) and arg.id in constants:
                package = constants[arg.id]
            else:
                raise AssertionError(f"{where}: pass files() a package name (a literal or module constant)")
            found.setdefault(package.split(".")[0], []).append(where)
    return found


def _source_files(package: str) -> list[str]:
    """Every file of a top-level package in the source tree, as wheel member names."""
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / package).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )


def build_wheel(out: Path) -> Path:
    """Build the wheel from a copy of what setuptools reads, so no build/ lands in the shared tree."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    src = out / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", pyproject["project"]["readme"]):
        shutil.copy2(ROOT / name, src / name)
    for top in {pattern.split(".")[0].rstrip("*") for pattern in include}:
        if (ROOT / top).is_dir():
            shutil.copytree(ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    offline = ["--no-deps", "--no-index", "--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", *offline, "-w", str(out / "dist"), str(src)],
        check=True,
        capture_output=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    (wheel,) = (out / "dist").glob("jat_pipeline-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def _clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment of a user outside the source tree: no PYTHONPATH, caches in `tmp`, offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp / "hf"),
        HF_DATASETS_CACHE=str(tmp / "hf" / "datasets"),
        MPLBACKEND="Agg",
        RAY_AUTH_MODE="disabled",
    )
    env.update(extra)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert result.returncode == 0, f"{' '.join(cmd[1:])} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


def test_resources_the_code_loads_are_found() -> None:
    """The scan below must see the registry and the card templates, or the wheel check proves nothing."""
    assert {"env_configs", "dataset_card"} <= set(resource_packages())


def test_wheel_ships_every_file_the_code_reads(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {name.split("/")[0] for name in names if name.endswith("/__init__.py") and name.count("/") == 1}
    packages = set(resource_packages()) | shipped | set(CODE_PACKAGES)
    missing = [f for package in sorted(packages) for f in _source_files(package) if f not in names]
    assert not missing, f"not in {wheel.name} (fix [tool.setuptools*] in pyproject.toml): {missing}"


def test_no_module_locates_files_next_to_its_source() -> None:
    """Paths built from `__file__` point into the checkout; an installed package must use resources."""
    offenders = []
    for path in _python_files():
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), filename=rel)
        uses = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "__file__"]
        if uses and rel not in FILE_ALLOWED:
            offenders.append(f"{rel}:{uses[0]}")
    assert not offenders, f"use importlib.resources.files() instead of __file__: {offenders}"


def test_rollout_runs_from_the_wheel_alone(wheel: Path, tmp_path: Path) -> None:
    """The reported failure: the rollout renders the card, whose templates must come from the wheel.

    Importing straight from the wheel file (zipimport) also proves nothing is read as a plain path.
    """
    env = _clean_env(tmp_path, PYTHONPATH=str(wheel))
    where = _run([sys.executable, "-c", "import pipeline; print(pipeline.__file__)"], tmp_path, env)
    assert where.stdout.strip().startswith(str(wheel)), where.stdout
    cmd = [sys.executable, "-m", "pipeline.cli", "rollout", "--tasks", "babyai-go-to", "--episodes", "4"]
    _run([*cmd, "--workers", "0", "--out", "data", "--no-progress"], tmp_path, env)
    assert "config_name: babyai-go-to" in (tmp_path / "data" / "README.md").read_text()


def _site_packages(venv: Path) -> Path:
    (site,) = venv.glob("lib/python3*/site-packages")
    return site


def make_venv(venv: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel installed, reusing this venv's dependencies (no download).

    A `.pth` line adds this venv's site-packages after the new one. Python does not run the `.pth`
    files of a directory added that way, so the editable install's finder stays out and `pipeline`
    can only come from the wheel.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    deps = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (_site_packages(venv) / "zz_project_dependencies.pth").write_text("\n".join(deps) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
    subprocess.run([*pip, "--no-deps", "--no-index", str(wheel)], check=True, timeout=SUBPROCESS_TIMEOUT)
    return venv / "bin"


WHERE = """
import json, sys
from importlib import resources
import dataset_card, env_configs, experts, pipeline
print(json.dumps({
    "pipeline": pipeline.__file__, "experts": experts.__file__, "dataset_card": dataset_card.__file__,
    "env_configs": env_configs.__file__,
    "template": str(resources.files("dataset_card") / "README.md.j2"),
    "registry": str(resources.files("env_configs") / "mujoco.yaml"),
    "finders": [repr(f) for f in sys.meta_path],
    "missing": [n for p, n in [("dataset_card", "README.md.j2"), ("dataset_card", "config.md.j2"),
                               ("env_configs", "mujoco.yaml")] if not (resources.files(p) / n).is_file()],
}))
"""


@pytest.mark.slow
def test_installed_wheel_runs_every_stage_outside_the_tree(wheel: Path, tmp_path: Path) -> None:
    """`pip install .` then every stage from a folder outside the checkout; every command exits 0."""
    bin_dir = make_venv(tmp_path / "venv", wheel)
    work = tmp_path / "work"
    work.mkdir()
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # Ray's socket paths must stay short
    env = _clean_env(tmp_path, RAY_TMPDIR=str(ray_tmp), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    try:
        where = json.loads(_run([str(bin_dir / "python"), "-c", WHERE], work, env).stdout)
        site = str(_site_packages(tmp_path / "venv"))
        for key in ("pipeline", "experts", "dataset_card", "env_configs", "template", "registry"):
            assert where[key].startswith(site), (key, where[key])
        assert not any("editable" in f.lower() for f in where["finders"]), where["finders"]
        assert not where["missing"], where["missing"]

        pipeline = str(bin_dir / "pipeline")
        tasks = _run([pipeline, "tasks", "--suite", "mujoco"], work, env).stdout
        assert "mujoco-hopper" in tasks
        as_module = [str(bin_dir / "python"), "-m", "pipeline.cli", "tasks", "--suite", "mujoco", "--json"]
        assert len(json.loads(_run(as_module, work, env).stdout)) == 11

        rollout = [pipeline, "rollout", "--tasks", "babyai-go-to", "--episodes", "4", "--workers", "0"]
        _run([*rollout, "--out", "data", "--no-progress"], work, env)
        _run([pipeline, "validate", "data"], work, env)
        _run([pipeline, "publish", "data", "--to-folder", "published", "--no-progress"], work, env)
        assert "config_name: babyai-go-to" in (work / "published" / "README.md").read_text()
        assert list((work / "published" / "data" / "babyai-go-to").glob("*.parquet"))
        _run([pipeline, "replay", "data", "--config", "babyai-go-to", "--episodes", "all"], work, env)
        _run([pipeline, "render", "data", "--config", "babyai-go-to", "--out", "go-to.gif"], work, env)
        assert (work / "go-to.gif").read_bytes()[:6] == b"GIF89a"

        # One task per suite on a local Ray cluster (workers run the wheel too), validated and loaded.
        _run([pipeline, "demo", "--out", "demo", "--episodes", "2", "--workers", "1"], work, env)
        assert "config_name: atari-breakout" in (work / "demo" / "README.md").read_text()

        _run([pipeline, "report", "data", "--json", "quality.json"], work, env)
        (row,) = json.loads((work / "quality.json").read_text())["configs"]
        assert row["config"] == "babyai-go-to" and row["episodes"] == {"train": 3, "test": 1}, row

        train = [pipeline, "train-experts", "--tasks", "mujoco-pendulum", "--backend", "sb3"]
        _run([*train, "--steps", "256", "--no-eval", "--workers", "0", "--out", "experts"], work, env)
        metadata = json.loads((work / "experts" / "mujoco-pendulum" / "metadata.json").read_text())
        assert metadata["trained"] and metadata["status"] == "unevaluated"
        _run(
            [pipeline, "evaluate-experts", "experts", "--tasks", "mujoco-pendulum", "--episodes", "2"],
            work,
            env,
        )
        metadata = json.loads((work / "experts" / "mujoco-pendulum" / "metadata.json").read_text())
        # 256 steps of training are far below the gate
        assert metadata["status"] == "rejected" and metadata["evaluation"]["episodes"] == 2
        publish_experts = [
            pipeline,
            "publish-experts",
            "experts",
            "--tasks",
            "mujoco-pendulum",
            "--allow-weak",
        ]
        _run([*publish_experts, "--repo-prefix", "org/jat-expert", "--to-folder", "expert-repos"], work, env)
        assert (
            "mujoco-pendulum"
            in (work / "expert-repos" / "jat-expert-mujoco-pendulum" / "README.md").read_text()
        )

        model = [pipeline, "train-model", "--data", "data", "--configs", "babyai-go-to", "--size", "tiny"]
        _run([*model, "--steps", "3", "--out", "model", "--no-progress"], work, env)
        scores = _run(
            [pipeline, "evaluate", "--model", "model", "--tasks", "babyai-go-to", "--episodes", "1"],
            work,
            env,
        )
        assert "babyai-go-to" in scores.stdout + scores.stderr
        _run([pipeline, "publish-model", "model", "--to-folder", "model-repo"], work, env)
        assert (work / "model-repo" / "README.md").is_file()

        # A cluster job: the head runs the wheel's interpreter, so the job's `pipeline` is the installed one.
        with ray_head(bin_dir / "python", env) as address:
            job = [pipeline, "submit", "--address", address, "--", "rollout", "--tasks", "mujoco-hopper"]
            job += ["--policy", "random", "--episodes", "3", "--workers", "1", "--no-progress"]
            _run([*job, "--out", str(work / "job-data")], work, env)
        _run([pipeline, "validate", "job-data"], work, env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
