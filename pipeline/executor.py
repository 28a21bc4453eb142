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


def run_streaming(
    worker_factory: Callable[[], Any],
    method: str,
    units: Iterable[Any],
    on_item: Callable[[Any], Iterable[Any]],
    workers: int,
    address: str | None = None,
) -> None:
    """Run `worker.<method>(unit)` generators over a pool of workers.

    Every item a generator yields goes to `on_item`, which may return follow-up units (for
    example the unplayed leftovers of a full shard, or the next round of a step budget).
    `workers=0` runs everything in this process.
    """
    queue = deque(units)
    if workers <= 0:
        worker = worker_factory()
        while queue:
            for item in getattr(worker, method)(queue.popleft()):
                queue.extend(on_item(item))
        return
    ray = init_ray(address, workers)
    actor_class = ray.remote(num_cpus=1, max_restarts=0)(_Remote)
    actors = [actor_class.remote(worker_factory) for _ in range(workers)]
    running: dict[Any, Any] = {}  # generator -> actor
    idle = list(actors)
    try:
        while queue or running:
            while queue and idle:
                actor = idle.pop()
                gen = actor.call.options(num_returns="streaming").remote(method, queue.popleft())
                running[gen] = actor
            ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for gen in ready:
                try:
                    ref = next(gen)
                except StopIteration:
                    idle.append(running.pop(gen))
                    continue
                queue.extend(on_item(ray.get(ref)))
    finally:
        for actor in actors:
            ray.kill(actor)


class _Remote:
    """A Ray actor that builds the real worker inside its own process and streams its generators."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.worker = factory()

    def call(self, method: str, *args: Any) -> Any:
        yield from getattr(self.worker, method)(*args)
