"""What the fault tests share: a config's episodes as stored, and the serial run to compare with."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from pipeline.rollout.run import RolloutConfig, rollout


def stored_episodes(dataset: Path, config: str) -> list[tuple]:
    """(episode id, digest, split) of every stored episode, from the manifest, sorted."""
    manifest = json.loads((dataset / "meta" / config / "manifest.json").read_text())
    return sorted(
        (e["episode_id"], e["digest"], s["split"]) for s in manifest["shards"] for e in s["episodes"]
    )


def serial_run(out: Path, config: str, episodes: int, per_shard: int, seed: int) -> list[tuple]:
    """The same rollout, uninterrupted and in-process: what every faulted run must equal."""
    rollout(
        RolloutConfig(
            out=str(out),
            tasks=(config,),
            episodes=episodes,
            episodes_per_shard=per_shard,
            seed=seed,
            workers=0,
            progress=False,
        )
    )
    return stored_episodes(out, config)


def wait_for_records(
    out: Path, config: str, count: int, process: subprocess.Popen, timeout: float = 120
) -> None:
    """Until `count` units of `config` are recorded; fails if the rollout exits or stalls first."""
    records = out / "meta" / config / "shards"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if records.exists() and len(list(records.glob("*.json"))) >= count:
            return
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.1)
    raise AssertionError(f"the rollout recorded fewer than {count} units of {config} in {timeout:.0f} s")
