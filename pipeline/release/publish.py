"""`pipeline publish`: push validated configs to a Hub dataset repo (or a folder), resumably.

Nothing is published from a dataset that fails `pipeline validate`. Files go up in a fixed
order — per config its shards, then its manifest, statistics, figure and clip (with the removal
of its stale files); the dataset card, suite figures and info last — cut into commits only where a
commit would exceed the file-count or byte limit. Each commit is atomic on the Hub, so the
remote never advertises a config ahead of its data, and few commits are made (the Hub
rate-limits them). A file already published with the same checksum is skipped — shard
checksums come from the manifest, not from re-hashing — so a re-run after an interruption
uploads only what is missing and a re-run after success makes no commit at all.

Publishing some configs keeps the others: the card is rendered from the union of the configs
published now and those already there (their `stats.json` read back from the target), and only
the paths of the configs being published are ever replaced or deleted.

Each config published gets a short GIF of its first episode (`pipeline.browse.render.clip_gif`, drawn by
re-simulation, the same bytes for the same data), shown in its card section; a config whose clip
cannot be drawn (MuJoCo without OpenGL) is published without one, never refused.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from pipeline.browse.render import ClipMaker
from pipeline.checks.integrity import check_files, unfinished_configs
from pipeline.checks.validate import validate
from pipeline.configs.datasets import ValidateConfig
from pipeline.configs.publish import PublishConfig
from pipeline.errors import PipelineError, ValidationFailed
from pipeline.format.manifest import DatasetInfo, Manifest, dataset_configs
from pipeline.format.schema import (
    DATA_DIR,
    EPISODE_CLIP,
    INFO_PATH,
    MANIFEST_PATH,
    META_DIR,
    PLOTS_DIR,
    RETURNS_PLOT,
    STATS_PATH,
    SUITE_PLOT,
)
from pipeline.release.card import CardConfig, card_configs, render_from_stats
from pipeline.release.publish_targets import FolderTarget, HubTarget, PublishFile, Target
from pipeline.report.plots import returns_histogram, suite_summary
from pipeline.report.quality import QualityRow, quality_row
from pipeline.report.stats import StatsRequest, config_stats
from pipeline.report.stats_types import ConfigStats
from pipeline.runtime.progress import Bars
from pipeline.runtime.storage import Location, open_location

log = logging.getLogger(__name__)


@dataclass
class Group:
    """A config's files in publishing order (shards; manifest, statistics, figure, clip), or the card's."""

    label: str
    files: list[PublishFile]
    deletions: list[str] = field(default_factory=list)
    """Stale paths of the config, removed in the commit holding the group's last file."""


@dataclass
class Commit:
    """One bounded commit: consecutive files of the publishing order (possibly of several groups)."""

    files: list[PublishFile] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(f.size for f in self.files)

    def add_label(self, label: str) -> None:
        if label not in self.labels:
            self.labels.append(label)


@dataclass
class PublishSummary:
    target: str
    configs: list[str]
    hub: bool = True
    """A Hub repo (uploads in commits); False: a folder (files written, no commits)."""
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    unchanged_files: int = 0
    deleted_files: int = 0
    commits: int = 0
    upload_seconds: float = 0.0
    seconds: float = 0.0
    head: str | None = None
    tag: str | None = None
    """The Hub tag now naming `head` (`jat-format-v<format_version>`); None for a folder."""
    card_configs: list[str] = field(default_factory=list)
    commit_log: list[tuple[str, int, int, float]] = field(default_factory=list)
    """Per commit: message, files, bytes, seconds (shard commits vs. metadata commits in benchmarks)."""

    @property
    def throughput_mb_s(self) -> float:
        return self.uploaded_bytes / 1e6 / self.upload_seconds if self.upload_seconds > 0 else 0.0


def _select(location: Location, requested: tuple[str, ...]) -> list[str]:
    if not location.exists(""):
        raise PipelineError(f"{location.uri} does not exist: give the folder a rollout wrote")
    available = dataset_configs(location)
    if not available:
        raise PipelineError(f"{location.uri} holds no config with a manifest: is it a jat-pipeline dataset?")
    missing = [c for c in requested if c not in available]
    if missing:
        raise PipelineError(
            f"{location.uri} has no config {', '.join(missing)}; it holds {', '.join(available)} "
            "(record it with `pipeline rollout` first, or fix --configs)"
        )
    return list(requested) or available


def _json_bytes(data: object) -> bytes:
    return (json.dumps(data, indent=1) + "\n").encode()


