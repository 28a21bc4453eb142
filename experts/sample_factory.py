"""sample-factory (APPO) backend: JAT trained its Atari, MuJoCo and Meta-World experts with it.

Training runs sample-factory's own runner (serial or parallel mode, per the hyperparameters)
on envs built by `experts.wrappers.make_training_env`, i.e. on exactly the observations the
dataset stores. Checkpoints and sample-factory's config live in `workdir/sf/`, which is what
`--resume` continues from; the final checkpoint and config are copied into `model_dir` (and,
with `history_every`, checkpoints past each mark into learning-history snapshots).

Importing this module applies `experts.sf_compat` (numpy >= 2.4 fix); sample-factory's
child processes import this module too (they unpickle `_make_sf_env`), so they get it as well.
"""

from __future__ import annotations

import glob
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

from experts import sf_compat
from experts.base import (
    CurveRecorder,
    HistoryKeeper,
    TrainJob,
    TrainOutcome,
    TrainProgress,
    check_hyperparameters,
)
from experts.checkpoints import load_checkpoint
from experts.metadata import ExpertMetadata
from experts.sample_factory_policy import ChannelsFirst, SampleFactoryPolicy
from experts.wrappers import TRUE_EPISODE, make_training_env
from pipeline.errors import PipelineError
from pipeline.tasks.registry import TaskSpec, get_task

sf_compat.apply()
# sample-factory logs every worker's start-up at DEBUG through its "rl" logger; its child processes import
# this module too (to unpickle `_make_sf_env`), so this keeps them quiet as well. `verbose: true` undoes it.
logging.getLogger("rl").setLevel(logging.WARNING)

log = logging.getLogger(__name__)

EXPERIMENT = "sf"
CHECKPOINT_DIR = f"{EXPERIMENT}/checkpoint_p0"
# Keys of our `expert.sample-factory` section that are not sample-factory arguments.
OWN_KEYS = {"verbose", "stall_timeout_s"}
# Settings that shape the network: a checkpoint cannot be resumed under other values.
ARCHITECTURE_KEYS = (
    "encoder_mlp_layers",
    "encoder_conv_architecture",
    "encoder_conv_mlp_layers",
    "nonlinearity",
    "use_rnn",
    "rnn_size",
    "rnn_type",
    "rnn_num_layers",
    "decoder_mlp_layers",
    "actor_critic_share_weights",
    "normalize_input",
    "policy_initialization",
    "adaptive_stddev",
    "continuous_tanh_scale",
)
# What we always set ourselves (the stage and the job decide these).
FIXED_KEYS = {
    "env",
    "experiment",
    "train_dir",
    "train_for_env_steps",
    "seed",
    "restart_behavior",
    "train_for_seconds",
    "device",  # `train-experts --device`, never a hyperparameter (sample-factory calls CUDA "gpu")
}


class ExtraStats(gym.Wrapper):
    """Hand the real episode's return to sample-factory as `episode_extra_stats` (our learning curve)."""

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if TRUE_EPISODE in info:
            true = info.pop(TRUE_EPISODE)
            info["episode_extra_stats"] = {"true_return": true["return"], "true_length": true["length"]}
        info.pop("full_observation", None)  # Meta-World: not needed for learning, keeps messages small
        return obs, reward, terminated, truncated, info


def _make_sf_env(
    config: str, full_env_name: str, cfg: Any = None, env_config: Any = None, render_mode: str | None = None
) -> gym.Env:
    """sample-factory's env factory (module level so child processes can unpickle it)."""
    spec = get_task(config)
    env: gym.Env = ExtraStats(make_training_env(spec))
    if spec.observation.type == "image":
        env = ChannelsFirst(env)
    return env


def _latest_checkpoint(directory: str) -> str | None:
    found = sorted(glob.glob(os.path.join(directory, "checkpoint_*.pth")))
    return found[-1] if found else None


