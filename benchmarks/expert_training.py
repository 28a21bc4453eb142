"""Throughput of our sample-factory backend versus sample-factory run directly, same config, same run.

    python benchmarks/expert_training.py [--task mujoco-hopper] [--steps 60000] [--rounds 2] [--workers 2]

"direct" is sample-factory's own entry point (`parse_sf_args` + `run_rl`, as its examples and JAT's
train.py do) on the plain gymnasium env, with the task's hyperparameters from env_configs/. "ours"
is `SampleFactoryBackend.train` on the same hyperparameters: `pipeline.tasks.envs.make_env` observations,
our training wrappers, learning-curve and progress observer, checkpoints and model export. Both
need `experts.sf_compat` to run at all under numpy >= 2.4, so both have it.

Runs alternate (direct, ours, direct, ours, …) so that load from other processes hits both alike.
Three figures per run: end to end (env steps / wall time of the whole call, start-up and shutdown
included), steady state (FPS between 20 % of the steps and the end, from a once-a-second clock), and
CPU microseconds per env step (user + system time of the run's whole process tree: runner, learner,
inference and rollout workers, start-up included). Wall-clock figures follow whatever else runs on the
machine (on 2 shared cores they swing by 30 % or more between rounds); CPU time per step barely does, so
on a busy machine the CPU ratio is the fair view of our backend's overhead. Target: ours/direct >= 0.9.

    python benchmarks/expert_training.py --backends sample-factory,sb3,rllib [--task ...] [--steps ...]

compares our backends instead, each through its own `train` on the same task, step budget and number
of env workers (sample-factory `num_workers`, rllib `num_env_runners`; sb3 steps its envs in one
process): sample-factory with the task's settings, rllib with the task's `expert.rllib` settings (PPO),
sb3 with PPO at stable-baselines3's defaults (the task's own sb3 algorithm may be off-policy, whose cost
per step is of another kind). Each recipe's learning cost is included: these are the figures a user
gets, not the env-stepping speed alone. CPU time there is sampled from the child's whole process tree
every 0.5 s (RLlib's env runners are Ray workers under the local Ray started in the child, not
processes it waits for), so it misses the last half second of each process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from typing import Any

from harness import TreeCPU, children_cpu, last_json_line, write_json

import experts.sf_compat

# sample-factory's worker processes re-import this module (they unpickle `_plain_env` from it), so the
# numpy >= 2.4 fix that sample-factory needs to run at all is applied here, at import, in every process.
experts.sf_compat.apply()
# ... and so is the log level: our backend quiets sample-factory's "rl" logger in its workers the same way
# (at import of experts.sample_factory), so both arms' workers log alike.
logging.getLogger("rl").setLevel(logging.WARNING)


def _plain_env(
    env_id: str,
    make_kwargs: dict[str, Any],
    full_env_name: str,
    cfg: Any = None,
    env_config: Any = None,
    render_mode: str | None = None,
) -> Any:
    import gymnasium as gym

    if env_id.startswith("Meta-World/"):
        import metaworld

        gym.register_envs(metaworld)
    return gym.make(env_id, **make_kwargs)


class Clock:
    """(time, env steps) about once a second: steady-state FPS without start-up and shutdown."""

    def __init__(self) -> None:
        self.points: list[tuple[float, int]] = []

    def record(self, steps: int) -> None:
        now = time.monotonic()
        if not self.points or now - self.points[-1][0] >= 1.0:
            self.points.append((now, steps))

    def on_training_step(self, runner: Any, iteration: int) -> None:
        self.record(int(sum(runner.env_steps.values())))

    def __getattr__(self, name: str) -> Any:  # the other AlgoObserver hooks: nothing to do
        return lambda *args, **kwargs: None


def steady_fps(points: list[tuple[float, int]], warmup: float = 0.2) -> float:
    """FPS between the first point past `warmup` of the steps and the last point."""
    if len(points) < 3:
        return float("nan")
    start = next(p for p in points if p[1] >= warmup * points[-1][1])
    end = points[-1]
    return (end[1] - start[1]) / (end[0] - start[0]) if end[0] > start[0] else float("nan")


def run_direct(
    config: str, hyperparameters: dict[str, Any], steps: int, workdir: str
) -> tuple[int, float, list]:
    """sample-factory's own way: register an env factory, parse args, `run_rl`."""
    from sample_factory.cfg.arguments import parse_full_cfg, parse_sf_args
    from sample_factory.envs.env_utils import register_env
    from sample_factory.train import make_runner

    from pipeline.tasks.registry import get_task

    spec = get_task(config)
    make_kwargs = dict(spec.make_kwargs)
    if spec.suite == "metaworld":
        make_kwargs.update(env_name=spec.env_name, max_episode_steps=spec.max_episode_steps or 100)
    name = f"direct-{config}"
    register_env(name, partial(_plain_env, spec.env_id, make_kwargs))
    argv = [
        f"--env={name}",
        "--experiment=direct",
        f"--train_dir={workdir}",
        f"--train_for_env_steps={steps}",
        "--device=cpu",
        "--restart_behavior=overwrite",
        "--seed=0",
    ]
    parser, _ = parse_sf_args(argv=argv, evaluation=False)
    parser.set_defaults(**hyperparameters)
    cfg = parse_full_cfg(parser, argv)
    clock = Clock()
    started = time.monotonic()
    cfg, runner = make_runner(cfg)  # what `run_rl` does, plus a clock observer
    runner.register_observer(clock)
    if runner.init() == 0:
        runner.run()
    seconds = time.monotonic() - started
    import torch

    checkpoints = sorted(os.listdir(os.path.join(workdir, "direct", "checkpoint_p0")))
    state = torch.load(os.path.join(workdir, "direct", "checkpoint_p0", checkpoints[-1]), weights_only=False)
    return int(state["env_steps"]), seconds, clock.points