def _clips(location: Location, names: list[str]) -> dict[str, bytes]:
    """The GIF of each config's first episode, for those that can be drawn here."""
    maker, clips = ClipMaker(), {}
    for name in names:
        started = time.monotonic()
        gif = maker.gif(location, name)
        if gif is not None:
            clips[name] = gif
            log.info("%s: clip drawn, %.0f kB in %.1f s", name, len(gif) / 1e3, time.monotonic() - started)
    return clips


def _plan(
    location: Location,
    names: list[str],
    stats: dict[str, ConfigStats],
    clips: dict[str, bytes],
    target: Target,
    title: str,
    hub: bool,
) -> tuple[list[Group], DatasetInfo]:
    """File groups in publishing order, and the published `meta/info.json` (the configs the card lists)."""
    groups: list[Group] = []
    quality: dict[str, QualityRow] = {}
    for name in names:
        manifest_bytes = location.read_bytes(MANIFEST_PATH.format(config=name))
        manifest = Manifest.from_dict(json.loads(manifest_bytes))
        quality[name] = quality_row(manifest)
        shards = [PublishFile(s.path, s.num_bytes, s.sha256, source=s.path) for s in manifest.shards]
        meta = [
            PublishFile.generated(MANIFEST_PATH.format(config=name), manifest_bytes),
            PublishFile.generated(STATS_PATH.format(config=name), _json_bytes(stats[name].to_dict())),
            PublishFile.generated(RETURNS_PLOT.format(config=name), returns_histogram(stats[name])),
        ]
        if name in clips:
            meta.append(PublishFile.generated(EPISODE_CLIP.format(config=name), clips[name]))
        keep = {f.path for f in shards + meta}
        stale = [
            p
            for prefix in (f"{DATA_DIR.format(config=name)}/", f"{META_DIR.format(config=name)}/")
            for p in target.paths_under(prefix)
            if p not in keep
        ]
        groups.append(Group(name, shards + meta, stale))

    cards = {
        n: CardConfig(
            n,
            stats[n],
            returns_plot=RETURNS_PLOT.format(config=n),
            stats_file=True,
            quality=quality[n],
            clip=EPISODE_CLIP.format(config=n) if n in clips else None,
        )
        for n in names
    }
    readme = target.read("README.md")
    for entry in card_configs(readme.decode()) if readme else []:
        other = entry["config_name"]
        if other not in cards:
            cards[other] = _published_config(target, other, entry)
    for path in target.paths_under(META_DIR.format(config="")):
        other = path.split("/")[1]
        if path == STATS_PATH.format(config=other) and other not in cards:
            cards[other] = _published_config(target, other, None)
    known = [c.stats for c in cards.values() if c.stats]
    figures = [
        PublishFile.generated(SUITE_PLOT.format(suite=s), suite_summary(s, known))
        for s in sorted({stats[n].suite for n in names})
    ]
    suite_plots = sorted(
        {f.path for f in figures} | {p for p in target.paths_under(f"{PLOTS_DIR}/") if p.endswith(".png")}
    )
    card = render_from_stats(title, list(cards.values()), suite_plots, hub=hub)
    info = DatasetInfo("jat-pipeline publish", tuple(sorted(cards)))
    groups.append(
        Group(
            "the dataset card",
            [
                *figures,
                PublishFile.generated(INFO_PATH, _json_bytes(info.to_dict())),
                PublishFile.generated("README.md", card.encode()),
            ],
        )
    )
    return groups, info


def _published_config(target: Target, name: str, entry: dict | None) -> CardConfig:
    """A config already on the target: from its stats.json, else from its card entry alone."""
    path = STATS_PATH.format(config=name)
    raw = target.read(path)
    if raw is None:
        return CardConfig(name, None, yaml_entry=entry)
    stats = ConfigStats.from_dict(json.loads(raw), f"{target.name}/{path}")
    plot, clip = RETURNS_PLOT.format(config=name), EPISODE_CLIP.format(config=name)
    return CardConfig(
        name,
        stats,
        returns_plot=plot if target.paths_under(plot) else None,
        stats_file=True,
        clip=clip if target.paths_under(clip) else None,
    )


def _pack(
    groups: list[Group], target: Target, config: PublishConfig, summary: PublishSummary
) -> list[Commit]:
    """Changed files in publishing order, cut into commits at the file-count and byte limits.

    Cutting only at limits keeps the commit count low (the Hub rate-limits commits) while the
    order still guarantees that a config's metadata and the card never land before their data.
    """
    commits = [Commit()]
    for group in groups:
        changed = [f for f in group.files if not target.unchanged(f)]
        summary.unchanged_files += len(group.files) - len(changed)
        for file in changed:
            current = commits[-1]
            if current.files and (
                len(current.files) >= config.max_commit_files
                or current.nbytes + file.size > config.max_commit_bytes
            ):
                commits.append(Commit())
            commits[-1].files.append(file)
            commits[-1].add_label(group.label)
        if group.deletions:
            commits[-1].deletions += group.deletions
            commits[-1].add_label(group.label)
    return [c for c in commits if c.files or c.deletions]


