"""The expert store: one folder per task config under EXPERTS_DIR (a local path or a `pyarrow.fs` URI).

    EXPERTS_DIR/<config>/metadata.json       backend, versions, hyperparameters, env spec, steps,
                                             wall time, seed, evaluation, gate status
    EXPERTS_DIR/<config>/learning_curve.csv  steps, wall_time_s, episodes, mean_return, mean_length
    EXPERTS_DIR/<config>/model/              what the backend loads as a policy
    EXPERTS_DIR/<config>/checkpoints/        training state for `--resume`
    EXPERTS_DIR/<config>/history/<step>/     snapshots in model/'s format every `history_every`
                                             steps: the learning history `rollout
                                             --learning-history` records

Backends train in local folders. For a local store those are the store's own folders; for a
remote one (s3://…) they are a local staging copy whose checkpoints and history are uploaded
every `expert.upload_every_s` seconds while training runs and in full when it ends (and which
is downloaded first on `--resume`). An upload round sends its files one by one, so a node lost
mid-round leaves some of a new checkpoint's files in the store (an sb3 zip without its normaliser
stats, part of an rllib checkpoint folder): each round ends by writing `checkpoints/.uploaded.json`,
the list of files it sent, and only then deletes what the trainer rotated away; a resume downloads
the files that list names, the last whole round. metadata.json is written last and atomically, so a
folder without it holds no finished expert.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass

import pyarrow.fs as pafs

from experts.base import CURVE_FILE, get_backend, read_curve
from experts.metadata import METADATA, ExpertMetadata
from pipeline.errors import PipelineError
from pipeline.format.schema import TMP_DIR
from pipeline.runtime.storage import Location, open_location
from pipeline.tasks.policies import Policy
from pipeline.tasks.registry import TaskSpec

log = logging.getLogger(__name__)

MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"
HISTORY_DIR = "history"
UPLOADED = ".uploaded.json"
"""In a remote store's `<config>/checkpoints/`: the files of the last whole upload round."""


@dataclass(frozen=True)
class StagedExpert:
    """Local folders a backend trains into for one config."""

    config: str
    root: str
    workdir: str
    model_dir: str
    history_dir: str


