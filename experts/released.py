"""Released experts: a repo as sample-factory publishes it, read into the store's model layout.

JAT recorded its Atari, MuJoCo and Meta-World data with released sample-factory checkpoints
(`edbeeching/atari_2B_atari_<game>_1111`, `edbeeching/mujoco_<name>_1111`, `qgallouedec/<task>-v2`).
Such a repo holds the experiment's config (`config.json`; repos written before sample-factory 2.0.2
have `cfg.json`), `checkpoint_p0/checkpoint_*.pth` and `best_*.pth`, and often a `milestones/`
folder of older checkpoints that nothing here needs. This module chooses the files a task needs
(`needed_files`, before anything is downloaded), checks that the expert is one for the task, and
writes the layout `experts.sample_factory_policy.SampleFactoryPolicy` loads (`model/model.pth` and
`model/config.json`), so an imported expert is a stored expert like a trained one.

What it refuses, each in one line before anything is written: a repo with no config or no
checkpoint, an expert trained on another env (the config's env name), a network that does not fit
the task's spaces or cannot be rebuilt, and a checkpoint holding anything but weights and numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from experts.checkpoints import load_checkpoint
from pipeline.errors import PipelineError
from pipeline.tasks.registry import TaskSpec

CheckpointKind = Literal["latest", "best"]
CONFIG_FILES = ("config.json", "cfg.json")
"""sample-factory's experiment config, by the name of each version (its own loader takes either)."""
CHECKPOINT_FOLDER = "checkpoint_p0"
CARD = "README.md"
PREFIX = {"latest": "checkpoint", "best": "best"}
"""sample-factory's `load_checkpoint_kind` -> the file prefix its learner globs for."""


@dataclass(frozen=True)
class ReleasedModel:
    """What was installed from a released repo: the metadata's training facts and the source's files."""

    framework: str
    backend: str
    """The backend that loads the installed model (`experts.base.BACKENDS`)."""
    algo: str
    env: str
    """The env name the expert was trained on, as its config names it."""
    trained_env_id: str
    """The env id that name stands for (`trained_env_id`): where it differs from the task's env id in
    its version, the expert acts here on another version of its env (see `version_note`)."""
    steps: int
    checkpoint: str
    """The repo file the model came from."""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    framework_version: str = ""
    deterministic: bool | None = None
    """How the framework's own evaluation acts (None: as the suite's `expert.released_deterministic`)."""
    system_info: dict[str, str] = field(default_factory=dict)
    """The versions the model was saved with, as the framework records them (sb3's system_info.txt)."""


def normalised_name(name: str) -> str:
    """An env or task name reduced to compare across conventions: `atari_breakout`, `atari-breakout`,
    `BreakoutNoFrameskip-v4`, `ALE/Breakout-v5` and `assembly-v2` / `assembly-v3` meet."""
    name = name.rsplit("/", 1)[-1].lower()
    name = re.sub(r"-v\d+$", "", name).replace("noframeskip", "")
    return re.sub(r"[^a-z0-9]", "", name)


def task_names(spec: TaskSpec) -> set[str]:
    """The names an expert for `spec` may carry in its config (normalised)."""
    names = {spec.config, spec.env_id, spec.jat_env_id, spec.sample_factory_env or "", spec.env_name or ""}
    return {normalised_name(n) for n in names if n}


