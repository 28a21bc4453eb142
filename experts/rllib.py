"""RLlib backend (PPO or APPO, RLlib's new API stack): one expert trained across many Ray nodes.

sample-factory is the fastest trainer on one machine; RLlib spreads one expert's env runners
over the nodes of the Ray cluster the pipeline already runs on, and can put its learners on GPU
nodes. The training task (one per expert, `pipeline train-experts`) runs RLlib's Algorithm; its
env runners and remote learners are Ray actors that ask Ray for their own CPUs and GPUs, so the
task itself holds only `num_cpus_for_main_process` (default 1; see `task_cpus`). Before the
Algorithm is built, the runners' and learners' resources are checked against the cluster: a
request no cluster of this size can ever meet fails at once, one that waits on busy resources
fails after `placement_timeout_s`, never a silent hang. In-process (`--workers 0`) RLlib uses
the Ray of `RAY_ADDRESS`, or starts a local one.

Envs are `experts.wrappers.make_training_env(spec)`, i.e. `pipeline.tasks.envs.make_env` plus the
training-only wrappers, with Atari frames scaled to [0, 1] for the conv encoder: what the expert
sees is what the dataset stores. Settings (`expert.rllib` in env_configs/) are the keyword
arguments of AlgorithmConfig's setters (`environment`, `env_runners`, `learners`, `training`,
`resources`, `fault_tolerance`, `rl_module`, `reporting`), checked by name, plus ours: `algo`,
`checkpoint_every`, `placement_timeout_s`. Checkpoints (`Algorithm.save_to_path`) go to
`workdir/rllib/`; `--resume` builds the Algorithm from the current settings and restores the
newest one. The model folder and history snapshots hold the learner's RLModule
(`experts.rllib_policy`).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import time
from functools import partial
from importlib.metadata import version
from typing import Any

import gymnasium as gym
import numpy as np

from experts.base import (
    CurveRecorder,
    HistoryKeeper,
    TrainJob,
    TrainOutcome,
    TrainProgress,
    check_hyperparameters,
)
from experts.metadata import ExpertMetadata
from experts.rllib_policy import MODULE_DIR, RLlibPolicy, write_policy_file
from experts.wrappers import TRUE_EPISODE, make_training_env
from pipeline.errors import PipelineError
from pipeline.tasks.registry import TaskSpec, get_task

log = logging.getLogger(__name__)

ALGOS = ("ppo", "appo")
OWN_KEYS = {"algo", "checkpoint_every", "placement_timeout_s"}
SETTERS = ("environment", "env_runners", "learners", "training", "resources", "fault_tolerance", "rl_module")
SETTERS += ("reporting",)
# Setter arguments `train` decides (env, seed, callbacks...) or that take Python objects, not YAML values.
FIXED_KEYS = {
    "env", "env_config", "observation_space", "action_space", "render_env", "is_atari", "kwargs",
    "env_runner_cls", "env_to_module_connector", "module_to_env_connector", "learner_connector",
    "learner_class", "rl_module_spec", "algorithm_config_overrides_per_module", "custom_stats_cls_lookup",
    "model", "optimizer", "exploration_config", "sample_collector", "enable_tf1_exec_eagerly",
    "num_gpus", "_fake_gpus", "local_gpu_idx",
}  # fmt: skip
CHECKPOINTS = "rllib"
RUNNER_NODES = "env_runner_nodes.json"
TRUE_EPISODES = "jat_true_episodes"
POLL_S = 1.0
BUILD_ATTEMPTS = 2


class RLlibEnv(gym.Wrapper):
    """RLlib's env: `make_training_env(spec)` built from `env_config["config"]` on each env runner.

    Module level, so env runners on any node import it by name. Image frames become float32 in
    [0, 1] for the conv encoder (`RLlibPolicy` scales the same way when it acts)."""

    def __init__(self, env_config: dict[str, Any]) -> None:
        super().__init__(make_training_env(get_task(env_config["config"])))
        self.scale = self.env.observation_space.dtype == np.uint8
        if self.scale:
            self.observation_space = gym.spaces.Box(0.0, 1.0, self.env.observation_space.shape, np.float32)

    def _obs(self, obs: Any) -> Any:
        return np.asarray(obs, dtype=np.float32) / 255.0 if self.scale else obs

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return self._obs(obs), info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._obs(obs), reward, terminated, truncated, info


def _log_true_episode(*, episode: Any, metrics_logger: Any, **kwargs: Any) -> None:
    """`on_episode_end` in the env runners: the real game's return and length (our learning curve)."""
    true = episode.get_infos(-1).get(TRUE_EPISODE)
    if true is not None:
        metrics_logger.log_value(
            TRUE_EPISODES, (float(true["return"]), int(true["length"])), reduce="item_series"
        )


