"""stable-baselines3 backend (PPO, A2C, SAC, TD3, DQN; TQC from sb3-contrib), the second backend.

Settings follow RL Zoo's per-env YAML style: an `algo`, the algorithm's constructor kwargs,
`policy_kwargs` (with `activation_fn` as a name), `n_envs`, and `normalize` for observation
normalisation (stored with the model, applied by the loaded policy). Checkpoints are written
every `checkpoint_every` steps into `workdir/sb3/`; `--resume` loads the newest one and trains
the remainder. With `history_every`, snapshots in the final model's format are kept for
learning histories. Off-policy algorithms (SAC, TD3, TQC, DQN) also save their replay buffer
with the newest checkpoint (`save_replay_buffer`, default true, as RL Zoo's flag), so a resumed
run learns from the same data instead of restarting on an empty buffer; only the newest buffer
is kept, since one can reach gigabytes.
"""

from __future__ import annotations

import glob
import logging
import os
import re
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
from experts.wrappers import TRUE_EPISODE, make_training_env
from pipeline.errors import PipelineError
from pipeline.tasks.registry import TaskSpec

log = logging.getLogger(__name__)

CONTINUOUS_ONLY = {"sac", "td3", "tqc", "ddpg"}
DISCRETE_ONLY = {"dqn"}
ALGOS = {"ppo", "a2c", "sac", "td3", "ddpg", "dqn", "tqc"}
OWN_KEYS = {
    "algo",
    "policy",
    "n_envs",
    "normalize",
    "checkpoint_every",
    "policy_kwargs",
    "save_replay_buffer",
}
# Constructor arguments `train` sets itself (passing them again would be a TypeError).
FIXED_KEYS = {"self", "env", "policy", "seed", "device", "verbose", "_init_setup_model"}
BUFFER_SUFFIX = "_replay_buffer.pkl"
ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU", "elu": "ELU", "leaky_relu": "LeakyReLU"}
CHECKPOINTS = "sb3"


def _algo_class(name: str) -> type:
    if name == "tqc":
        from sb3_contrib import TQC

        return TQC
    import stable_baselines3

    return getattr(stable_baselines3, name.upper())


def _policy_kwargs(raw: dict[str, Any]) -> dict[str, Any]:
    import torch

    kwargs = dict(raw)
    if "activation_fn" in kwargs:
        name = kwargs["activation_fn"]
        if name not in ACTIVATIONS:
            raise PipelineError(
                f"expert.sb3.policy_kwargs.activation_fn {name!r}: choose one of {sorted(ACTIVATIONS)}"
            )
        kwargs["activation_fn"] = getattr(torch.nn, ACTIVATIONS[name])
    return kwargs


def _checkpoints(directory: str) -> list[tuple[int, str]]:
    found = []
    for path in glob.glob(os.path.join(directory, "model_*_steps.zip")):
        match = re.search(r"model_(\d+)_steps\.zip$", path)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


