"""The checks a config's manifest passes before a rollout commits it (exit 0 means valid data):
every planned episode stored or dropped exactly once, every shard listed once, present and of its
recorded size, and both splits holding episodes."""

from __future__ import annotations

from collections import Counter

from pipeline.errors import PipelineError
from pipeline.format.manifest import Manifest
from pipeline.format.schema import DATA_DIR, SPLITS
from pipeline.runtime.storage import Location


def check_manifest(manifest: Manifest, location: Location) -> None:
    """Exit 0 means valid data: refuse a manifest that misses, repeats or misfiles anything."""
    config = manifest.config
    ids = [e.episode_id for s in manifest.shards for e in s.episodes] + [
        d["episode_id"] for d in manifest.dropped
    ]
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    missing = sorted(set(range(manifest.planned_episodes)) - set(ids))
    unplanned = sorted(set(ids) - set(range(manifest.planned_episodes)))
    paths = [s.path for s in manifest.shards]
    listed_twice = sorted(p for p, n in Counter(paths).items() if n > 1)
    on_disk = {location.relative(i.path): i.size for i in location.list(DATA_DIR.format(config=config))}
    absent = sorted(set(paths) - set(on_disk))
    resized = sorted(s.path for s in manifest.shards if s.path in on_disk and on_disk[s.path] != s.num_bytes)
    problems = [
        f"episodes recorded twice: {repeated[:10]}" if repeated else "",
        f"episodes missing: {missing[:10]}" if missing else "",
        f"episodes never planned: {unplanned[:10]}" if unplanned else "",
        f"shards listed twice: {listed_twice[:5]}" if listed_twice else "",
        f"shards listed but absent: {absent[:5]}" if absent else "",
        f"shards of another size than recorded: {resized[:5]}" if resized else "",
    ]
    problems = [p for p in problems if p]
    if problems:
        raise PipelineError(
            f"{config}: the rollout's own check failed ({'; '.join(problems)}); nothing was committed "
            "for it: re-run the same command with --resume"
        )


def check_splits(manifest: Manifest) -> None:
    """Both splits hold episodes, or the config is not committed."""
    config = manifest.config
    totals = manifest.totals()
    empty = [s for s in SPLITS if not totals[s]["episodes"]]
    if empty:
        reasons = Counter(d["reason"].split(":")[0] for d in manifest.dropped)
        raise PipelineError(
            f"{config} has no {' or '.join(empty)} episode ({len(manifest.dropped)} dropped: "
            f"{dict(reasons)}): record more episodes (--episodes/--steps) or use a policy that finishes them"
        )