def _config_class(algo: str) -> type:
    if algo == "appo":
        from ray.rllib.algorithms.appo import APPOConfig

        return APPOConfig
    from ray.rllib.algorithms.ppo import PPOConfig

    return PPOConfig


def _setter_keys(algo: str) -> dict[str, str]:
    """Each setting RLlib accepts -> the AlgorithmConfig setter that takes it (deprecated ones left out)."""
    from ray._common.deprecation import DEPRECATED_VALUE

    routes: dict[str, str] = {}
    for setter in SETTERS:  # APPO's training(**kwargs) passes on to IMPALA's, then AlgorithmConfig's
        for cls in _config_class(algo).__mro__:
            if setter not in vars(cls):
                continue
            for name, param in inspect.signature(vars(cls)[setter]).parameters.items():
                if param.default is not DEPRECATED_VALUE and name not in FIXED_KEYS | {"self"}:
                    routes.setdefault(name, setter)
    return routes


def _model_keys() -> set[str]:
    import dataclasses

    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    return {f.name for f in dataclasses.fields(DefaultModelConfig)}


def _algo(spec: TaskSpec, hyperparameters: dict[str, Any]) -> str:
    algo = str(hyperparameters.get("algo", "ppo")).lower()
    if algo not in ALGOS:
        raise PipelineError(f"{spec.config}: unknown rllib algo {algo!r}; choose one of {list(ALGOS)}")
    return algo


class RLlibBackend:
    name = "rllib"
    checkpoint_pattern = r"rllib/checkpoint_(\d+)/.+"
    """A checkpoint's files under the workdir (`/`-separated), its env steps in group 1."""
    trainable = True

    def check(self, spec: TaskSpec, hyperparameters: dict[str, Any]) -> None:
        if spec.observation.text or spec.observation.type == "dict":
            raise PipelineError(
                f"rllib cannot train {spec.config}: text observations (BabyAI) are not supported"
            )
        keys = self.hyperparameter_keys(spec, hyperparameters)
        check_hyperparameters(f"{spec.config} expert.rllib", hyperparameters, keys)
        model = hyperparameters.get("model_config", {})
        if not isinstance(model, dict):
            raise PipelineError(f"{spec.config} expert.rllib.model_config must be a mapping, got {model!r}")
        check_hyperparameters(f"{spec.config} expert.rllib.model_config", model, _model_keys())

    def hyperparameter_keys(self, spec: TaskSpec, hyperparameters: dict[str, Any]) -> frozenset[str]:
        """The chosen algorithm's config setters' keyword arguments, but those `train` sets, plus ours."""
        return frozenset(set(_setter_keys(_algo(spec, hyperparameters))) | OWN_KEYS)

    def task_cpus(self, hyperparameters: dict[str, Any]) -> int:
        """CPUs the training task itself holds: env runners and remote learners ask Ray for their own."""
        return max(1, int(hyperparameters.get("num_cpus_for_main_process", 1)))

    def train(self, job: TrainJob) -> TrainOutcome:
        import torch

        spec, settings = job.spec, dict(job.hyperparameters)
        self.check(spec, settings)
        torch.set_num_threads(max(1, job.num_cpus))
        algo = _algo(spec, settings)
        every = int(settings.pop("checkpoint_every", 50_000))
        timeout = float(settings.pop("placement_timeout_s", 120.0))
        settings.pop("algo", None)
        config = _algorithm_config(spec, algo, settings, job)
        algorithm = _build(_ray(job), config, timeout, spec.config)
        try:
            return _train(algorithm, job, algo, every, config)
        finally:
            algorithm.stop()

    def load(self, model_dir: str, spec: TaskSpec, metadata: ExpertMetadata | None) -> RLlibPolicy:
        deterministic = metadata.deterministic if metadata else True
        choice = metadata.choice_provenance() if metadata else {}
        return RLlibPolicy(model_dir, spec, deterministic, choice)

    def versions(self) -> dict[str, str]:
        return {"ray": version("ray"), "torch": version("torch")}


def _algorithm_config(spec: TaskSpec, algo: str, settings: dict[str, Any], job: TrainJob) -> Any:
    """The AlgorithmConfig: env, seed, callbacks and device decided here, every other setting routed
    to the setter that takes it."""
    routes = _setter_keys(algo)
    config = (
        _config_class(algo)()
        .environment(RLlibEnv, env_config={"config": spec.config})
        .debugging(seed=job.seed, log_level="WARN")
        .callbacks(on_episode_end=_log_true_episode)
    )
    by_setter: dict[str, dict[str, Any]] = {}
    for key, value in settings.items():
        by_setter.setdefault(routes[key], {})[key] = value
    for setter, values in by_setter.items():
        config = getattr(config, setter)(**values)
    if config.num_learners == 0:  # the learner trains inside this task: on its device
        gpus = 1 if job.device == "cuda" else 0
        if config.num_gpus_per_learner != gpus:
            log.info(
                "%s: the local learner trains on %s (num_gpus_per_learner=%d)", spec.config, job.device, gpus
            )
        config = config.learners(num_gpus_per_learner=gpus)
    return config