def _upload(
    groups: list[Group], target: Target, source: Location, config: PublishConfig, summary: PublishSummary
) -> None:
    commits = _pack(groups, target, config, summary)
    total = sum(c.nbytes for c in commits)
    files = sum(len(c.files) for c in commits)
    if summary.hub:
        log.info(
            "%d commit(s), %d file(s), %.1f MB to upload to %s; %d file(s) already there",
            len(commits),
            files,
            total / 1e6,
            target.name,
            summary.unchanged_files,
        )
    else:
        log.info(
            "%d file(s), %.1f MB to write to %s; %d file(s) already there",
            files,
            total / 1e6,
            target.name,
            summary.unchanged_files,
        )
    display = Bars(
        config.progress and bool(commits),
        lambda rp: (
            rp.TextColumn("{task.description:<48.48}"),
            rp.BarColumn(),
            rp.DownloadColumn(),
            rp.TransferSpeedColumn(),
        ),
    )
    display.add("publish", total, description="publishing")
    started = time.monotonic()
    try:
        for i, commit in enumerate(commits, 1):
            message = (
                "Publish " + ", ".join(commit.labels) + (f" ({i}/{len(commits)})" if len(commits) > 1 else "")
            )
            began = time.monotonic()
            target.apply(commit.files, commit.deletions, message, source)
            summary.commit_log.append((message, len(commit.files), commit.nbytes, time.monotonic() - began))
            summary.commits += 1
            summary.uploaded_files += len(commit.files)
            summary.uploaded_bytes += commit.nbytes
            summary.deleted_files += len(commit.deletions)
            done = message if summary.hub else "write " + ", ".join(commit.labels)
            display.update("publish", advance=commit.nbytes, description=done)
    finally:
        summary.upload_seconds = time.monotonic() - started
        display.close()


def publish(config: PublishConfig) -> PublishSummary:
    """Validate, then publish `config.configs` of `config.data_dir`; returns what was uploaded."""
    started = time.monotonic()
    location = open_location(config.data_dir)
    if location.exists(""):  # a config whose manifest was lost is damage, not an unknown config
        check_files(location, unfinished_configs(location, config.configs), "published")
    names = _select(location, config.configs)
    target: Target
    if config.repo_id:
        target = HubTarget(config.repo_id, config.revision, config.private, config.xet)
    else:
        target = FolderTarget(config.folder)
        if target.location.uri.rstrip("/") == location.uri.rstrip("/"):
            raise PipelineError(f"--to-folder {config.folder} is the dataset itself: choose another folder")
    quiet = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        target.check()
        report = validate(ValidateConfig(location.uri, configs=tuple(names)))
        if not report.ok:
            damage = [line for c in report.configs for line in c.damage]
            fix = report.fix or f"run `pipeline validate {config.data_dir}` and fix or re-record"
            raise ValidationFailed(
                f"{location.uri} fails validation ({len(report.errors)} error(s); first: "
                f"{(damage or report.errors)[0]}): nothing was published; {fix}"
            )
        stats = {name: config_stats(location, StatsRequest(name)) for name in names}
        clips = _clips(location, names) if config.clips else {}
        target.prepare()
        groups, info = _plan(
            location, names, stats, clips, target, config.repo_id or target.name, hub=bool(config.repo_id)
        )
        summary = PublishSummary(
            target.name, names, hub=bool(config.repo_id), card_configs=list(info.configs)
        )
        _upload(groups, target, location, config, summary)
        summary.tag = target.tag(info)  # after the last commit: the tag never names a partial publish
        summary.head = getattr(target, "head", None)
    finally:
        target.close()
        if not quiet:
            enable_progress_bars()
    summary.seconds = time.monotonic() - started
    if summary.hub:
        log.info(
            "published %s to %s: %d file(s), %.1f MB in %d commit(s), %.1f MB/s",
            ", ".join(names),
            target.name,
            summary.uploaded_files,
            summary.uploaded_bytes / 1e6,
            summary.commits,
            summary.throughput_mb_s,
        )
    else:
        log.debug("wrote %s to %s", ", ".join(names), target.name)  # the CLI says what was written
    return summary
