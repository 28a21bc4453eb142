"""`pipeline info`: what a dataset holds, from its manifests alone (no shard is read).

Per config: episodes and steps per split, shards and their bytes, planned and dropped episodes, the
policy that acted (`pipeline.report.quality.describe_policy`) and the expert-normalised score with its
bootstrap interval (`pipeline.report.quality.quality_row`, the same numbers `pipeline report` and the card
show). With a config named, also its plan, provenance and episodes (id, split, seed, length, return,
success). The dataset is opened with `pipeline.dataset.open_dataset`: a folder, s3:// or a Hub repo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.configs.browse import InfoConfig
from pipeline.dataset import DatasetConfig, EpisodeInfo, open_dataset
from pipeline.format.schema import SPLITS
from pipeline.report.quality import QualityRow


@dataclass(frozen=True)
class ConfigSummary:
    """One config of a dataset, as `pipeline info` shows it."""

    config: str
    suite: str
    env_id: str
    episodes: dict[str, int]
    """Episodes per split."""
    steps: dict[str, int]
    """Steps per split."""
    shards: int
    num_bytes: int
    """Bytes of its Parquet shards."""
    planned: int
    dropped: int
    plan: dict[str, Any]
    versions: dict[str, str]
    created: str
    quality: QualityRow

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "suite": self.suite,
            "env_id": self.env_id,
            "episodes": self.episodes,
            "steps": self.steps,
            "shards": self.shards,
            "num_bytes": self.num_bytes,
            "planned_episodes": self.planned,
            "dropped_episodes": self.dropped,
            "plan": self.plan,
            "versions": self.versions,
            "created": self.created,
            "policy": self.quality.policy,
            "policy_kind": self.quality.policy_kind,
            "provenance": self.quality.provenance,
            "mean_return": self.quality.mean_return,
            "success_rate": self.quality.success_rate,
            "normalised_score": self.quality.normalised,
            "ci95": list(self.quality.ci) if self.quality.ci else None,
        }


@dataclass(frozen=True)
class DatasetSummary:
    """A dataset's summary: where it is, its format, and one row per config (or the one asked)."""

    source: str
    repo_id: str | None
    revision: str | None
    format_version: int | None
    git_sha: str | None
    configs: tuple[ConfigSummary, ...]
    episodes: tuple[EpisodeInfo, ...] = ()
    """With a config asked: its episodes by id (at most the number asked, all for JSON)."""
    total_episodes: int = 0
    """With a config asked: how many it has in all."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "dataset": self.source,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "format_version": self.format_version,
            "git_sha": self.git_sha,
            "configs": [c.to_dict() for c in self.configs],
        }
        if self.episodes:
            out["episodes"] = [
                {
                    "episode_id": e.episode_id,
                    "split": e.split,
                    "seed": e.seed,
                    "length": e.length,
                    "return": e.episode_return,
                    "success": e.success,
                    **({"checkpoint_step": e.checkpoint_step} if e.checkpoint_step is not None else {}),
                    "shard": e.shard,
                    "row": e.row,
                }
                for e in self.episodes
            ]
        return out


def config_summary(config: DatasetConfig) -> ConfigSummary:
    manifest = config.manifest
    totals = manifest.totals()
    return ConfigSummary(
        config=config.name,
        suite=manifest.suite,
        env_id=manifest.env_id,
        episodes={s: totals[s]["episodes"] for s in SPLITS},
        steps={s: totals[s]["steps"] for s in SPLITS},
        shards=len(manifest.shards),
        num_bytes=config.num_bytes,
        planned=manifest.planned_episodes,
        dropped=len(manifest.dropped),
        plan=manifest.plan,
        versions=manifest.versions,
        created=manifest.created,
        quality=config.quality(),
    )


def dataset_summary(request: InfoConfig) -> DatasetSummary:
    """The summary `pipeline info` prints: every config, or the one asked with its episodes."""
    dataset = open_dataset(request.data_dir)
    names = dataset.configs if request.config is None else (request.config,)
    configs = tuple(config_summary(dataset.config(n)) for n in names)
    episodes: list[EpisodeInfo] = []
    if request.config is not None:
        episodes = dataset.config(request.config).episodes()
    shown = episodes if request.json else episodes[: request.episodes]
    info = dataset.info
    return DatasetSummary(
        source=request.data_dir,
        repo_id=dataset.repo_id,
        revision=dataset.revision,
        format_version=info.format_version if info else None,
        git_sha=info.git_sha if info else None,
        configs=configs,
        episodes=tuple(shown),
        total_episodes=len(episodes),
    )
