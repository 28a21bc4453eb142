"""What `--resume` may trust of a config on storage, and which units it must record again.

A unit record vouches for its shard only while both are intact: the record parses, names the
unit its file name says, agrees with the plan (ids, seeds, splits) and with the committed
manifest if there is one, and its shard has the recorded size and sha256 (one read per shard).
Anything else is damage (a truncated, bit-flipped or deleted shard, a deleted or corrupt
record): the unit is recorded again under the same key, with the same planned episodes, so its
shard comes back byte for byte. A unit whose record is lost is rebuilt from the manifest's entry
for its shard; episodes no surviving record or manifest entry places (a lost record before the
config was committed, or a unit whose every episode was dropped) are planned again by the
caller, with their planned seeds.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from pipeline.checks.integrity import file_problem, inner_cause
from pipeline.errors import PipelineError
from pipeline.format.manifest import Manifest, read_manifest
from pipeline.format.plan import PlannedEpisode, WorkUnit
from pipeline.format.schema import DATA_DIR, MANIFEST_PATH, SHARD_NAME, SHARD_RECORD_DIR
from pipeline.format.shards import ShardRecord
from pipeline.rollout.collector import UnitResult, unit_record_path
from pipeline.runtime.storage import Location

log = logging.getLogger(__name__)
_RECORD_NAME = re.compile(r"^(?P<split>train|test)-(?P<index>\d{5})\.json$")


@dataclass(frozen=True)
class Repair:
    """A unit to record again, and what was wrong with it."""

    unit: WorkUnit
    problem: str

    def line(self) -> str:
        ids = [e.episode_id for e in self.unit.episodes]
        return (
            f"{self.unit.config} {self.unit.split} unit {self.unit.shard_index}: {self.problem}; "
            f"re-recording its {len(ids)} episode(s) {ids[0]}-{ids[-1]} with their planned seeds"
        )


@dataclass
class Survey:
    """A config's state on storage, as `--resume` finds it."""

    trusted: list[UnitResult] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    manifest_problem: str | None = None
    """Why the committed manifest cannot be used ("missing", "unreadable (...)"); None if it can."""


def survey(location: Location, config: str, planned: dict[int, PlannedEpisode]) -> Survey:
    """Sort the config's unit records into trusted ones and units to re-record.

    Damaged records and shards are deleted here, before anything is re-recorded: a stale record
    must never stand in for a unit's result if its new worker dies.
    """
    found = Survey()
    manifest = _manifest(location, config, found)
    listed = {s.path: s for s in manifest.shards} if manifest else {}
    manifest_dropped = {d.get("episode_id"): d for d in manifest.dropped} if manifest else {}
    covered: set[str] = set()
    for info in location.list(SHARD_RECORD_DIR.format(config=config)):
        name = info.base_name
        match = _RECORD_NAME.match(name)
        if not match:
            log.warning("%s: deleting %s (not a unit record)", config, location.relative(info.path))
            location.delete(location.relative(info.path))
            continue
        split, index = match["split"], int(match["index"])
        shard_path = f"{DATA_DIR.format(config=config)}/{SHARD_NAME.format(split=split, index=index)}"
        record_path = unit_record_path(config, split, index)
        result, problem = _read_record(location, record_path, (config, split, index), planned)
        if result is not None and manifest is not None:
            problem = _disagreement(result, listed, manifest_dropped)
        if result is not None and problem is None and result.shard is not None:
            shard_problem = file_problem(
                location, result.shard.path, result.shard.num_bytes, result.shard.sha256
            )
            if shard_problem:
                problem = f"{result.shard.path} {shard_problem}"
        if problem is None and result is not None:
            found.trusted.append(result)
            covered.add(shard_path)
            continue
        location.delete(record_path)  # first the record, so the shard is an orphan until re-recorded
        location.delete(shard_path)
        # a record that agrees with the plan still says which episodes its unit played
        unit = _unit_of(result) if result is not None else None
        unit = unit or _unit_from_manifest(listed.get(shard_path), config, planned)
        if unit is not None:
            found.repairs.append(Repair(unit, problem))
            covered.add(shard_path)
        else:
            log.warning("%s: %s; its episodes are planned again", config, problem)
    for path, shard in listed.items():
        if path in covered:
            continue
        unit = _unit_from_manifest(shard, config, planned)
        if unit is not None:
            location.delete(path)
            found.repairs.append(Repair(unit, f"the unit record of {path} is missing (deleted)"))
    return found


