"""Per-config manifests: the dataset's own account of what it holds.

`meta/<config>/manifest.json` lists every shard (path, split, sha256, size, episodes in row
order with seed, length, return and success), the dropped episodes with their reason, the plan
that produced them and the policy's provenance. The validator checks the files against it, the
publisher reuses its checksums, and per-episode metadata lives here rather than in extra
Parquet columns (JAT's processor would pad and feed any extra column).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pipeline.errors import PipelineError
from pipeline.format.schema import FORMAT_VERSION, INFO_PATH, MANIFEST_PATH, SPLITS
from pipeline.format.shards import ShardRecord
from pipeline.runtime.storage import Location
from pipeline.suites import suite_packages
from pipeline.tasks.sections import check_keys


def tracked_packages() -> tuple[str, ...]:
    """The distributions whose versions a manifest records: ours, the env packages of every suite
    (`Suite.packages`), and the libraries that write the files and run the work."""
    return ("jat-pipeline", "gymnasium", *suite_packages(), "numpy", "pyarrow", "datasets", "ray")


def package_versions() -> dict[str, str]:
    out = {}
    for name in tracked_packages():
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def git_sha() -> str | None:
    """The commit of the checkout this code runs from; None when installed from a wheel.

    Only a checkout's root has `.git`: asking git from an installed package's site-packages would
    report whatever repository the environment happens to live in.
    """
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # pipeline/format/
    if not os.path.exists(os.path.join(root, ".git")):
        return None
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
            cwd=root,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class Manifest:
    """Everything the dataset knows about one config."""

    config: str
    suite: str
    env_id: str
    make_kwargs: dict[str, Any]
    plan: dict[str, Any]  # seed, budget, test_fraction, policy kind, planned episode count
    provenance: dict[str, Any]
    shards: list[ShardRecord] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    created: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    versions: dict[str, str] = field(default_factory=package_versions)
    git_sha: str | None = field(default_factory=git_sha)
    format_version: int = FORMAT_VERSION

    @property
    def planned_episodes(self) -> int:
        return int(self.plan["planned_episodes"])

    def totals(self) -> dict[str, dict[str, int]]:
        out = {s: {"episodes": 0, "steps": 0, "shards": 0} for s in SPLITS}
        for shard in self.shards:
            out[shard.split]["shards"] += 1
            out[shard.split]["episodes"] += len(shard.episodes)
            out[shard.split]["steps"] += sum(e.length for e in shard.episodes)
        return out

    def to_dict(self) -> dict[str, Any]:
        self.shards.sort(key=lambda s: (SPLITS.index(s.split), s.index))
        return {
            "format_version": self.format_version,
            "config": self.config,
            "suite": self.suite,
            "env_id": self.env_id,
            "make_kwargs": self.make_kwargs,
            "plan": self.plan,
            "provenance": self.provenance,
            "totals": self.totals(),
            "created": self.created,
            "versions": self.versions,
            "git_sha": self.git_sha,
            "shards": [s.to_dict() for s in self.shards],
            "dropped": sorted(self.dropped, key=lambda d: d["episode_id"]),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format_version") != FORMAT_VERSION:
            raise PipelineError(
                f"manifest of {data.get('config')} has format_version {data.get('format_version')}, "
                f"this pipeline reads {FORMAT_VERSION}: re-run the rollout with this version"
            )
        fields = {k: data[k] for k in ("config", "suite", "env_id", "make_kwargs", "plan", "provenance")}
        return cls(
            **fields,
            shards=[ShardRecord.from_dict(s) for s in data["shards"]],
            dropped=data["dropped"],
            created=data["created"],
            versions=data["versions"],
            git_sha=data.get("git_sha"),
        )


def write_manifest(location: Location, manifest: Manifest) -> None:
    location.write_json(MANIFEST_PATH.format(config=manifest.config), manifest.to_dict())


def read_manifest(location: Location, config: str) -> Manifest:
    path = MANIFEST_PATH.format(config=config)
    if not location.exists(path):
        raise PipelineError(f"{location.uri} has no {path}: not a finished rollout of {config}")
    try:
        return Manifest.from_dict(location.read_json(path))
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineError(
            f"{location.uri}/{path} is unreadable ({exc}): re-run the rollout of {config}"
        ) from exc


def dataset_configs(location: Location) -> list[str]:
    """Configs with a manifest in the dataset, sorted."""
    return sorted(
        info.base_name
        for info in location.list("meta")
        if info.type.name == "Directory" and location.exists(MANIFEST_PATH.format(config=info.base_name))
    )


@dataclass(frozen=True)
class DatasetInfo:
    """`meta/info.json`: what makes a folder a jat-pipeline dataset, and in which on-disk format.

    Written first by a rollout (so a folder killed early is recognisably ours), rewritten as
    configs are committed and by publish; read back by validate and `--resume`, which refuse a
    `format_version` they do not read.
    """

    writer: str
    """The stage that wrote it: "jat-pipeline" (rollout) or "jat-pipeline publish"."""
    configs: tuple[str, ...] = ()
    """Configs with a manifest when it was written."""
    format_version: int = FORMAT_VERSION
    """The on-disk layout version (manifests, shards, card); `pipeline.format.schema.FORMAT_VERSION`."""
    versions: dict[str, str] = field(default_factory=package_versions)
    """Versions of the packages that shape the data (`tracked_packages`)."""
    git_sha: str | None = field(default_factory=git_sha)
    """The commit of the checkout that wrote it; None when run from an installed wheel."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "writer": self.writer,
            "versions": dict(self.versions),
            "git_sha": self.git_sha,
            "configs": list(self.configs),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> DatasetInfo:
        allowed = {"format_version", "writer", "versions", "git_sha", "configs"}
        check_keys(where, data, allowed, fix="it was not written by this pipeline")
        if data.get("format_version") != FORMAT_VERSION:
            raise PipelineError(
                f"{where} has format_version {data.get('format_version')}, this pipeline reads "
                f"{FORMAT_VERSION}: use the jat-pipeline version that wrote it, or re-run the rollout"
            )
        return cls(
            writer=str(data.get("writer", "")),
            configs=tuple(data.get("configs", ())),
            versions=dict(data.get("versions") or {}),
            git_sha=data.get("git_sha"),
        )


def write_info(location: Location, writer: str = "jat-pipeline") -> None:
    """Write `meta/info.json` for the configs the folder holds now (the one writer)."""
    location.write_json(INFO_PATH, DatasetInfo(writer, tuple(dataset_configs(location))).to_dict())


def read_info(location: Location) -> DatasetInfo | None:
    """`meta/info.json` of a dataset folder (the one reader); None when it has none."""
    if not location.exists(INFO_PATH):
        return None
    try:
        data = location.read_json(INFO_PATH)
    except ValueError as exc:
        raise PipelineError(
            f"{location.uri}/{INFO_PATH} is not valid JSON ({exc}): --overwrite the run"
        ) from None
    return DatasetInfo.from_dict(data, f"{location.uri}/{INFO_PATH}")
