"""Every `pipeline ...` command the project shows runs as written, and the cluster specs hold together.

Examples come from README.md's and docs/*.md's shell code blocks and from docker/*.yaml (job entrypoints,
container commands, and the commands in the launcher config's comments). Each one is parsed by the real
CLI parser (`pipeline submit -- STAGE ...` parses STAGE too), its task, suite and config names are
resolved in the registry, and a rollout whose policy is a trained expert (`--policy expert`, or the
suite's default `rollout.policy`, where no bot or scripted expert stands in) must name `--experts-dir`:
without it the command stops at once ("no trained expert ... (no --experts-dir given)"). The launcher
config is checked against Ray's own schema (ray/autoscaler/ray-schema.json, as `ray up` does); KubeRay's
CRD schemas do not ship with any installed package, so the RayJob specs get structural checks here.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml

from pipeline.cli import build_parser
from pipeline.cli.options import config_from
from pipeline.errors import PipelineError
from pipeline.suites import suite_names
from pipeline.tasks.registry import get_task, resolve_tasks, suite_tasks

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
# Commands that read or train experts take the task selection from --suite/--tasks.
TASK_COMMANDS = {"rollout", "train-experts", "evaluate-experts", "import-experts"}
SECRET_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "RAY_AUTH_TOKEN"}
BUILD_STAGES = ["train-experts", "rollout", "validate", "publish"]
MODEL_STAGES = ["train-model"]  # after the build, on its dataset; not a stage of kuberay-build.sh
IMPORT_STAGE = "import-experts"  # the import path's first stage, instead of train-experts (IMPORT=1)
JOBS = BUILD_STAGES + MODEL_STAGES + [IMPORT_STAGE]


@dataclass(frozen=True)
class Example:
    source: str
    """Where it is shown: `README.md:120`, `docker/rayjob-rollout.yaml:spec.entrypoint`."""
    argv: tuple[str, ...]
    """The arguments after `pipeline`."""

    def __str__(self) -> str:
        return f"{self.source}: `pipeline {shlex.join(self.argv)}`"


# --- extraction --------------------------------------------------------------------------------
def _logical_lines(text: str, first_line: int = 1) -> list[tuple[int, str]]:
    """Lines with backslash continuations joined, each with the number of its first physical line."""
    out: list[tuple[int, str]] = []
    pending, start = "", first_line
    for number, line in enumerate(text.splitlines(), first_line):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def pipeline_argvs(shell: str) -> list[tuple[str, ...]]:
    """The argv of each `pipeline` command in one line of shell (after `;`, `&&`, `|`, env assignments)."""
    lexer = shlex.shlex(shell, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token and set(token) <= set(";&|()"):
            commands.append([])
        else:
            commands[-1].append(token)
    argvs = []
    for words in commands:
        words = words[next((i for i, w in enumerate(words) if not re.match(r"^\w+=", w)), len(words)) :]
        if words and Path(words[0]).name == "pipeline":
            end = next((i for i, w in enumerate(words) if w[0] in "<>" or re.match(r"^\d?>", w)), len(words))
            argvs.append(tuple(words[1:end]))
    return argvs


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def markdown_examples(path: Path) -> list[Example]:
    """`pipeline` commands in the shell code blocks of a Markdown file."""
    examples, block, fence_line = [], None, 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = re.match(r"^\s*```\s*(\S*)", line)
        if fence and block is None:
            block, fence_line, lang = [], number, fence.group(1)
        elif fence:
            if lang in SHELL_FENCES:
                for start, shell in _logical_lines("\n".join(block), fence_line + 1):
                    shell = re.sub(r"^\s*\$ ", "", shell)
                    if re.search(r"\bpipeline\b", shell):
                        examples += [Example(f"{_rel(path)}:{start}", a) for a in pipeline_argvs(shell)]
            block = None
        elif block is not None:
            block.append(line)
    return examples


def _walk(node: object, where: str) -> list[tuple[str, tuple[str, ...]]]:
    """(key path, argv) of `pipeline` commands in a YAML tree: shell strings and argv lists alike."""
    if isinstance(node, dict):
        return [hit for key, value in node.items() for hit in _walk(value, f"{where}.{key}".lstrip("."))]
    if isinstance(node, list):
        if node and all(isinstance(v, str) for v in node) and Path(node[0]).name == "pipeline":
            return [(where, tuple(node[1:]))]
        return [hit for i, value in enumerate(node) for hit in _walk(value, f"{where}[{i}]")]
    if isinstance(node, str) and re.search(r"\bpipeline\b", node):
        return [(where, argv) for argv in pipeline_argvs(" ".join(node.split("\n")))]
    return []


def yaml_examples(path: Path) -> list[Example]:
    """`pipeline` commands of a YAML file: in its values (entrypoints, commands, args) and comments."""
    rel = _rel(path)
    text = path.read_text()
    examples = [
        Example(f"{rel}:{where}", argv) for doc in yaml.safe_load_all(text) for where, argv in _walk(doc, "")
    ]
    comments = "\n".join(
        re.sub(r"^\s*# ?", "", line) if line.lstrip().startswith("#") else "" for line in text.splitlines()
    )
    for start, shell in _logical_lines(comments):
        if re.match(r"^\s*(\w+=\S*\s+)*pipeline\s", shell):
            examples += [Example(f"{rel}:{start}", a) for a in pipeline_argvs(shell)]
    return examples


def all_examples() -> list[Example]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [e for p in docs for e in markdown_examples(p)] + [
        e for p in sorted(DOCKER.glob("*.yaml")) for e in yaml_examples(p)
    ]


EXAMPLES = all_examples()
# `pipeline rollout ... --resume` shows a variation of the command above it, not a command.
ELIDED = [e for e in EXAMPLES if "..." in e.argv]
RUNNABLE = [e for e in EXAMPLES if "..." not in e.argv]


# --- checks ------------------------------------------------------------------------------------
def _parse(argv: tuple[str, ...]) -> tuple[object | None, str]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return build_parser().parse_args(list(argv)), ""
    except PipelineError as exc:  # the CLI's parser reports bad arguments as one line
        return None, str(exc)
    except SystemExit:
        return None, " ".join(err.getvalue().split()) or "argparse exited"


def problems(example: Example) -> list[str]:
    """Why the example would not run as written (empty: it would)."""
    args, error = _parse(example.argv)
    if args is None:
        return [f"{example} does not parse: {error}"]
    try:
        if args.subcommand == "submit":
            args.env = ()  # --env names variables the user exported on their machine, not here
        config = config_from(args.config_class, args)  # the config's own checks, as the CLI runs them
        if args.subcommand == "submit":
            return problems(Example(example.source, config.command))
        return _registry_problems(example, args)
    except PipelineError as exc:
        return [f"{example} would stop: {exc}"]


def _registry_problems(example: Example, args) -> list[str]:
    """Names resolved in the registry; experts present where the policy needs them (raises PipelineError)."""
    from pipeline.rollout.policy_factory import check_policy

    for name in getattr(args, "configs", None) or []:  # validate, publish, train-model (CONFIG[:WEIGHT])
        get_task(name.partition(":")[0])
    if args.subcommand == "evaluate":
        for name in args.tasks:  # task configs and/or whole suites
            if name in suite_names():
                suite_tasks(name)
            else:
                get_task(name)
    if args.subcommand == "tasks" and args.suite:
        suite_tasks(args.suite)
    if args.subcommand not in TASK_COMMANDS:
        return []
    specs = resolve_tasks(args.suite, args.tasks or None)
    if args.subcommand == "train-experts":
        from pipeline.expert_stages.train_experts import check_backend, check_device_request

        # As on a cluster (the examples' setting): `--device cuda` must reserve GPUs with --num-gpus.
        config = replace(config_from(args.config_class, args), address=args.address or "auto")
        check_backend(config)
        check_device_request(specs, config)
    if args.subcommand != "rollout":
        return []
    if args.learning_history:
        return [] if args.experts_dir else [f"{example}: --learning-history needs --experts-dir"]
    for spec in specs:
        kind = args.policy or spec.rollout.policy
        if kind != "expert" or not args.experts_dir:  # with --experts-dir the store decides, at run time
            check_policy(kind, spec, None)
    return []


@pytest.mark.parametrize("example", RUNNABLE, ids=str)
def test_example_runs_as_written(example: Example) -> None:
    found = problems(example)
    assert not found, "\n".join(found)


def test_examples_are_found_everywhere() -> None:
    """The extractor finds the examples (a parser change that found none would pass every check)."""
    sources = {e.source.split(":")[0] for e in EXAMPLES}
    assert len([e for e in RUNNABLE if e.source.startswith("README.md")]) >= 15
    for path in [
        "docker/ray-cluster.yaml",
        *(f"docker/rayjob-{s}.yaml" for s in JOBS),
    ]:
        assert path in sources, f"no `pipeline` command found in {path}"
    commands = {e.argv[0] for e in RUNNABLE if e.argv}
    assert {"rollout", "validate", "publish", "train-experts", "import-experts", "submit"} <= commands
    assert all(e.source.startswith("README.md") for e in ELIDED), [str(e) for e in ELIDED]


def test_examples_write_under_outputs() -> None:
    """A user copying an example from a fresh clone writes into `outputs/` (git-ignored), never into
    the source tree (`--out experts/` made training write into the `experts` Python package)."""
    from pipeline.cli import _OUTPUT_ARG

    outside = []
    for example in RUNNABLE:
        args, _ = _parse(example.argv)
        if args is None or args.subcommand == "submit":
            continue
        value = getattr(args, _OUTPUT_ARG.get(args.subcommand, ""), None)
        relative = isinstance(value, str) and "://" not in value and not value.startswith("/")
        if relative and not value.startswith("outputs/"):  # absolute paths: a container's volume
            outside.append(str(example))
    assert not outside, "examples writing into the checkout:\n" + "\n".join(outside)
    ignored = subprocess.run(
        [
            "git",
            "check-ignore",
            "outputs/x",
            "data/x",
            "experts/mujoco-hopper/x",
            "experts/summary-mujoco.json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if ignored.returncode != 128:  # 128: not a git checkout (an sdist)
        assert len(ignored.stdout.split()) == 4, ignored.stdout
    kept = subprocess.run(
        ["git", "check-ignore", "experts/base.py"], cwd=ROOT, capture_output=True, timeout=30
    )
    assert kept.returncode != 0  # the package's own files are never ignored


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("rollout --suite atari --out s3://b/jat --workers 60", "no --experts-dir given"),
        ("rollout --tasks mujoco-hopper --policy expert --episodes 5 --out d", "no --experts-dir given"),
        ("submit -- rollout --suite mujoco --out s3://b/jat", "no --experts-dir given"),
        ("rollout --tasks mujoco-hopper --learning-history --out d", "needs --experts-dir"),
        ("rollout --tasks atari-pong --policy scripted --out d", "no scripted policy"),
        ("rollout --tasks atari-alen --policy random --out d", "did you mean"),
        ("validate d --configs mujoco-hoper", "did you mean"),
        ("train-model --data d --configs babyai-go-to:2,babyai-goto", "unknown task"),
        ("evaluate --model m --tasks babyai,atary", "unknown task"),
        ("evaluate-experts --out experts/ --tasks mujoco-hopper", "does not parse"),
        ("train-experts --suite atari --out e --device cuda", "asks Ray for no GPU"),
        ("submit --", "name the stage to submit"),
    ],
)
def test_checker_catches_broken_examples(command: str, expected: str) -> None:
    found = problems(Example("test", tuple(shlex.split(command))))
    assert any(expected in p for p in found), found


def test_extractor_reads_shell_as_written(tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text(
        "```bash\n"
        "HF_TOKEN=x pipeline publish data/ --repo-id o/r   # the token from the environment\n"
        "pipeline tasks --json > tasks.json && make test\n"
        "pipeline rollout --suite mujoco \\\n    --out d --policy random\n"
        "```\n```python\nfrom pipeline import rollout\npipeline = rollout\n```\n"
    )
    examples = markdown_examples(doc)
    assert [(e.source, e.argv) for e in examples] == [
        ("guide.md:2", ("publish", "data/", "--repo-id", "o/r")),
        ("guide.md:3", ("tasks", "--json")),
        ("guide.md:4", ("rollout", "--suite", "mujoco", "--out", "d", "--policy", "random")),
    ]
    spec = yaml.safe_load("entrypoint: >-\n  pipeline validate s3://b/d\n  && pipeline publish s3://b/d\n")
    assert [argv for _, argv in _walk(spec, "")] == [("validate", "s3://b/d"), ("publish", "s3://b/d")]
    assert _walk({"command": ["pipeline", "tasks", "--json"]}, "") == [("command", ("tasks", "--json"))]


# --- the specs ---------------------------------------------------------------------------------
def _project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def _pins() -> dict[str, str]:
    """name -> version of pyproject.toml's `name==version` dependencies."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return dict(re.match(r"^([\w-]+)(?:\[[^]]*\])?==(\S+)$", d).groups() for d in deps if "==" in d)