def run_ours(
    config: str, hyperparameters: dict[str, Any], steps: int, workdir: str
) -> tuple[int, float, list]:
    from experts.base import TrainJob
    from experts.sample_factory import SampleFactoryBackend
    from pipeline.tasks.registry import get_task

    job = TrainJob(
        spec=get_task(config),
        hyperparameters=hyperparameters,
        steps=steps,
        seed=0,
        workdir=os.path.join(workdir, "ckpt"),
        model_dir=os.path.join(workdir, "model"),
        num_cpus=int(hyperparameters["num_workers"]),
        report=lambda progress: clock.record(progress.steps),  # our live-progress hook, about 1/s
    )
    clock = Clock()
    started = time.monotonic()
    outcome = SampleFactoryBackend().train(job)
    return outcome.steps, time.monotonic() - started, clock.points


def backend_settings(name: str, config: str, workers: int) -> dict[str, Any]:
    """The settings each backend is compared with (see the docstring)."""
    from pipeline.tasks.registry import get_task

    spec = get_task(config)
    if name == "sample-factory":
        return {**spec.expert.settings(name), "num_workers": workers}
    if name == "rllib":
        return {**spec.expert.settings(name), "num_env_runners": workers, "checkpoint_every": 10**12}
    return {"algo": "ppo", "n_envs": workers, "checkpoint_every": 10**12}


def run_backend(name: str, config: str, steps: int, workdir: str, workers: int) -> dict[str, Any]:
    from experts.base import TrainJob, get_backend
    from pipeline.tasks.registry import get_task

    clock = Clock()
    job = TrainJob(
        spec=get_task(config),
        hyperparameters=backend_settings(name, config, workers),
        steps=steps,
        seed=0,
        workdir=os.path.join(workdir, "ckpt"),
        model_dir=os.path.join(workdir, "model"),
        num_cpus=workers,
        report=lambda progress: clock.record(progress.steps),
    )
    cpu = TreeCPU()
    started = time.monotonic()
    outcome = get_backend(name).train(job)
    seconds = time.monotonic() - started
    return {"kind": name, "steps": outcome.steps, "seconds": seconds, "steady_fps": steady_fps(clock.points),
            "cpu_s": cpu.total()}  # fmt: skip


def compare_backends(args: argparse.Namespace) -> int:
    import subprocess

    results: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(args.rounds):
        for name in args.backends.split(","):
            command = [sys.executable, __file__, "--task", args.task, "--steps", str(args.steps),
                       "--workers", str(args.workers), "--child", f"backend:{name}"]  # fmt: skip
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result = last_json_line(out)
            assert result is not None, f"{' '.join(command)} printed no figures"
            results.setdefault(name, []).append(result)
            print(
                f"round {round_ + 1} {name:>14}: {result['steps']} steps in {result['seconds']:.1f} s = "
                f"{result['steps'] / result['seconds']:.0f} FPS end to end, {result['steady_fps']:.0f} FPS "
                f"steady; {result['cpu_s']:.1f} CPU s = {result['cpu_s'] / result['steps'] * 1e6:.0f} CPU "
                "us/step",
                flush=True,
            )
    print(f"{args.task}, {args.workers} env workers, {args.steps} steps x {args.rounds} rounds (medians)")
    summary = {}
    for name, runs in results.items():
        summary[name] = {
            "fps": statistics.median(r["steps"] / r["seconds"] for r in runs),
            "steady_fps": statistics.median(r["steady_fps"] for r in runs),
            "cpu_us_per_step": statistics.median(r["cpu_s"] / r["steps"] * 1e6 for r in runs),
        }
        print(f"{name:>14}: " + ", ".join(f"{k} {v:.0f}" for k, v in summary[name].items()))
    if args.json:
        write_json(args.json, {"task": args.task, "steps": args.steps, "runs": results, "summary": summary})
    return 0


