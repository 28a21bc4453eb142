"""The expert backend interface, the lazy backend registry, and what every backend shares.

A backend trains an expert for one task, saves it into a folder, and loads that folder back
as a `pipeline.tasks.policies.Policy` for rollout and evaluation. Backends are looked up by name
and imported only when asked for, so using stable-baselines3 never imports sample-factory
(whose import applies a numpy compatibility patch) and vice versa.
"""

from __future__ import annotations

import csv
import importlib
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from experts.metadata import ExpertMetadata, ExpertStatus  # noqa: F401 (ExpertStatus: re-exported)
from pipeline.errors import PipelineError
from pipeline.tasks.policies import Policy
from pipeline.tasks.registry import TaskSpec
from pipeline.tasks.sections import check_keys

log = logging.getLogger(__name__)

# name -> "module:Class"; imported on first use only.
BACKENDS: dict[str, str] = {
    "sample-factory": "experts.sample_factory:SampleFactoryBackend",
    "sb3": "experts.sb3:SB3Backend",
    "rllib": "experts.rllib:RLlibBackend",
    "babyai-bot": "experts.scripted:BabyAIBotBackend",
    "metaworld-scripted": "experts.scripted:MetaWorldScriptedBackend",
}

CURVE_FILE = "learning_curve.csv"
CURVE_COLUMNS = ("steps", "wall_time_s", "episodes", "mean_return", "mean_length")


@dataclass(frozen=True)
class TrainProgress:
    """A live report from a training run (what the progress view shows)."""

    config: str
    steps: int
    total_steps: int
    fps: float
    latest_return: float | None


@dataclass(frozen=True)
class TrainJob:
    """Everything a backend needs to train one expert; built by the train-experts stage."""

    spec: TaskSpec
    hyperparameters: dict[str, Any]
    """The backend's own section of the task's `expert` config (per-suite defaults + per-task overrides)."""
    steps: int
    """Total env steps to reach (a resumed run trains only the remainder)."""
    seed: int
    workdir: str
    """Local folder for checkpoints and the learning curve; kept between runs for `--resume`."""
    model_dir: str
    """Local folder the final model is written to (what `load` reads)."""
    resume: bool = False
    num_cpus: int = 1
    time_limit_s: float | None = None
    """Stop training after this many seconds of this run (the model so far is saved and evaluated)."""
    report: Callable[[TrainProgress], None] = field(default=lambda progress: None)
    history_dir: str = ""
    """Local folder for learning-history snapshots (`HistoryKeeper`); unused when `history_every` is 0."""
    history_every: int = 0
    """Keep a loadable snapshot of the policy every this many env steps (0: none)."""
    history_every_s: float = 0.0
    """...and every this many seconds of training (0: none): a time-limited run that stops far
    short of its step budget still gets an evenly spaced history."""
    device: str = "cpu"
    """torch device to train on: cpu | cuda (resolved in the worker from `--device`, `experts.device`)."""


@dataclass(frozen=True)
class TrainOutcome:
    """What a backend reports after training."""

    steps: int
    """Env steps trained in total (across resumed runs)."""
    algo: str
    hyperparameters: dict[str, Any]
    """The values actually used, defaults included, for the metadata file."""
    resumed_from: int = 0


class ExpertBackend(Protocol):
    """One way of producing experts. `trainable=False` for bots and scripted policies."""

    name: str
    trainable: bool

    def check(self, spec: TaskSpec, hyperparameters: dict[str, Any]) -> None:
        """Raise PipelineError, before any work, if this backend cannot handle `spec` so configured."""

    def hyperparameter_keys(self, spec: TaskSpec, hyperparameters: dict[str, Any]) -> frozenset[str]:
        """Every key this backend's section accepts for `spec` so configured (e.g. per sb3 `algo`).

        The stage checks `--set` keys against it before Ray starts; a PipelineError if the
        configuration is unusable (an unknown algorithm)."""

    def train(self, job: TrainJob) -> TrainOutcome:
        """Train (or resume) to `job.steps`: checkpoints in `job.workdir`, final model in `job.model_dir`."""

    def load(self, model_dir: str, spec: TaskSpec, metadata: ExpertMetadata | None) -> Policy:
        """The saved expert as a policy acting on `pipeline.tasks.envs.make_env(spec)` observations
        (`metadata`: the stored expert's, None for an untrained one scored as a candidate)."""

    def versions(self) -> dict[str, str]:
        """Library versions to record in the metadata."""


def backend_names() -> list[str]:
    return list(BACKENDS)


def get_backend(name: str) -> ExpertBackend:
    """Import and build the backend `name`; unknown names get a PipelineError listing the valid ones."""
    if name not in BACKENDS:
        raise PipelineError(f"unknown expert backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise PipelineError(
            f"expert backend {name!r} cannot be imported ({exc}); install it with `make install`"
        ) from exc
    return getattr(module, class_name)()


def check_hyperparameters(where: str, given: dict[str, Any], allowed: set[str] | frozenset[str]) -> None:
    """Typos in hyperparameter files fail at once, naming the key and the closest valid ones."""
    check_keys(where, given, allowed, what="hyperparameter(s)", fix="check env_configs/ (expert section)")


