"""One expert, start to finish: train (or resume), save, evaluate, gate, write metadata.

`train_expert` is what one Ray task of `pipeline train-experts` runs (or the driver itself,
in-process). It never raises for a task's own failure: a bad config, a corrupt checkpoint or
a crashing backend comes back as a `failed` result naming the cause, so the other tasks of
the suite go on and the stage reports every failure at the end.

A task with an untrained alternative (Meta-World's scripted policy, `experts.candidates`) scores
that first on the evaluation seeds: if it passes the gate and the plan does not insist on
training, it is stored as the expert and nothing is trained; otherwise the trained network is
scored on the same seeds and the better of the two is what rollout will use.
"""

from __future__ import annotations

import logging
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

from experts.base import (
    CURVE_FILE,
    ExpertStatus,
    TrainJob,
    TrainOutcome,
    TrainProgress,
    get_backend,
    history_steps,
    read_curve,
)
from experts.candidates import (
    Candidate,
    Choice,
    choose,
    evaluate_candidate,
    keep_scripted,
    scripted_candidate,
)
from experts.device import RayPlacement, resolve_device
from experts.evaluation import judged
from experts.metadata import ExpertMetadata
from experts.report import budget_of
from experts.store import ExpertStore, PeriodicUpload
from pipeline.errors import PipelineError
from pipeline.suites import suite_packages
from pipeline.tasks.registry import TaskSpec, get_task

log = logging.getLogger(__name__)

FAILED = ExpertStatus.FAILED


@dataclass(frozen=True)
class ExpertPlan:
    """Everything one training task needs; plain data, so it travels to a Ray worker as is."""

    config: str
    backend: str
    hyperparameters: dict[str, Any]
    """The backend's section of the task's expert config, overrides applied."""
    steps: int
    seed: int
    num_cpus: int
    eval_episodes: int
    threshold: float
    deterministic: bool
    resume: bool = False
    evaluate: bool = True
    time_limit_s: float | None = None
    history_every: int = 0
    """Learning-history snapshot interval in env steps (0: none)."""
    history_every_s: float = 0.0
    """...and in seconds of training (time-limited runs; 0: none)."""
    upload_every_s: float = 300.0
    """Remote stores: upload checkpoints this often during training (0: only at the end)."""
    device: str = "auto"
    """`train-experts --device`: auto | cpu | cuda, resolved where the task runs (`experts.device`)."""
    num_gpus: float = 0.0
    """GPUs the task asks Ray for (`expert.num_gpus` / `--num-gpus`); `auto` trains on CUDA only with one."""
    alternative: str | None = None
    """Backend of the task's untrained alternative (Meta-World: metaworld-scripted), scored on the same
    seeds as the trained expert, the better kept; None: no comparison."""
    train_always: bool = False
    """Train even when the alternative passes the gate (`--force-train`, or a trained `--backend` named)."""


