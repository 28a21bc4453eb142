"""What the import path costs (issue 21, part 3): bytes `pipeline import-experts --source jat` downloads.

JAT's released experts are sample-factory experiments on the Hub. An import reads only the config
(`cfg.json` / `config.json`), the one checkpoint sample-factory's learner would load and the card
(`experts.released.needed_files`); milestones, clips and summaries are never fetched. The Hub cannot
be reached here, so per suite with released experts this measures, in a fresh process (`measure_suite`):

- the checkpoint sample-factory itself writes for the suite's released architecture: the real backend
  (`experts.training.train_expert`, the registry's `expert.sample-factory` settings with a tiny sampling
  budget, which shapes no weight) trains a few hundred steps on one task; `needed_files` picks, from the
  experiment folder it wrote, what an import of that folder would read; the files' sizes are measured;
- the same checkpoint rebuilt for every task with a released expert (the network depends on the task's
  observation and action sizes: MuJoCo's differ, Humanoid 376): sample-factory's `create_actor_critic`
  from the same settings, its Adam (`learning_rate`, `adam_beta1/2`, `adam_eps`) after one optimisation
  step on a real batch of `make_env` observations (so both moments exist), and `torch.save` of the dict
  sample-factory's Learner saves. The trained task's rebuilt size is checked against the real one.

The card is cited (the released repos' listings) or, where no listing was found, assumed and tagged so.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RELEASED_SUITES = ("atari", "mujoco", "metaworld")
TRAINED_TASK = {"atari": "atari-breakout", "mujoco": "mujoco-hopper", "metaworld": "metaworld-reach"}
"""The task per suite the real sample-factory backend trains (as tests/experts/conftest.py does)."""
TRAIN_STEPS = {"atari-breakout": 512, "mujoco-hopper": 1024, "metaworld-reach": 1024}
TINY_SAMPLING = {
    # How samples are collected, never the network (experts.sample_factory.ARCHITECTURE_KEYS): these
    # keep the run to about a CPU-minute, as tests/experts/expert_helpers.py TINY_SF does.
    "serial_mode": True,
    "num_workers": 1,
    "num_envs_per_worker": 4,
    "worker_num_splits": 1,
    "rollout": 32,
    "batch_size": 128,
    "num_batches_per_epoch": 1,
    "save_every_sec": 5,
}
BATCH = 64
"""Observations in the real batch of the rebuilt checkpoint's optimisation step."""

_ATARI_TREE = "https://huggingface.co/edbeeching/atari_2B_atari_upndown_1111/tree/main"
_HOPPER_TREE = (
    "https://huggingface.co/edbeeching/mujoco_hopper_1111/tree/5fbafd05ddcf1f8865f2d2ff0c7227727ba0b60c"
)
CITED_REPOS: dict[str, Any] = {
    "milestone": {
        "bytes": 20_700_000,
        "what": "one milestone checkpoint of edbeeching/atari_2B_atari_beamrider_1111 (JAT's atari-beamrider "
        "expert)",
        "source": "https://huggingface.co/edbeeching/atari_2B_atari_beamrider_1111/blob/"
        "7f428dce1594f485b22c5137c5bbfac56e21ff7c/checkpoint_p0/milestones/checkpoint_000582976_1193934848.pth",
        "quote": "Size of remote file: 20.7 MB",
    },
    "card": {
        "atari": {
            "bytes": 583,
            "how": "cited",
            "what": "README.md of edbeeching/atari_2B_atari_upndown_1111 (cfg.json 5.27 kB, replay.mp4 "
            "14.7 MB beside it)",
            "source": _ATARI_TREE,
        },
        "mujoco": {
            "bytes": 580,
            "how": "cited",
            "what": "README.md of edbeeching/mujoco_hopper_1111 (cfg.json 3.87 kB, replay.mp4 1.46 MB "
            "beside it)",
            "source": _HOPPER_TREE,
        },
        "metaworld": {
            "bytes": 1_710,
            "how": "assumed",
            "what": "no listing of qgallouedec/<task>-v2 found; assumed as large as the card of "
            "qgallouedec/sample-factory-reach-v2 (the same author's sample-factory Meta-World repo), 1.71 kB",
            "source": "https://huggingface.co/qgallouedec/sample-factory-reach-v2/tree/main",
        },
    },
}


def released_tasks(suite: str) -> list[str]:
    """The suite's tasks whose registry `expert_source` names a Hub repo (`hf: ORG/NAME`)."""
    from pipeline.expert_stages.import_experts import JAT_REPO
    from pipeline.tasks.registry import suite_tasks

    return [s.config for s in suite_tasks(suite) if JAT_REPO.search(s.expert_source or "")]


# ------------------------------------------------------------------------------------ child process