def _ray(job: TrainJob) -> Any:
    """Ray as the task found it (a Ray worker), else the cluster of RAY_ADDRESS or a local one."""
    import ray

    if not ray.is_initialized():
        from pipeline.runtime.executor import init_ray

        init_ray(None, job.num_cpus)
    return ray


def _needs(config: Any) -> dict[str, float]:
    """CPUs and GPUs the env runners and remote learners ask Ray for."""
    learners = int(config.num_learners)
    gpus_per_learner = float(config.num_gpus_per_learner) if learners else 0.0
    cpus_per_learner = config.num_cpus_per_learner
    if cpus_per_learner == "auto":
        cpus_per_learner = 0 if gpus_per_learner else 1
    cpus = config.num_env_runners * float(config.num_cpus_per_env_runner) + learners * float(cpus_per_learner)
    gpus = config.num_env_runners * float(config.num_gpus_per_env_runner) + learners * gpus_per_learner
    return {"CPU": cpus, "GPU": gpus}


def _wait_for_room(ray: Any, config: Any, timeout: float, where: str) -> None:
    """Fail at once if the cluster can never place the env runners and learners, and after `timeout`
    if what it has stays held by others; RLlib itself would wait for them forever."""
    needs = {k: v for k, v in _needs(config).items() if v > 0}
    try:
        held = ray.get_runtime_context().get_assigned_resources()  # this task's own (none in-process)
    except Exception:
        held = {}
    total = ray.cluster_resources()
    asks = f"{config.num_env_runners} env runner(s) and {config.num_learners} remote learner(s)"
    for name, need in needs.items():
        ever = total.get(name, 0.0) - held.get(name, 0.0)
        if need > ever:
            raise PipelineError(
                f"{where}: rllib's {asks} need {need:g} {name} but the Ray cluster has "
                f"{total.get(name, 0):g} ({held.get(name, 0):g} held by the training task itself): lower "
                "expert.rllib.num_env_runners / num_learners (e.g. --set num_env_runners=1) or add nodes"
            )
    started = time.monotonic()
    while True:
        free = ray.available_resources()
        short = {k: v for k, v in needs.items() if free.get(k, 0.0) < v}
        if not short:
            return
        if time.monotonic() - started > timeout:
            have = ", ".join(f"{free.get(k, 0):g} free {k}" for k in short)
            raise PipelineError(
                f"{where}: rllib's {asks} could not be placed for {timeout:.0f} s (they need "
                f"{', '.join(f'{v:g} {k}' for k, v in short.items())}; {have}): other jobs hold them; free "
                "them, or lower num_env_runners, or raise expert.rllib.placement_timeout_s"
            )
        time.sleep(POLL_S)


def _build(ray: Any, config: Any, timeout: float, where: str) -> Any:
    """RLlib's Algorithm, once its env runners and learners have room; built again once if the build
    fails. An env runner that dies while the Algorithm is built is restarted by Ray, but RLlib's
    setup asks the first runner for the spaces, its fault tolerance drops the dead runner's error,
    and the setup fails on an empty list (IndexError): a passing failure the next build does not
    meet. A second failure is reported in one line."""
    import gc

    attempt = 1
    while True:
        _wait_for_room(ray, config, timeout, where)  # the failed build's actors may still hold CPUs
        try:
            return config.build_algo()
        except Exception as exc:
            first = str(exc).strip().splitlines()
            why = f"{type(exc).__name__}: {first[0][:200]}" if first else type(exc).__name__
            log.debug("%s: building RLlib's algorithm failed", where, exc_info=True)
            if attempt == BUILD_ATTEMPTS:
                raise PipelineError(
                    f"{where}: RLlib's algorithm could not be built in {BUILD_ATTEMPTS} attempts ({why}); "
                    "if an env runner died meanwhile (the log above says so), run again, else check "
                    "expert.rllib in env_configs/"
                ) from exc
            log.warning("%s: building RLlib's algorithm failed (%s); building it again", where, why)
        attempt += 1
        gc.collect()  # the failed build's env runners go with their last handle


def _checkpoints(directory: str) -> list[tuple[int, str]]:
    """Finished checkpoints (env steps, folder), oldest first."""
    names = os.listdir(directory) if os.path.isdir(directory) else []
    found = [(m, n) for n in names if (m := re.fullmatch(r"checkpoint_(\d+)", n))]
    return sorted((int(m.group(1)), os.path.join(directory, n)) for m, n in found)