def _drop_temporary(directory: str) -> None:
    """Delete what a kill inside sample-factory's save left: `checkpoint_temp` (`best_temp`) is written
    first and renamed when whole, and its learner loads the last `checkpoint_*` by name, which the
    temporary file would be, half-written or not; it is never a checkpoint."""
    for path in glob.glob(os.path.join(directory, "*_temp")):
        log.warning("%s: deleting %s, left by a run killed while saving a checkpoint", directory, path)
        os.remove(path)


def _copy_model(checkpoint: str, workdir: str, directory: str) -> None:
    """What `SampleFactoryPolicy` loads: a checkpoint as model.pth, with the experiment's config.json."""
    os.makedirs(directory, exist_ok=True)
    shutil.copy2(checkpoint, os.path.join(directory, "model.pth"))
    shutil.copy2(os.path.join(workdir, EXPERIMENT, "config.json"), os.path.join(directory, "config.json"))


def _named_steps(path: str) -> int | None:
    """Env steps from a checkpoint's file name (checkpoint_<train step>_<env steps>.pth), None if unnamed."""
    match = re.fullmatch(r"checkpoint_\d+_(\d+)\.pth", os.path.basename(path))
    return int(match[1]) if match else None


def _checkpoint_steps(path: str) -> int:
    """Env steps recorded in a checkpoint; a PipelineError naming the file when it cannot be read."""
    state = load_checkpoint(path)
    try:
        return int(state["env_steps"])
    except (TypeError, KeyError, ValueError) as exc:
        raise PipelineError(
            f"checkpoint {path} records no env_steps: it is not a sample-factory checkpoint "
            "(delete it to resume from the previous checkpoint, or retrain with --overwrite)"
        ) from exc


def _start_watchdog(runner: Any, observer: _Observer, timeout_s: float) -> Any:
    """Stop a run whose training has not advanced for `timeout_s`; `.fired` tells whether it did.

    In parallel mode a crashed sample-factory worker only logs its exception, and the runner then
    waits forever at 0 FPS; on a cluster that would hold its CPUs for good. The check runs on the
    runner's own event loop (a signal-slot Timer), so stopping is as safe as sample-factory's own.
    """
    from signal_slot.signal_slot import EventLoopObject, Timer

    class Watchdog(EventLoopObject):
        def __init__(self) -> None:
            super().__init__(runner.event_loop, "jat_watchdog")
            self.fired = False
            self.timer = Timer(runner.event_loop, max(1.0, min(30.0, timeout_s / 4)))
            self.timer.timeout.connect(self.check)

        def check(self) -> None:
            idle = time.monotonic() - observer.last_step
            if idle > timeout_s and not runner.stopped:
                log.error("%s: no training progress for %.0f s, stopping", observer.job.spec.config, idle)
                self.fired = True
                runner._stop_training(failed=True)

    return Watchdog()


