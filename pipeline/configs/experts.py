"""Configs of the expert subcommands: train-experts, evaluate-experts."""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pipeline.configs import option, positive
from pipeline.errors import PipelineError
from pipeline.runtime.executor import PLACEMENT_TIMEOUT_S
from pipeline.tasks.sections import check_num_gpus, check_threshold

Device = Literal["auto", "cpu", "cuda"]


def hyperparameter(item: str) -> tuple[str, Any]:
    """`key=value` with a YAML value (numbers, lists, booleans), RL Zoo's --hyperparams style."""
    import yaml

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):  # YAML 1.1 reads 1e-4 (no dot) as a string; a user means the number
        with contextlib.suppress(ValueError):
            parsed = float(parsed)
    return key.strip(), parsed


@dataclass(frozen=True)
class TrainExpertsConfig:
    """Train, evaluate and gate one expert per task on Ray.

    Train one expert per task (one Ray task each), evaluate it against JAT's reference and mark it
    accepted or rejected for `rollout --policy expert`. An interrupted run continues with --resume.
    """

    out: str = option(metavar="EXPERTS_DIR")
    """EXPERTS_DIR: a local folder or a `pyarrow.fs` URI; each expert goes to EXPERTS_DIR/<config>/."""
    suite: str | None = None
    """Suite to train (`pipeline tasks` lists them): all its tasks unless --tasks is given."""
    tasks: tuple[str, ...] = ()
    """Comma-separated task names, short within the suite or full configs like mujoco-hopper."""
    backend: str | None = None
    """sample-factory | sb3 | rllib | babyai-bot | metaworld-scripted; default: the suite's
    `expert.backend`."""
    steps: int | None = None
    """Env steps per expert; default: the task's `expert.steps` in env_configs/."""
    time_limit_min: float | None = option(None, flag="--time-limit", metavar="MIN")
    """Minutes of training per expert at most (the model so far is saved, evaluated and gated)."""
    history_every: int | None = None
    """Keep a learning-history snapshot every N env steps, 0 for none; default: --steps divided by the
    task's `expert.history_snapshots`."""
    resume: bool = False
    """Continue from the experts' latest checkpoints instead of starting over."""
    overwrite: bool = False
    """Retrain experts that already exist in the output (without it they are refused)."""
    seed: int = 0
    """Training seed; evaluation uses fresh seeds derived from it."""
    num_cpus: int | None = None
    """CPUs per training task (Ray resource and sample-factory worker count); default: env_configs/."""
    num_gpus: float | None = None
    """GPUs per training task asked of Ray, a fraction to share one; default: the task's
    `expert.num_gpus` (0)."""
    device: Device = "auto"
    """Torch device of every trained backend: auto is cuda when the task got a GPU torch can use,
    else cpu."""
    placement_timeout_s: float = option(PLACEMENT_TIMEOUT_S, flag="--placement-timeout", metavar="S")
    """Stop with one line when training tasks wait this many seconds for Ray resources with none of
    this run's tasks running (GPUs held by other jobs, a lost node)."""
    task_retries: int = option(2, metavar="N")
    """Times a training task lost with its node or worker process (not one that fails) runs again,
    resumed from its expert's last checkpoint in EXPERTS_DIR, on whichever node Ray picks."""
    upload_every_s: float | None = option(None, flag="--upload-every", metavar="S")
    """Remote EXPERTS_DIR (s3://…): upload checkpoints and snapshots this often while training, 0 only
    at the end; default: the task's `expert.upload_every_s` (300)."""
    hyperparameters: dict[str, Any] = option(
        factory=dict, flag="--set", parse=hyperparameter, repeat=True, metavar="KEY=VALUE"
    )
    """Override a backend hyperparameter (repeatable), e.g. --set learning_rate=1e-4, RL Zoo's
    --hyperparams (the device is --device, not --set)."""
    eval_episodes: int | None = None
    """Evaluation episodes per expert; default: the task's `expert.eval_episodes`."""
    threshold: float | None = None
    """Minimum normalised score to accept an expert (>= 0); default: the task's `expert.threshold`
    (0.5). Meta-World tasks whose scripted policy reaches it keep that policy untrained."""
    force_train: bool = False
    """Meta-World: train even where the scripted policy passes the gate (the better of the two, scored
    on the same seeds, is kept)."""
    evaluate: bool = option(
        True, flag="--no-eval", negated="Skip evaluation: the experts stay unevaluated (no gate verdict)"
    )
    """Evaluate and gate each expert after training."""
    workers: int | None = None
    """Experts trained at once on Ray; default: as many as the cluster places. 0 trains them in this
    process, one after another, without Ray."""
    address: str | None = None
    """Ray cluster address; default RAY_ADDRESS, else a local cluster."""
    shared_fs: bool = False
    """Declare that a local EXPERTS_DIR is one filesystem mounted on every node; without it a
    multi-node cluster refuses a local folder."""
    progress: bool = option(True, negated="Log lines only, no progress bars")
    """Progress bars."""

    def __post_init__(self) -> None:
        for name in ("steps", "num_cpus", "eval_episodes"):
            positive(name, getattr(self, name))
        positive("history_every", self.history_every, zero=True)
        positive("workers", self.workers, zero=True)
        positive("task_retries", self.task_retries, zero=True)
        if self.upload_every_s is not None and not self.upload_every_s >= 0:
            raise PipelineError(
                f"--upload-every must be 0 (upload only at the end) or a positive number of seconds, "
                f"got {self.upload_every_s!r}"
            )
        if self.time_limit_min is not None and not self.time_limit_min > 0:
            raise PipelineError(
                f"--time-limit must be a positive number of minutes, got {self.time_limit_min!r}"
            )
        if self.num_gpus is not None:
            check_num_gpus("--num-gpus", self.num_gpus)
        if self.device not in get_args(Device):
            raise PipelineError(f"--device {self.device!r}: choose one of {', '.join(get_args(Device))}")
        if not self.placement_timeout_s > 0:
            raise PipelineError(
                f"--placement-timeout must be a positive number of seconds, got {self.placement_timeout_s!r}"
            )
        if self.resume and self.overwrite:
            raise PipelineError("give --resume or --overwrite, not both")
        if self.threshold is not None:
            check_threshold(self.threshold)
        if "device" in self.hyperparameters:
            raise PipelineError(
                f"--set device={self.hyperparameters['device']!r}: the training device is not a "
                "hyperparameter; use --device auto|cpu|cuda (and --num-gpus or expert.num_gpus to reserve "
                "GPUs)"
            )

    @property
    def in_process(self) -> bool:
        """Train here, without Ray (`--workers 0`)."""
        return self.workers == 0


