"""`pipeline publish-experts`: one Hub model repo per expert, as sample-factory's and RL Zoo's push_to_hub.

The expert of config C in EXPERTS_DIR goes to ORG/<prefix>-C:

    README.md             the model card (`pipeline.release.hub_cards.render_expert_card`)
    metadata.json         `experts.metadata.ExpertMetadata`, as training and evaluation wrote it
    learning_curve.csv    and learning_curve.png (drawn by `experts.report.plot_curves`)
    model/                what the backend loads as a policy
    history/<step>/       learning-history snapshots, only with --with-history
    replay.gif            a replay clip: EXPERTS_DIR/C/replay.gif, else drawn here (`REPLAY_GIF`)

so the repo's files are the store's layout for C, and `hf://ORG/<prefix>` works as an experts dir
(`pipeline.release.hub_models.expert_store_root`). checkpoints/ (training state for --resume) stays
local. Every expert is checked before the first upload: a failed one is refused, an unevaluated one
too, and one the quality gate rejected, unless --allow-weak (as `rollout --policy expert`). A
re-run compares each file's checksum with the repo's and commits only what changed (nothing, after
a complete run).

Without a replay.gif the expert records an episode (a rollout into a temporary folder, seed 0) that
`pipeline.browse.render.clip_gif` draws; a local EXPERTS_DIR keeps it as C/replay.gif, so a re-run draws
nothing. A replay that cannot be drawn (MuJoCo without OpenGL) leaves the card without one.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass

from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from experts.base import CURVE_FILE
from experts.metadata import METADATA, ExpertMetadata, ExpertStatus
from experts.report import plot_curves
from experts.store import HISTORY_DIR, MODEL_DIR, ExpertStore
from pipeline.browse.render import ClipMaker
from pipeline.configs.publish import check_repo_id
from pipeline.configs.release_hub import PublishExpertsConfig, expert_repo_id
from pipeline.errors import PipelineError
from pipeline.release.hub_cards import render_expert_card
from pipeline.release.hub_models import ModelRepoTarget, PushResult, folder_files, push, repo_file
from pipeline.release.publish_targets import FolderTarget, PublishFile, Target
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.runtime.storage import open_location
from pipeline.suites import get_suite
from pipeline.tasks.registry import get_task, resolve_tasks

log = logging.getLogger(__name__)

CURVE_PLOT = "learning_curve.png"
REPLAY_GIF = "replay.gif"
"""The card's replay clip: EXPERTS_DIR/<config>/replay.gif when there (e.g. from `pipeline render`),
else drawn by `_replay`; without either the card has no replay section."""
REPLAY_EPISODES = 2
"""Episodes the replay's rollout records: the first is drawn, but a rollout fills a train and a test
split, so it needs two."""


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
    weak = {
        s: [n for n, m in metas.items() if m.status == s]
        for s in (ExpertStatus.REJECTED, ExpertStatus.UNEVALUATED)
    }
    if any(weak.values()) and not config.allow_weak:
        said = [
            f"{', '.join(names)} {'was' if len(names) == 1 else 'were'} "
            + ("rejected by the quality gate" if status == ExpertStatus.REJECTED else "never evaluated")
            for status, names in weak.items()
            if names
        ]
        raise PipelineError(
            f"in {store.uri}, {'; '.join(said)}: nothing was published; train further "
            "(`pipeline train-experts --resume`) or evaluate (`pipeline evaluate-experts`), or pass "
            "--allow-weak to publish them anyway (as `rollout --allow-weak` records them)"
        )
    for name in metas:
        check_repo_id(expert_repo_id(config.repo_prefix, name))
    return metas


def _replay(store: ExpertStore, name: str, clips: ClipMaker) -> PublishFile | None:
    """A replay of the expert acting, drawn from an episode it records now; None if it cannot be.

    The rollout (seed 0, in this process) and the drawing are deterministic, so a remote store's
    re-run gives the same bytes; a local store keeps the clip, so its re-run draws nothing.
    """
    if get_suite(get_task(name).suite).needs_gl and not clips.usable_gl():
        return None
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="jat-replay-") as folder:
        recording = RolloutConfig(
            out=folder,
            tasks=(name,),
            episodes=REPLAY_EPISODES,
            workers=0,
            policy="expert",
            experts_dir=store.uri,
            allow_weak=True,
            progress=False,
        )
        try:
            rollout(recording)
        except Exception as exc:  # the replay is an extra: the expert is published without it
            log.warning("no replay for %s: recording an episode failed: %s", name, " ".join(str(exc).split()))
            return None
        gif = clips.gif(open_location(folder), name)
    if gif is None:
        return None
    if store.location.is_local:
        try:
            store.location.write_bytes(f"{name}/{REPLAY_GIF}", gif)
        except OSError as exc:  # a read-only store: published all the same, drawn again next time
            log.warning("could not keep %s's replay in %s: %s", name, store.uri, exc)
    log.info("%s: replay drawn, %.0f kB in %.1f s", name, len(gif) / 1e3, time.monotonic() - started)
    return PublishFile.generated(REPLAY_GIF, gif)


def _files(
    store: ExpertStore,
    metadata: ExpertMetadata,
    config: PublishExpertsConfig,
    repo_id: str,
    clips: ClipMaker,
) -> list[PublishFile]:
    """The repo's files: the store's layout for the config (no checkpoints), plot, replay and card."""
    name, location = metadata.config, store.location
    files = [repo_file(location, f"{name}/{METADATA}", METADATA)]
    for optional in (CURVE_FILE, REPLAY_GIF):
        if location.exists(f"{name}/{optional}"):
            files.append(repo_file(location, f"{name}/{optional}", optional))
    if config.clips and not any(f.path == REPLAY_GIF for f in files):
        replay = _replay(store, name, clips)
        files += [replay] if replay is not None else []
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
    clips = ClipMaker()
    quiet = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        for name, metadata in metas.items():
            repo_id = expert_repo_id(config.repo_prefix, name)
            target = _target(config, repo_id)
            try:
                target.check()
                target.prepare()
                files = _files(store, metadata, config, repo_id, clips)
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
