"""`pipeline train-experts`: train one expert per task on Ray, evaluate it, gate it, store it.

The driver only plans: it resolves tasks, refuses unknown `--set` keys and an impossible
`--device cuda` before Ray starts, merges hyperparameters (suite defaults, per-task overrides
from env_configs/, then command-line overrides), checks every task up front, and schedules one
Ray task per env with the `num_cpus` and `num_gpus` its config asks for. GPUs no node of the
cluster has are refused at once; tasks that cannot be placed because the cluster is busy stop
the run after `--placement-timeout`, never a silent hang. Each task trains, evaluates and gates
its expert (`experts.training.train_expert`). A task's failure (bad config, corrupt checkpoint,
crashing backend) is reported at the end and in the exit code; the other tasks go on. A task Ray
loses (its node or worker process died) is not a failure of the expert: it runs again, resumed from
the store's last checkpoint, up to `--task-retries` times, on whichever node Ray picks.

Meta-World tasks have an untrained alternative, the scripted policy (`experts.candidates`): it
is scored first, kept without training where it passes the gate, and otherwise compared with
the trained network on the same evaluation seeds, the better kept. `--force-train` (or naming
a trained `--backend`) trains every task and still keeps the better of the two.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from experts.base import TrainProgress, get_backend
from experts.candidates import scripted_alternative
from experts.device import RayPlacement, cuda_devices, no_cuda_reason
from experts.report import write_suite_reports
from experts.store import ExpertStore
from experts.training import FAILED, ExpertPlan, ExpertResult, train_expert
from pipeline.configs.experts import TrainExpertsConfig
from pipeline.errors import PipelineError
from pipeline.format.schema import TMP_DIR
from pipeline.runtime.executor import require_shared_storage
from pipeline.runtime.executor_tasks import TaskRequest, alive_nodes, cluster_cpus, lost_what, run_tasks
from pipeline.runtime.progress import Bars
from pipeline.runtime.storage import check_writable
from pipeline.tasks.registry import TaskSpec, all_tasks, resolve_tasks
from pipeline.tasks.sections import check_threshold, closest_keys

log = logging.getLogger(__name__)


@dataclass
class TrainExpertsSummary:
    out: str
    results: list[ExpertResult]
    seconds: float
    reports: dict[str, list[str]] = field(default_factory=dict)

    @property
    def failed(self) -> list[ExpertResult]:
        return [r for r in self.results if r.status == FAILED]


def plan_expert(spec: TaskSpec, config: TrainExpertsConfig, cluster_cpus: int | None) -> ExpertPlan:
    """Merge the task's expert config with the command line into one plan (raises on bad settings)."""
    expert = spec.expert
    backend_name = config.backend or expert.backend
    if not backend_name:
        raise PipelineError(f"{spec.config}: no expert backend configured; pass --backend")
    backend = get_backend(backend_name)
    hyperparameters = merged_hyperparameters(spec, backend_name, config.hyperparameters)
    backend.check(spec, hyperparameters)
    num_cpus = config.num_cpus or expert.num_cpus
    task_cpus = getattr(backend, "task_cpus", None)  # rllib: its env runners ask Ray for their own CPUs
    if task_cpus is not None and not config.num_cpus:
        num_cpus = task_cpus(hyperparameters)
    if cluster_cpus is not None and num_cpus > cluster_cpus:
        log.warning(
            "%s: asks for %d CPUs, the cluster has %d: using %d",
            spec.config,
            num_cpus,
            cluster_cpus,
            cluster_cpus,
        )
        num_cpus = cluster_cpus
    steps = config.steps or expert.steps
    if backend.trainable and steps < 1:
        raise PipelineError(
            f"{spec.config}: no step budget; pass --steps or set expert.steps in env_configs/"
        )
    threshold = config.threshold if config.threshold is not None else expert.threshold
    snapshots = expert.history_snapshots
    history_every, history_every_s = config.history_every, 0.0
    if history_every is None:
        spaced = backend.trainable and snapshots > 0
        history_every = max(1, steps // snapshots) if spaced else 0
        if spaced and config.time_limit_min is not None:  # spaced over whichever ends training first
            history_every_s = 60.0 * config.time_limit_min / snapshots
    return ExpertPlan(
        config=spec.config,
        backend=backend_name,
        hyperparameters=hyperparameters,
        steps=steps,
        seed=config.seed,
        num_cpus=num_cpus,
        eval_episodes=config.eval_episodes or expert.eval_episodes,
        threshold=check_threshold(threshold),
        deterministic=expert.deterministic,
        resume=config.resume,
        evaluate=config.evaluate,
        time_limit_s=None if config.time_limit_min is None else 60.0 * config.time_limit_min,
        history_every=history_every,
        history_every_s=history_every_s,
        upload_every_s=expert.upload_every_s if config.upload_every_s is None else config.upload_every_s,
        device=config.device,
        num_gpus=gpus_per_task(spec, config),
        alternative=_alternative(spec) if backend.trainable else None,
        train_always=config.force_train or config.backend is not None,
    )


def _alternative(spec: TaskSpec) -> str | None:
    """The untrained expert to compare a trained one with (Meta-World's scripted policy), if it can play."""
    name = scripted_alternative(spec)
    if name is None:
        return None
    try:
        get_backend(name).check(spec, {})
    except PipelineError as exc:
        log.warning("%s: no %s candidate to compare with (%s)", spec.config, name, exc)
        return None
    return name


def gpus_per_task(spec: TaskSpec, config: TrainExpertsConfig) -> float:
    """GPUs the task's training asks Ray for: `--num-gpus`, else the task's `expert.num_gpus` (0)."""
    if config.num_gpus is not None:
        return float(config.num_gpus)
    return spec.expert.num_gpus


def merged_hyperparameters(spec: TaskSpec, backend_name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The backend's section of the task's expert config (env_configs/), then the `--set` overrides."""
    configured = spec.expert.settings(backend_name)
    if "algo" in overrides and overrides["algo"] != configured.get("algo"):
        configured = {}  # another algorithm: the configured one's settings do not apply to it
    return {**configured, **overrides}


def check_overrides(specs: list[TaskSpec], config: TrainExpertsConfig) -> None:
    """Refuse unknown `--set` keys before any work starts (before Ray), naming the closest valid keys.

    A `--set` applies to every task, so a key a task's backend does not know is a typo on the
    command line, not that task's failure: the whole run stops, at once. Keys are checked per
    task and backend (sb3's depend on the algorithm). Backends that train nothing (BabyAI bot,
    Meta-World scripted) take no hyperparameters and ignore `--set`; a task without a usable
    backend or algorithm from env_configs/ is left to `plan_expert`, which fails that task alone.
    """
    if not config.hyperparameters:
        return
    for spec in specs:
        backend_name = config.backend or spec.expert.backend
        if not backend_name:
            continue
        backend = get_backend(backend_name)
        if not backend.trainable:
            continue
        hyperparameters = merged_hyperparameters(spec, backend_name, config.hyperparameters)
        try:
            allowed = backend.hyperparameter_keys(spec, hyperparameters)
        except PipelineError:
            if "algo" in config.hyperparameters:
                raise  # `--set algo=...` names an unknown algorithm: the command line's fault
            continue
        unknown = sorted(set(config.hyperparameters) - allowed)
        if unknown:
            keys = ", ".join(f"{k}={config.hyperparameters[k]!r}" for k in unknown)
            raise PipelineError(
                f"--set {keys}: unknown {backend_name} hyperparameter for {spec.config}"
                f"{closest_keys(unknown, allowed)}; fix the key (valid keys are the backend's arguments, "
                f"as in expert.{backend_name} of env_configs/{spec.suite}.yaml)"
            )
        _check_override_types(spec, backend_name, config.hyperparameters)


def _kind(value: Any) -> str | None:
    """ "a number", "true or false", or None (no kind to hold a `--set` value to)."""
    if isinstance(value, bool):
        return "true or false"
    return "a number" if isinstance(value, int | float) else None


def _check_override_types(spec: TaskSpec, backend_name: str, overrides: dict[str, Any]) -> None:
    """A `--set` value of another kind than the configured one (learning_rate=fast) stops the run at
    once, in one line, before a backend's own parser prints its usage and exits."""
    configured = spec.expert.settings(backend_name)
    for key, value in overrides.items():
        expected = _kind(configured.get(key))
        if (
            expected is not None
            and _kind(value) != expected
            and not (expected == "a number" and value is None)
        ):
            raise PipelineError(
                f"--set {key}={value!r}: {backend_name}'s {key} is {expected} (env_configs/{spec.suite}.yaml "
                f"has {configured[key]!r} for {spec.config}); pass --set {key}=VALUE with {expected}"
            )


def check_device_request(specs: list[TaskSpec], config: TrainExpertsConfig) -> None:
    """Refuse `--device cuda` that cannot work, before Ray starts.

    Trained locally (in-process or on a local Ray cluster), training sees this machine's GPUs, so
    none means failure now rather than in every task. On a cluster (`--address` / RAY_ADDRESS)
    the driver may run on a node without GPU (the head node, under `pipeline submit`): there each
    worker checks its own. On Ray a CUDA task must also reserve a GPU, or Ray would stack tasks on
    one GPU or place them on nodes without any.
    """
    if config.device != "cuda":
        return
    trained = [s for s in specs if _trains(s, config)]
    if not trained:
        return
    local = config.in_process or not (config.address or os.environ.get("RAY_ADDRESS"))
    if local and not cuda_devices():
        raise PipelineError(
            f"--device cuda: {no_cuda_reason()} on this machine; use --device auto or cpu, or train on a "
            "cluster with GPUs (--address)"
        )
    without = [s.config for s in trained if gpus_per_task(s, config) == 0]
    if without and not config.in_process:
        raise PipelineError(
            f"--device cuda: {without[0]}{f' (and {len(without) - 1} more)' if len(without) > 1 else ''} "
            "asks Ray for no GPU; pass --num-gpus 1 (or set expert.num_gpus in env_configs/) so Ray "
            "reserves one per training task"
        )


def _trains(spec: TaskSpec, config: TrainExpertsConfig) -> bool:
    """Whether the task's backend trains a network (a task without a usable one fails in `plan_expert`)."""
    name = config.backend or spec.expert.backend
    try:
        return bool(name) and get_backend(name).trainable
    except PipelineError:
        return False


def check_gpus(nodes: list[dict[str, float]], plans: list[ExpertPlan]) -> None:
    """Refuse at once GPU requests no node of the cluster can ever meet (Ray would wait forever).

    A task runs on one node, so it needs one node with its GPUs and CPUs; GPUs that exist but are
    busy are the placement timeout's business (`executor_tasks.run_tasks`).
    """
    wanting = [p for p in plans if p.num_gpus > 0]
    if not wanting:
        return
    most = max((r.get("GPU", 0.0) for r in nodes), default=0.0)
    for plan in wanting:
        with_gpus = [r for r in nodes if r.get("GPU", 0.0) >= plan.num_gpus]
        if not with_gpus:
            raise PipelineError(
                f"{plan.config} asks Ray for {plan.num_gpus:g} GPU(s) per training task but no node of the "
                f"cluster has more than {most:g} ({len(nodes)} node(s)); add a GPU node, or lower "
                "--num-gpus / expert.num_gpus (0 trains on the CPU)"
            )
        if not any(r.get("CPU", 0.0) >= plan.num_cpus for r in with_gpus):
            cpus = max(r.get("CPU", 0.0) for r in with_gpus)
            raise PipelineError(
                f"{plan.config} asks for {plan.num_gpus:g} GPU(s) and {plan.num_cpus} CPUs on one node, but "
                f"the nodes with those GPUs have at most {cpus:g} CPUs; pass --num-cpus {int(cpus)} or lower"
            )


def _check_existing(store: ExpertStore, spec: TaskSpec, config: TrainExpertsConfig) -> None:
    if config.resume or not store.has_training_state(spec.config):
        return
    if not config.overwrite:
        raise PipelineError(
            f"{store.uri} already holds an expert (or checkpoints) for {spec.config}: pass --resume to "
            "continue training it, or --overwrite to retrain from scratch"
        )


def check_experts_folder(store: ExpertStore) -> None:
    """--out must be empty, new or an experts folder: never a source tree or a dataset."""
    foreign = store.foreign_entries(set(all_tasks()))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise PipelineError(
            f"--out {store.uri} is not empty and is not an experts folder (it holds {shown}): "
            "choose a new or empty folder, e.g. --out outputs/experts"
        )


def check_backend(config: TrainExpertsConfig) -> None:
    """An unknown --backend, or --force-train with a backend that trains nothing, stops the run."""
    if config.backend is None:
        return
    backend = get_backend(config.backend)  # an unknown name fails here, naming the known ones
    if config.force_train and not backend.trainable:
        raise PipelineError(
            f"--force-train trains a network, but --backend {config.backend} trains nothing; drop one of them"
        )


def train_experts(config: TrainExpertsConfig) -> TrainExpertsSummary:
    """Train the configured experts; returns one result per task (failed ones included)."""
    check_backend(config)
    specs = resolve_tasks(config.suite, list(config.tasks) or None)
    check_overrides(specs, config)
    check_device_request(specs, config)
    if not config.in_process:
        require_shared_storage({"--out": config.out}, config.address, 1, config.shared_fs)
    store = ExpertStore(config.out)
    check_experts_folder(store)
    check_writable(store.location)
    cpus = None if config.in_process else cluster_cpus(config.address)
    plans: list[ExpertPlan] = []
    results: list[ExpertResult] = []
    for spec in specs:  # every task is checked before any is trained; a bad one fails alone
        try:
            plan = plan_expert(spec, config, cpus)
            _check_existing(store, spec, config)
        except PipelineError as exc:
            backend = config.backend or spec.expert.backend
            results.append(ExpertResult(spec.config, backend, FAILED, error=str(exc)))
            continue
        plans.append(plan)
    if not config.in_process:
        check_gpus(alive_nodes(config.address), plans)
    if config.overwrite:  # only once nothing stops the run: an impossible request deletes nothing
        for plan in plans:
            store.delete(plan.config)
    started = time.monotonic()
    display = _Display(plans, config.progress)
    try:
        if config.in_process:
            for plan in plans:
                results.append(train_expert(plan, store.uri, display.update))
        else:
            results += _run_on_ray(plans, config, store.uri, display)
    finally:
        display.close()
        store.location.delete(TMP_DIR)
    order = {s.config: i for i, s in enumerate(specs)}
    results.sort(key=lambda r: order.get(r.config, len(order)))
    for line in rounded_up(plans, results):
        log.info(line)
    reports = write_suite_reports(store, [s.suite for s in specs])
    store.location.delete(TMP_DIR)
    return TrainExpertsSummary(store.uri, results, time.monotonic() - started, reports)


def rounded_up(plans: list[ExpertPlan], results: list[ExpertResult]) -> list[str]:
    """One line per expert whose backend trained past its step budget (sample-factory stops only
    between training rounds), said once by the stage, whichever process trained it."""
    planned = {p.config: p for p in plans}
    lines = []
    for r in results:
        plan = planned.get(r.config)
        if (
            plan
            and plan.steps
            and r.backend == plan.backend
            and r.steps > plan.steps
            and not plan.time_limit_s
        ):
            lines.append(
                f"{r.config}: {r.backend} trained {r.steps:,} env steps for a budget of {plan.steps:,} "
                "(it stops only between training rounds, so it rounds a budget up)"
            )
    return lines


def _train_on_worker(
    store_uri: str, plan: ExpertPlan, report: Callable[[TrainProgress], None]
) -> ExpertResult:
    """One expert in a Ray task (executor_tasks.run_tasks), recording what Ray gave it."""
    return train_expert(plan, store_uri, report, RayPlacement.current())


def _run_on_ray(
    plans: list[ExpertPlan], config: TrainExpertsConfig, store_uri: str, display: _Display
) -> list[ExpertResult]:
    def failed(request: TaskRequest, exc: Exception) -> ExpertResult:
        backend = next(p.backend for p in plans if p.config == request.key)
        return ExpertResult(request.key, backend, FAILED, error=f"Ray task died: {exc}")

    retried: dict[str, int] = {}

    def lost(request: TaskRequest, plan: ExpertPlan, exc: Exception) -> ExpertPlan:
        retried[plan.config] = retried.get(plan.config, 0) + 1
        log.warning(
            "%s: %s (%s); training again (retry %d of %d) %s",
            plan.config,
            lost_what(exc),
            type(exc).__name__,
            retried[plan.config],
            config.task_retries,
            _resumes_from(ExpertStore(store_uri), plan),
        )
        return replace(plan, resume=True)

    return run_tasks(
        functools.partial(_train_on_worker, store_uri),
        [(TaskRequest(p.config, p.num_cpus, p.num_gpus), p) for p in plans],
        on_progress=display.update,
        on_failure=failed,
        placement_timeout_s=config.placement_timeout_s,
        address=config.address,
        retry_hint="re-run with --resume (finished experts are kept)",
        max_running=config.workers,
        on_lost=lost,
        retries=config.task_retries,
    )


def _resumes_from(store: ExpertStore, plan: ExpertPlan) -> str:
    """Where a lost task's next attempt starts: the last checkpoint uploaded to the store."""
    try:
        step = store.uploaded_checkpoint_step(plan.config, plan.backend)
    except Exception as exc:  # the store is what the new attempt reads; it says what it finds
        return f"from its last checkpoint in {store.uri} (not listed here: {exc})"
    if step is None:
        return f"from its last checkpoint in {store.uri}"
    if step == 0:
        return f"from step 0: {store.uri} holds no checkpoint of it yet"
    return f"from step {step:,}, its last checkpoint in {store.uri}"


class _Display:
    """A progress line per task: the config (never cut), a bar, steps done, FPS, latest return."""

    def __init__(self, plans: list[ExpertPlan], enabled: bool) -> None:
        from rich.table import Column

        self.bars = Bars(
            enabled and bool(plans),
            lambda rp: (
                rp.TextColumn("{task.description}", table_column=Column(no_wrap=True)),
                rp.BarColumn(bar_width=10),
                rp.TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
                rp.TextColumn("{task.fields[fps]:,.0f}/s"),
                rp.TextColumn("R {task.fields[ret]}"),
                rp.TimeElapsedColumn(),
            ),
        )
        self.totals = {p.config: max(p.steps, 1) for p in plans}
        for p in plans:
            self.bars.add(p.config, self.totals[p.config], fps=0.0, ret="-")

    def update(self, progress: TrainProgress) -> None:
        if progress.config not in self.totals:
            return
        ret = "-" if progress.latest_return is None else f"{progress.latest_return:.2f}"
        total = self.totals[progress.config] = max(self.totals[progress.config], progress.total_steps)
        self.bars.update(progress.config, completed=progress.steps, total=total, fps=progress.fps, ret=ret)

    def close(self) -> None:
        self.bars.close()
