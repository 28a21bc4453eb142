"""`pipeline publish-experts`: one Hub model repo per expert, as sample-factory's and RL Zoo's push_to_hub.

The expert of config C in EXPERTS_DIR goes to ORG/<prefix>-C:

    README.md             the model card (`pipeline.hub_cards.render_expert_card`)
    metadata.json         `experts.metadata.ExpertMetadata`, as training and evaluation wrote it
    learning_curve.csv    and learning_curve.png (drawn by `experts.report.plot_curves`)
    model/                what the backend loads as a policy
    history/<step>/       learning-history snapshots, only with --with-history
    replay.gif            a replay clip, when EXPERTS_DIR/C/replay.gif exists (`REPLAY_GIF`)

so the repo's files are the store's layout for C, and `hf://ORG/<prefix>` works as an experts dir
(`pipeline.hub_models.expert_store_root`). checkpoints/ (training state for --resume) stays
local. Every expert is checked before the first upload: a failed one is refused, an unevaluated one
too unless --allow-unevaluated. A re-run compares each file's checksum with the repo's and commits
only what changed (nothing, after a complete run).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from experts.base import CURVE_FILE
from experts.metadata import METADATA, ExpertMetadata, ExpertStatus
from experts.report import plot_curves
from experts.store import HISTORY_DIR, MODEL_DIR, ExpertStore
from pipeline.configs.publish import check_repo_id
from pipeline.configs.release_hub import PublishExpertsConfig, expert_repo_id
from pipeline.errors import PipelineError
from pipeline.hub_cards import render_expert_card
from pipeline.hub_models import ModelRepoTarget, PushResult, folder_files, push, repo_file
from pipeline.publish_targets import FolderTarget, PublishFile, Target
from pipeline.registry import resolve_tasks

log = logging.getLogger(__name__)

CURVE_PLOT = "learning_curve.png"
REPLAY_GIF = "replay.gif"
"""Hook for `pipeline render`: a clip saved as EXPERTS_DIR/<config>/replay.gif is published and shown
on the card; without one the card has no replay section."""


@dataclass(frozen=True)
class ExpertRelease:
    """One expert's publish: where it went and what was uploaded."""

    config: str
    repo_id: str
    status: ExpertStatus
    result: PushResult


@dataclass
class PublishExpertsSummary:
    experts_dir: str
    releases: list[ExpertRelease]
    seconds: float = 0.0


def _select(store: ExpertStore, config: PublishExpertsConfig) -> dict[str, ExpertMetadata]:
    """The experts to publish with their metadata, every one checked before anything is uploaded."""
    if config.suite or config.tasks:
        names = [s.config for s in resolve_tasks(config.suite, list(config.tasks) or None)]
        if not config.tasks:  # a whole suite: the experts it has
            names = [n for n in names if store.read_metadata(n) is not None]
    else:
        names = sorted(store.configs())
    chosen = {n: store.read_metadata(n) for n in names}
    missing = [n for n, m in chosen.items() if m is None]
    if missing or not chosen:
        what = ", ".join(missing) if missing else "any task asked for"
        raise PipelineError(
            f"{store.uri} holds no expert for {what}: train one with "
            f"`pipeline train-experts --out {store.uri}`, or fix --tasks/--suite"
        )
    metas = {n: m for n, m in chosen.items() if m is not None}
    failed = [n for n, m in metas.items() if m.status == ExpertStatus.FAILED]
    if failed:
        raise PipelineError(
            f"the expert(s) {', '.join(failed)} in {store.uri} failed: nothing was published; retrain them "
            "(`pipeline train-experts --overwrite`) or leave them out with --tasks"
        )
    unevaluated = [n for n, m in metas.items() if m.status == ExpertStatus.UNEVALUATED]
    if unevaluated and not config.allow_unevaluated:
        raise PipelineError(
            f"the expert(s) {', '.join(unevaluated)} in {store.uri} were never evaluated: nothing was "
            "published; run `pipeline evaluate-experts` first, or pass --allow-unevaluated"
        )
    for name in metas:
        check_repo_id(expert_repo_id(config.repo_prefix, name))
    return metas


def _files(
    store: ExpertStore, metadata: ExpertMetadata, config: PublishExpertsConfig, repo_id: str
) -> list[PublishFile]:
    """The repo's files: the store's layout for the config (no checkpoints), the plot and the card."""
    name, location = metadata.config, store.location
    files = [repo_file(location, f"{name}/{METADATA}", METADATA)]
    for optional in (CURVE_FILE, REPLAY_GIF):
        if location.exists(f"{name}/{optional}"):
            files.append(repo_file(location, f"{name}/{optional}", optional))
    files += folder_files(location, f"{name}/{MODEL_DIR}", MODEL_DIR)
    if config.with_history:
        files += folder_files(location, f"{name}/{HISTORY_DIR}", HISTORY_DIR)
    plot = plot_curves(store, metadata.suite, [name]) if any(f.path == CURVE_FILE for f in files) else None
    if plot is not None:
        files.append(PublishFile.generated(CURVE_PLOT, plot))
    paths = [f.path for f in files]
    card = render_expert_card(
        metadata,
        repo_id=repo_id,
        prefix=config.repo_prefix,
        files=paths,
        curve_plot=CURVE_PLOT if plot is not None else None,
        replay=REPLAY_GIF if REPLAY_GIF in paths else None,
    )
    return [*files, PublishFile.generated("README.md", card.encode())]


def _target(config: PublishExpertsConfig, repo_id: str) -> Target:
    if config.to_folder is None:
        return ModelRepoTarget(repo_id, config.private, config.xet)
    return FolderTarget(os.path.join(config.to_folder, repo_id.split("/")[1]))


def publish_experts(config: PublishExpertsConfig) -> PublishExpertsSummary:
    """Publish the chosen experts of `config.experts_dir`, one model repo (or folder) each."""
    started = time.monotonic()
    store = ExpertStore(config.experts_dir)
    if not store.location.exists(""):
        raise PipelineError(f"{store.uri} does not exist: give the EXPERTS_DIR train-experts wrote")
    metas = _select(store, config)
    summary = PublishExpertsSummary(store.uri, [])
    quiet = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        for name, metadata in metas.items():
            repo_id = expert_repo_id(config.repo_prefix, name)
            target = _target(config, repo_id)
            try:
                target.check()
                target.prepare()
                files = _files(store, metadata, config, repo_id)
                managed = (f"{MODEL_DIR}/",) + ((f"{HISTORY_DIR}/",) if config.with_history else ())
                result = push(target, files, managed, f"Publish the {name} expert", store.location)
            finally:
                target.close()
            summary.releases.append(ExpertRelease(name, repo_id, metadata.status, result))
    finally:
        if not quiet:
            enable_progress_bars()
    summary.seconds = time.monotonic() - started
    return summary
