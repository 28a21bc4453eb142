"""Released experts in RL Zoo's layout: `sb3/<algo>-<EnvId>` repos, read into the sb3 backend's layout.

RL Zoo's `push_to_hub` publishes one stable-baselines3 model per repo: `<algo>-<EnvId>.zip` (the
model as `model.save` writes it; the same files also unzipped in `<algo>-<EnvId>/`), `config.yml`
(the training hyperparameters, a YAML dump of an OrderedDict: `normalize`, `frame_stack`,
`env_wrapper`, `policy_kwargs`, ...), `env_kwargs.yml`, `args.yml`, `vec_normalize.pkl` when the
observations were normalised, and a card, a clip, `results.json`, `train_eval_metrics.zip`.
RL Zoo's `enjoy` loads the zip with sb3's `load` (schedules replaced by constants), wraps the env
in the saved VecNormalize (not training, rewards not normalised), stacks `frame_stack` frames,
and acts with `model.predict(normalised_obs)`, deterministically except on Atari.

An import reads the zip, `config.yml`, `env_kwargs.yml`, `vec_normalize.pkl` and the card (never
the clip, the metrics or the unzipped copy), checks that the model is one for the task (the env id
in the file name, the env kwargs and wrappers, the model's spaces against the registry's), loads
it with sb3's own `load` without unpickling anything downloaded but through an allow-list
(`experts.sb3_safe`), and writes what `experts.sb3.SB3Policy` loads: `model.zip` and, when the
observations were normalised, `obs_norm.npz` (mean, var, clip, epsilon of the VecNormalize).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
import yaml

from experts.released import (
    CARD,
    CheckpointKind,
    ReleasedFormat,
    ReleasedModel,
    normalised_name,
    task_names,
)
from pipeline.errors import PipelineError
from pipeline.suites import get_suite
from pipeline.suites.layouts import IMAGE
from pipeline.tasks.registry import TaskSpec

CONFIG = "config.yml"
ENV_KWARGS = "env_kwargs.yml"
VEC_NORMALIZE = "vec_normalize.pkl"
MODEL = re.compile(r"(?P<algo>[a-z][a-z0-9_]*)-(?P<env>[A-Za-z].*)\.zip")
"""huggingface_sb3's model file name, `<algo>-<EnvId>.zip` (a `/` in the env id becomes `-`)."""
OFF_POLICY = {"sac", "td3", "ddpg", "dqn", "tqc"}
ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"


def _model_file(files: list[str]) -> tuple[str, str, str]:
    """The repo's model zip (top level), its algo and env id; a PipelineError if there is not one."""
    from experts.sb3 import ALGOS

    models = sorted(f for f in files if "/" not in f and MODEL.fullmatch(f))
    if not models:
        raise PipelineError(
            "no <algo>-<EnvId>.zip at the top of the repo (RL Zoo's model file): it is not a complete "
            "RL Zoo release"
        )
    if len(models) > 1:
        raise PipelineError(
            f"the repo holds {len(models)} model zips ({', '.join(models)}): RL Zoo publishes one"
        )
    found = MODEL.fullmatch(models[0])
    assert found is not None
    algo = found["algo"]
    if algo not in ALGOS:
        raise PipelineError(
            f"{models[0]}: RL Zoo's {algo!r} is not an algorithm the sb3 backend runs "
            f"({', '.join(sorted(ALGOS))})"
        )
    return models[0], algo, found["env"]


def rl_zoo_files(files: list[str], kind: CheckpointKind) -> list[str]:
    """The files an import reads: the model zip, `config.yml`, `env_kwargs.yml`, `vec_normalize.pkl`
    when present, and the card. Never the clip, the metrics, `args.yml` or the unzipped model."""
    if kind == "best":
        raise PipelineError(
            "RL Zoo publishes one model per repo (its final one, or the best if its author chose so): "
            "--checkpoint best does not apply; leave it out"
        )
    model, _, _ = _model_file(files)
    if CONFIG not in files:
        raise PipelineError(f"no {CONFIG} in the repo beside {model}: RL Zoo's hyperparameters are needed")
    return [model, CONFIG, *(name for name in (ENV_KWARGS, VEC_NORMALIZE, CARD) if name in files)]


