"""Helpers for expert tests: tiny real training plans."""

from __future__ import annotations

from experts.training import ExpertPlan
from pipeline.registry import get_task

# sample-factory in one process with a small batch: a few thousand steps in ~15 s on 2 cores.
TINY_SF = {
    "serial_mode": True,
    "num_workers": 1,
    "num_envs_per_worker": 4,
    "worker_num_splits": 1,
    "rollout": 32,
    "batch_size": 128,
    "num_batches_per_epoch": 1,
    "save_every_sec": 5,
}
TINY_SB3_PPO = {"algo": "ppo", "n_steps": 256, "batch_size": 64, "n_epochs": 2, "checkpoint_every": 512}


def tiny_plan(
    config: str, backend: str, steps: int, resume: bool = False, history_every: int = 0, **overrides
) -> ExpertPlan:
    spec = get_task(config)
    base = TINY_SF if backend == "sample-factory" else TINY_SB3_PPO if backend == "sb3" else {}
    hyperparameters = {**spec.expert.settings(backend), **base} if backend != "sb3" else dict(base)
    return ExpertPlan(
        config=config,
        backend=backend,
        hyperparameters={**hyperparameters, **overrides},
        steps=steps,
        seed=0,
        num_cpus=1,
        eval_episodes=2,
        threshold=0.5,
        deterministic=True,
        resume=resume,
        history_every=history_every,
    )
