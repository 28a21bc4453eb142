"""What the full 157-task JAT build costs, measured here and extrapolated (issue 11, item 6).

    .venv/bin/python benchmarks/build_cost.py                      # full: ~15-20 CPU-minutes on 2 cores
    .venv/bin/python benchmarks/build_cost.py --quick --out /tmp/c   # smoke: < 3 CPU-minutes
    .venv/bin/python benchmarks/build_cost.py --measure-import docs/scaling.json   # the import path only

Writes OUT/scaling.md (default docs/) and OUT/scaling.json (every raw measurement, so each figure of
the doc can be traced). Measured here, by CPU time so that other jobs on the machine do not distort it:

- rollout: `rollout(RolloutConfig(..., workers=0))` in this process, per task and policy, three
  runs: a warm-up (imports, first env build), a short run (2 episodes) and a long run (a step budget);
  CPU-s per step = (CPU_long - CPU_short) / (steps_long - steps_short), `time.process_time()` (all
  threads of this process), so per-run fixed costs (env build, manifest, README) cancel out. torch
  gets one thread, as in a Ray actor with num_cpus=1 (Ray sets OMP_NUM_THREADS=1). Bytes per step on
  disk = shard bytes of the long run (from its manifest) / its steps.
- experts: tiny experts for the expert-policy rollouts: sb3 through `pipeline train-experts --backend
  sb3 --steps 2048 --no-eval --workers 0` (a subprocess), and the default backend (sample-factory)
  from the training measurement below. An expert's inference cost depends on its network, not on how
  well it was trained, so a 2k-20k-step expert costs per step what a 10M-step one does.
- the import path (`pipeline import-experts --source jat`): bytes downloaded per task, per suite with
  released experts (`import_cost.py` next to this file: the checkpoint sample-factory itself writes
  for the suite's released architecture, and the same checkpoint rebuilt for every task's network);
  `--measure-import FILE` measures only this part (about 2 CPU-minutes) and merges it into FILE's figures.
- training: sample-factory (the default backend) per suite, a short and a long run, each in a fresh
  subprocess, with the suite's hyperparameters from env_configs/ but `num_workers` capped to this
  machine; CPU of the whole process tree (psutil, per pid, see `_child_train`); env steps per CPU-second
  = (steps_long - steps_short) / (CPU_long - CPU_short), so sample-factory's start-up cancels out.

Extrapolated: budgets, task counts, horizons, expert steps and Ray requests are read from the registry
(`pipeline.tasks.registry`) at run time; GPU throughput is cited (sample-factory's paper), never measured.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from harness import (
    ROOT,
    TreeCPU,
    children_cpu,
    cli_command,
    last_json_line,
    markdown_environment,
    write_json,
)

sys.path.insert(0, str(ROOT))  # run as a script: this tree's packages, not an installed copy
import import_cost

SUITES = ("atari", "babyai", "metaworld", "mujoco")
TAGS = ("measured", "cited", "assumed", "registry", "code", "formula", "not measured")

# Cited, never measured here: sample-factory's paper (ICML 2020), abstract. The figure is the paper's
# headline for one multi-core machine with GPUs on 3D control (VizDoom); Atari on the same machine is in
# that range. Use it as an optimistic bound per GPU machine, not as a promise.
CITED_GPU = {
    "frames_per_s": 100_000,
    "source": "https://arxiv.org/abs/2006.11751",
    "quote": "throughput higher than 10^5 environment frames/second on non-trivial control problems in 3D",
    "setting": "sample-factory APPO, one machine with many CPU cores and GPU(s) (the paper's VizDoom runs)",
}


@dataclass(frozen=True)
class Budget:
    """How much to measure: `--quick` (smoke test) or the full measurement."""

    tasks: dict[str, tuple[str, ...]]
    """Rollout tasks per suite (scripted and random policies run on all of them)."""
    rollout_steps: int
    """Step budget of each long timed rollout run (at least 3x the short run's steps)."""
    sb3_tasks: tuple[str, ...]
    """Tasks given a tiny sb3 expert through `pipeline train-experts --backend sb3`."""
    sb3_steps: int
    sf_steps: dict[str, tuple[int, int]]
    """Training measurement (sample-factory): task -> env steps (agent steps for Atari) of the short
    and the long run; sample-factory rounds up to whole training batches."""
    sf_workers: int
    """sample-factory rollout workers (the YAML asks for 8; this machine has fewer cores)."""
    import_suites: tuple[str, ...] = import_cost.RELEASED_SUITES
    """Suites whose import path (bytes an import downloads per task) is measured."""


FULL = Budget(
    tasks={
        "atari": ("atari-pong", "atari-breakout"),
        "babyai": ("babyai-go-to", "babyai-boss-level"),
        "metaworld": ("metaworld-reach", "metaworld-pick-place"),
        "mujoco": ("mujoco-hopper", "mujoco-humanoid"),
    },
    rollout_steps=3000,
    sb3_tasks=("mujoco-hopper", "atari-pong"),
    sb3_steps=2048,
    sf_steps={"mujoco-hopper": (4096, 20480), "metaworld-reach": (4096, 20480), "atari-pong": (4096, 20480)},
    sf_workers=2,
)
QUICK = Budget(
    tasks={
        "atari": ("atari-breakout",),
        "babyai": ("babyai-go-to",),
        "metaworld": ("metaworld-reach",),
        "mujoco": ("mujoco-hopper",),
    },
    rollout_steps=600,
    sb3_tasks=("mujoco-hopper",),
    sb3_steps=2048,
    sf_steps={"mujoco-hopper": (4096, 12288)},
    sf_workers=2,
    import_suites=("mujoco",),
)


@dataclass
class Cluster:
    """The named cluster the wall-time estimate is for."""

    nodes: int = 8
    cores_per_node: int = 32
    gpus: int = 4

    @property
    def cores(self) -> int:
        return self.nodes * self.cores_per_node


@dataclass
class Record:
    """Everything measured, plus the host; dumped as scaling.json."""

    host: dict[str, Any]
    budget: dict[str, Any]
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    experts: list[dict[str, Any]] = field(default_factory=list)
    training: list[dict[str, Any]] = field(default_factory=list)
    cited: dict[str, Any] = field(default_factory=lambda: dict(CITED_GPU))
    extrapolation: dict[str, Any] = field(default_factory=dict)
    ray_layout: list[dict[str, Any]] = field(default_factory=list)
    cpu_seconds_total: float = 0.0
    imports: dict[str, Any] = field(default_factory=dict)
    """The import path's measurement (`measure_imports`); absent from files written before it."""


# ---------------------------------------------------------------------------------------------- host


def host_info(command: str) -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    names = ("jat-pipeline", "gymnasium", "ale-py", "minigrid", "metaworld", "mujoco", "torch", "ray")
    names += ("sample-factory", "stable-baselines3", "sb3-contrib", "pyarrow", "numpy")
    versions = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "absent"
    return {
        "command": command,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "versions": versions,
        "loadavg_start": os.getloadavg(),
    }


# ------------------------------------------------------------------------------------------- rollout


def _run_once(config: str, policy: str, scratch: str, experts_dir: str | None, **budget: int) -> dict:
    from pipeline.format.manifest import read_manifest
    from pipeline.rollout.run import RolloutConfig, rollout
    from pipeline.runtime.storage import open_location

    out = tempfile.mkdtemp(dir=scratch, prefix="rollout-")
    request = RolloutConfig(
        out=out,
        tasks=(config,),
        workers=0,
        policy=policy,
        experts_dir=experts_dir,
        allow_weak=True,
        progress=False,
        **budget,
    )
    started = time.process_time()
    rollout(request)
    cpu = time.process_time() - started
    manifest = read_manifest(open_location(out), config)
    totals = manifest.totals()
    shutil.rmtree(out, ignore_errors=True)
    return {
        "budget": budget,
        "cpu_s": cpu,
        "steps": totals["train"]["steps"] + totals["test"]["steps"],
        "episodes": totals["train"]["episodes"] + totals["test"]["episodes"],
        "dropped": len(manifest.dropped),
        "bytes": sum(s.num_bytes for s in manifest.shards),
        "shards": len(manifest.shards),
    }


def measure_rollout(
    config: str, policy: str, backend: str, steps: int, scratch: str, experts_dir: str | None = None
) -> dict[str, Any]:
    """Warm-up, short and long run of one task and policy; CPU per step by difference."""
    from pipeline.tasks.registry import get_task

    row: dict[str, Any] = {"config": config, "suite": get_task(config).suite, "policy": policy}
    row["backend"] = backend
    try:
        _run_once(config, policy, scratch, experts_dir, episodes=2)
        short = _run_once(config, policy, scratch, experts_dir, episodes=2)
        long = _run_once(config, policy, scratch, experts_dir, steps=max(steps, 3 * short["steps"]))
    except Exception as exc:  # one failed cell is reported as such; the others still run
        row["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        print(f"  {config} {policy}/{backend}: FAILED {row['error']}", flush=True)
        return row
    row |= {"short": short, "long": long}
    extra = long["steps"] - short["steps"]
    row["cpu_s_per_step"] = (
        (long["cpu_s"] - short["cpu_s"]) / extra if extra > 0 else long["cpu_s"] / long["steps"]
    )
    row["bytes_per_step"] = long["bytes"] / long["steps"]
    row["mean_episode_length"] = long["steps"] / long["episodes"]
    print(
        f"  {config:<24} {policy}/{backend:<16} {1000 * row['cpu_s_per_step']:7.3f} CPU-s/1k steps, "
        f"{row['bytes_per_step']:8.1f} B/step, mean length {row['mean_episode_length']:.1f} "
        f"({long['steps']} steps, {long['dropped']} dropped)",
        flush=True,
    )
    return row


# -------------------------------------------------------------------------------------------- experts


def train_sb3(config: str, steps: int, root: str) -> dict[str, Any]:
    """The brief's tiny expert: `pipeline train-experts --backend sb3`, as a subprocess (CPU of its tree)."""
    command = cli_command("train-experts", "--tasks", config, "--backend", "sb3", "--steps", str(steps))
    command += ["--no-eval", "--workers", "0", "--out", root, "--time-limit", "2", "--no-progress"]
    before, started = children_cpu(), time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    row = {
        "config": config,
        "backend": "sb3",
        "command": " ".join(command[2:]).replace(root, "EXPERTS_DIR"),
        "returncode": done.returncode,
    }
    row |= {"cpu_s": children_cpu() - before, "wall_s": time.monotonic() - started}
    metadata = Path(root) / config / "metadata.json"
    if done.returncode != 0 or not metadata.exists():
        row["error"] = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
    else:
        meta = json.loads(metadata.read_text())
        row |= {"steps": meta["steps_trained"], "algo": meta.get("algo")}
    print(f"  sb3 {config}: {row.get('steps', 'FAILED')} steps, {row['cpu_s']:.1f} CPU-s", flush=True)
    return row


def _train_sf_once(config: str, steps: int, workers: int, root: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child-train", json.dumps([config, steps, workers, root])]
    before, started = children_cpu(), time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    cpu, wall = children_cpu() - before, time.monotonic() - started
    found = last_json_line(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError((done.stderr.strip().splitlines() or ["no output"])[-1][:200])
    # the sampled tree (see _child_train) is the complete figure; getrusage is kept for comparison
    return (
        {"requested": steps, "cpu_s_getrusage": cpu, "wall_s": wall} | found | {"cpu_s": found["tree_cpu_s"]}
    )


def train_sf(config: str, steps: tuple[int, int], workers: int, scratch: str, root: str) -> dict[str, Any]:
    """sample-factory training, a short and a long run, each in a fresh process (sample-factory keeps
    global state); CPU of the whole process tree (getrusage of the children it waited for), so the
    start-up (spawning workers, building envs) cancels in the difference. The long run's expert is kept."""
    row: dict[str, Any] = {"config": config, "backend": "sample-factory", "workers": workers}
    try:
        short = _train_sf_once(config, steps[0], workers, os.path.join(scratch, "experts-sf-short"))
        long = _train_sf_once(config, steps[1], workers, root)
    except RuntimeError as exc:
        row["error"] = str(exc)
        print(f"  sf {config}: FAILED {row['error']}", flush=True)
        return row
    row |= {"short": short, "long": long, "steps": long["steps"], "cpu_s_total": long["cpu_s"]}
    extra = long["steps"] - short["steps"]
    if extra > 0 and long["cpu_s"] > short["cpu_s"]:
        row["steps_per_cpu_s"] = extra / (long["cpu_s"] - short["cpu_s"])
        row["steps_per_s"] = extra / (long["wall_s"] - short["wall_s"])
    row["steps_per_cpu_s_end_to_end"] = long["steps"] / long["cpu_s"]  # start-up included
    print(
        f"  sf {config}: {short['steps']} steps {short['cpu_s']:.1f} CPU-s, {long['steps']} steps "
        f"{long['cpu_s']:.1f} CPU-s: {row.get('steps_per_cpu_s', float('nan')):.0f} steps/CPU-s",
        flush=True,
    )
    return row


def _child_train(config: str, steps: int, workers: int, root: str) -> None:
    """Runs in the subprocess: train one sample-factory expert, print the figures as one JSON line.

    CPU is counted from the start of training (imports excluded): this process's own time plus each
    descendant's, sampled twice a second by pid (the last value kept; at most half a second per process
    is lost). The parent also records `getrusage` of the children, imports included, as a cross-check
    that no worker escaped the count."""
    from experts.training import ExpertPlan, train_expert
    from pipeline.tasks.registry import get_task

    descendants = TreeCPU(include_self=False)
    spec = get_task(config)
    hyperparameters = spec.expert.settings("sample-factory") | {"num_workers": workers}
    plan = ExpertPlan(
        config=config,
        backend="sample-factory",
        hyperparameters=hyperparameters,
        steps=steps,
        seed=0,
        num_cpus=workers,
        eval_episodes=1,
        threshold=0.5,
        deterministic=spec.expert.deterministic,
        evaluate=False,
        device="cpu",
    )
    started, own_before = time.monotonic(), time.process_time()
    result = train_expert(plan, root)
    descendants_cpu = descendants.total()
    if result.status == "failed":
        raise SystemExit(f"training {config} failed: {result.error}")
    keys = ("num_workers", "num_envs_per_worker", "batch_size", "num_batches_per_epoch", "rollout")
    out = {"steps": result.steps, "train_wall_s": time.monotonic() - started}
    out["tree_cpu_s"] = time.process_time() - own_before + descendants_cpu
    out["processes_sampled"] = len(descendants.seen)
    out["hyperparameters"] = {k: hyperparameters.get(k) for k in keys}
    print(json.dumps(out))


def measure_imports(suites: tuple[str, ...], scratch: str, command: str) -> dict[str, Any]:
    """The import path, one fresh process per suite (sample-factory keeps global state): what an import
    downloads per task (see import_cost.py). CPU of each child from getrusage."""
    out: dict[str, Any] = {"host": import_cost.merge_host(command), "suites": []}
    before = children_cpu()
    for suite in suites:
        folder = tempfile.mkdtemp(dir=scratch, prefix=f"import-{suite}-")
        started = children_cpu()
        done = subprocess.run(
            [sys.executable, __file__, "--child-import", json.dumps([suite, folder])],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=1800,
        )
        found = last_json_line(done.stdout)
        if done.returncode != 0 or found is None:
            error = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
            row = {"suite": suite, "config": import_cost.TRAINED_TASK[suite], "error": error}
            print(f"  import {suite}: FAILED {error}", flush=True)
        else:
            row = found | {"cpu_s": children_cpu() - started}
            print(
                f"  import {suite}: checkpoint {row['checkpoint_bytes']:,} B written by sample-factory, "
                f"{row['rebuilt'][row['config']]['bytes']:,} B rebuilt; config {row['config_bytes']:,} B; "
                f"{row['distinct_networks']} networks for {len(row['rebuilt'])} tasks "
                f"({row['cpu_s']:.0f} CPU-s)",
                flush=True,
            )
        out["suites"].append(row)
        shutil.rmtree(folder, ignore_errors=True)
    out["cpu_seconds_total"] = children_cpu() - before
    out["host"]["loadavg_end"] = os.getloadavg()
    return out


# ---------------------------------------------------------------------------------------- extrapolate


def ray_layout() -> list[dict[str, Any]]:
    """What each stage asks Ray for, read from the code and the registry now."""
    from pipeline.checks import validate
    from pipeline.release import publish
    from pipeline.runtime import executor
    from pipeline.tasks.registry import suite_tasks

    source = inspect.getsource(executor)
    found = re.search(r'"num_cpus":\s*(\d+)', source)
    actor_cpus = found.group(1) if found else "?"
    rows = [
        {
            "stage": "rollout",
            "asks": f"one actor per --workers, num_cpus={actor_cpus} each, no GPU (driver: plans, commits)",
            "tag": "code: pipeline/runtime/executor.py",
        }
    ]
    for suite in SUITES:
        expert = suite_tasks(suite)[0].expert
        rows.append(
            {
                "stage": f"train-experts ({suite})",
                "asks": f"one Ray task per task: num_cpus={expert.num_cpus}, "
                f"num_gpus={expert.num_gpus:g} (backend {expert.backend})",
                "tag": f"registry: env_configs/{suite}.yaml",
            }
        )
    for name, module in (("validate", validate), ("publish", publish)):
        uses_ray = "import ray" in inspect.getsource(module)
        where = "Ray tasks" if uses_ray else "the driver alone, no Ray resources"
        rows.append({"stage": name, "asks": where, "tag": f"code: {module.__name__.replace('.', '/')}.py"})
    return rows


def _best(rows: list[dict], suite: str, policy: str, backend: str | None = None) -> list[dict]:
    return [
        r
        for r in rows
        if r["suite"] == suite
        and r["policy"] == policy
        and "error" not in r
        and (backend is None or r["backend"] == backend)
    ]


def _expert_rate(rows: list[dict], suite: str, experts: list[dict], entry: dict[str, Any]) -> float:
    """An expert was measured on one task, random on more: per task, random's cost (the env's) plus
    the expert's measured inference overhead (expert - random on the tasks that have both)."""
    randoms = {r["config"]: r["cpu_s_per_step"] for r in _best(rows, suite, "random")}
    overheads = [e["cpu_s_per_step"] - randoms[e["config"]] for e in experts if e["config"] in randoms]
    if not overheads or len(randoms) < 2:
        return statistics.mean(e["cpu_s_per_step"] for e in experts)
    entry["rate_source"] = (
        "measured rates: random per task + the expert's measured inference overhead "
        f"({1000 * statistics.mean(overheads):.3f} CPU-s / 1k steps)"
    )
    return statistics.mean(cost + statistics.mean(overheads) for cost in randoms.values())


def extrapolate(record: Record, cluster: Cluster) -> dict[str, Any]:
    """The full build at JAT's budgets, per suite, from the registry and the measured rates."""
    from pipeline.tasks.registry import suite_tasks

    out: dict[str, Any] = {"cluster": asdict(cluster), "suites": {}}
    for suite in SUITES:
        specs = suite_tasks(suite)
        kind = specs[0].rollout.policy
        backend = specs[0].expert.backend
        if kind == "expert":  # the build's trained experts: default backend, else sb3, else nothing
            cells = _best(record.rollouts, suite, "expert", backend) or _best(
                record.rollouts, suite, "expert"
            )
        else:
            cells = _best(record.rollouts, suite, kind)
        entry: dict[str, Any] = {"tasks": len(specs), "policy": kind, "expert_backend": backend}
        entry["rate_source"] = "measured rates of the build policy"
        if not cells and kind == "expert":  # no expert measured: random's env cost, a lower bound
            cells = _best(record.rollouts, suite, "random")
            entry["rate_source"] = "measured rates of the random policy (a lower bound: no expert measured)"
        entry["rollout_cells"] = [f"{c['config']} {c['policy']}/{c['backend']}" for c in cells]
        all_cells = [r for r in record.rollouts if r["suite"] == suite and "error" not in r]
        steps_total, length_source = 0.0, ""
        for spec in specs:
            budget = spec.rollout.budget.to_dict()
            if "steps" in budget:
                steps_total += budget["steps"]
                length_source = "step budget (registry)"
            elif kind == "expert" and spec.max_episode_steps:
                # a tiny expert falls early; JAT's experts mostly play to the horizon: use it (upper bound)
                steps_total += budget["episodes"] * spec.max_episode_steps
                length_source = "registry horizon max_episode_steps (upper bound for trained experts)"
            elif cells:
                steps_total += budget["episodes"] * statistics.mean(c["mean_episode_length"] for c in cells)
                length_source = "measured mean episode length of the build policy"
            else:
                steps_total = math.nan
        entry["budget"] = specs[0].rollout.budget.to_dict()
        entry["steps"] = steps_total
        entry["steps_source"] = length_source
        if cells:
            entry["cpu_s_per_step"] = statistics.mean(c["cpu_s_per_step"] for c in cells)
            if kind == "expert" and cells[0]["policy"] == "expert":
                entry["cpu_s_per_step"] = _expert_rate(record.rollouts, suite, cells, entry)
            entry["rollout_core_h"] = steps_total * entry["cpu_s_per_step"] / 3600
        if all_cells:
            entry["bytes_per_step"] = statistics.mean(
                c["bytes_per_step"] for c in (cells or all_cells)
            )  # observations dominate: policy-independent
            entry["storage_bytes"] = steps_total * entry["bytes_per_step"]
        # the suite's default backend trains (sample-factory) unless it is the bot or the scripted policy.
        # The build trains wherever that backend trains: Atari and MuJoCo record with the experts, and
        # Meta-World (scripted by default) trains where its scripted policy is below JAT's 0.9 and keeps
        # the better (docker/rayjob-train-experts.yaml); every task is counted, an upper bound.
        trainable = backend not in ("babyai-bot", "metaworld-scripted")
        entry["experts_needed"] = trainable
        below = f"yes, where the {kind} policy is below 0.9 (all counted: upper bound)"
        entry["experts_needed_where"] = "yes" if kind == "expert" else below
        expert = specs[0].expert
        entry["expert_steps"] = expert.steps if trainable else 0
        entry["expert_steps_total"] = sum(s.expert.steps for s in specs) if trainable else 0
        entry["expert_num_cpus"] = expert.num_cpus
        training = [t for t in record.training if "error" not in t and t["suite"] == suite]
        if trainable and training and training[0].get("steps_per_cpu_s"):
            per_cpu = training[0]["steps_per_cpu_s"]
            entry["train_steps_per_cpu_s"] = per_cpu
            entry["train_core_h"] = entry["expert_steps_total"] / per_cpu / 3600
            end_to_end = training[0]["steps_per_cpu_s_end_to_end"]  # a short run's start-up weighs more
            entry["train_core_h_upper"] = entry["expert_steps_total"] / end_to_end / 3600
            concurrent = max(1, cluster.cores // entry["expert_num_cpus"])
            waves = math.ceil(len(specs) / concurrent)
            per_task_h = entry["expert_steps"] / per_cpu / entry["expert_num_cpus"] / 3600
            entry["train_wall_h_cpu_cluster"] = waves * per_task_h
            entry["train_waves"] = waves
        if trainable:
            frame_skip = specs[0].env.wrappers.frame_skip
            frames = entry["expert_steps_total"] * frame_skip
            entry["train_frames"] = frames
            entry["gpu_h_cited"] = frames / CITED_GPU["frames_per_s"] / 3600
        if "rollout_core_h" in entry:
            entry["rollout_wall_h_cluster"] = entry["rollout_core_h"] / cluster.cores
        out["suites"][suite] = entry
    return out


# --------------------------------------------------------------------------------------------- report


def render(record: Record, cluster: Cluster) -> str:
    """scaling.md from the figures alone (benchmarks/templates/scaling.md.j2)."""
    build = record.extrapolation["suites"]
    totals = {"tasks": sum(e["tasks"] for e in build.values())}
    totals["steps"] = sum(e["steps"] for e in build.values() if not math.isnan(e["steps"]))
    totals["core_h"] = sum(e.get("rollout_core_h", 0) for e in build.values())
    totals["storage"] = sum(e.get("storage_bytes", 0) for e in build.values())
    totals["train_core_h"] = sum(e.get("train_core_h", 0) for e in build.values() if e["experts_needed"])
    totals["gpu_h"] = build.get("atari", {}).get("gpu_h_cited", 0)
    experts = {r["suite"] for r in record.rollouts if r["policy"] == "expert" and "error" not in r}
    return (
        markdown_environment()
        .get_template("scaling.md.j2")
        .render(
            r=record,
            host=record.host,
            cluster=cluster,
            cited=CITED_GPU,
            suites=SUITES,
            rollouts=sorted(
                record.rollouts, key=lambda r: (r["suite"], r["config"], r["policy"], r["backend"])
            ),
            measured_experts=experts,
            trained={t["suite"] for t in record.training},
            build=build,
            totals=totals,
            imp=import_cost.figures(record.imports, build),
        )
    )


# ----------------------------------------------------------------------------------------------- main


def measure(budget: Budget, scratch: str, record: Record) -> None:
    import torch

    from pipeline.tasks.registry import get_task

    torch.set_num_threads(1)  # a Ray actor with num_cpus=1 runs torch on one thread
    sb3_dir, sf_dir = os.path.join(scratch, "experts-sb3"), os.path.join(scratch, "experts-sf")
    print("experts (sb3, tiny):", flush=True)
    for config in budget.sb3_tasks:
        record.experts.append(
            train_sb3(config, budget.sb3_steps, sb3_dir) | {"suite": get_task(config).suite}
        )
    print("expert training (sample-factory):", flush=True)
    for config, steps in budget.sf_steps.items():
        row = train_sf(config, steps, budget.sf_workers, scratch, sf_dir) | {"suite": get_task(config).suite}
        record.training.append(row)
        if "error" not in row:
            record.experts.append(
                {"config": config, "backend": "sample-factory", "steps": row["steps"], "suite": row["suite"]}
                | {"cpu_s": row["cpu_s_total"]}
            )
    print("import path (sample-factory checkpoints):", flush=True)
    record.imports = measure_imports(budget.import_suites, scratch, record.host["command"])
    print("rollouts:", flush=True)
    for suite, configs in budget.tasks.items():
        # BabyAI drops unfinished episodes (as JAT): a random policy rarely finishes one, so a run stores
        # nothing and fails; that cell is reported as not measured instead of burning CPU.
        policies = {"babyai": ["scripted"], "metaworld": ["scripted", "random"]}.get(suite, ["random"])
        for config in configs:
            for policy in policies:
                record.rollouts.append(measure_rollout(config, policy, policy, budget.rollout_steps, scratch))
    for expert in record.experts:
        if "error" in expert:
            continue
        root = sb3_dir if expert["backend"] == "sb3" else sf_dir
        row = measure_rollout(
            expert["config"], "expert", expert["backend"], budget.rollout_steps, scratch, root
        )
        record.rollouts.append(row)
    for row in record.rollouts:
        if row["policy"] == "scripted":
            row["backend"] = "BabyAI bot" if row["suite"] == "babyai" else "Meta-World scripted"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smaller measurement (< 3 CPU-minutes)")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="folder for scaling.md and scaling.json")
    parser.add_argument("--nodes", type=int, default=8, help="cluster for the wall-time estimate: nodes")
    parser.add_argument("--cores-per-node", type=int, default=32)
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (datasets, experts)")
    parser.add_argument("--from-json", help="render again from a scaling.json (no measurement)")
    parser.add_argument(
        "--measure-import",
        metavar="FILE",
        help="measure only the import path and merge it into FILE (a scaling.json); writes --out",
    )
    parser.add_argument("--child-train", help=argparse.SUPPRESS)
    parser.add_argument("--child-import", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_train:
        _child_train(*json.loads(args.child_train))
        return 0
    if args.child_import:
        suite, folder = json.loads(args.child_import)
        print(json.dumps(import_cost.measure_suite(suite, folder)))
        return 0
    command = "python benchmarks/build_cost.py" + (" --quick" if args.quick else "")
    if args.out != str(ROOT / "docs"):
        command += " --out OUT"
    budget = QUICK if args.quick else FULL
    cluster = Cluster(args.nodes, args.cores_per_node, args.gpus)
    if args.from_json:  # the doc from the raw figures alone: extrapolation and layout recomputed
        record = Record(**json.loads(Path(args.from_json).read_text()))
        record.host["rendered_by"] = f"python benchmarks/build_cost.py --from-json {args.from_json}"
        return write(record, cluster, Path(args.out))
    if args.measure_import:  # the import path alone, merged into an earlier measurement's figures
        record = Record(**json.loads(Path(args.measure_import).read_text()))
        scratch = tempfile.mkdtemp(prefix="build-cost-")
        try:
            command = f"python benchmarks/build_cost.py --measure-import {args.measure_import}"
            record.imports = measure_imports(budget.import_suites, scratch, command)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return write(record, cluster, Path(args.out))
    record = Record(host=host_info(command), budget=asdict(budget) | {"quick": args.quick})
    cpu_before = time.process_time() + children_cpu()
    scratch = tempfile.mkdtemp(prefix="build-cost-")
    os.environ.setdefault("RAY_TMPDIR", scratch)  # nothing here starts Ray; never touch a shared one
    try:
        measure(budget, scratch, record)
    finally:
        if args.keep:
            print(f"scratch kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    record.cpu_seconds_total = time.process_time() + children_cpu() - cpu_before
    record.host["loadavg_end"] = os.getloadavg()
    return write(record, cluster, Path(args.out))


def write(record: Record, cluster: Cluster, out: Path) -> int:
    record.ray_layout = ray_layout()
    record.extrapolation = extrapolate(record, cluster)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "scaling.json", asdict(record))
    (out / "scaling.md").write_text(render(record, cluster))
    print(f"wrote {out / 'scaling.md'} and {out / 'scaling.json'} ({record.cpu_seconds_total:.0f} CPU-s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
