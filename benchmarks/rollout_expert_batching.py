"""Expert rollouts: lockstep envs with one forward pass per step, against the one-env bare loop.

A trained expert's forward pass costs more than the env step it decides (an MLP on this CPU:
~1 ms against ~0.25 ms for Hopper), so a rollout with experts is bound by inference. Rollout
workers step `envs_per_worker` envs in lockstep and batch their observations. This measures,
side by side and interleaved in one run, collected steps/s of

- bare:   `make_env` + the expert's `act` per step, one env, nothing recorded (the loop every
          recorder of one env, Minari's DataCollector included, runs at best);
- ours/1: `rollout(workers=0, envs_per_worker=1)`: recording, Parquet, manifests, one env;
- ours/W: the same with `envs_per_worker=W` (the suite default is 16 for MuJoCo).

Workers=0 keeps Ray out of it (its start-up is measured by rollout_throughput.py), so the
ratios show what batching does per worker. The expert is a tiny one trained at start-up with
the task's default backend (its quality does not matter for throughput; its network does).

    .venv/bin/python benchmarks/rollout_expert_batching.py [--task mujoco-hopper] [--episodes 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from harness import make_console, spread
from rich.table import Table

from experts.store import ExpertStore
from experts.training import ExpertPlan, train_expert
from pipeline.format.plan import plan_episodes
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task

console = make_console()
# sample-factory in one process, a small batch: a usable expert in ~15 s on 2 cores.
TINY_SF = {"serial_mode": True, "num_workers": 1, "num_envs_per_worker": 4, "worker_num_splits": 1}
TINY_SF |= {"rollout": 32, "batch_size": 128, "num_batches_per_epoch": 1}


def train_tiny_expert(config: str, root: str, steps: int) -> None:
    spec = get_task(config)
    backend = spec.expert.backend
    hyperparameters = spec.expert.settings(backend)
    if backend == "sample-factory":
        hyperparameters |= TINY_SF
    plan = ExpertPlan(
        config=config,
        backend=backend,
        hyperparameters=hyperparameters,
        steps=steps,
        seed=0,
        num_cpus=1,
        eval_episodes=2,
        threshold=0.5,
        deterministic=True,
    )
    result = train_expert(plan, root)
    if result.status == "failed":
        raise SystemExit(f"training the benchmark's expert failed: {result.error}")


def bare(config: str, root: str, episodes: int) -> tuple[int, float]:
    spec = get_task(config)
    env = make_env(spec)
    policy = ExpertStore(root).load_policy(spec)
    steps, started = 0, time.perf_counter()
    for planned in plan_episodes(config, 0, episodes, 0, 0.1, ensure_test=True):
        observation, info = env.reset(seed=planned.seed)
        policy.reset(env, planned.seed)
        while True:
            observation, _, terminated, truncated, info = env.step(policy.act(observation, info))
            steps += 1
            if terminated or truncated:
                break
    return steps, time.perf_counter() - started


def ours(config: str, root: str, episodes: int, width: int, scratch: str) -> tuple[int, float]:
    out = tempfile.mkdtemp(dir=scratch)
    request = RolloutConfig(
        out=out,
        tasks=(config,),
        episodes=episodes,
        workers=0,
        policy="expert",
        experts_dir=root,
        allow_weak=True,
        envs_per_worker=width,
        progress=False,
    )
    started = time.perf_counter()
    summary = rollout(request)
    return summary.total_steps, time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="mujoco-hopper")
    p.add_argument("--episodes", type=int, default=40, help="episodes per measurement")
    p.add_argument("--width", type=int, default=16, help="lockstep envs per worker for ours/W")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--train-steps", type=int, default=20_000, help="training steps of the benchmark expert")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as scratch:
        root = str(Path(scratch) / "experts")
        console.print(f"training a tiny {args.task} expert ({args.train_steps} steps)…")
        train_tiny_expert(args.task, root, args.train_steps)
        rates: dict[str, list[float]] = {"bare": [], "ours/1": [], f"ours/{args.width}": []}
        for repeat in range(args.repeats):
            for mode in rates:
                if mode == "bare":
                    steps, seconds = bare(args.task, root, args.episodes)
                else:
                    width = int(mode.split("/")[1])
                    steps, seconds = ours(args.task, root, args.episodes, width, scratch)
                rates[mode].append(steps / seconds)
                console.print(f"repeat {repeat + 1} {mode:>8}: {steps:,} steps in {seconds:.1f} s")
    table = Table(title=f"{args.task}, expert policy, {args.episodes} episodes, medians [min-max]")
    for column in ("mode", "steps/s", "vs bare"):
        table.add_column(column, justify="right")
    base = statistics.median(rates["bare"])
    for mode, values in rates.items():
        table.add_row(mode, spread(values, 0), f"{statistics.median(values) / base:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
