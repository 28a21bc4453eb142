"""One Ray task per long job with resources of its own (one expert's training: CPUs, GPUs).

The actor pool of `pipeline.runtime.executor` streams many small units; an expert's training is one
long job that asks Ray for its own CPUs and GPUs. `run_tasks` submits one task per job, at most
`max_running` at once, reports their progress through a board actor pinned to the head node, runs
a task lost with its node or worker process again as its caller says (`on_lost`), a bounded number
of times, and stops in one line when tasks wait unplaced past `placement_timeout_s`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import PipelineError
from pipeline.runtime import noise
from pipeline.runtime.executor import PLACEMENT_TIMEOUT_S, WAIT_SLICE_S, _merge_noise, init_ray


@dataclass(frozen=True)
class TaskRequest:
    """What one job asks Ray for; `key` names it in progress reports and errors."""

    key: str
    num_cpus: float
    num_gpus: float = 0.0


def alive_nodes(address: str | None = None) -> list[dict[str, float]]:
    """The resources (CPU, GPU, ...) of each live node of the cluster."""
    ray = init_ray(address)
    return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]


def cluster_cpus(address: str | None = None) -> int:
    return int(init_ray(address).cluster_resources().get("CPU", 1))


class _Board:
    """A Ray actor the tasks report to: once placed (started by Ray), then their progress.

    The driver polls it; a placed task is one Ray has scheduled and started."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] = {}
        self.placed: set[str] = set()
        self.suppressed: dict[
            str, int
        ] = {}  # third-party messages the tasks dropped (pipeline.runtime.noise)

    def started(self, key: str) -> None:
        self.placed.add(key)

    def unplace(self, key: str) -> None:
        """A lost task submitted again: it waits for placement anew."""
        self.placed.discard(key)

    def report(self, key: str, progress: Any) -> None:
        self.latest[key] = progress

    def snapshot(self) -> tuple[dict[str, Any], set[str]]:
        return dict(self.latest), set(self.placed)

    def add_suppressed(self, counts: dict[str, int]) -> None:
        for key, n in counts.items():
            self.suppressed[key] = self.suppressed.get(key, 0) + n

    def suppressed_counts(self) -> dict[str, int]:
        return dict(self.suppressed)