class CurveRecorder:
    """Appends learning-curve rows to `workdir/learning_curve.csv`, one per `every_s` seconds.

    Rows aggregate the episodes finished since the previous row. The file survives in the
    workdir, so a resumed run continues the same curve and the same wall-clock count. A run
    resumed from a checkpoint at `resumed_from` steps first drops the rows a killed run wrote
    after that checkpoint (all of them when it resumes from none): that training was undone,
    and the curve must not show those steps twice. Steps strictly increase from row to row:
    episodes finished before the steps move past the last row's (a resumed learner's first
    episodes, reported before its first training step) go into the next row. The wall clock
    keeps counting the time the killed run spent, as the metadata's wall time does.
    """

    def __init__(self, workdir: str, every_s: float = 10.0, resumed_from: int = 0) -> None:
        self.path = os.path.join(workdir, CURVE_FILE)
        self.every_s = every_s
        rows = read_curve(self.path)
        self.wall_offset = max((row["wall_time_s"] for row in rows), default=0.0)
        # From none (0), every row goes, a row at step 0 too: it counted episodes of a start played again.
        kept = [row for row in rows if row["steps"] <= resumed_from] if resumed_from > 0 else []
        self.last_steps = kept[-1]["steps"] if kept else -1.0
        if not os.path.exists(self.path) or kept != rows:
            os.makedirs(workdir, exist_ok=True)
            _write_curve(self.path, kept)
        self.started = time.monotonic()
        self.last_row = self.started
        self._returns: list[float] = []
        self._lengths: list[int] = []
        self.latest_return: float | None = None

    @property
    def wall_time(self) -> float:
        return self.wall_offset + time.monotonic() - self.started

    def episode(self, episode_return: float, length: int) -> None:
        self._returns.append(float(episode_return))
        self._lengths.append(int(length))
        self.latest_return = float(episode_return)

    def maybe_write(self, steps: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self._returns or (not force and now - self.last_row < self.every_s):
            return
        if steps <= self.last_steps:  # no step since the last row (a resume's first episodes): the next row
            return
        mean_return = sum(self._returns) / len(self._returns)
        mean_length = sum(self._lengths) / len(self._lengths)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow(
                [
                    steps,
                    f"{self.wall_time:.1f}",
                    len(self._returns),
                    f"{mean_return:.6g}",
                    f"{mean_length:.1f}",
                ]
            )
        self._returns.clear()
        self._lengths.clear()
        self.last_row = now
        self.last_steps = steps


class HistoryKeeper:
    """Keeps snapshots of the policy at regular step marks: the expert's learning history.

    Algorithm Distillation trains on episodes of successive checkpoints of one learner, so
    `pipeline rollout --learning-history` needs every stage of training, not just the latest
    checkpoints a resume needs. A snapshot is a folder in the same format as the final model
    (`ExpertBackend.load` reads either), named by its env step and written under a temporary
    name first, so a killed run never leaves a half-written one.

    A run resumed from a checkpoint at `resumed_from` steps first drops the snapshots a killed run
    kept after that checkpoint (and its unfinished `.partial` folders): that training was undone
    and is trained again, so the history must not hold a policy of a branch no learner continued.
    """

    def __init__(self, job: TrainJob, resumed_from: int | None = None) -> None:
        self.directory, self.every, self.every_s = job.history_dir, job.history_every, job.history_every_s
        self.enabled = self.every > 0 or self.every_s > 0
        if resumed_from is not None:
            _drop_snapshots_after(self.directory, resumed_from)
        kept = history_steps(self.directory) if self.enabled else []
        self.next_mark = (kept[-1] // self.every + 1) * self.every if kept and self.every > 0 else self.every
        self.last_time = time.monotonic()

    def due(self, steps: int) -> bool:
        by_steps = self.every > 0 and steps >= self.next_mark
        return by_steps or (self.every_s > 0 and time.monotonic() - self.last_time >= self.every_s)

    def save(self, steps: int, write: Callable[[str], None], force: bool = False) -> None:
        """Snapshot at `steps` via `write(folder)` if a mark was reached, or if `force` (the final policy)."""
        if not self.enabled or not (force or self.due(steps)):
            return
        final = os.path.join(self.directory, f"{steps:012d}")
        if os.path.isdir(final):
            return
        partial = final + ".partial"
        if os.path.isdir(partial):
            shutil.rmtree(partial)
        os.makedirs(partial)
        write(partial)
        os.replace(partial, final)
        if self.every > 0:
            self.next_mark = (steps // self.every + 1) * self.every
        self.last_time = time.monotonic()


def _drop_snapshots_after(directory: str, steps: int) -> None:
    """Remove the snapshots past `steps` and every `.partial` folder (renamed first, so a kill
    while deleting never leaves a half-deleted snapshot under a snapshot's name)."""
    if not os.path.isdir(directory):
        return
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.isdigit() and int(name) > steps:
            log.info(
                "dropping learning-history snapshot %s: past the checkpoint resumed from (%d)", path, steps
            )
            if os.path.isdir(f"{path}.partial"):
                shutil.rmtree(f"{path}.partial")
            os.replace(path, f"{path}.partial")
            path = f"{path}.partial"
        elif not name.endswith(".partial"):
            continue
        shutil.rmtree(path, ignore_errors=True)


def history_steps(directory: str) -> list[int]:
    """Env steps of the finished snapshots in a history folder, in training order."""
    if not os.path.isdir(directory):
        return []
    return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def _write_curve(path: str, rows: list[dict[str, float]]) -> None:
    """The curve file holding exactly `rows`, replaced whole (a kill leaves the old file or the new)."""
    partial = f"{path}.partial"
    with open(partial, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CURVE_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    int(row["steps"]),
                    f"{row['wall_time_s']:.1f}",
                    int(row["episodes"]),
                    f"{row['mean_return']:.6g}",
                    f"{row['mean_length']:.1f}",
                ]
            )
    os.replace(partial, path)


def read_curve(path: str) -> list[dict[str, float]]:
    """Rows of a learning-curve CSV as floats (empty list if the file has none)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f) if row.get("steps")]


def fps_since(start_steps: int, steps: int, started: float) -> float:
    elapsed = time.monotonic() - started
    return (steps - start_steps) / elapsed if elapsed > 0 else math.nan