class _Observer:
    """Feeds sample-factory's episode stats into our learning curve and live progress, and keeps
    learning-history snapshots: the first checkpoint sample-factory writes past each mark
    (checkpoints come every `save_every_sec`, which bounds how fine a history can be)."""

    def __init__(self, job: TrainJob, recorder: CurveRecorder, start_steps: int) -> None:
        self.job = job
        self.history = HistoryKeeper(job, start_steps)
        self.last_history_check = 0.0
        self.recorder = recorder
        self.start_steps = start_steps
        self.started = time.monotonic()
        self.last_report = 0.0
        self.last_step = time.monotonic()
        self.steps = start_steps
        self.restarted_at: int | None = None
        """Env steps the learner reported below the checkpoint it resumed from (a lost resume)."""

    def episodic(self, runner: Any, msg: dict[str, Any], policy_id: int) -> None:
        stats = msg.get("episodic", {})
        extra = stats.get("episode_extra_stats") or {}
        if "true_return" in extra:
            self.recorder.episode(
                float(np.asarray(extra["true_return"])), int(np.asarray(extra["true_length"]))
            )

    # AlgoObserver interface
    def on_init(self, runner: Any) -> None: ...
    def on_connect_components(self, runner: Any) -> None: ...
    def on_start(self, runner: Any) -> None:
        self.last_step = time.monotonic()

    def extra_summaries(self, *args: Any) -> None: ...
    def on_stop(self, runner: Any) -> None:
        self.recorder.maybe_write(self.steps, force=True)

    def keep_history(self) -> None:
        latest = _latest_checkpoint(os.path.join(self.job.workdir, CHECKPOINT_DIR))
        steps = _named_steps(latest) if latest else None
        if latest is None or steps is None or not self.history.due(steps):
            return
        try:
            self.history.save(steps, partial(_copy_model, latest, self.job.workdir))
        except FileNotFoundError:  # rotated away by the learner meanwhile: the next one will do
            log.debug("%s: checkpoint %s vanished before it could be kept", self.job.spec.config, latest)

    def on_training_step(self, runner: Any, iteration: int) -> None:
        # sample-factory 2.1.1 declares `total_train_seconds` (checked against --train_for_seconds) but never
        # updates it: we keep it current so the time limit works.
        runner.total_train_seconds = time.monotonic() - self.started
        self.last_step = time.monotonic()
        if runner.env_steps and sum(runner.env_steps.values()) < self.start_steps:
            # The learner did not load the checkpoint we resumed from: stop before the store is told
            # otherwise (the check that made sample-factory's silent fresh starts visible).
            self.restarted_at = int(sum(runner.env_steps.values()))
            runner._stop_training(failed=True)
            return
        self.steps = int(sum(runner.env_steps.values()))
        self.recorder.maybe_write(self.steps)
        now = time.monotonic()
        if self.history.enabled and now - self.last_history_check >= 1.0:
            self.last_history_check = now
            self.keep_history()
        if now - self.last_report >= 1.0:
            self.last_report = now
            fps = (self.steps - self.start_steps) / max(now - self.started, 1e-6)
            self.job.report(
                TrainProgress(
                    self.job.spec.config, self.steps, self.job.steps, fps, self.recorder.latest_return
                )
            )


def build_cfg(
    config: str,
    hyperparameters: dict[str, Any],
    workdir: str,
    steps: int,
    seed: int,
    resume: bool,
    time_limit_s: float | None = None,
    device: str = "cpu",
) -> Any:
    """sample-factory's config for one task: its defaults, then ours (YAML), then the fixed keys.

    `device` is torch's name (cpu | cuda); sample-factory's `--device` says "gpu" for CUDA."""
    from sample_factory.cfg.arguments import parse_full_cfg, parse_sf_args

    argv = [
        f"--env={config}",
        f"--experiment={EXPERIMENT}",
        f"--train_dir={workdir}",
        f"--train_for_env_steps={steps}",
        f"--seed={seed}",
        f"--device={'gpu' if device == 'cuda' else 'cpu'}",
        f"--restart_behavior={'resume' if resume else 'overwrite'}",
    ]
    if time_limit_s:
        argv.append(f"--train_for_seconds={int(time_limit_s)}")
    parser, _ = parse_sf_args(argv=argv, evaluation=False)
    known = {action.dest for action in parser._actions}
    sf_args = {k: v for k, v in hyperparameters.items() if k not in OWN_KEYS}
    check_hyperparameters("expert.sample-factory", sf_args, known - FIXED_KEYS)
    parser.set_defaults(**sf_args)
    cfg = parse_full_cfg(parser, argv)
    # On resume sample-factory reloads the experiment's saved config and lets only command-line
    # arguments override it; ours arrive as defaults, so they are declared command-line ones here
    # (a changed learning rate or --set on --resume then takes effect).
    cfg.cli_args.update({k: getattr(cfg, k) for k in sf_args})
    if resume:
        _check_architecture(config, os.path.join(workdir, EXPERIMENT, "config.json"), cfg)
    return cfg