def _manifest(location: Location, config: str, found: Survey) -> Manifest | None:
    path = MANIFEST_PATH.format(config=config)
    if not location.exists(path):
        found.manifest_problem = f"{path} is missing"
        return None
    try:
        return read_manifest(location, config)
    except PipelineError as exc:
        found.manifest_problem = f"{path} is unreadable ({inner_cause(str(exc))})"
        return None


def _read_record(
    location: Location, path: str, key: tuple[str, str, int], planned: dict[int, PlannedEpisode]
) -> tuple[UnitResult | None, str | None]:
    """The record if it parses and agrees with its name and the plan, else (None, what is wrong)."""
    try:
        result = UnitResult.from_dict(location.read_json(path))
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return None, f"its unit record {path} is unreadable ({type(exc).__name__}: corrupt)"
    problem = _record_problem(result, key, planned)
    return (None, f"its unit record {path} is corrupt ({problem})") if problem else (result, None)


def _record_problem(
    result: UnitResult, key: tuple[str, str, int], planned: dict[int, PlannedEpisode]
) -> str | None:
    """Why a parsed record cannot be what a worker wrote for unit `key` of this plan, or None."""
    unit = result.unit
    if unit.key != key:
        return f"it names unit {unit.key}"
    if any(planned.get(e.episode_id) != e for e in unit.episodes):
        return "an episode disagrees with the plan"
    count = len(unit.episodes) - len(result.leftover)
    if count < 0 or tuple(unit.episodes[count:]) != tuple(result.leftover):
        return "its leftover is not the unit's tail"
    played = {e.episode_id: e for e in unit.episodes[:count]}
    stored = [(e.episode_id, e.seed) for e in result.shard.episodes] if result.shard else []
    dropped = [(d.get("episode_id"), d.get("seed")) for d in result.dropped]
    ids = [i for i, _ in stored + dropped]
    if sorted(ids) != sorted(played) or any(played[i].seed != s for i, s in stored + dropped):
        return "its stored and dropped episodes are not the unit's"
    if [i for i, _ in stored] != sorted(i for i, _ in stored):
        return "its stored episodes are out of order"
    if result.steps != (sum(e.length for e in result.shard.episodes) if result.shard else 0):
        return f"it counts {result.steps} steps, its shard holds others"
    shard = result.shard
    if shard is not None:
        expected = f"{DATA_DIR.format(config=key[0])}/{SHARD_NAME.format(split=key[1], index=key[2])}"
        if (shard.path, shard.split, shard.index) != (expected, key[1], key[2]):
            return f"its shard is {shard.path}"
    return None


def _disagreement(result: UnitResult, listed: dict[str, ShardRecord], dropped: dict[int, dict]) -> str | None:
    """With a committed manifest, a record must say what the manifest says about its unit's shard
    and drops. (Not about the policy: records of a run resumed after an upgrade differ there.)"""
    path = result.record_path
    shard = result.shard
    if shard is not None and (shard.path not in listed or listed[shard.path].to_dict() != shard.to_dict()):
        return f"its unit record {path} disagrees with the manifest about {shard.path} (corrupt)"
    if any(dropped.get(d["episode_id"]) != d for d in result.dropped):
        return f"its unit record {path} disagrees with the manifest about its dropped episodes (corrupt)"
    return None


def _unit_of(result: UnitResult) -> WorkUnit:
    """The unit as it played: without the leftover a full shard handed on to another unit."""
    unit = result.unit
    count = len(unit.episodes) - len(result.leftover)
    return WorkUnit(unit.config, unit.split, unit.shard_index, tuple(unit.episodes[:count]))


def _unit_from_manifest(
    shard: ShardRecord | None, config: str, planned: dict[int, PlannedEpisode]
) -> WorkUnit | None:
    """A lost record's unit, from the manifest's entry for its shard: the episodes it stored.

    (Its dropped episodes are not tied to a shard in the manifest; the caller plans them again.)
    """
    if shard is None or not shard.episodes:
        return None
    episodes = tuple(planned.get(e.episode_id) for e in shard.episodes)
    if any(
        p is None or p.seed != e.seed or p.split != shard.split
        for p, e in zip(episodes, shard.episodes, strict=True)
    ):
        return None
    return WorkUnit(config, shard.split, shard.index, episodes)  # type: ignore[arg-type]