def _real_observations(spec: Any) -> Any:
    """BATCH observations of `make_env(spec)` under random actions, as the network sees them."""
    import numpy as np

    from pipeline.tasks.envs import make_env

    env = make_env(spec)
    try:
        env.action_space.seed(0)
        obs, _ = env.reset(seed=0)
        batch = []
        while len(batch) < BATCH:
            batch.append(np.asarray(obs))
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                obs, _ = env.reset()
    finally:
        env.close()
    array = np.stack(batch)
    if spec.observation.type == "image":
        array = np.moveaxis(array, -1, 1)  # channels first, as experts.sample_factory.ChannelsFirst
    return np.ascontiguousarray(array)


def rebuilt_checkpoint(config: str, hyperparameters: dict[str, Any], scratch: str) -> dict[str, Any]:
    """The dict sample-factory's Learner saves (`_get_checkpoint_dict`) for `config`'s network, its Adam
    after one step on real observations, written with `torch.save`: its size in bytes."""
    import gymnasium as gym
    import torch
    from sample_factory.algo.utils.rl_utils import prepare_and_normalize_obs
    from sample_factory.model.actor_critic import create_actor_critic
    from sample_factory.model.model_utils import get_rnn_size

    from experts.sample_factory import action_space, build_cfg, observation_space
    from pipeline.tasks.registry import get_task

    spec = get_task(config)
    cfg = build_cfg(config, hyperparameters, scratch, steps=1, seed=0, resume=False)
    torch.manual_seed(0)
    model = create_actor_critic(cfg, gym.spaces.Dict({"obs": observation_space(spec)}), action_space(spec))
    model.train()
    optimizer = torch.optim.Adam(  # as sample_factory.algo.learning.learner.Learner.init
        model.parameters(), lr=cfg.learning_rate, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps
    )
    observations = torch.as_tensor(_real_observations(spec))
    batch = prepare_and_normalize_obs(model, {"obs": observations})
    out = model(batch, torch.zeros([len(observations), get_rnn_size(cfg)]))
    loss = out["action_logits"].pow(2).mean() + out["values"].pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    checkpoint = {
        "train_step": 1,
        "env_steps": len(observations),
        "best_performance": -1e9,  # the Learner's initial value
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "curr_lr": cfg.learning_rate,
    }
    # under the name sample-factory's Learner saves to before renaming (`_save_impl`): torch.save names
    # the archive's folder after the file, and that name is in every entry of the zip
    os.makedirs(scratch, exist_ok=True)
    path = os.path.join(scratch, "checkpoint_temp")
    torch.save(checkpoint, path)
    parameters = list(model.parameters())
    return {
        "bytes": os.path.getsize(path),
        "parameters": sum(p.numel() for p in parameters),
        "tensors_with_adam_state": len(optimizer.state),
        "tensors": len(parameters),
        "observation": list(spec.observation.shape),
        "action": spec.action.n if spec.action.type == "discrete" else list(spec.action.shape),
    }


def _signature(config: str) -> str:
    from pipeline.tasks.registry import get_task

    spec = get_task(config)
    return json.dumps([spec.observation.type, spec.observation.shape, spec.action.type, spec.action.n,
                       spec.action.shape], default=list)  # fmt: skip


def measure_suite(suite: str, scratch: str) -> dict[str, Any]:
    """Runs in a fresh process: the real backend's checkpoint for one task, the rebuilt one for every
    task with a released expert (once per distinct observation/action size)."""
    from dataclasses import replace

    from experts.released import CARD, needed_files
    from experts.training import ExpertPlan, train_expert
    from pipeline.tasks.registry import get_task

    config = TRAINED_TASK[suite]
    spec = get_task(config)
    settings = spec.expert.settings("sample-factory")
    root = os.path.join(scratch, "experts")
    plan = ExpertPlan(
        config=config,
        backend="sample-factory",
        hyperparameters=settings | TINY_SAMPLING,
        steps=TRAIN_STEPS[config],
        seed=0,
        num_cpus=1,
        eval_episodes=1,
        threshold=0.5,
        deterministic=True,
        evaluate=False,
        device="cpu",
    )
    started = time.process_time()
    result = train_expert(replace(plan), root)
    train_cpu = time.process_time() - started
    if result.status == "failed":
        raise SystemExit(f"training {config} failed: {result.error}")
    (experiment,) = {
        p.parent for p in Path(root).rglob("checkpoint_p0") if (p.parent / "config.json").exists()
    }
    files = {
        str(p.relative_to(experiment)): p.stat().st_size for p in sorted(experiment.rglob("*")) if p.is_file()
    }
    # What an import of this folder reads: its format's choice, as if it also had a card (JAT's do).
    needed = needed_files([*files, CARD], "latest")
    checkpoint = next(name for name in needed if name.endswith(".pth"))
    config_file = next(name for name in needed if name.endswith(".json"))
    out: dict[str, Any] = {
        "suite": suite,
        "config": config,
        "steps_trained": result.steps,
        "train_cpu_s": train_cpu,
        "experiment_files": files,
        "needed": needed,
        "checkpoint_file": checkpoint,
        "checkpoint_bytes": files[checkpoint],
        "config_file": config_file,
        "config_bytes": files[config_file],
        "rebuilt": {},
    }
    started = time.process_time()
    by_signature: dict[str, dict[str, Any]] = {}
    tasks = released_tasks(suite)
    for task in [config, *[t for t in tasks if t != config]]:  # the trained task first: the cross-check
        key = _signature(task)
        if key not in by_signature:
            by_signature[key] = rebuilt_checkpoint(task, settings, os.path.join(scratch, "cfg")) | {
                "on": task
            }
        out["rebuilt"][task] = by_signature[key]
    out["rebuild_cpu_s"] = time.process_time() - started
    out["distinct_networks"] = len(by_signature)
    return out


