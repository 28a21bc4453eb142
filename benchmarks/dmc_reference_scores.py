"""Measure what env_configs/dmc.yaml says of each DeepMind Control task, and print its `tasks:` block.

For every task of `dm_control.suite.BENCHMARKING` it measures, from the env itself (our thin env,
`pipeline.suites.dmc.DMCEnv`): the observation and action sizes and bounds, the control timestep,
dm_control's own default episode length (its time limit over the control timestep), and the
random policy's return over `--episodes` episodes of `--horizon` steps on seeds 0, 1, ... — the
pipeline's own random policy (`pipeline.tasks.policies.RandomPolicy`: uniform actions, the action space
seeded with the episode's seed), as `pipeline rollout --policy random` records it. The expert
reference is the best possible return (every dm_control reward lies in [0, 1], one per step), not
a trained expert: no per-task published figure could be found to cite (README.md, DeepMind Control).

    PYTHONPATH=. python benchmarks/dmc_reference_scores.py --episodes 50 > /tmp/dmc_tasks.yaml

env_configs/dmc.yaml holds the output of that command: 1.4M steps, 54 min at a load average of 30-42 on
2 shared cores; `--episodes 10` took ~2.5 min at a load average of ~10-16.
"""

from __future__ import annotations

import argparse
import sys
import time

import gymnasium as gym
import numpy as np
import yaml

from pipeline.suites.dmc import DMCEnv, dm_suite
from pipeline.tasks.policies import RandomPolicy

EXPERT_SOURCE = (
    "bound: the best possible return, 1000 steps of reward 1 (dm_control's rewards lie in [0, 1]); "
    "no trained or published expert"
)


def config_name(domain: str, task: str) -> str:
    """The registry's short name: dm_control's names with hyphens ("ball-in-cup-catch")."""
    return f"{domain}-{task}".replace("_", "-")


def default_steps(domain: str, task: str) -> int:
    """dm_control's own episode length for the task: its default time limit in control steps."""
    env = dm_suite().load(domain, task)
    steps = env._step_limit  # time_limit / control_timestep: where dm_control truncates
    env.close()
    return round(steps)


def random_returns(domain: str, task: str, episodes: int, horizon: int) -> list[float]:
    env = gym.wrappers.TimeLimit(DMCEnv(domain, task), horizon)
    policy = RandomPolicy(env.action_space)
    returns = []
    for seed in range(episodes):
        observation, info = env.reset(seed=seed)
        policy.reset(env, seed)
        total, done = 0.0, False
        while not done:
            observation, reward, terminated, truncated, info = env.step(policy.act(observation, info))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def measure(domain: str, task: str, episodes: int, horizon: int) -> dict:
    env = DMCEnv(domain, task)
    obs, act, timestep = env.observation_space, env.action_space, env.control_timestep
    env.close()
    if not (np.all(act.low == act.low.flat[0]) and np.all(act.high == act.high.flat[0])):
        raise SystemExit(f"{domain}-{task}: per-dimension action bounds; the registry holds one low/high")
    returns = random_returns(domain, task, episodes, horizon)
    steps = default_steps(domain, task)
    return {
        "env_id": f"dmc/{domain}-{task}-v0",
        "jat_env_id": f"{domain}-{task}",
        "observation": {"type": "continuous", "shape": list(obs.shape)},
        "action": {
            "type": "continuous",
            "shape": list(act.shape),
            "low": float(act.low.flat[0]),
            "high": float(act.high.flat[0]),
        },
        "max_episode_steps": steps,
        "scores": {
            "expert": {"mean": float(horizon)},
            "random": {"mean": float(np.mean(returns)), "std": float(np.std(returns))},
        },
        "expert_source": EXPERT_SOURCE,
        "notes": [
            f"control timestep {timestep:g} s ({1 / timestep:g} steps a second); dm_control's time limit: "
            f"{steps} steps",
            f"random: {episodes} episodes of {horizon} steps, seeds 0-{episodes - 1} "
            "(benchmarks/dmc_reference_scores.py)",
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50, help="random-policy episodes per task")
    parser.add_argument("--horizon", type=int, default=1000, help="steps per episode (DMC's 1000)")
    parser.add_argument("--tasks", nargs="*", help="domain-task names (default: all of BENCHMARKING)")
    args = parser.parse_args()
    chosen = [(d, t) for d, t in dm_suite().BENCHMARKING if not args.tasks or f"{d}-{t}" in args.tasks]
    tasks = {}
    for domain, task in chosen:
        start = time.monotonic()
        tasks[config_name(domain, task)] = measure(domain, task, args.episodes, args.horizon)
        random = tasks[config_name(domain, task)]["scores"]["random"]
        print(
            f"{domain}-{task}: random {random['mean']:.2f} +- {random['std']:.2f} "
            f"({time.monotonic() - start:.0f} s)",
            file=sys.stderr,
        )
    print(yaml.safe_dump({"tasks": tasks}, sort_keys=False, width=110))


if __name__ == "__main__":
    main()
