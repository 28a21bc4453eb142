"""Ray lives here and nowhere else: cluster connection, the actor pool, one-off tasks, a serial mode.

Stages hand this module work units and callbacks; it runs them in-process (`workers=0`, for
debugging and the fastest tests) or on Ray actors, locally (`ray.init()`) or on the cluster
named by `--address` / `RAY_ADDRESS`. Long single jobs with resources of their own (one expert's
training: CPUs, GPUs) run as one Ray task each (`pipeline.runtime.executor_tasks`), and the
model's data-parallel training on Ray Train (`pipeline.runtime.executor_train`); both start Ray here.

Two promises hold under any failure of an actor or a node:
- **a unit is never held hostage**: units wait in one shared queue and go to the first actor
  that is up and idle. An actor that dies is replaced, but its replacement only takes work
  once Ray has placed it, so on a cluster that lost capacity the survivors do the work;
- **nothing waits forever**: when queued work has had no placed actor for
  `placement_timeout_s`, the run stops with one line naming the missing resources.
What a lost unit means is the caller's business (`on_lost`): it may have committed its result
before dying, which only the caller's storage knows.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from pipeline.errors import PipelineError
from pipeline.runtime import faults, noise

log = logging.getLogger(__name__)


def require_shared_storage(
    paths: dict[str, str | None], address: str | None, workers: int, shared_fs: bool
) -> None:
    """Refuse local folders that workers on several nodes would each write to their own disk.

    `paths` maps a flag to its value (`{"--out": "data/"}`); object-store URIs are shared by nature.
    Only clusters with more than one node that can run workers (CPU > 0) are refused, and only
    when the user has not declared the folder shared (`--shared-fs`, e.g. NFS mounted everywhere).
    """
    address = address or os.environ.get("RAY_ADDRESS")
    if workers > 0 and address:
        check_ray_address(address)  # before anything is written, also for s3:// outputs
    from pipeline.runtime.storage import is_uri  # here: the CLI imports this module, storage imports pyarrow

    local = {flag: path for flag, path in paths.items() if path and not is_uri(path)}
    if workers <= 0 or shared_fs or not local or not address:
        return
    ray = init_ray(address, workers)
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
    if len(nodes) > 1:
        flag, path = next(iter(local.items()))
        raise PipelineError(
            f"{flag} {path} is a local folder, but the Ray cluster has {len(nodes)} nodes that run "
            "workers, each of which would write to its own disk: use s3://bucket/prefix, or pass "
            "--shared-fs if that folder is one filesystem mounted on every node"
        )


MAX_ATTEMPTS = 3
"""Times one unit may lose its worker before the run gives up on it (a unit that kills its worker)."""
PLACEMENT_TIMEOUT_S = 300.0
"""How long queued work may wait with no placed worker before the run stops (see `run_streaming`)."""
WAIT_SLICE_S = 1.0
CONNECT_TIMEOUT_S = 10.0
"""How long the first TCP connection to `--address` may take; Ray's own client retries for minutes."""