def _train(algorithm: Any, job: TrainJob, algo: str, every: int, config: Any) -> TrainOutcome:
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    directory = os.path.join(job.workdir, CHECKPOINTS)
    os.makedirs(directory, exist_ok=True)
    _record_runner_nodes(algorithm, directory)
    existing = _checkpoints(directory) if job.resume else []
    resumed_from = 0
    if existing:
        resumed_from, path = existing[-1]
        try:
            algorithm.restore_from_path(path)
        except Exception as exc:
            raise PipelineError(
                f"corrupt checkpoint {path}: {type(exc).__name__}: {exc} (delete that folder to resume from "
                "the previous checkpoint, or retrain with --overwrite)"
            ) from exc
        log.info("%s: resuming from %s (%d steps)", job.spec.config, path, resumed_from)
    save = partial(_save_model, algorithm, algo, bool(config.normalize_actions))
    recorder = CurveRecorder(job.workdir, resumed_from=resumed_from)
    history = HistoryKeeper(job, resumed_from)
    started, steps, last_checkpoint = time.monotonic(), resumed_from, resumed_from
    deadline = None if job.time_limit_s is None else started + job.time_limit_s
    while steps < job.steps and (deadline is None or time.monotonic() < deadline):
        result = algorithm.train()
        steps = int(result.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, steps))
        for episode_return, length in result.get(ENV_RUNNER_RESULTS, {}).get(TRUE_EPISODES, []):
            recorder.episode(episode_return, length)
        recorder.maybe_write(steps)
        fps = (steps - resumed_from) / max(time.monotonic() - started, 1e-6)
        job.report(TrainProgress(job.spec.config, steps, job.steps, fps, recorder.latest_return))
        if steps - last_checkpoint >= every:
            last_checkpoint = _checkpoint(algorithm, directory, steps)
        if history.due(steps):
            history.save(steps, partial(save, steps))
    if steps != last_checkpoint or not existing:
        _checkpoint(algorithm, directory, steps)
    recorder.maybe_write(steps, force=True)
    if os.path.isdir(job.model_dir):
        shutil.rmtree(job.model_dir)
    os.makedirs(job.model_dir)
    save(steps, job.model_dir)
    history.save(steps, partial(save, steps), force=True)
    used = {"algo": algo, **_plain(job.hyperparameters), **_resolved(config)}
    return TrainOutcome(steps=steps, algo=algo.upper(), hyperparameters=used, resumed_from=resumed_from)


def _checkpoint(algorithm: Any, directory: str, steps: int) -> int:
    """The whole Algorithm (learner, optimiser, env runner and connector states) at `steps`, written
    under `.partial` first (never uploaded half-written); the two newest are kept."""
    final = os.path.join(directory, f"checkpoint_{steps:012d}")
    partial_dir = final + ".partial"
    for stale in (partial_dir, final):
        if os.path.isdir(stale):
            shutil.rmtree(stale)
    algorithm.save_to_path(partial_dir)
    os.replace(partial_dir, final)
    for _, old in _checkpoints(directory)[:-2]:
        shutil.rmtree(old)
    return steps


def _save_model(algorithm: Any, algo: str, normalize_actions: bool, steps: int, directory: str) -> None:
    """The learner's RLModule (what `RLlibPolicy` loads) and how the env runners acted around it."""
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE, DEFAULT_MODULE_ID

    path = f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}/{DEFAULT_MODULE_ID}"
    state = algorithm.learner_group.get_state(components=path)
    module = algorithm.get_module(DEFAULT_MODULE_ID)
    module.set_state(state[COMPONENT_LEARNER][COMPONENT_RL_MODULE][DEFAULT_MODULE_ID])
    module.save_to_path(os.path.join(directory, MODULE_DIR))
    write_policy_file(directory, algo, normalize_actions, steps)


def _record_runner_nodes(algorithm: Any, directory: str) -> None:
    """Which Ray node each env runner landed on: logged, and kept next to the checkpoints."""
    import ray

    nodes = algorithm.env_runner_group.foreach_env_runner(
        lambda runner: ray.get_runtime_context().get_node_id(), local_env_runner=False
    )
    with open(os.path.join(directory, RUNNER_NODES), "w") as f:
        json.dump({"env_runner_nodes": nodes}, f)
    log.info("rllib env runners on %d node(s): %s", len(set(nodes)), sorted(set(nodes)))


def _resolved(config: Any) -> dict[str, Any]:
    """The values that shape training, defaults included, for metadata.json."""
    names = ("num_env_runners", "num_envs_per_env_runner", "num_learners", "num_gpus_per_learner", "lr")
    names += ("gamma", "train_batch_size_per_learner", "minibatch_size", "num_epochs", "normalize_actions")
    return _plain(
        {name: getattr(config, name, None) for name in names} | {"model_config": config.model_config}
    )


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe values (numpy scalars, tuples, RLlib's dataclasses as strings)."""
    return json.loads(json.dumps(values, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
