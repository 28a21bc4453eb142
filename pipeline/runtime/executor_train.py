"""Ray Train for the model's data-parallel workers: the executor's counterpart for torch DDP.

`run_data_parallel(fn, arg, request)` runs `fn(worker, arg)` on `request.num_workers` Ray Train
workers (a `TorchTrainer`: one process each, torch's process group set up over gloo on CPU or
NCCL on GPUs). The training code never imports Ray: it gets a `TrainWorker` with its rank, the
world size, its device, the checkpoint folder it resumes from (if any) and a `report` callback.

Checkpoints are folders a worker reports (`ray.train.report(metrics, Checkpoint.from_directory)`);
Ray Train copies them to `--storage` (a folder, or s3://… through pyarrow's S3 filesystem) as
`<storage>/checkpoint_*`, and a later run with the same storage finds the latest one
(`ray.train.get_checkpoint()`). The driver gets the last reported folder back.

Like the executor's actors, nothing waits forever for resources: the workers' placement group
is reserved first, and when it cannot be placed within `placement_timeout_s` the run stops with
one line naming what was asked and what the cluster has.

A worker's error ends the run (no retry: `max_failures=0`, so a bad input is not run again). So does
a worker process lost mid-run (killed, out of memory, its node gone): one line names the rank and
says to run the same command with `--resume`, which continues from the last checkpoint in storage.
A Ray this call started (no cluster was connected) is shut down before that line is printed, so
its workers' forwarded logs end before it and it stays the run's last line.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from pipeline.errors import PipelineError
from pipeline.runtime.executor import init_ray, require_shared_storage
from pipeline.runtime.storage import Location, open_location

log = logging.getLogger(__name__)

FORWARDED_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
"""S3 settings a local Ray cluster's workers get from the driver: a cluster started before they were
set (a test, a notebook) would not pass them on. A remote cluster's nodes have their own."""
LOST_WORKER = frozenset(
    {"WorkerHealthCheckFailedError", "WorkerHealthCheckTimeoutError", "ActorDiedError", "RayActorError"}
)
"""Ray's and Ray Train's exceptions (by name: Ray Train's live in its internals) for a worker process
that is gone, as opposed to one that raised."""
GROUP_START_TIMEOUT_S = 60.0
"""Ray Train's own wait for a worker group (RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S) before it retries."""


@dataclass(frozen=True)
class TrainWorker:
    """What one data-parallel worker is told: its place in the run, and how to report."""

    rank: int
    world_size: int
    device: str
    """`cpu`, or the `cuda:N` Ray Train gave this worker."""
    restored: Path | None
    """A local copy of the run's latest checkpoint folder (None: a fresh run)."""
    report: Callable[[dict[str, float], Path | None], None]
    """`report(metrics, folder)`: every rank calls it at the same steps (a barrier); rank 0 passes the
    folder to persist as the run's next checkpoint, the others None."""


@dataclass(frozen=True)
class DataParallelRequest:
    """What the run asks Ray for, and where its checkpoints live."""

    num_workers: int
    gpus_per_worker: float
    storage: str
    """The run's checkpoint folder: a local path or s3://bucket/prefix."""
    resume: bool
    overwrite: bool
    placement_timeout_s: float
    cpus_per_worker: float = 1.0


def has_checkpoint(uri: str) -> bool:
    """Whether `uri` holds a Ray Train run with at least one checkpoint."""
    location = open_location(uri)
    return any(
        i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_") for i in location.list("")
    )


def prepare_storage(request: DataParallelRequest) -> Location:
    """Refuse before any work what the storage cannot do: resume nothing, overwrite silently."""
    location = open_location(request.storage)
    require_shared_storage({"--storage": request.storage}, None, request.num_workers, shared_fs=False)
    found = has_checkpoint(request.storage)
    if request.resume and not found:  # a job retried on a new cluster runs the same command
        log.info("%s holds no checkpoint yet: --resume starts the run", request.storage)
    if found and not request.resume:
        if not request.overwrite:
            raise PipelineError(
                f"{request.storage} holds checkpoints of an earlier run: pass --resume to continue it, "
                "--overwrite to replace it, or choose another --storage"
            )
        location.delete("")
    return location


def run_data_parallel(
    fn: Callable[[TrainWorker, Any], Any], arg: Any, request: DataParallelRequest, into: Path
) -> Path:
    """Run `fn(worker, arg)` on every worker; the last checkpoint folder reported lands in `into`."""
    location = prepare_storage(request)
    import ray as ray_module

    ours = not ray_module.is_initialized()  # a cluster started (or joined) here, for this run only
    ray = init_ray(None, request.num_workers)
    try:
        result = _fit(ray, fn, arg, request, location)
    finally:
        if ours:  # its workers' log stream ends here, so a failure's one line is the run's last
            ray.shutdown()
    if result.checkpoint is None:
        raise PipelineError(f"the workers reported no checkpoint to {request.storage}: see the log above")
    shutil.rmtree(into, ignore_errors=True)
    result.checkpoint.to_directory(str(into))
    return into