class _ConfigLoader(yaml.SafeLoader):
    """YAML's safe loader plus the one Python tag RL Zoo's `config.yml` holds (an OrderedDict)."""


def _ordered_dict(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    args = loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else []
    return dict(args[0]) if args else {}


_ConfigLoader.add_constructor("tag:yaml.org,2002:python/object/apply:collections.OrderedDict", _ordered_dict)


def read_yaml(path: str) -> dict[str, Any]:
    """An RL Zoo YAML file as a dict, no object but an OrderedDict constructed; one line if not."""
    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            found = yaml.load(f, Loader=_ConfigLoader)  # a SafeLoader subclass
    except yaml.constructor.ConstructorError as exc:
        what = exc.problem.split(" the ")[-1] if exc.problem else "an object"
        raise PipelineError(
            f"refused to read {name}: it holds {what}, which an RL Zoo config never needs"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineError(f"cannot read {name}: {' '.join(str(exc).split())[:200]}") from None
    if found is None:
        return {}
    if not isinstance(found, dict):
        raise PipelineError(f"{name} holds a {type(found).__name__}, not RL Zoo's mapping of settings")
    return found


def _wrappers(value: Any) -> list[str]:
    """RL Zoo's `env_wrapper`: a name, a list of names, or names mapped to their kwargs."""
    if not value:
        return []
    items = value if isinstance(value, list) else [value]
    return [next(iter(item)) if isinstance(item, dict) else str(item) for item in items]


def _is_atari(spec: TaskSpec) -> bool:
    """RL Zoo's `is_atari`: its Atari envs (ALE frames, our image layout) get AtariWrapper, a frame
    stack and sampled actions in `enjoy`."""
    return get_suite(spec.suite).layout is IMAGE


def _check_config(spec: TaskSpec, config: dict[str, Any], env_kwargs: dict[str, Any], model: str) -> None:
    """The env the model was trained in must be the task's: same env kwargs, only the wrappers our
    envs reproduce (Atari: sb3's AtariWrapper and a stack as deep as ours; elsewhere none)."""
    atari = _is_atari(spec)
    wrappers = _wrappers(config.get("env_wrapper"))
    foreign = [w for w in wrappers if not (atari and w == ATARI_WRAPPER)]
    if foreign or config.get("vec_env_wrapper"):
        names = ", ".join(foreign or _wrappers(config["vec_env_wrapper"]))
        raise PipelineError(
            f"{model} was trained with the wrapper {names}, which {spec.config}'s env does not apply: "
            "its observations would differ"
        )
    stack = int(config.get("frame_stack") or 0)
    ours = spec.env.wrappers.frame_stack if atari else 0
    if atari and ATARI_WRAPPER not in wrappers:
        raise PipelineError(f"{model} was trained without sb3's AtariWrapper: not on 84x84 grey frames")
    if stack != ours:
        raise PipelineError(
            f"{model} was trained on {stack or 'no'} stacked frames, {spec.config} stores {ours or 'none'}"
        )
    differ = {k: v for k, v in env_kwargs.items() if spec.make_kwargs.get(k) != v}
    if differ:
        raise PipelineError(
            f"{model} was trained with env kwargs {differ}, which {spec.config}'s env does not use"
        )


def _check_spaces(spec: TaskSpec, model: Any, name: str) -> None:
    """The model's spaces against the registry's: an image model may see it channels-first (sb3
    transposes channels-last images for its CNN and transposes them back in `predict`)."""
    from gymnasium import spaces

    want = tuple(spec.observation.shape)
    shapes = {want, (want[-1], *want[:-1])} if spec.observation.type == "image" else {want}
    obs = model.observation_space
    acts = model.action_space
    if not isinstance(obs, spaces.Box) or tuple(obs.shape) not in shapes:
        raise PipelineError(
            f"{name} observes {obs}, which does not fit {spec.config}'s observation {want}: an expert for "
            "another task"
        )
    if spec.action.type == "discrete":
        fits = isinstance(acts, spaces.Discrete) and int(acts.n) == spec.action.n
        want_action = f"{spec.action.n} discrete actions"
    else:
        fits = isinstance(acts, spaces.Box) and tuple(acts.shape) == tuple(spec.action.shape)
        want_action = f"continuous actions {tuple(spec.action.shape)}"
    if not fits:
        raise PipelineError(
            f"{name} acts in {acts}, not in {spec.config}'s {want_action}: an expert for another task"
        )


def _obs_stats(path: str, spec: TaskSpec, model: Any) -> dict[str, np.ndarray] | None:
    """The observation normaliser `SB3Policy` applies (None when the statistics do not normalise
    observations), checked against the model's observation shape."""
    from experts.sb3_safe import load_vec_normalize

    record = load_vec_normalize(path)
    if not getattr(record, "norm_obs", True):
        return None
    rms = record.obs_rms
    mean, var = np.asarray(getattr(rms, "mean", None)), np.asarray(getattr(rms, "var", None))
    if mean.shape != tuple(model.observation_space.shape) or var.shape != mean.shape:
        raise PipelineError(
            f"{VEC_NORMALIZE} normalises observations of shape {mean.shape}, the model observes "
            f"{tuple(model.observation_space.shape)}: statistics of another model"
        )
    return {
        "mean": mean.astype(np.float64),
        "var": var.astype(np.float64),
        "clip": np.asarray(float(record.clip_obs)),
        "epsilon": np.asarray(float(record.epsilon)),
    }


def system_info(text: str) -> dict[str, str]:
    """sb3's `system_info.txt` (`- Key: value` lines) as a dict."""
    found = (re.match(r"-\s*([^:]+):\s*(.*)", line.strip()) for line in text.splitlines())
    return {m[1].strip(): m[2].strip() for m in found if m}


def install_rl_zoo(
    folder: str, files: list[str], spec: TaskSpec, model_dir: str, kind: CheckpointKind
) -> ReleasedModel:
    """Check the RL Zoo release in `folder` against `spec`; write the sb3 backend's layout to `model_dir`."""
    from experts.sb3 import _algo_class
    from experts.sb3_safe import load_model, zip_text

    model_file, algo, env_id = _model_file(files)
    rl_zoo_files(files, kind)
    if normalised_name(env_id) not in task_names(spec):
        raise PipelineError(
            f"the released expert {model_file} was trained on {env_id!r}, not on {spec.config} "
            f"({spec.env_id}): check the repo name (--source / --repo)"
        )
    config = read_yaml(os.path.join(folder, CONFIG))
    env_kwargs = read_yaml(os.path.join(folder, ENV_KWARGS)) if ENV_KWARGS in files else {}
    _check_config(spec, config, env_kwargs, model_file)
    path = os.path.join(folder, model_file)
    model = load_model(_algo_class(algo), path, off_policy=algo in OFF_POLICY)
    _check_spaces(spec, model, model_file)
    stats = None
    if config.get("normalize"):
        if VEC_NORMALIZE not in files:
            raise PipelineError(f"{CONFIG} normalises observations but the repo has no {VEC_NORMALIZE}")
        stats = _obs_stats(os.path.join(folder, VEC_NORMALIZE), spec, model)
    os.makedirs(model_dir, exist_ok=True)
    # Saved again by this sb3: the file rollout loads holds only objects built here, no downloaded pickle.
    model.save(os.path.join(model_dir, "model.zip"))
    if stats is not None:
        np.savez(os.path.join(model_dir, "obs_norm.npz"), **stats)
    info = system_info(zip_text(path, "system_info.txt"))
    version = zip_text(path, "_stable_baselines3_version").strip() or info.get("Stable-Baselines3", "")
    return ReleasedModel(
        framework="rl-zoo",
        backend="sb3",
        algo=algo.upper(),
        env=env_id,
        trained_env_id=env_id.replace("NoFrameskip-v4", "-v5"),  # the same game configuration
        steps=int(model.num_timesteps),
        checkpoint=model_file,
        hyperparameters={"algo": algo, **config, "env_kwargs": env_kwargs},
        framework_version=f"stable-baselines3 {version}".strip(),
        # RL Zoo's enjoy: deterministic, but sampled on Atari (and MiniGrid)
        deterministic=not _is_atari(spec),
        system_info=info,
    )


def _is_rl_zoo(files: list[str]) -> bool:
    return CONFIG in files or any("/" not in f and MODEL.fullmatch(f) for f in files)


RL_ZOO = ReleasedFormat("rl-zoo", _is_rl_zoo, rl_zoo_files, install_rl_zoo)
