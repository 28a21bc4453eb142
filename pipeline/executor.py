"""Ray lives here and nowhere else: cluster connection, the actor pool, and a serial mode.

Stages hand this module work units and a callback; it runs them in-process (`workers=0`,
for debugging and the fastest tests) or on Ray actors, locally (`ray.init()`) or on the
cluster named by `--address` / `RAY_ADDRESS`.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from pipeline.errors import PipelineError

log = logging.getLogger(__name__)


def init_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Connect to the cluster at `address` / `RAY_ADDRESS`, or start a local one (once per process)."""
    import ray

    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": True,
        "configure_logging": True,
    }
    if address:
        kwargs["address"] = address
    else:
        kwargs["num_cpus"] = max(os.cpu_count() or 1, num_cpus or 1)
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or "a local cluster"
        raise PipelineError(
            f"cannot start or reach Ray at {where}: {exc} (check --address / RAY_ADDRESS)"
        ) from exc
    return ray


MAX_ATTEMPTS = 3


def run_streaming(
    worker_factory: Callable[[], Any],
    method: str,
    units: Iterable[Any],
    on_item: Callable[[Any], Iterable[Any]],
    workers: int,
    address: str | None = None,
    on_retry: Callable[[Any], None] | None = None,
) -> None:
    """Run `worker.<method>(unit)` generators over a pool of workers.

    Every item a generator yields goes to `on_item`, which may return follow-up units (for
    example the unplayed leftovers of a full shard, or the next round of a step budget).
    If a worker process dies mid-unit (killed, out of memory, node lost), a fresh actor takes
    its place and the unit is run again from its start, up to `MAX_ATTEMPTS` times; `on_retry`
    lets the caller forget the progress the lost attempt reported. Units must therefore be
    idempotent: re-running one rewrites the same shard. `workers=0` runs in this process.
    """
    queue = deque(units)
    if workers <= 0:
        worker = worker_factory()
        while queue:
            for item in getattr(worker, method)(queue.popleft()):
                queue.extend(on_item(item))
        return
    ray = init_ray(address, workers)
    from ray.exceptions import RayActorError, RayTaskError

    actor_class = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_Remote)
    actors = [actor_class.remote(worker_factory) for _ in range(workers)]
    running: dict[Any, tuple[Any, Any]] = {}  # generator -> (actor, unit)
    attempts: dict[int, int] = {}
    idle = list(actors)
    try:
        while queue or running:
            while queue and idle:
                actor, unit = idle.pop(), queue.popleft()
                running[actor.call.options(num_returns="streaming").remote(method, unit)] = (actor, unit)
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for gen in ready:
                actor, unit = running[gen]
                try:
                    item = ray.get(next(gen))
                except StopIteration:
                    idle.append(running.pop(gen)[0])
                    continue
                except RayActorError as exc:
                    running.pop(gen)
                    attempts[id(unit)] = attempts.get(id(unit), 1) + 1
                    if attempts[id(unit)] > MAX_ATTEMPTS:
                        raise PipelineError(
                            f"a worker died {MAX_ATTEMPTS} times running {unit}: {exc} "
                            "(check the node's memory and logs, then re-run with --resume)"
                        ) from exc
                    log.warning("worker died (%s); running its unit again", type(exc).__name__)
                    if on_retry is not None:
                        on_retry(unit)
                    queue.appendleft(unit)
                    ray.kill(actor, no_restart=True)
                    actors[actors.index(actor)] = replacement = actor_class.remote(worker_factory)
                    idle.append(replacement)  # calls queue until the new actor is up
                    continue
                except RayTaskError as exc:
                    cause = exc.cause if isinstance(exc.cause, PipelineError) else None
                    if cause is not None:
                        raise cause from None
                    raise
                queue.extend(on_item(item))
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)


class _Remote:
    """A Ray actor that builds the real worker inside its own process and streams its generators."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.worker = factory()

    def call(self, method: str, *args: Any) -> Any:
        yield from getattr(self.worker, method)(*args)