class ExpertStore:
    """Read and write experts under one EXPERTS_DIR."""

    def __init__(self, uri: str, cache_dir: str | None = None) -> None:
        self.location: Location = open_location(uri)
        self.uri = self.location.uri
        self._uploaded: dict[str, tuple[int, int]] = {}  # remote path -> local (size, mtime) sent
        digest = hashlib.sha256(self.uri.encode()).hexdigest()[:12]
        self.cache_dir = cache_dir or os.path.join(
            os.environ.get("XDG_CACHE_HOME", os.path.join(tempfile.gettempdir(), "jat-pipeline-cache")),
            "experts",
            digest,
        )

    # --- metadata -------------------------------------------------------------------------
    def read_metadata(self, config: str) -> ExpertMetadata | None:
        """The stored expert's metadata (None: no finished expert for `config`)."""
        if not self.location.exists(f"{config}/{METADATA}"):
            return None
        where = self.location.path(f"{config}/{METADATA}")
        try:
            return ExpertMetadata.from_dict(self.location.read_json(f"{config}/{METADATA}"), where)
        except ValueError as exc:
            raise PipelineError(
                f"corrupt expert metadata {self.location.path(f'{config}/{METADATA}')}: {exc} "
                "(retrain with `pipeline train-experts --overwrite`)"
            ) from exc

    def write_metadata(self, config: str, metadata: ExpertMetadata) -> None:
        self.location.write_json(f"{config}/{METADATA}", metadata.to_dict())

    def has_training_state(self, config: str) -> bool:
        return self.location.exists(f"{config}/{CHECKPOINT_DIR}") or self.location.exists(
            f"{config}/{METADATA}"
        )

    def configs(self) -> list[str]:
        """Configs that hold a finished expert (a metadata file)."""
        return [
            info.base_name
            for info in self.location.list("")
            if info.type == pafs.FileType.Directory and self.location.exists(f"{info.base_name}/{METADATA}")
        ]

    def delete(self, config: str) -> None:
        self.location.delete(config)

    def foreign_entries(self, known_configs: set[str]) -> list[str]:
        """Top-level names an experts folder never holds (anything but a task config's folder, the
        suite summaries, `.tmp/`): a non-empty list means the folder is something else (a source
        tree, a dataset) that training must not write into."""
        if self.location.is_empty():
            return []
        ours = re.compile(r"summary-\w+\.json|learning-curves-\w+\.png|" + re.escape(TMP_DIR))
        return [
            info.base_name
            for info in self.location.list("")
            if not (info.type == pafs.FileType.Directory and info.base_name in known_configs)
            and not ours.fullmatch(info.base_name)
        ]

    # --- training folders -----------------------------------------------------------------
    def stage(self, config: str, resume: bool) -> StagedExpert:
        """Local folders to train in; for a remote store, a staging copy (checkpoints pulled on resume)."""
        if self.location.is_local:
            root = self.location.path(config)
        else:
            root = os.path.join(self.cache_dir, config)
            if os.path.isdir(root):
                shutil.rmtree(root)  # staging copies are never trusted over the store
            if resume:
                uploaded = self.uploaded_checkpoint_files(config)
                self._download(f"{config}/{CHECKPOINT_DIR}", os.path.join(root, CHECKPOINT_DIR), uploaded)
                self._download(f"{config}/{HISTORY_DIR}", os.path.join(root, HISTORY_DIR))
        os.makedirs(root, exist_ok=True)
        return StagedExpert(
            config,
            root,
            os.path.join(root, CHECKPOINT_DIR),
            os.path.join(root, MODEL_DIR),
            os.path.join(root, HISTORY_DIR),
        )

    def publish(
        self, staged: StagedExpert, names: tuple[str, ...] = (CHECKPOINT_DIR, MODEL_DIR, HISTORY_DIR)
    ) -> None:
        """Bring a remote store up to date with a staging copy (nothing to do for a local one).

        Only files changed since this store object last uploaded them are sent, each atomically;
        files gone from the staging copy (rotated checkpoints) are deleted from the store.
        """
        if self.location.is_local:
            return
        for name in names:
            self._mirror(os.path.join(staged.root, name), f"{staged.config}/{name}")
        curve = os.path.join(staged.workdir, CURVE_FILE)
        if os.path.exists(curve):
            self.location.upload(curve, f"{staged.config}/{CURVE_FILE}")

    def uploaded_checkpoint_files(self, config: str) -> set[str] | None:
        """Store paths (`<config>/checkpoints/...`) of the last whole upload round; None: the store has
        no list (a local store, or checkpoints uploaded before lists were written: take them all)."""
        listed = f"{config}/{CHECKPOINT_DIR}/{UPLOADED}"
        if self.location.is_local or not self.location.exists(listed):
            return None
        return set(self.location.read_json(listed)["files"])

    def uploaded_checkpoint_step(self, config: str, backend: str) -> int | None:
        """Env steps of the newest checkpoint a resume of `config` would take from the store (0: none),
        None when the backend does not say how its checkpoints are named."""
        pattern = getattr(get_backend(backend), "checkpoint_pattern", None)
        if pattern is None:
            return None
        prefix = f"{config}/{CHECKPOINT_DIR}/"
        files = self.uploaded_checkpoint_files(config)
        if files is None:
            files = {
                self.location.relative(i.path)
                for i in self.location.list(prefix.rstrip("/"), recursive=True)
                if i.type == pafs.FileType.File
            }
        steps = [int(m[1]) for f in files if (m := re.fullmatch(pattern, f.removeprefix(prefix)))]
        return max(steps, default=0)

    def _mirror(self, local_dir: str, relative: str) -> None:
        listed = f"{relative}/{UPLOADED}"
        remote = {
            self.location.relative(i.path)
            for i in self.location.list(relative, recursive=True)
            if i.type == pafs.FileType.File
        } - {listed}
        present = set()
        for directory, _, files in os.walk(local_dir):
            for name in files:
                path = os.path.join(directory, name)
                inside = os.path.relpath(path, local_dir)
                if _is_temporary(inside):
                    continue
                target = f"{relative}/{inside.replace(os.sep, '/')}"
                try:
                    stat = os.stat(path)
                    present.add(target)
                    if target in remote and self._uploaded.get(target) == (stat.st_size, stat.st_mtime_ns):
                        continue
                    self.location.upload(path, target)
                except FileNotFoundError:  # rotated away by the trainer meanwhile
                    continue
                self._uploaded[target] = (stat.st_size, stat.st_mtime_ns)
        if relative.endswith(f"/{CHECKPOINT_DIR}"):  # the round is whole: only now what it replaced goes
            self.location.write_json(listed, {"files": sorted(present)})
        for stale in remote - present:
            self.location.delete(stale)
            self._uploaded.pop(stale, None)

    def copy_curve(self, staged: StagedExpert) -> None:
        """Keep the learning curve next to metadata.json (local stores; remote ones copy it in `publish`)."""
        curve = os.path.join(staged.workdir, CURVE_FILE)
        if self.location.is_local and os.path.exists(curve):
            self.location.upload(curve, f"{staged.config}/{CURVE_FILE}")

    def curve(self, config: str) -> list[dict[str, float]]:
        if not self.location.exists(f"{config}/{CURVE_FILE}"):
            return []
        if self.location.is_local:
            return read_curve(self.location.path(f"{config}/{CURVE_FILE}"))
        local = os.path.join(self.cache_dir, config, CURVE_FILE)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as f:
            f.write(self.location.read_bytes(f"{config}/{CURVE_FILE}"))
        return read_curve(local)

    # --- loading --------------------------------------------------------------------------
    def history_steps(self, config: str) -> list[int]:
        """Env steps of the expert's learning-history snapshots, in training order."""
        return sorted(
            int(info.base_name)
            for info in self.location.list(f"{config}/{HISTORY_DIR}")
            if info.type == pafs.FileType.Directory and info.base_name.isdigit()
        )

    def local_model_dir(self, config: str, step: int | None = None) -> str:
        """A local folder holding the final model, or the history snapshot at `step`."""
        relative = f"{config}/{MODEL_DIR}" if step is None else f"{config}/{HISTORY_DIR}/{step:012d}"
        if self.location.is_local:
            return self.location.path(relative)
        local = os.path.join(self.cache_dir, relative)
        if os.path.isdir(local):
            shutil.rmtree(local)
        self._download(relative, local)
        return local

    def _download(self, relative: str, local: str, only: set[str] | None = None) -> None:
        """Copy a folder of the store into a local folder, sub-folders included (nothing if absent);
        with `only`, just the files of that set of store paths."""
        base = self.location.path(relative)
        for info in self.location.list(relative, recursive=True):
            if info.type != pafs.FileType.File or info.base_name == UPLOADED:
                continue
            if only is not None and self.location.relative(info.path) not in only:
                continue
            target = os.path.join(local, info.path[len(base) + 1 :])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with self.location.fs.open_input_stream(info.path) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)

    def load_policy(
        self, spec: TaskSpec, metadata: ExpertMetadata | None = None, step: int | None = None
    ) -> Policy:
        """The stored expert of `spec` (its snapshot at `step` if given) as a policy.

        The policy is the chosen candidate's (`ExpertMetadata.acting_backend`): a Meta-World expert
        whose scripted policy outscored the network trained for it acts with the scripted policy.
        Snapshots are the trained network's. PipelineError when there is none or it cannot be read.
        """
        metadata = metadata or self.read_metadata(spec.base_config)
        if metadata is None:
            raise PipelineError(
                f"no expert for {spec.base_config} in {self.uri}: train one with "
                f"`pipeline train-experts --tasks {spec.base_config} --out {self.uri}`"
            )
        if step is not None:  # a snapshot is the trained network's, whichever candidate was chosen
            metadata = metadata.without_choice()
        backend = get_backend(metadata.acting_backend)
        if step is not None and step not in self.history_steps(spec.base_config):
            raise PipelineError(
                f"the expert for {spec.base_config} in {self.uri} has no learning-history snapshot "
                f"at step {step}"
            )
        model_dir = self.local_model_dir(spec.base_config, step) if backend.trainable else ""
        return backend.load(model_dir, spec, metadata)


def _is_temporary(relative: str) -> bool:
    """Files a trainer is still writing: sample-factory's `*_temp`, sb3's `.tmp_*`, `*.partial` snapshots."""
    parts = relative.split(os.sep)
    return (
        any(p.endswith(".partial") for p in parts)
        or parts[-1].startswith(".tmp")
        or parts[-1].endswith("_temp")
    )


class PeriodicUpload:
    """While an expert trains into a remote store's staging copy, upload its checkpoints and
    history every `every_s` seconds, so a run killed outright (lost node, SIGKILL, pre-empted
    VM) resumes from its last upload instead of from scratch. Nothing to do for local stores."""

    def __init__(self, store: ExpertStore, staged: StagedExpert, every_s: float) -> None:
        self.store, self.staged, self.every_s = store, staged, every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PeriodicUpload:
        if not self.store.location.is_local and self.every_s > 0:
            self._thread = threading.Thread(
                target=self._run, name=f"upload-{self.staged.config}", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.store.publish(self.staged, names=(CHECKPOINT_DIR, HISTORY_DIR))
            except Exception as exc:  # the next round, or the final upload, tries again
                log.warning("%s: periodic upload to %s failed: %s", self.staged.config, self.store.uri, exc)