def _load(name: str) -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


def test_launcher_config_passes_rays_schema_and_sets_up_auth() -> None:
    """As `ray up` does: fill in the provider defaults, then ray-schema.json and Ray's own checks."""
    import jsonschema
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = _load("ray-cluster.yaml")
    schema = Path(ray.autoscaler.__file__).with_name("ray-schema.json")
    jsonschema.validate(raw, json.loads(schema.read_text()))
    validate_config(prepare_config(copy.deepcopy(raw)))

    types = raw["available_node_types"]
    assert types[raw["head_node_type"]]["resources"] == {"CPU": 0}
    assert any("--num-cpus=0" in c for c in raw["head_start_ray_commands"])
    version = _project_version()
    assert raw["docker"]["image"].endswith(f"/jat-pipeline:{version}-cpu")
    gpu = [t for t in types.values() if "docker" in t]
    assert [t["docker"]["worker_image"] for t in gpu] == [raw["docker"]["image"].replace("-cpu", "-gpu")]
    # Every node in token mode with one token file, mounted where RAY_AUTH_TOKEN_PATH points.
    options = " ".join(raw["docker"]["run_options"])
    assert "RAY_AUTH_MODE=token" in options
    token_path = re.search(r"RAY_AUTH_TOKEN_PATH=(\S+)", options).group(1)
    assert any(token_path.startswith(target + "/") for target in raw["file_mounts"])