class SB3Backend:
    name = "sb3"
    checkpoint_pattern = r"sb3/model_(\d+)_steps\.zip"
    """A checkpoint's files under the workdir (`/`-separated), its env steps in group 1."""
    trainable = True

    def check(self, spec: TaskSpec, hyperparameters: dict[str, Any]) -> None:
        algo = str(hyperparameters.get("algo", "ppo")).lower()
        if algo not in ALGOS:
            raise PipelineError(f"{spec.config}: unknown sb3 algo {algo!r}; choose one of {sorted(ALGOS)}")
        if spec.observation.text:
            raise PipelineError(
                f"sb3 cannot train {spec.config}: text observations (BabyAI) are not supported"
            )
        if algo in CONTINUOUS_ONLY and spec.action.type != "continuous":
            raise PipelineError(
                f"sb3 {algo.upper()} needs continuous actions but {spec.config} has discrete actions: "
                "use algo ppo/a2c/dqn for it (expert.sb3.algo in env_configs/)"
            )
        if algo in DISCRETE_ONLY and spec.action.type != "discrete":
            raise PipelineError(
                f"sb3 {algo.upper()} needs discrete actions but {spec.config} has continuous actions: "
                "use algo ppo/sac/tqc for it (expert.sb3.algo in env_configs/)"
            )
        check_hyperparameters(
            f"{spec.config} expert.sb3", hyperparameters, self.hyperparameter_keys(spec, hyperparameters)
        )
        _policy_kwargs(hyperparameters.get("policy_kwargs", {}))

    def hyperparameter_keys(self, spec: TaskSpec, hyperparameters: dict[str, Any]) -> frozenset[str]:
        """The chosen algorithm's constructor arguments but those `train` passes itself, plus ours."""
        import inspect

        algo = str(hyperparameters.get("algo", "ppo")).lower()
        if algo not in ALGOS:
            raise PipelineError(f"{spec.config}: unknown sb3 algo {algo!r}; choose one of {sorted(ALGOS)}")
        allowed = set(inspect.signature(_algo_class(algo).__init__).parameters) - FIXED_KEYS
        return frozenset(allowed | OWN_KEYS)

    def train(self, job: TrainJob) -> TrainOutcome:
        import torch
        from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

        spec, hp = job.spec, dict(job.hyperparameters)
        self.check(spec, hp)
        torch.set_num_threads(max(1, job.num_cpus))
        algo = str(hp.pop("algo", "ppo")).lower()
        policy = hp.pop("policy", "CnnPolicy" if spec.observation.type == "image" else "MlpPolicy")
        n_envs = int(hp.pop("n_envs", 1))
        normalize = bool(hp.pop("normalize", False))
        every = int(hp.pop("checkpoint_every", 50_000))
        save_buffer = bool(hp.pop("save_replay_buffer", True))
        hp.pop("deterministic", None)
        policy_kwargs = _policy_kwargs(hp.pop("policy_kwargs", {}))
        algo_class = _algo_class(algo)

        def factory(rank: int) -> Any:
            def build() -> gym.Env:
                env = make_training_env(spec)
                env.reset(seed=job.seed + rank)
                return env

            return build

        venv: Any = DummyVecEnv([factory(i) for i in range(n_envs)])
        checkpoint_dir = os.path.join(job.workdir, CHECKPOINTS)
        existing = _checkpoints(checkpoint_dir) if job.resume else []
        resumed_from = 0
        if existing:
            resumed_from, path = existing[-1]
            if normalize:
                venv = _load_vecnormalize(path, venv)
            try:
                model = algo_class.load(path, env=venv, device=job.device)
            except Exception as exc:
                raise PipelineError(
                    f"corrupt checkpoint {path}: {type(exc).__name__}: {exc} "
                    "(delete that file to resume from the previous checkpoint, or retrain with --overwrite)"
                ) from exc
            _load_replay_buffer(model, path)
            log.info("%s: resuming from %s (%d steps)", spec.config, path, resumed_from)
        else:
            if normalize:
                venv = VecNormalize(venv, norm_obs=True, norm_reward=True)
            model = algo_class(
                policy,
                venv,
                seed=job.seed,
                device=job.device,
                verbose=0,
                policy_kwargs=policy_kwargs or None,
                **hp,
            )
        recorder = CurveRecorder(job.workdir, resumed_from=resumed_from)
        history = HistoryKeeper(job, resumed_from)
        callback = _callback(job, recorder, history, checkpoint_dir, every, resumed_from, save_buffer)
        remaining = max(0, job.steps - model.num_timesteps)
        if remaining:
            model.learn(remaining, callback=callback, reset_num_timesteps=False)
        callback.checkpoint(model)
        recorder.maybe_write(model.num_timesteps, force=True)
        _save_model(model, job.model_dir)
        history.save(model.num_timesteps, partial(_save_model, model), force=True)
        used = {
            "algo": algo,
            "policy": policy,
            "n_envs": n_envs,
            "normalize": normalize,
            "policy_kwargs": job.hyperparameters.get("policy_kwargs", {}),
            **hp,
        }
        return TrainOutcome(
            steps=int(model.num_timesteps), algo=algo.upper(), hyperparameters=used, resumed_from=resumed_from
        )

    def load(self, model_dir: str, spec: TaskSpec, metadata: ExpertMetadata | None) -> SB3Policy:
        algo = str((metadata.hyperparameters if metadata else {}).get("algo", "ppo")).lower()
        deterministic = metadata.deterministic if metadata else True
        choice = metadata.choice_provenance() if metadata else {}
        return SB3Policy(model_dir, spec, algo, deterministic, choice)

    def versions(self) -> dict[str, str]:
        return {
            "stable-baselines3": version("stable-baselines3"),
            "sb3-contrib": version("sb3-contrib"),
            "torch": version("torch"),
        }