@dataclass(frozen=True)
class EvaluateExpertsConfig:
    """Re-evaluate stored experts and re-apply the quality gate.

    Play N episodes per stored expert on fresh seeds, score it against JAT's reference and mark it
    accepted or rejected; writes a summary table and learning-curve PNG per suite.
    """

    experts_dir: str = option(positional=True, metavar="EXPERTS_DIR")
    """EXPERTS_DIR written by train-experts (a local folder or `pyarrow.fs` URI)."""
    suite: str | None = None
    """Suite whose experts to evaluate: all its tasks unless --tasks is given."""
    tasks: tuple[str, ...] = ()
    """Comma-separated task names, short within the suite or full configs."""
    episodes: int | None = None
    """Episodes per expert; default: the task's `expert.eval_episodes`."""
    seed: int = 0
    """Evaluation seed; episodes use fresh seeds derived from it (never rollout's or training's)."""
    threshold: float | None = None
    """Minimum normalised score to accept (>= 0, never below random); default: the task's (0.5)."""

    def __post_init__(self) -> None:
        positive("episodes", self.episodes)
        if self.threshold is not None:
            check_threshold(self.threshold)


CheckpointKind = Literal["latest", "best"]


@dataclass(frozen=True)
class ImportExpertsConfig:
    """Import released experts (JAT's sample-factory checkpoints, RL Zoo's sb3 models) into an experts dir.

    Each task's released repo is read from the Hub (only the files needed, pinned to the revision it
    resolves to, cached for offline re-runs) or from a local mirror, checked against the registry
    and stored as an expert that rollout, evaluate-experts, report and publish-experts use unchanged.
    """

    out: str = option(metavar="EXPERTS_DIR")
    """EXPERTS_DIR: a local folder or a `pyarrow.fs` URI; each expert goes to EXPERTS_DIR/<config>/."""
    suite: str | None = None
    """Suite to import (one with released experts: atari, metaworld, mujoco): all its tasks unless
    --tasks is given."""
    tasks: tuple[str, ...] = ()
    """Comma-separated task names, short within the suite or full configs like mujoco-hopper."""
    source: str = "jat"
    """Where the repos are: `jat` (the Hub), or a local mirror folder holding DIR/<org>/<name>/ as
    `hf download ORG/NAME --local-dir DIR/ORG/NAME` leaves it."""
    repo: str = "jat"
    """Repo names: `jat` (the one JAT recorded each task with, from env_configs/), or a template
    ORG/NAME with {task}, {config}, {game} (e.g. edbeeching/mujoco_{task}_1111, sb3/ppo-{game}-v4)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) to import; default: main. The commit it resolves to is
    recorded."""
    checkpoint: CheckpointKind = "latest"
    """Which checkpoint, as sample-factory's load_checkpoint_kind: the newest `checkpoint_*` or the
    `best_*` (RL Zoo repos hold one model: `best` is refused)."""
    overwrite: bool = False
    """Replace experts that already exist in the output (without it they are refused)."""
    resume: bool = False
    """Keep the experts an earlier run of this import already stored (their metadata.json names the same
    repo) and import the rest: a re-run after a failure or a lost job continues."""
    evaluate: bool = option(
        True,
        flag="--no-eval",
        negated="Skip evaluation: the imported experts stay unevaluated (no gate verdict)",
    )
    """Evaluate and gate each imported expert."""
    eval_episodes: int | None = None
    """Evaluation episodes per expert; default: the task's `expert.eval_episodes`."""
    threshold: float | None = None
    """Minimum normalised score to accept an expert (>= 0); default: the task's `expert.threshold`."""
    seed: int = 0
    """Evaluation seed; episodes use fresh seeds derived from it."""

    def __post_init__(self) -> None:
        positive("eval_episodes", self.eval_episodes)
        if self.checkpoint not in get_args(CheckpointKind):
            raise PipelineError(
                f"--checkpoint {self.checkpoint!r}: choose one of {', '.join(get_args(CheckpointKind))}"
            )
        if self.threshold is not None:
            check_threshold(self.threshold)
        if self.resume and self.overwrite:
            raise PipelineError("give --resume or --overwrite, not both")
        if self.repo != "jat" and self.repo.count("/") != 1:
            raise PipelineError(
                f"--repo {self.repo!r}: give `jat` or a template ORG/NAME "
                "(e.g. edbeeching/mujoco_{task}_1111)"
            )