def _rayjobs() -> dict[str, dict]:
    return {stage: _load(f"rayjob-{stage}.yaml") for stage in JOBS}


def _pod_specs(job: dict) -> list[tuple[str, dict]]:
    cluster = job["spec"]["rayClusterSpec"]
    groups = [("head", cluster["headGroupSpec"])]
    groups += [(g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])]
    return [(name, group["template"]["spec"]) for name, group in groups]


@pytest.mark.parametrize("stage", JOBS)
def test_rayjob_is_pinned_secret_free_and_authenticated(stage: str) -> None:
    """KubeRay's CRDs are not installed here: the fields that matter are checked by hand."""
    import ray

    job = _rayjobs()[stage]
    assert (job["apiVersion"], job["kind"], job["metadata"]["name"]) == (
        "ray.io/v1",
        "RayJob",
        f"jat-{stage}",
    )
    cluster = job["spec"]["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__ == _pins()["ray"]
    assert cluster["authOptions"] == {"mode": "token"}
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    secrets = {
        (doc["metadata"]["name"], key)
        for doc in yaml.safe_load_all((DOCKER / "kuberay-secrets.yaml").read_text())
        for key in doc["stringData"]
    }
    image = re.compile(rf"^[^:]+/jat-pipeline:{re.escape(_project_version())}-(cpu|gpu)$")
    for group, pod in _pod_specs(job):
        assert pod["securityContext"]["runAsNonRoot"] is True, group
        for container in pod["containers"]:
            variant = image.match(container["image"])
            assert variant, f"{stage}/{group}: image {container['image']!r} is not a pinned jat-pipeline tag"
            wants_gpu = "nvidia.com/gpu" in container["resources"]["limits"]
            assert (variant.group(1) == "gpu") == wants_gpu, f"{stage}/{group}: GPU limit and image disagree"
            for env in container.get("env", []):
                if env["name"] in SECRET_ENV:
                    assert "value" not in env, f"{stage}/{group}: {env['name']} inline"
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert (ref["name"], ref["key"]) in secrets, (
                        f"{stage}/{group}: no Secret template for {ref}"
                    )


def test_secret_templates_hold_no_secret() -> None:
    for doc in yaml.safe_load_all((DOCKER / "kuberay-secrets.yaml").read_text()):
        for key, value in doc["stringData"].items():
            assert key not in SECRET_ENV or value == "REPLACE-ME", f"{doc['metadata']['name']}: {key}"


def _stage_commands(stage: str) -> list[tuple[str, ...]]:
    return [e.argv for e in RUNNABLE if e.source.startswith(f"docker/rayjob-{stage}.yaml:")]


def test_build_runs_the_stages_in_order_on_each_others_output() -> None:
    """train-experts -> rollout (--experts-dir = its --out) -> validate and publish (the rollout's --out)."""
    script = DOCKER / "kuberay-build.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    assert re.search(r"^STAGES=\((.*)\)$", script.read_text(), re.M).group(1).split() == BUILD_STAGES

    parse = build_parser().parse_args
    trains = [parse(list(a)) for a in _stage_commands("train-experts")]
    rollouts = [parse(list(a)) for a in _stage_commands("rollout")]
    assert {a.subcommand for a in trains} == {"train-experts"} and {a.subcommand for a in rollouts} == {
        "rollout"
    }
    assert any(a.num_gpus and a.num_gpus > 0 for a in trains), "no training asks for the GPU group"
    gpu_groups = [g for g, pod in _pod_specs(_rayjobs()["train-experts"]) if "gpu" in str(pod["containers"])]
    assert gpu_groups, "the train-experts cluster has no GPU group"
    experts = {a.out for a in trains}
    assert {a.experts_dir for a in rollouts if a.experts_dir} <= experts
    # DeepMind Control is not in the KubeRay build yet: JAT released no experts for it, so the import path
    # (IMPORT=1, import-experts only) has none to feed its rollout; adding it needs a decision there.
    assert {a.suite for a in rollouts} == set(suite_names()) - {"dmc"}, "the build leaves a suite out"
    (dataset,) = {a.out for a in rollouts}
    for stage in ("validate", "publish"):
        assert [parse(list(a)).data_dir for a in _stage_commands(stage)] == [dataset], stage


def test_dockerfile_installs_the_pinned_wheel_for_both_variants() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    pins = _pins()
    makefile = (ROOT / "Makefile").read_text()
    sample_factory = re.search(r"sample-factory==(\S+)", makefile).group(1)
    assert re.findall(r"torch==(\S+)", text) == [pins["torch"]]
    assert re.findall(r"sample-factory==(\S+)", text) == [sample_factory]
    assert "pip wheel" in text and re.search(r"pip install [^\n]*/wheels/jat_pipeline-\*\.whl", text)
    assert re.search(r"^ARG VARIANT=cpu$", text, re.M)
    assert {"base-cpu", "base-gpu"} <= set(re.findall(r"^FROM \S+ AS (\S+)$", text, re.M))
    assert re.search(r"^FROM base-\$\{VARIANT\}$", text, re.M)
    assert re.search(r"apt-get install [^\n]*\bwget\b[^\n]*\bcurl\b", text), "KubeRay's probes need wget"
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    joined = text.replace("\\\n", " ")
    env = dict(re.findall(r"\b([A-Z_]+)=(\S+)", " ".join(re.findall(r"^ENV (.*)$", joined, re.M))))
    for name in ("HF_HOME", "HF_DATASETS_CACHE", "RAY_TMPDIR", "PIP_CACHE_DIR", "XDG_CACHE_HOME"):
        assert env.get(name, "").startswith("/cache/"), name
    assert 'VOLUME ["/cache"]' in text


def test_import_path_feeds_the_same_rollout() -> None:
    """import-experts writes, from the Hub, the experts dir the rollout job reads, for every suite whose
    rollout plays experts; BabyAI (no released expert) keeps its bot."""
    parse = build_parser().parse_args
    job = f"docker/rayjob-{IMPORT_STAGE}.yaml:spec.entrypoint"
    imports = [parse(list(e.argv)) for e in RUNNABLE if e.source == job]
    rollouts = [parse(list(a)) for a in _stage_commands("rollout")]
    assert {a.subcommand for a in imports} == {IMPORT_STAGE}
    assert {a.source for a in imports} == {"jat"}
    assert {a.out for a in imports} == {a.experts_dir for a in rollouts if a.experts_dir}
    assert sorted(a.suite for a in imports) == sorted(a.suite for a in rollouts if a.experts_dir)
    assert all(a.resume for a in imports), "a retry (backoffLimit) must keep what it already imported"
    # the mirror variant in the spec's comments is an example too (it parses, as every example does)
    mirror = [parse(list(argv)) for argv in _stage_commands(IMPORT_STAGE)]
    assert "/mnt/mirror" in {a.source for a in mirror}


def _fake_kubectl(tmp_path: Path) -> Path:
    """A kubectl that logs what it is asked and reports every RayJob SUCCEEDED (no cluster here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(
        '#!/usr/bin/env bash\necho "$*" >> "$KUBECTL_LOG"\n'
        '[ "$1" = get ] && printf SUCCEEDED/Complete\nexit 0\n'
    )
    kubectl.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("value", "first"), [("", "train-experts"), ("0", "train-experts"), ("1", IMPORT_STAGE)]
)
def test_build_script_runs_the_path_asked_for(tmp_path: Path, value: str, first: str) -> None:
    log = tmp_path / "kubectl.log"
    env = os.environ | {"PATH": f"{_fake_kubectl(tmp_path)}:{os.environ['PATH']}", "KUBECTL_LOG": str(log)}
    env = (
        {k: v for k, v in env.items() if k != "IMPORT"}
        | {"POLL_S": "0"}
        | ({"IMPORT": value} if value else {})
    )
    done = subprocess.run(
        ["bash", str(DOCKER / "kuberay-build.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    applied = [line.split()[-1] for line in log.read_text().splitlines() if line.startswith("apply")]
    assert applied == [f"rayjob-{s}.yaml" for s in [first, *BUILD_STAGES[1:]]]
    assert all((DOCKER / name).is_file() for name in applied)


def test_build_script_refuses_an_unknown_path(tmp_path: Path) -> None:
    log = tmp_path / "kubectl.log"
    env = os.environ | {"PATH": f"{_fake_kubectl(tmp_path)}:{os.environ['PATH']}", "KUBECTL_LOG": str(log)}
    done = subprocess.run(
        ["bash", str(DOCKER / "kuberay-build.sh")],
        env=env | {"IMPORT": "yes"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "IMPORT=yes" in done.stderr and not log.exists()