@dataclass
class ExpertResult:
    """The outcome of one task, shown in the final table."""

    config: str
    backend: str
    status: ExpertStatus
    steps: int = 0
    wall_time_s: float = 0.0
    evaluation: dict[str, Any] = field(default_factory=dict)
    """The evaluation of the expert rollout will use (the chosen candidate's)."""
    error: str = ""
    chosen: str = ""
    """The backend kept among candidates, when the task had an untrained alternative."""
    budget: str = ""
    """Below JAT's level: the steps the learning curve says it needs (`experts.budget`), or why not."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def env_spec_record(spec: TaskSpec) -> dict[str, Any]:
    """The env an expert was trained and evaluated on, as recorded in metadata.json."""
    return {
        "config": spec.config,
        "env_id": spec.env_id,
        "jat_env_id": spec.jat_env_id,
        "env_name": spec.env_name,
        "make_kwargs": spec.make_kwargs,
        "env": {k: v for k, v in asdict(spec.env).items() if k != "make_kwargs"},  # make_kwargs: above
        "observation": asdict(spec.observation),
        "action": asdict(spec.action),
        "max_episode_steps": spec.max_episode_steps,
        "training_wrappers": asdict(spec.expert.training_wrappers),
    }


def versions_of(backend_versions: dict[str, str]) -> dict[str, str]:
    names = ("jat-pipeline", "gymnasium", "numpy", *suite_packages())
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except Exception:  # a suite's package may be absent where only other suites run
            continue
    return {"python": platform.python_version(), **found, **backend_versions}


def train_expert(
    plan: ExpertPlan,
    store_uri: str,
    report: Callable[[TrainProgress], None] | None = None,
    placement: RayPlacement | None = None,
) -> ExpertResult:
    """Train, evaluate and gate one expert; store it with its metadata. Failures come back as results.

    `placement` is what Ray gave the task (None in-process): recorded in the metadata, and what
    `--device auto` decides from."""
    try:
        return _train_expert(plan, store_uri, report or (lambda progress: None), placement)
    except PipelineError as exc:
        log.error("%s: %s", plan.config, exc)
        return ExpertResult(plan.config, plan.backend, FAILED, error=str(exc))
    except Exception as exc:
        log.error("%s failed:\n%s", plan.config, traceback.format_exc())
        return ExpertResult(plan.config, plan.backend, FAILED, error=f"{type(exc).__name__}: {exc}")


def _train_expert(
    plan: ExpertPlan,
    store_uri: str,
    report: Callable[[TrainProgress], None],
    placement: RayPlacement | None,
) -> ExpertResult:
    spec = get_task(plan.config)
    store = ExpertStore(store_uri)
    backend = get_backend(plan.backend)
    backend.check(spec, plan.hyperparameters)
    scripted: Candidate | None = None
    if plan.alternative and plan.evaluate and backend.trainable:
        scripted = scripted_candidate(plan.alternative, spec, plan.eval_episodes, plan.seed, plan.threshold)
        if scripted.decision.accepted and not plan.train_always:
            log.info("%s: %s passes the gate, nothing to train", spec.config, scripted.backend)
            backend = get_backend(scripted.backend)
            untrained = {"hyperparameters": {}, "steps": 0, "history_every": 0, "history_every_s": 0.0}
            plan = replace(plan, backend=backend.name, **untrained)
    device = plan.device if backend.trainable else "cpu"  # bots and scripted policies run no network
    resources = resolve_device(device, plan.num_cpus, plan.num_gpus, placement, spec.config)
    staged = store.stage(spec.config, plan.resume)
    previous = read_curve(os.path.join(staged.workdir, CURVE_FILE)) if plan.resume else []
    wall_before = previous[-1]["wall_time_s"] if previous else 0.0
    started = time.monotonic()
    latest: list[TrainProgress] = []  # the backend's last report, to close the progress view with the truth

    def reported(progress: TrainProgress) -> None:
        latest[:] = [progress]
        report(progress)

    job = TrainJob(
        spec=spec,
        hyperparameters=plan.hyperparameters,
        steps=plan.steps,
        seed=plan.seed,
        workdir=staged.workdir,
        model_dir=staged.model_dir,
        resume=plan.resume,
        num_cpus=plan.num_cpus,
        time_limit_s=plan.time_limit_s,
        report=reported,
        history_dir=staged.history_dir,
        history_every=plan.history_every,
        history_every_s=plan.history_every_s,
        device=resources.device,
    )
    try:
        with PeriodicUpload(store, staged, plan.upload_every_s):
            outcome = backend.train(job)
    finally:
        store.copy_curve(staged)
        store.publish(staged)  # remote stores keep the checkpoints of an interrupted run too
    wall_time = wall_before + time.monotonic() - started
    if backend.trainable:
        _report_final(plan, outcome, time.monotonic() - started, latest, report)
    metadata = ExpertMetadata(
        config=spec.config,
        suite=spec.suite,
        backend=backend.name,
        algo=outcome.algo,
        status=ExpertStatus.UNEVALUATED,
        trained=backend.trainable,
        versions=versions_of(backend.versions()),
        hyperparameters=outcome.hyperparameters,
        deterministic=plan.deterministic,
        env_spec=env_spec_record(spec),
        steps_target=plan.steps,
        steps_trained=outcome.steps,
        resumed_from_step=outcome.resumed_from,
        wall_time_s=round(wall_time, 1),
        seed=plan.seed,
        num_cpus=plan.num_cpus,
        resources=asdict(resources),
        learning_curve=CURVE_FILE if backend.trainable else None,
        history_every=plan.history_every,
        history_every_s=plan.history_every_s,
        history_snapshots=len(history_steps(staged.history_dir)),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    result = ExpertResult(spec.config, backend.name, ExpertStatus.UNEVALUATED, outcome.steps, wall_time)
    if plan.evaluate:
        choice = _evaluate(
            plan, spec, backend.name, lambda: backend.load(staged.model_dir, spec, metadata), scripted
        )
        kept = choice.chosen if isinstance(choice, Choice) else choice
        metadata = judged(metadata, kept.evaluation, kept.decision)
        if isinstance(choice, Choice):
            metadata = replace(metadata, **choice.record())
            result.chosen = kept.backend
            log.info("%s: keeps %s: %s", spec.config, kept.backend, choice.reason)
        result.status, result.evaluation = kept.decision.status, kept.evaluation.to_dict()
        estimate = budget_of(store, metadata)
        result.budget = estimate.short() if estimate else ""
    store.write_metadata(spec.config, metadata)  # last: a folder with metadata.json holds a finished expert
    log.info("%s: %s after %d steps", spec.config, result.status, outcome.steps)
    return result


def _report_final(
    plan: ExpertPlan,
    outcome: TrainOutcome,
    seconds: float,
    latest: list[TrainProgress],
    report: Callable[[TrainProgress], None],
) -> None:
    """The steps really trained, as the last progress report (backends report at most once a second,
    so a short run may end unreported, and a budget a backend rounds up ends past the bar's total;
    the stage says that once, in the driver: `pipeline.expert_stages.train_experts.rounded_up`)."""
    last, steps = (latest[0] if latest else None), outcome.steps
    fps = last.fps if last else (steps - (outcome.resumed_from or 0)) / max(seconds, 1e-6)
    latest_return = last.latest_return if last else None
    report(TrainProgress(plan.config, steps, max(plan.steps, steps), fps, latest_return))


def _evaluate(
    plan: ExpertPlan,
    spec: TaskSpec,
    backend: str,
    load: Callable[[], Any],
    scripted: Candidate | None,
) -> Candidate | Choice:
    """The stored expert's evaluation: the expert alone, or the choice between it and the scripted
    candidate (already scored on the same seeds; not scored again when it is the stored expert)."""
    if scripted is not None and backend == scripted.backend:
        return keep_scripted(scripted)
    candidate = evaluate_candidate(backend, load(), spec, plan.eval_episodes, plan.seed, plan.threshold)
    return candidate if scripted is None else choose(candidate, scripted)
