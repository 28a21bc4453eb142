"""Helpers for expert tests: tiny real training plans."""

from __future__ import annotations

from pathlib import Path

from experts.training import ExpertPlan
from pipeline.tasks.registry import get_task

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
# RLlib's PPO with 2 env runners (Ray actors) and 256-step batches: two batches in a few seconds.
TINY_RLLIB = {
    "num_env_runners": 2,
    "num_envs_per_env_runner": 1,
    "rollout_fragment_length": 128,
    "train_batch_size_per_learner": 256,
    "minibatch_size": 64,
    "num_epochs": 2,
    "checkpoint_every": 256,
}


def tiny_plan(
    config: str, backend: str, steps: int, resume: bool = False, history_every: int = 0, **overrides
) -> ExpertPlan:
    spec = get_task(config)
    base = {"sample-factory": TINY_SF, "sb3": TINY_SB3_PPO, "rllib": TINY_RLLIB}.get(backend, {})
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


def released_layout(workdir: Path, dest: Path, env: str, legacy: bool = True) -> Path:
    """A sample-factory experiment (`workdir/sf/`, written by sample-factory itself) laid out as the
    released JAT experts are on the Hub: the config as `cfg.json` (`config.json` for repos written by
    sample-factory >= 2.0.2) naming the env as sample-factory's examples do (`mujoco_hopper`),
    `checkpoint_p0/` with its checkpoints, best checkpoint and `milestones/`, a card, a replay and
    summaries. Returns `dest`."""
    import json
    import shutil

    source = workdir / "sf"
    assert (source / "checkpoint_p0" / "milestones").is_dir(), "train with save_milestones_sec"
    dest.mkdir(parents=True)
    shutil.copytree(source / "checkpoint_p0", dest / "checkpoint_p0")
    cfg = json.loads((source / "config.json").read_text())
    cfg["env"] = env
    (dest / ("cfg.json" if legacy else "config.json")).write_text(json.dumps(cfg, indent=4))
    (dest / "README.md").write_text(
        f"---\nlibrary_name: sample-factory\nlicense: apache-2.0\ntags:\n- {env}\n---\n"
        f"A(n) **APPO** model trained on the **{env}** environment.\n"
    )
    (dest / "replay.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a real clip")
    (dest / ".summary" / "0").mkdir(parents=True)
    (dest / ".summary" / "0" / "events.out.tfevents.0").write_bytes(b"summary")
    return dest


def nothing_written(experts: Path) -> bool:
    """The output folder of a refused command: absent or empty."""
    return not experts.exists() or not any(experts.rglob("*"))


def one_line_exit_2(capsys, code: int, *needles: str) -> None:
    """A refusal as the CLI gives it: exit 2 and one `error:` line holding every needle."""
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:"), err
    for needle in needles:
        assert needle in err[0], err[0]