def sample_factory_files(files: list[str], kind: CheckpointKind) -> list[str]:
    """The repo files an import reads: the config, the card, and the one checkpoint sample-factory's
    learner would load (`checkpoint_p0/<prefix>_*`, sorted by name, the last). Milestones never.

    A PipelineError naming what is missing when the repo has no config or no such checkpoint."""
    config = next((name for name in CONFIG_FILES if name in files), None)
    if config is None:
        raise PipelineError(
            f"no sample-factory config ({' or '.join(CONFIG_FILES)}) in the repo: it is not a released "
            "sample-factory experiment"
        )
    pattern = re.compile(rf"{CHECKPOINT_FOLDER}/{PREFIX[kind]}_[^/]*\.pth")
    checkpoints = sorted(name for name in files if pattern.fullmatch(name))
    if not checkpoints:
        other = "best" if kind == "latest" else "latest"
        raise PipelineError(
            f"no {PREFIX[kind]}_*.pth in {CHECKPOINT_FOLDER}/ of the repo (--checkpoint {kind}): "
            f"try --checkpoint {other}, or another revision"
        )
    return [config, checkpoints[-1], *([CARD] if CARD in files else [])]


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def card_license(folder: str) -> str | None:
    """The `license:` of a repo card's YAML front matter, if any."""
    path = os.path.join(folder, CARD)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    front = re.match(r"---\n(.*?)\n---", text, re.S)
    found = re.search(r"^license:\s*(\S+)", front[1], re.M) if front else None
    return found[1].strip("'\"") if found else None


def sample_factory_cfg(saved: dict[str, Any]) -> dict[str, Any]:
    """The repo's config completed with this sample-factory's defaults for the keys it lacks, as
    sample-factory's own `load_from_checkpoint` does (saved values win, new arguments are added)."""
    from sample_factory.cfg.arguments import parse_full_cfg, parse_sf_args

    env = str(saved.get("env", "released"))
    parser, _ = parse_sf_args(argv=[f"--env={env}"], evaluation=True)
    defaults = vars(parse_full_cfg(parser, [f"--env={env}"]))
    return {**{k: v for k, v in defaults.items() if k != "cli_args"}, **saved}


def install_sample_factory(
    folder: str, files: list[str], spec: TaskSpec, model_dir: str, kind: CheckpointKind
) -> ReleasedModel:
    """Check the released experiment in `folder` against `spec` and write it to `model_dir`."""
    import gymnasium as gym
    from sample_factory.model.actor_critic import create_actor_critic
    from sample_factory.utils.attr_dict import AttrDict

    from experts.sample_factory import ARCHITECTURE_KEYS
    from experts.sample_factory_policy import action_space, observation_space

    config_name, checkpoint, *_ = sample_factory_files(files, kind)
    try:
        with open(os.path.join(folder, config_name)) as f:
            saved = json.load(f)
    except (OSError, ValueError) as exc:
        raise PipelineError(f"cannot read {config_name} of the released expert: {exc}") from None
    env = str(saved.get("env", ""))
    if normalised_name(env) not in task_names(spec):
        raise PipelineError(
            f"the released expert was trained on {env!r}, not on {spec.config} ({spec.env_id}): "
            "check the repo name (--source / --repo)"
        )
    cfg = AttrDict(sample_factory_cfg(saved))
    state = load_checkpoint(os.path.join(folder, checkpoint))
    if not isinstance(state, dict) or "model" not in state:
        raise PipelineError(f"{checkpoint} holds no 'model' state: it is not a sample-factory checkpoint")
    obs_space = gym.spaces.Dict({"obs": observation_space(spec)})
    try:
        model = create_actor_critic(cfg, obs_space, action_space(spec))
    except Exception as exc:
        raise PipelineError(
            f"cannot rebuild the network of {config_name} ({type(exc).__name__}: {exc}); this "
            "sample-factory cannot build that architecture"
        ) from None
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise PipelineError(
            f"the checkpoint's network does not fit {spec.config}'s spaces (observation "
            f"{spec.observation.shape}, action {spec.action.n or spec.action.shape}): {first}"
        ) from None
    os.makedirs(model_dir, exist_ok=True)
    shutil.copyfile(os.path.join(folder, checkpoint), os.path.join(model_dir, "model.pth"))
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(dict(cfg), f, indent=1, default=str)
    return ReleasedModel(
        framework="sample-factory",
        backend="sample-factory",
        algo="APPO",
        env=env,
        trained_env_id=trained_env_id(env),
        steps=int(state.get("env_steps", 0)),
        checkpoint=checkpoint,
        hyperparameters={k: cfg[k] for k in ARCHITECTURE_KEYS if k in cfg},
        framework_version=str(saved.get("git_hash", "") or ""),
    )