def _child(kind: str, config: str, hyperparameters: dict[str, Any], steps: int) -> None:
    """One measurement in a fresh process (sample-factory keeps global state), printed as JSON."""
    if kind.startswith("backend:"):
        with tempfile.TemporaryDirectory(prefix="bench-backend-") as workdir:
            workers = int(hyperparameters["num_workers"])
            print(json.dumps(run_backend(kind.split(":", 1)[1], config, steps, workdir, workers)))
        return
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as workdir:
        run = run_direct if kind == "direct" else run_ours
        done, seconds, points = run(config, hyperparameters, steps, workdir)
    print(json.dumps({"kind": kind, "steps": done, "seconds": seconds, "steady_fps": steady_fps(points)}))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="mujoco-hopper")
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="sample-factory rollout workers")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="write the figures to this file too")
    parser.add_argument(
        "--backends", help="compare these of our backends instead, e.g. sample-factory,sb3,rllib"
    )
    args = parser.parse_args()

    from pipeline.tasks.registry import get_task

    hyperparameters = get_task(args.task).expert.settings("sample-factory")
    hyperparameters["num_workers"] = args.workers
    if args.child:
        _child(args.child, args.task, hyperparameters, args.steps)
        return 0
    if args.backends:
        return compare_backends(args)

    import subprocess

    fps: dict[str, list[float]] = {"direct": [], "ours": []}
    steady: dict[str, list[float]] = {"direct": [], "ours": []}
    cpu_us: dict[str, list[float]] = {"direct": [], "ours": []}
    for round_ in range(args.rounds):
        for kind in ("direct", "ours"):
            command = [
                sys.executable,
                __file__,
                "--task",
                args.task,
                "--steps",
                str(args.steps),
                "--workers",
                str(args.workers),
                "--child",
                kind,
            ]
            before = children_cpu()
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            # the child and every process it waited for (sample-factory joins all of its own)
            cpu = children_cpu() - before
            result = last_json_line(out)
            assert result is not None, f"{' '.join(command)} printed no figures"
            fps[kind].append(result["steps"] / result["seconds"])
            steady[kind].append(result["steady_fps"])
            cpu_us[kind].append(cpu / result["steps"] * 1e6)
            print(
                f"round {round_ + 1} {kind:>6}: {result['steps']} steps in {result['seconds']:.1f} s "
                f"= {fps[kind][-1]:.0f} FPS end to end, {steady[kind][-1]:.0f} FPS steady; "
                f"{cpu:.1f} CPU s = {cpu_us[kind][-1]:.0f} CPU us/step",
                flush=True,
            )
    print(f"{args.task}, {args.workers} workers, {args.steps} steps x {args.rounds} rounds")
    ratios = {}
    for label, values in (("end to end", fps), ("steady state", steady)):
        direct, ours = statistics.median(values["direct"]), statistics.median(values["ours"])
        ratios[label] = ours / direct
        print(
            f"{label:>12}: median FPS direct {direct:.0f}, ours {ours:.0f}; ratio ours/direct = "
            f"{ratios[label]:.3f} (target >= 0.9)"
        )
    direct, ours = statistics.median(cpu_us["direct"]), statistics.median(cpu_us["ours"])
    ratios["by CPU"] = direct / ours
    print(
        f"{'by CPU':>12}: median CPU us/step direct {direct:.0f}, ours {ours:.0f}; ratio direct/ours = "
        f"{ratios['by CPU']:.3f} (ours' speed relative to direct at equal CPU; target >= 0.9)"
    )
    if args.json:
        record = {
            "task": args.task,
            "steps": args.steps,
            "fps": fps,
            "steady_fps": steady,
            "cpu_us_per_step": cpu_us,
            "ratios": ratios,
        }
        write_json(args.json, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
