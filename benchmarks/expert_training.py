"""Throughput of our sample-factory backend versus sample-factory run directly, same config, same run.

    python benchmarks/expert_training.py [--task mujoco-hopper] [--steps 60000] [--rounds 2] [--workers 2]

"direct" is sample-factory's own entry point (`parse_sf_args` + `run_rl`, as its examples and JAT's
train.py do) on the plain gymnasium env, with the task's hyperparameters from env_configs/. "ours"
is `SampleFactoryBackend.train` on the same hyperparameters: `pipeline.envs.make_env` observations,
our training wrappers, learning-curve and progress observer, checkpoints and model export. Both
need `experts.sf_compat` to run at all under numpy >= 2.4, so both have it.

Runs alternate (direct, ours, direct, ours, …) so that load from other processes hits both alike;
FPS = env steps / wall time of the whole call (start-up included). Target: ours/direct >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from typing import Any

import experts.sf_compat

# sample-factory's worker processes re-import this module (they unpickle `_plain_env` from it), so the
# numpy >= 2.4 fix that sample-factory needs to run at all is applied here, at import, in every process.
experts.sf_compat.apply()


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


def run_direct(config: str, hyperparameters: dict[str, Any], steps: int, workdir: str) -> tuple[int, float]:
    """sample-factory's own way: register an env factory, parse args, `run_rl`."""
    from sample_factory.cfg.arguments import parse_full_cfg, parse_sf_args
    from sample_factory.envs.env_utils import register_env
    from sample_factory.train import run_rl

    from pipeline.registry import get_task

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
    started = time.monotonic()
    run_rl(cfg)
    seconds = time.monotonic() - started
    import torch

    checkpoints = sorted(os.listdir(os.path.join(workdir, "direct", "checkpoint_p0")))
    state = torch.load(os.path.join(workdir, "direct", "checkpoint_p0", checkpoints[-1]), weights_only=False)
    return int(state["env_steps"]), seconds


def run_ours(config: str, hyperparameters: dict[str, Any], steps: int, workdir: str) -> tuple[int, float]:
    from experts.base import TrainJob
    from experts.sample_factory import SampleFactoryBackend
    from pipeline.registry import get_task

    job = TrainJob(
        spec=get_task(config),
        hyperparameters=hyperparameters,
        steps=steps,
        seed=0,
        workdir=os.path.join(workdir, "ckpt"),
        model_dir=os.path.join(workdir, "model"),
        num_cpus=int(hyperparameters["num_workers"]),
    )
    started = time.monotonic()
    outcome = SampleFactoryBackend().train(job)
    return outcome.steps, time.monotonic() - started


def _child(kind: str, config: str, hyperparameters: dict[str, Any], steps: int) -> None:
    """One measurement in a fresh process (sample-factory keeps global state), printed as JSON."""
    import logging

    logging.getLogger("rl").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as workdir:
        done, seconds = (run_direct if kind == "direct" else run_ours)(
            config, hyperparameters, steps, workdir
        )
    print(json.dumps({"kind": kind, "steps": done, "seconds": seconds}))


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
    args = parser.parse_args()

    from pipeline.registry import get_task

    hyperparameters = dict(get_task(args.task).expert["sample-factory"])
    hyperparameters["num_workers"] = args.workers
    if args.child:
        _child(args.child, args.task, hyperparameters, args.steps)
        return 0

    import subprocess

    fps: dict[str, list[float]] = {"direct": [], "ours": []}
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
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            fps[kind].append(result["steps"] / result["seconds"])
            print(
                f"round {round_ + 1} {kind:>6}: {result['steps']} steps in {result['seconds']:.1f} s "
                f"= {fps[kind][-1]:.0f} FPS",
                flush=True,
            )
    direct, ours = statistics.median(fps["direct"]), statistics.median(fps["ours"])
    ratio = ours / direct
    print(f"{args.task}, {args.workers} workers, {args.steps} steps x {args.rounds} rounds")
    print(
        f"median FPS: direct {direct:.0f}, ours {ours:.0f}; ratio ours/direct = {ratio:.3f} (target >= 0.9)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"task": args.task, "steps": args.steps, "fps": fps, "ratio": ratio}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