FORMATS: dict[str, str] = {
    "sample-factory": "experts.released:SAMPLE_FACTORY",
    "rl-zoo": "experts.released_rlzoo:RL_ZOO",
}
"""Released-repo formats by name -> "module:object" (a `ReleasedFormat`), imported on first use."""


@dataclass(frozen=True)
class ReleasedFormat:
    """How one framework publishes experts: how its repos are recognised, which files an import
    reads, and how they are installed into a store's model folder."""

    name: str
    recognises: Callable[[list[str]], bool]
    needed: Callable[[list[str], CheckpointKind], list[str]]
    install: Callable[[str, list[str], TaskSpec, str, CheckpointKind], ReleasedModel]


def _is_sample_factory(files: list[str]) -> bool:
    return any(f in CONFIG_FILES or f.startswith(f"{CHECKPOINT_FOLDER}/") for f in files)


SAMPLE_FACTORY = ReleasedFormat(
    "sample-factory", _is_sample_factory, sample_factory_files, install_sample_factory
)


def released_format(files: list[str]) -> ReleasedFormat:
    """The format of a repo from its file list; a PipelineError naming the known formats if none fits."""
    import importlib

    for spec in FORMATS.values():
        module, name = spec.split(":")
        candidate: ReleasedFormat = getattr(importlib.import_module(module), name)
        if candidate.recognises(files):
            return candidate
    raise PipelineError(
        f"the repo is not a released expert of a known format ({', '.join(FORMATS)}); "
        f"its files: {', '.join(sorted(files)[:8])}"
    )


def trained_env_id(env: str) -> str:
    """The env id an expert's env name stands for in sample-factory's examples (`mujoco_pusher` ->
    `Pusher-v4`, `atari_breakout` -> `Breakout-v5`: sample-factory's envpool examples map gym's
    `NoFrameskip-v4` to envpool's `-v5`, the same game configuration), else the name itself."""
    try:
        from sf_examples.atari.atari_utils import ATARI_ENVS
        from sf_examples.mujoco.mujoco_utils import MUJOCO_ENVS
    except ImportError:
        return env
    for spec in (*ATARI_ENVS, *MUJOCO_ENVS):
        if spec.name == env:
            return str(spec.env_id).replace("NoFrameskip-v4", "-v5")
    return env


def version_note(trained: str, spec: TaskSpec) -> str | None:
    """One line when the expert was trained on another version of the task's env, else None.

    The network fits (the import checked the spaces), but dynamics or rewards may differ (Pusher-v4
    needs mujoco < 3, so its expert acts on Pusher-v5; Meta-World's released experts acted in v2
    envs, metaworld 3 has v3 only): the evaluation that follows says whether it still passes."""
    version = re.compile(r"-v(\d+)$")
    ours, theirs = version.search(spec.env_name or spec.env_id), version.search(trained)
    if not ours or not theirs or ours[1] == theirs[1]:
        return None
    return (
        f"{spec.config}: the released expert was trained on {trained}; here it acts on "
        f"{spec.env_name or spec.env_id} (same spaces; dynamics or rewards may differ): its evaluation "
        "and the gate decide, and `pipeline train-experts` is the fallback where it is rejected"
    )


def needed_files(files: list[str], kind: CheckpointKind) -> list[str]:
    """The files an import of this repo reads (its format decides)."""
    return released_format(files).needed(files, kind)


def install(
    folder: str, files: list[str], spec: TaskSpec, model_dir: str, kind: CheckpointKind
) -> ReleasedModel:
    """Check the released expert in `folder` against `spec` and write its model to `model_dir`."""
    return released_format(files).install(folder, files, spec, model_dir, kind)