def _fit(
    ray: Any,
    fn: Callable[[TrainWorker, Any], Any],
    arg: Any,
    request: DataParallelRequest,
    location: Location,
) -> Any:
    """Ray Train's run of `fn` on the workers; its result (the last checkpoint reported)."""
    _reserve(ray, request)

    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": request.cpus_per_worker}
    if request.gpus_per_worker:
        resources["GPU"] = request.gpus_per_worker
    forwarded = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    parent, _, name = location.root.rstrip("/").rpartition("/")
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"fn": fn, "arg": arg},
        scaling_config=ScalingConfig(
            num_workers=request.num_workers,
            use_gpu=request.gpus_per_worker > 0,
            resources_per_worker=resources,
        ),
        run_config=RunConfig(
            name=name,
            storage_path=parent or "/",
            storage_filesystem=_shippable(location),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            # a worker's error is the run's (no retry); a group that cannot start is retried by Ray
            # Train only for as long as --placement-timeout allows
            failure_config=FailureConfig(
                max_failures=0,
                controller_failure_limit=max(
                    1, math.ceil(request.placement_timeout_s / GROUP_START_TIMEOUT_S)
                ),
            ),
            worker_runtime_env={"env_vars": forwarded} if forwarded and _local_cluster() else None,
        ),
    )
    try:
        return trainer.fit()
    except Exception as exc:
        raise _one_line(exc, request.storage) from None


def _shippable(location: Location) -> pafs.FileSystem:
    """The storage filesystem as Ray Train's controller and workers will unpickle it.

    An S3 filesystem resolved from the environment pickles without its credentials, and a local
    cluster's processes may lack them (started before they were set): there, the driver's settings
    are written into the filesystem object. Nodes of a remote cluster have their own credentials."""
    if not isinstance(location.fs, pafs.S3FileSystem) or not _local_cluster():
        return location.fs
    env = os.environ
    if "AWS_ACCESS_KEY_ID" not in env:
        return location.fs
    endpoint = env.get("AWS_ENDPOINT_URL", "")
    scheme, _, host = endpoint.rpartition("://")
    return pafs.S3FileSystem(
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
        region=env.get("AWS_DEFAULT_REGION") or location.fs.region,
        endpoint_override=host or None,
        scheme=scheme or "https",
    )


def _local_cluster() -> bool:
    return not os.environ.get("RAY_ADDRESS")


def _one_line(exc: BaseException, storage: str) -> PipelineError:
    """A worker's PipelineError as it was raised; a worker process lost (killed, out of memory, its
    node gone) as what to do about it; anything else as its last line."""
    seen: set[int] = set()
    stack: list[tuple[BaseException | None, int | None]] = [(exc, None)]
    lost: list[int | None] = []
    while stack:
        e, rank = stack.pop()
        if id(e) in seen or e is None:
            continue
        seen.add(id(e))
        if isinstance(e, PipelineError):
            return PipelineError(str(e))
        text = str(e)
        if "pipeline.errors.PipelineError: " in text:  # a worker's error, as its traceback text
            return PipelineError(text.rsplit("pipeline.errors.PipelineError: ", 1)[1].strip().splitlines()[0])
        if type(e).__name__ in LOST_WORKER:
            lost.append(rank)
        stack += [
            (e.__cause__, rank),
            (e.__context__, rank),
            (getattr(e, "health_check_failure", None), rank),
        ]
        stack += [(failure, r) for r, failure in getattr(e, "worker_failures", {}).items()]
    if lost:
        which = "a training worker" if lost[0] is None else f"training worker rank {lost[0]}"
        return PipelineError(
            f"{which} died (killed, out of memory, or its node lost): run the same command with --resume "
            f"to continue from the run's last checkpoint in {storage}"
        )
    last = " ".join(str(exc).split())[-400:]
    return PipelineError(f"data-parallel training failed: {last}")


def _reserve(ray: Any, request: DataParallelRequest) -> None:
    """Wait up to `placement_timeout_s` for room for every worker, then give the room back to Ray Train."""
    from ray.util.placement_group import placement_group, remove_placement_group

    bundle = {"CPU": request.cpus_per_worker}
    if request.gpus_per_worker:
        bundle["GPU"] = request.gpus_per_worker
    group = placement_group([dict(bundle) for _ in range(request.num_workers)], strategy="PACK")
    try:
        ready, _ = ray.wait([group.ready()], timeout=request.placement_timeout_s)
        if not ready:
            raise PipelineError(_unplaced(ray, request))
    finally:
        remove_placement_group(group)


def _unplaced(ray: Any, request: DataParallelRequest) -> str:
    asks = f"{request.cpus_per_worker:g} CPU" + (
        f" + {request.gpus_per_worker:g} GPU" if request.gpus_per_worker else ""
    )
    try:
        total, free = ray.cluster_resources(), ray.available_resources()
    except Exception:  # the cluster itself may be what went away
        total, free = {}, {}
    have = ", ".join(f"{free.get(k, 0):g}/{total.get(k, 0):g} {k}" for k in ("CPU", "GPU") if k in total)
    return (
        f"{request.num_workers} training workers ({asks} each) could not be placed on Ray for "
        f"{request.placement_timeout_s:g} s (free in the cluster: {have or 'nothing'}): lower --num-workers "
        "or --gpus-per-worker, free the resources or add a node, or raise --placement-timeout"
    )


def _worker_loop(config: dict[str, Any]) -> None:
    """Runs inside each Ray Train worker: restore the latest checkpoint, then call the training function."""
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    context = ray.train.get_context()
    checkpoint = ray.train.get_checkpoint()
    restored = None
    if checkpoint is not None:
        restored = Path(tempfile.mkdtemp(prefix="jat-restored-"))
        checkpoint.to_directory(str(restored))

    def report(metrics: dict[str, float], folder: Path | None) -> None:
        ray.train.report(
            metrics, checkpoint=None if folder is None else Checkpoint.from_directory(str(folder))
        )

    device = str(ray.train.torch.get_device())
    worker = TrainWorker(context.get_world_rank(), context.get_world_size(), device, restored, report)
    config["fn"](worker, config["arg"])
