"""Atari env steps/s: our gymnasium path, our envpool-semantics env, envpool, ale-py's AtariVectorEnv.

All arms play the same game with uniformly random actions for `--seconds` each, in one process, one
after another (so they share the machine's state), and report agent steps (4 frames each) per second
and the ratio to our gymnasium path (`make_env` with `atari_semantics: gymnasium`, the rollout's env):

- `gym`: `make_env` as the registry builds it (AtariPreprocessing + frame stack), one env;
- `ours-envpool`: `make_env` with `atari_semantics: envpool` (pipeline/suites/atari_envpool.py), one env;
- `envpool xN`: `envpool.make(..., episodic_life=True, reward_clip=True)` stepping N envs per call
  with its C++ thread pool (`--threads`, default one per core), N = 1 and `--num-envs`;
- `ale-vector xN`: `ale_py.vector.AtariVectorEnv` (ALE's own C++ port of envpool's env), same N.

envpool is optional (not a project dependency): its arms are skipped when it does not import.

    PYTHONPATH=. .venv/bin/python benchmarks/atari_env_throughput.py --game breakout --seconds 4
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import time
from collections.abc import Callable

import numpy as np

from pipeline.tasks.envs import make_env
from pipeline.tasks.registry import get_task


def _timed(step: Callable[[], int], seconds: float) -> float:
    """Agent steps per second of `step` (which returns the steps it made) over about `seconds`."""
    for _ in range(20):  # warm-up
        step()
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        steps += step()
    return steps / elapsed


def _single(env, rng: np.random.Generator) -> Callable[[], int]:
    env.reset(seed=0)
    n = env.action_space.n

    def step() -> int:
        _, _, terminated, truncated, _ = env.step(int(rng.integers(n)))
        if terminated or truncated:
            env.reset()
        return 1

    return step


def _batched(env, num_envs: int, n_actions: int, rng: np.random.Generator) -> Callable[[], int]:
    env.reset()

    def step() -> int:
        env.step(rng.integers(n_actions, size=num_envs))  # both autoreset on the next step
        return num_envs

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="breakout", help="registry task name after atari-")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per arm")
    parser.add_argument("--num-envs", type=int, default=8, help="envs per call of the vectorised arms")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="C++ threads (vector arms)")
    args = parser.parse_args()
    spec = get_task(f"atari-{args.game}")
    envpool_spec = dataclasses.replace(spec, env=dataclasses.replace(spec.env, atari_semantics="envpool"))
    rng = np.random.default_rng(0)
    n_actions = spec.action.n
    arms: dict[str, Callable[[], int]] = {
        "gym": _single(make_env(spec), rng),
        "ours-envpool": _single(make_env(envpool_spec), rng),
    }
    game_id = spec.env_id.split("/")[1].removesuffix("-v5")  # Breakout
    if importlib.util.find_spec("envpool") is not None:
        import envpool

        for n in (1, args.num_envs):
            env = envpool.make(
                f"{game_id}-v5",
                env_type="gymnasium",
                num_envs=n,
                num_threads=min(n, args.threads),
                episodic_life=True,
                reward_clip=True,
            )
            arms[f"envpool x{n}"] = _batched(env, n, n_actions, rng)
    else:
        print("envpool is not installed: its arms are skipped")
    from ale_py.vector_env import AtariVectorEnv

    rom = "".join("_" + c.lower() if c.isupper() else c for c in game_id).lstrip(
        "_"
    )  # SpaceInvaders -> space_invaders
    for n in (1, args.num_envs):
        env = AtariVectorEnv(
            rom, n, num_threads=min(n, args.threads), episodic_life=True, reward_clipping=True
        )
        arms[f"ale-vector x{n}"] = _batched(env, n, n_actions, rng)
    print(f"atari-{args.game}, {args.seconds:g} s per arm, {os.cpu_count()} cores, random actions")
    base = None
    for name, step in arms.items():
        rate = _timed(step, args.seconds)
        base = base or rate
        print(f"{name:>16}: {rate:9.0f} steps/s  {rate / base:5.2f}x gym")


if __name__ == "__main__":
    main()