def _load_vecnormalize(model_path: str, venv: Any) -> Any:
    from stable_baselines3.common.vec_env import VecNormalize

    stats = model_path.replace(".zip", "_vecnormalize.pkl")
    try:
        return VecNormalize.load(stats, venv)
    except Exception as exc:
        raise PipelineError(
            f"corrupt checkpoint {stats}: {exc} (delete it and its model zip, then resume)"
        ) from exc


def _load_replay_buffer(model: Any, checkpoint: str) -> None:
    """Refill an off-policy model's buffer from its checkpoint's, when one was saved."""
    if getattr(model, "replay_buffer", None) is None:
        return
    buffer = checkpoint.replace(".zip", BUFFER_SUFFIX)
    if not os.path.exists(buffer):
        log.warning("%s has no saved replay buffer: the resumed run starts with an empty one", checkpoint)
        return
    try:
        model.load_replay_buffer(buffer)
    except Exception as exc:
        raise PipelineError(
            f"corrupt replay buffer {buffer}: {type(exc).__name__}: {exc} (delete it to resume with an "
            "empty buffer, or retrain with --overwrite)"
        ) from exc


def _save_model(model: Any, directory: str) -> None:
    """What `SB3Policy` loads: the model zip, and the observation normaliser's statistics if any."""
    os.makedirs(directory, exist_ok=True)
    model.save(os.path.join(directory, "model.zip"))
    if model.get_vec_normalize_env() is not None:
        _save_obs_stats(model.get_vec_normalize_env(), os.path.join(directory, "obs_norm.npz"))


def _save_obs_stats(vec_normalize: Any, path: str) -> None:
    rms = vec_normalize.obs_rms
    np.savez(path, mean=rms.mean, var=rms.var, clip=vec_normalize.clip_obs, epsilon=vec_normalize.epsilon)