# ------------------------------------------------------------------------------------------- render


def per_task_bytes(row: dict[str, Any]) -> dict[str, int]:
    """Per task with a released expert: its rebuilt checkpoint + the measured config + the card."""
    card = CITED_REPOS["card"][row["suite"]]["bytes"]
    return {task: r["bytes"] + row["config_bytes"] + card for task, r in row["rebuilt"].items()}


def figures(imports: dict[str, Any], build: dict[str, Any]) -> dict[str, Any]:
    """What the section "The import path (released experts), beside the training path" shows
    (templates/scaling_import.md.j2), from the measurement and the extrapolated build."""
    rows = {row["suite"]: row for row in imports.get("suites", []) if "error" not in row}
    measured = []
    for suite, row in rows.items():
        by_network: dict[str, list[str]] = {}
        for task, rebuilt in row["rebuilt"].items():
            by_network.setdefault(rebuilt["on"], []).append(task)
        networks = sorted(by_network.items(), key=lambda g: row["rebuilt"][g[0]]["bytes"])
        measured.append(
            {
                "suite": suite,
                "row": row,
                "card": CITED_REPOS["card"][suite],
                "files": [re.sub(r"_[0-9_]+[.]pth$", "_*.pth", name) for name in row["needed"]],
                "networks": [(row["rebuilt"][first], len(tasks)) for first, tasks in networks],
            }
        )
    suites, totals = [], {"bytes": 0.0, "rollout": 0.0, "train": 0.0}
    for suite, e in build.items():
        released = len(released_tasks(suite))
        rollout = e.get("rollout_core_h")
        train = e.get("train_core_h", 0.0) if e["experts_needed"] else 0.0
        totals["rollout"] += rollout or 0.0
        totals["train"] += train
        downloaded = sum(per_task_bytes(rows[suite]).values()) if released and suite in rows else None
        totals["bytes"] += downloaded or 0
        suites.append({"suite": suite, "tasks": e["tasks"], "released": released} | {"rollout": rollout})
        suites[-1] |= {"train": train, "downloaded": downloaded}
    checks = [
        abs(r["checkpoint_bytes"] - r["rebuilt"][r["config"]]["bytes"]) / r["checkpoint_bytes"]
        for r in rows.values()
    ]
    return {
        "imports": imports,
        "measured": measured,
        "failed": [row for row in imports.get("suites", []) if "error" in row],
        "suites": suites,
        "totals": totals,
        "tasks": sum(e["tasks"] for e in build.values()),
        "released": sum(len(released_tasks(s)) for s in build),
        "measured_all": all(s in rows for s in RELEASED_SUITES),
        "milestone": CITED_REPOS["milestone"],
        "cards": CITED_REPOS["card"],
        "beamrider": rows.get("atari", {}).get("rebuilt", {}).get("atari-beamrider"),
        "evaluation": evaluation_bound(build),
        "checks": {"max": max(checks), "mean": statistics.mean(checks)} if checks else None,
    }


def evaluation_bound(build: dict[str, Any]) -> list[dict[str, Any]]:
    """Per suite, the core-hours of an import's evaluation at most (every episode plays to the
    horizon): its steps and core-hours, or None where the suite has no measured rollout rate."""
    from pipeline.tasks.registry import get_task

    parts = []
    for suite in RELEASED_SUITES:
        rate = build.get(suite, {}).get("cpu_s_per_step")
        if rate is None:
            parts.append({"suite": suite, "core_h": None})
            continue
        steps = 0
        for config in released_tasks(suite):
            spec = get_task(config)
            horizon = spec.max_episode_steps or getattr(spec.env.wrappers, "step_limit", None) or 0
            candidates = 2 if suite == "metaworld" else 1
            steps += candidates * spec.expert.eval_episodes * horizon
        parts.append({"suite": suite, "core_h": steps * rate / 3600, "steps": steps})
    return parts


def merge_host(command: str) -> dict[str, Any]:
    import datetime as dt

    return {
        "command": command,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg_start": os.getloadavg(),
    }


def scratch_dir() -> str:
    return tempfile.mkdtemp(prefix="import-cost-")