def _check_architecture(config: str, saved_path: str, cfg: Any) -> None:
    """A resumed checkpoint only loads into the network it was trained with: refuse a changed one."""
    if not os.path.exists(saved_path):
        return
    with open(saved_path) as f:
        saved = json.load(f)
    changed = {
        k: (saved[k], getattr(cfg, k))
        for k in ARCHITECTURE_KEYS
        if k in saved and saved[k] != getattr(cfg, k)
    }
    if changed:
        details = ", ".join(f"{k}: was {old!r}, now {new!r}" for k, (old, new) in changed.items())
        raise PipelineError(
            f"{config}: --resume cannot change the network ({details}): restore those values, "
            "or retrain with --overwrite"
        )


def _check_sync_batches(config: str, hp: dict[str, Any]) -> None:
    """Sync mode needs whole training iterations per sampling round; say so with the numbers, up front."""
    if hp.get("async_rl", True) or hp.get("serial_mode", False):
        return
    collected = (
        int(hp.get("num_workers", 1)) * int(hp.get("num_envs_per_worker", 2)) * int(hp.get("rollout", 32))
    )
    trained = int(hp.get("batch_size", 1024)) * int(hp.get("num_batches_per_epoch", 1))
    if trained % collected:
        raise PipelineError(
            f"{config}: sample-factory sync mode needs batch_size x num_batches_per_epoch ({trained}) to be "
            f"a multiple of num_workers x num_envs_per_worker x rollout ({collected}); change one of them "
            "(expert.sample-factory in env_configs/ or --set), or set async_rl: true"
        )


CUDA_ENVVAR = "CUDA_VISIBLE_DEVICES"