def check_ray_address(address: str) -> None:
    """Refuse at once an address where no Ray head listens, before Ray's client retries for minutes.

    `auto` and `local` are Ray's own words and left to it; `host:port` and `ray://host:port` are
    probed with one TCP connection.
    """
    import socket

    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise PipelineError(
            f"Ray address {address!r} is not host:port: pass --address HEAD_IP:6379 (or ray://HEAD_IP:10001)"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise PipelineError(
            f"no Ray cluster at {address} ({exc.strerror or exc}): start one with `ray start --head`, "
            "or fix --address / RAY_ADDRESS (unset it to run on a local cluster)"
        ) from None


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
    if noise.is_verbose():  # workers let third-party noise through too (local ones inherit it anyway)
        kwargs["runtime_env"] = {"env_vars": {noise.VERBOSE_ENV: "1"}}
    if address:
        check_ray_address(address)
        kwargs["address"] = address
    else:
        # "local": start one here, never attach to whatever `ray_current_cluster` names (a crashed
        # `ray start` leaves it behind, and attaching would refuse our num_cpus)
        kwargs["address"] = "local"
        kwargs["num_cpus"] = max(os.cpu_count() or 1, num_cpus or 1)
    try:
        ray.init(**kwargs)
    except Exception as exc:  # a local node that does not come up within 30 s raises a bare Exception
        where = address or "a local cluster"
        cause = " ".join(str(exc).split())[:600]  # Ray quotes its log files, over several lines
        raise PipelineError(
            f"cannot start or reach Ray at {where}: {cause} (check --address / RAY_ADDRESS; "
            "a local cluster that timed out on a busy machine may start on a retry)"
        ) from exc
    return ray


def run_streaming(
    worker_factory: Callable[[], Any],
    method: str,
    units: Iterable[Any],
    on_item: Callable[[Any], Iterable[Any]],
    workers: int,
    address: str | None = None,
    on_lost: Callable[[Any], Iterable[Any]] | None = None,
    placement_timeout_s: float = PLACEMENT_TIMEOUT_S,
) -> None:
    """Run `worker.<method>(unit)` generators over a pool of workers.

    Every item a generator yields goes to `on_item`, which may return follow-up units (for
    example the unplayed leftovers of a full shard, or the next round of a step budget).
    If a worker dies mid-unit (killed, out of memory, node lost), `on_lost(unit)` says what
    to queue instead: the unit again (the default), nothing (its result was already taken),
    or the follow-ups of a result the worker committed before dying. A unit may lose its
    worker `MAX_ATTEMPTS` times. `workers=0` runs everything in this process.
    """
    queue = deque(units)
    on_lost = on_lost or (lambda unit: [unit])
    if workers <= 0:
        worker = worker_factory()
        while queue:
            for item in getattr(worker, method)(queue.popleft()):
                queue.extend(on_item(item))
        return
    pool = _ActorPool(init_ray(address, workers), worker_factory, workers)
    try:
        pool.run(method, queue, on_item, on_lost, placement_timeout_s)
    finally:
        pool.shutdown()


class _ActorPool:
    """Actors in three states: pending (not yet placed), idle, or streaming one unit."""

    def __init__(self, ray: Any, worker_factory: Callable[[], Any], size: int) -> None:
        from ray.exceptions import RayActorError, RayTaskError

        self.ray, self.factory = ray, worker_factory
        self.actor_errors, self.task_errors = RayActorError, RayTaskError
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": 0, "max_task_retries": 0}
        if faults.active():  # crash points armed by a test reach the workers too
            options["runtime_env"] = {"env_vars": {faults.FAULTS_ENV: os.environ[faults.FAULTS_ENV]}}
        self.actor_class = ray.remote(**options)(_Remote)
        self.pending: dict[Any, Any] = {}  # ready ref -> actor
        self.idle: list[Any] = []
        self.running: dict[Any, tuple[Any, Any]] = {}  # generator -> (actor, unit)
        self.attempts: dict[int, int] = {}
        for _ in range(size):
            self._spawn()

    def _spawn(self) -> None:
        actor = self.actor_class.remote(self.factory)
        self.pending[actor.__ray_ready__.remote()] = actor

    def run(
        self,
        method: str,
        queue: deque,
        on_item: Callable[[Any], Iterable[Any]],
        on_lost: Callable[[Any], Iterable[Any]],
        placement_timeout_s: float,
    ) -> None:
        starved_since: float | None = None
        while queue or self.running:
            while queue and self.idle:
                actor, unit = self.idle.pop(), queue.popleft()
                generator = actor.call.options(num_returns="streaming").remote(method, unit)
                self.running[generator] = (actor, unit)
            if queue and not self.running and not self.idle:
                starved_since = starved_since or time.monotonic()
                if time.monotonic() - starved_since > placement_timeout_s:
                    raise PipelineError(self._starved_message(placement_timeout_s))
            else:
                starved_since = None
            refs = list(self.running) + list(self.pending)
            ready, _ = self.ray.wait(refs, num_returns=1, timeout=WAIT_SLICE_S)
            for ref in ready:
                if ref in self.pending:
                    self._placed(ref)
                else:
                    self._advance(ref, queue, on_item, on_lost)

    def _placed(self, ready_ref: Any) -> None:
        actor = self.pending.pop(ready_ref)
        try:
            self.ray.get(ready_ref)
        except self.actor_errors as exc:  # it died before it could work: try another
            log.warning("a worker failed to start (%s); starting another", type(exc).__name__)
            self._spawn()
            return
        self.idle.append(actor)

    def _advance(self, generator: Any, queue: deque, on_item: Callable, on_lost: Callable) -> None:
        actor, unit = self.running[generator]
        try:
            item = self.ray.get(next(generator))
        except StopIteration:
            del self.running[generator]
            self.idle.append(actor)
            return
        except self.actor_errors as exc:
            del self.running[generator]
            self._lost(actor, unit, exc, queue, on_lost)
            return
        except self.task_errors as exc:
            cause = exc.cause if isinstance(exc.cause, PipelineError) else None
            if cause is not None:
                raise cause from None
            raise
        queue.extend(on_item(item))
        faults.hit(f"driver.received.{type(item).__name__}", crash=lambda: self.ray.kill(actor))

    def _lost(self, actor: Any, unit: Any, exc: Exception, queue: deque, on_lost: Callable) -> None:
        attempts = self.attempts[id(unit)] = self.attempts.get(id(unit), 1) + 1
        again = list(on_lost(unit))
        if unit in again and attempts > MAX_ATTEMPTS:
            raise PipelineError(
                f"a worker died {MAX_ATTEMPTS} times running {_describe(unit)}: {exc} "
                "(check the node's memory and logs, then re-run with --resume)"
            ) from exc
        log.warning(
            "a worker died (%s) running %s; %s",
            type(exc).__name__,
            _describe(unit),
            "running it again" if unit in again else "its result was already committed",
        )
        queue.extendleft(reversed(again))
        self.ray.kill(actor, no_restart=True)
        self._spawn()  # takes work only once placed: survivors meanwhile drain the queue

    def _starved_message(self, waited: float) -> str:
        try:
            free = self.ray.available_resources()
        except Exception:  # the cluster itself may be what went away
            free = {}
        cpus = free.get("CPU", 0)
        return (
            f"no Ray node could place a worker (1 CPU each) for {waited:.0f} s while work was queued "
            f"(free CPUs in the cluster: {cpus:g}): add a node or free CPUs, then re-run the same "
            "command with --resume; finished units are kept"
        )

    def shutdown(self) -> None:
        _merge_noise(self.ray, [actor.suppressed.remote() for actor in self.idle])
        for actor in [*self.pending.values(), *self.idle, *(a for a, _ in self.running.values())]:
            self.ray.kill(actor, no_restart=True)


NOISE_TIMEOUT_S = 5.0
"""How long the driver waits for the workers' counts of suppressed third-party messages."""


def _merge_noise(ray: Any, refs: list[Any]) -> None:
    """Add the workers' counts of suppressed third-party messages (`pipeline.runtime.noise`) to this
    process's."""
    try:
        for counts in ray.get(refs, timeout=NOISE_TIMEOUT_S):
            noise.merge(counts)
    except Exception as exc:  # a count is not worth failing or waiting for
        log.debug("no noise counts from the workers: %s", exc)


def _describe(unit: Any) -> str:
    describe = getattr(unit, "describe", None)
    return describe() if callable(describe) else repr(unit)


class _Remote:
    """A Ray actor that builds the real worker inside its own process and streams its generators.

    The worker (imports, envs, policies) is built on the first call, not in `__init__`: an actor
    is ready as soon as Ray has placed it and its process is up, so the placement bound measures
    placement, not how long a worker takes to import torch on a loaded node.
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory
        self.worker: Any = None

    def call(self, method: str, *args: Any) -> Any:
        if self.worker is None:
            noise.install()
            self.worker = self.factory()
        yield from getattr(self.worker, method)(*args)

    def suppressed(self) -> dict[str, int]:
        """Third-party messages this worker suppressed since the last call (`pipeline.runtime.noise`)."""
        return noise.take()


# --- one Ray task per job ------------------------------------------------------------------------