def _on_head(ray: Any) -> Any:
    """Ray's scheduling strategy for a helper actor on the head node (the driver's node when the
    cluster names none): the loss of a worker node must not take it, and the run, with it."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    heads = [
        n["NodeID"]
        for n in ray.nodes()
        if n.get("Alive") and "node:__internal_head__" in n.get("Resources", {})
    ]
    node = heads[0] if heads else ray.get_runtime_context().get_node_id()
    # hard: a soft affinity lets a busy head's raylet spill the actor onto a worker node
    return NodeAffinitySchedulingStrategy(node, soft=False)


def _run_task(fn: Callable[[Any, Callable[[Any], None]], Any], job: Any, key: str, board: Any) -> Any:
    noise.install()
    board.started.remote(key)
    try:
        return fn(job, lambda progress: board.report.remote(key, progress))
    finally:
        board.add_suppressed.remote(noise.take())


def run_tasks(
    fn: Callable[[Any, Callable[[Any], None]], Any],
    jobs: list[tuple[TaskRequest, Any]],
    on_progress: Callable[[Any], None],
    on_failure: Callable[[TaskRequest, Exception], Any],
    placement_timeout_s: float = PLACEMENT_TIMEOUT_S,
    address: str | None = None,
    retry_hint: str = "re-run",
    max_running: int | None = None,
    on_lost: Callable[[TaskRequest, Any, Exception], Any | None] | None = None,
    retries: int = 0,
) -> list[Any]:
    """`fn(job, report)` as one Ray task per job, with the job's CPUs and GPUs; results as they end.

    At most `max_running` tasks are submitted at once (None: all, and Ray places what fits); the
    next is submitted as one ends, so a user can leave room on a shared cluster.

    `fn` must be picklable (a module-level function or a partial of one); `report(progress)` reaches
    `on_progress` in the driver. A task lost to the system (its worker process or its node died,
    `is_lost`) is submitted again up to `retries` times, as the job `on_lost(request, job, error)`
    returns (None: not again); Ray places it on whichever node has room. A task that fails
    otherwise (an exception of `fn`), or is lost once too often, gives `on_failure(request, error)`.
    Tasks queued behind this run's own running tasks wait as long as those run. Only when none of
    this run's tasks is running and some still wait does the clock run: the resources are held by
    others (another job on the GPUs) or gone (a lost node), and after `placement_timeout_s` the run
    stops with one line naming what the waiting tasks ask for and what the cluster has free.
    """
    ray = init_ray(address)
    board = ray.remote(num_cpus=0, scheduling_strategy=_on_head(ray))(_Board).remote()
    task = ray.remote(max_retries=0)(_run_task)
    queue = deque(jobs)
    pending: dict[Any, tuple[TaskRequest, Any]] = {}
    lost: dict[str, int] = {}  # key -> times its task was lost

    def submit() -> None:
        while queue and (max_running is None or len(pending) < max_running):
            r, job = queue.popleft()
            ref = task.options(num_cpus=r.num_cpus, num_gpus=r.num_gpus, name=f"task-{r.key}").remote(
                fn, job, r.key, board
            )
            pending[ref] = (r, job)

    def again(request: TaskRequest, job: Any, exc: Exception) -> Any | None:
        """The job to submit once more after a lost task (None: it fails)."""
        if on_lost is None or not is_lost(exc) or lost.get(request.key, 0) >= retries:
            return None
        lost[request.key] = lost.get(request.key, 0) + 1
        return on_lost(request, job, exc)

    submit()
    results: list[Any] = []
    starved_since: float | None = None
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_SLICE_S)
            for ref in done:
                request, job = pending.pop(ref)
                try:
                    results.append(ray.get(ref))
                except Exception as exc:  # the worker or node died, or `fn` raised
                    retried = again(request, job, exc)
                    if retried is None:
                        results.append(on_failure(request, exc))
                    else:  # first in line: it goes where Ray finds room, before jobs not yet begun
                        ray.get(board.unplace.remote(request.key))
                        queue.appendleft((request, retried))
            submit()
            latest, placed = ray.get(board.snapshot.remote())
            for progress in latest.values():
                on_progress(progress)
            if pending and not any(r.key in placed for r, _ in pending.values()):
                starved_since = starved_since or time.monotonic()
                if time.monotonic() - starved_since > placement_timeout_s:
                    waiting = [r for r, _ in pending.values()]
                    raise PipelineError(_unplaced_message(ray, waiting, placement_timeout_s, retry_hint))
            else:
                starved_since = None
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        _merge_noise(ray, [board.suppressed_counts.remote()])
        ray.kill(board)
    return results


def is_lost(exc: BaseException) -> bool:
    """Whether a task failed because the system lost it (its worker process, its node, the raylet,
    its owner, out of memory), not because the function it ran raised (a `RayTaskError`)."""
    from ray import exceptions as rx

    system = (
        rx.WorkerCrashedError,
        rx.NodeDiedError,
        rx.LocalRayletDiedError,
        rx.ObjectLostError,  # OwnerDiedError among them
        rx.OutOfMemoryError,
    )
    return isinstance(exc, system) and not isinstance(exc, rx.RayTaskError)


def lost_what(exc: BaseException) -> str:
    """What a lost task lost, in a few words, for the line that says it runs again."""
    from ray import exceptions as rx

    if isinstance(exc, rx.NodeDiedError | rx.LocalRayletDiedError):
        return "the node it ran on died"
    if isinstance(exc, rx.OutOfMemoryError):
        return "Ray killed its worker process for lack of memory"
    if isinstance(exc, rx.ObjectLostError):
        return "its result was lost with its node"
    return "its worker process died"


def _unplaced_message(ray: Any, waiting: list[TaskRequest], waited: float, retry_hint: str) -> str:
    """One line: which tasks could not be placed, what they ask for, what the cluster has free."""
    first = waiting[0]
    asks = f"{first.num_cpus:g} CPU" + (f" + {first.num_gpus:g} GPU" if first.num_gpus else "")
    try:
        total, free = ray.cluster_resources(), ray.available_resources()
    except Exception:  # the cluster itself may be what went away
        total, free = {}, {}
    have = ", ".join(f"{free.get(k, 0):g}/{total.get(k, 0):g} {k}" for k in ("CPU", "GPU") if total.get(k))
    more = f" and {len(waiting) - 1} more" if len(waiting) > 1 else ""
    return (
        f"{first.key}{more} could not be placed on Ray for {waited:.0f} s (each asks for {asks}; free in "
        f"the cluster: {have or 'nothing'}): the resources are held by other jobs or a node is gone; free "
        f"them or add a node, then {retry_hint}, or raise --placement-timeout"
    )