class SampleFactoryBackend:
    name = "sample-factory"
    checkpoint_pattern = r"sf/checkpoint_p0/checkpoint_\d+_(\d+)\.pth"
    """A checkpoint's files under the workdir (`/`-separated), its env steps in group 1."""
    trainable = True

    def check(self, spec: TaskSpec, hyperparameters: dict[str, Any]) -> None:
        if spec.observation.text:
            raise PipelineError(
                f"sample-factory cannot train {spec.config}: text observations (BabyAI) are not supported; "
                "use the babyai-bot expert"
            )
        check_hyperparameters(
            f"{spec.config} expert.sample-factory", hyperparameters, self.hyperparameter_keys(spec, {})
        )

    def hyperparameter_keys(self, spec: TaskSpec, hyperparameters: dict[str, Any]) -> frozenset[str]:
        """sample-factory's own arguments (its argparse config) but those the stage sets, plus ours."""
        from sample_factory.cfg.arguments import parse_sf_args

        parser, _ = parse_sf_args(argv=[f"--env={spec.config}"], evaluation=False)
        known = {action.dest for action in parser._actions} - {"help"}
        return frozenset((known - FIXED_KEYS) | OWN_KEYS)

    def train(self, job: TrainJob) -> TrainOutcome:
        # sample-factory writes CUDA_VISIBLE_DEVICES into this process's environment (serial mode
        # trains in-process): restore it, or a later Ray node started from this process sees no GPU.
        saved = os.environ.get(CUDA_ENVVAR)
        try:
            return self._train(job)
        finally:
            if saved is None:
                os.environ.pop(CUDA_ENVVAR, None)
            else:
                os.environ[CUDA_ENVVAR] = saved

    def _train(self, job: TrainJob) -> TrainOutcome:
        import torch
        from sample_factory.algo.utils.misc import ExperimentStatus
        from sample_factory.envs.env_utils import register_env
        from sample_factory.train import make_runner

        config = job.spec.config
        hp = dict(job.hyperparameters)
        if hp.get("verbose", False):
            logging.getLogger("rl").setLevel(logging.DEBUG)
        if hp.get("serial_mode", False):
            torch.set_num_threads(1)  # one process does everything; more threads only contend
        hp["num_workers"] = max(1, min(int(hp.get("num_workers", 1)), job.num_cpus))
        resumed_from = 0
        checkpoint_dir = os.path.join(job.workdir, CHECKPOINT_DIR)
        if job.resume:
            _drop_temporary(checkpoint_dir)
        latest = _latest_checkpoint(checkpoint_dir) if job.resume else None
        if latest:
            resumed_from = _checkpoint_steps(latest)
            log.info("%s: resuming from %s (%d steps)", config, latest, resumed_from)
        elif os.path.isdir(os.path.join(job.workdir, EXPERIMENT)):
            shutil.rmtree(os.path.join(job.workdir, EXPERIMENT))
        _check_sync_batches(config, hp)
        register_env(config, partial(_make_sf_env, config))
        cfg = build_cfg(
            config, hp, job.workdir, job.steps, job.seed, bool(latest), job.time_limit_s, job.device
        )
        if latest and resumed_from >= job.steps:
            # Killed after training ended (evaluating, writing metadata): sample-factory's runner would
            # train one more iteration past the budget; the checkpoint is the run's result as it is.
            log.info("%s: %s already holds %d steps, nothing left to train", config, latest, resumed_from)
            CurveRecorder(job.workdir, resumed_from=resumed_from)
            return self._finish(job, latest, HistoryKeeper(job, resumed_from), cfg, hp, resumed_from)
        cfg, runner = make_runner(cfg)
        recorder = CurveRecorder(job.workdir, resumed_from=resumed_from)
        observer = _Observer(job, recorder, resumed_from)
        runner.register_observer(observer)
        runner.register_episodic_stats_handler(observer.episodic)
        watchdog = _start_watchdog(runner, observer, float(hp.get("stall_timeout_s", 600)))
        status = runner.init()
        if status != ExperimentStatus.SUCCESS:
            raise PipelineError(
                f"sample-factory refused the configuration of {config} (its reason is logged just above); "
                "fix expert.sample-factory in env_configs/ or the --set overrides"
            )
        status = runner.run()
        log_file = os.path.join(job.workdir, EXPERIMENT, "sf_log.txt")
        if observer.restarted_at is not None:
            raise PipelineError(
                f"{config}: sample-factory restarted at {observer.restarted_at} env steps instead of "
                f"resuming from {latest} ({resumed_from} steps); its reason is in {log_file}. Nothing was "
                "recorded as trained: fix the cause and rerun with --resume"
            )
        if watchdog.fired:
            raise RuntimeError(
                f"sample-factory made no progress for {hp.get('stall_timeout_s', 600)} s: a worker probably "
                f"crashed (its traceback is in {log_file}); fix the cause and rerun with --resume"
            )
        if status != ExperimentStatus.SUCCESS:
            raise RuntimeError(f"sample-factory stopped with status {status} (see {log_file})")
        final = _latest_checkpoint(checkpoint_dir)
        if final is None:
            raise RuntimeError(f"sample-factory wrote no checkpoint in {checkpoint_dir}")
        return self._finish(job, final, observer.history, cfg, hp, resumed_from)

    @staticmethod
    def _finish(
        job: TrainJob, final: str, history: HistoryKeeper, cfg: Any, hp: dict[str, Any], resumed_from: int
    ) -> TrainOutcome:
        """The final checkpoint as the model (and the history's last snapshot); what the metadata records."""
        steps = _checkpoint_steps(final)
        _copy_model(final, job.workdir, job.model_dir)
        history.save(steps, partial(_copy_model, final, job.workdir), force=True)
        values = cfg if isinstance(cfg, dict) else vars(cfg)
        used = {k: v for k, v in values.items() if k in hp or k in FIXED_KEYS - {"train_dir"}}
        return TrainOutcome(steps=steps, algo="APPO", hyperparameters=used, resumed_from=resumed_from)

    def load(self, model_dir: str, spec: TaskSpec, metadata: ExpertMetadata | None) -> SampleFactoryPolicy:
        deterministic = metadata.deterministic if metadata else True
        choice = metadata.choice_provenance() if metadata else {}
        return SampleFactoryPolicy(model_dir, spec, deterministic, choice)

    def versions(self) -> dict[str, str]:
        return {
            "sample-factory": version("sample-factory"),
            "torch": version("torch"),
            "numpy": version("numpy"),
        }