def _callback(
    job: TrainJob,
    recorder: CurveRecorder,
    history: HistoryKeeper,
    directory: str,
    every: int,
    start: int,
    save_buffer: bool,
) -> Any:
    """SB3 callback: learning curve, live progress, periodic checkpoints (model + normaliser stats),
    learning-history snapshots.

    Built in a function so importing this module does not import stable-baselines3.
    """
    from stable_baselines3.common.callbacks import BaseCallback

    class Callback(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.job, self.recorder, self.directory, self.every = job, recorder, directory, every
            self.start_steps = start
            self.started = time.monotonic()
            self.last_report = 0.0
            self.last_checkpoint = start
            self.deadline = None if job.time_limit_s is None else self.started + job.time_limit_s

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if TRUE_EPISODE in info:
                    self.recorder.episode(info[TRUE_EPISODE]["return"], info[TRUE_EPISODE]["length"])
            steps = self.num_timesteps
            self.recorder.maybe_write(steps)
            if steps - self.last_checkpoint >= self.every:
                self.checkpoint(self.model)
            if history.due(steps):
                history.save(steps, partial(_save_model, self.model))
            now = time.monotonic()
            if now - self.last_report >= 1.0:
                self.last_report = now
                fps = (steps - self.start_steps) / max(now - self.started, 1e-6)
                self.job.report(
                    TrainProgress(
                        self.job.spec.config, steps, self.job.steps, fps, self.recorder.latest_return
                    )
                )
            return self.deadline is None or now < self.deadline

        def checkpoint(self, model: Any) -> None:
            os.makedirs(self.directory, exist_ok=True)
            steps = model.num_timesteps
            path = os.path.join(self.directory, f"model_{steps}_steps.zip")
            tmp = os.path.join(self.directory, f".tmp_model_{steps}.zip")
            model.save(tmp)
            vec_normalize = model.get_vec_normalize_env()
            if vec_normalize is not None:
                vec_normalize.save(path.replace(".zip", "_vecnormalize.pkl"))
            if save_buffer and getattr(model, "replay_buffer", None) is not None:
                buffer = path.replace(".zip", BUFFER_SUFFIX)
                model.save_replay_buffer(buffer + ".partial")
                os.replace(buffer + ".partial", buffer)
            os.replace(tmp, path)  # the zip appears complete or not at all
            for _, old in _checkpoints(self.directory)[:-2]:
                os.remove(old)
                stats = old.replace(".zip", "_vecnormalize.pkl")
                if os.path.exists(stats):
                    os.remove(stats)
            for old_buffer in glob.glob(os.path.join(self.directory, f"*{BUFFER_SUFFIX}")):
                if old_buffer != path.replace(".zip", BUFFER_SUFFIX):  # only the newest buffer is kept
                    os.remove(old_buffer)
            self.last_checkpoint = steps

    return Callback()


class SB3Policy:
    """A saved SB3 model acting on `make_env(spec)` observations."""

    name = "sb3"

    def __init__(
        self,
        model_dir: str,
        spec: TaskSpec,
        algo: str,
        deterministic: bool = True,
        choice: dict[str, Any] | None = None,
    ) -> None:
        self.choice = choice or {}  # ExpertMetadata.choice_provenance: the store chose it among candidates
        path = os.path.join(model_dir, "model.zip")
        try:
            self.model = _algo_class(algo).load(path, device="cpu")
        except Exception as exc:
            raise PipelineError(
                f"cannot load the sb3 expert {path}: {type(exc).__name__}: {exc} "
                "(retrain it with `pipeline train-experts --backend sb3 --overwrite`)"
            ) from exc
        self.spec, self.algo, self.deterministic, self.model_dir = spec, algo, deterministic, model_dir
        self.obs_norm = None
        stats = os.path.join(model_dir, "obs_norm.npz")
        if os.path.exists(stats):
            with np.load(stats) as data:
                self.obs_norm = {k: data[k] for k in data.files}

    def reset(self, env: gym.Env, seed: int) -> None:
        self.model.set_random_seed(seed)

    def act(self, observation: Any, info: dict[str, Any]) -> Any:
        obs = self._normalise(np.asarray(observation))
        action, _ = self.model.predict(obs, deterministic=self.deterministic)
        if self.spec.action.type == "discrete":
            return int(np.asarray(action).reshape(-1)[0])
        return np.asarray(action, dtype=np.float32).reshape(-1)

    def batchable(self) -> bool:
        """Deterministic actions on array observations: rows of a batch are independent episodes."""
        return self.deterministic and self.spec.observation.type != "dict"

    def act_batch(self, observations: np.ndarray) -> np.ndarray:
        """One forward pass for a batch of observations (envs stepped in lockstep by rollout)."""
        actions, _ = self.model.predict(self._normalise(observations), deterministic=True)
        if self.spec.action.type == "discrete":
            return np.asarray(actions).reshape(len(observations)).astype(np.int64)
        return np.asarray(actions, dtype=np.float32).reshape(len(observations), -1)

    def _normalise(self, obs: np.ndarray) -> np.ndarray:
        if self.obs_norm is None:
            return obs
        n = self.obs_norm
        return np.clip((obs - n["mean"]) / np.sqrt(n["var"] + n["epsilon"]), -n["clip"], n["clip"]).astype(
            np.float32
        )

    def provenance(self) -> dict[str, Any]:
        return {
            "policy": "expert",
            "backend": self.name,
            "algo": self.algo,
            "model_dir": self.model_dir,
            "stable-baselines3": version("stable-baselines3"),
            **self.choice,
        }
