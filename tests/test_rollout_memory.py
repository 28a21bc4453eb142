"""A rollout actor's memory does not grow with the episodes it records.

An actor buffers at most one shard (one row group) and keeps nothing of an episode once written,
so after its first shard its RSS must stay flat. The bound is relative to the data: keeping the
episodes would grow the RSS by at least their observation bytes, and the test allows a third of
that. benchmarks/rollout_memory.py does the same over 1M steps.
"""

from __future__ import annotations

import os
import threading

import psutil
import pytest

from pipeline.format.schema import SHARD_RECORD_DIR
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.tasks.registry import get_task

# 1000-step episodes (Standup never terminates) of 348 float32 observations: the fast task
# with the most bytes per step, so a leak shows within seconds.
TASK = "mujoco-standup"
EPISODES = 16
PER_SHARD = 2  # 8 units, hence 8 shards and unit records: the progress axis
ACTOR_PREFIX = "ray::_Remote"  # the executor's actors' process title


class ActorRSS:
    """Samples the RSS of this process's new rollout actors, with the unit records written so far."""

    def __init__(self, records_dir: str) -> None:
        self.records_dir = records_dir
        self.before = {p.pid for p in self._actors()}
        self.samples: list[tuple[int, int]] = []  # (unit records, RSS bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @staticmethod
    def _actors() -> list[psutil.Process]:
        found = []
        for proc in psutil.Process().children(recursive=True):
            try:
                if proc.name().startswith(ACTOR_PREFIX):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def _run(self) -> None:
        actors: list[psutil.Process] = []
        while not self._stop.wait(0.1):
            if not actors:
                actors = [p for p in self._actors() if p.pid not in self.before]
                continue
            try:
                rss = sum(p.memory_info().rss for p in actors)
            except psutil.Error:
                continue  # the actor is being stopped at the end of the run
            records = os.listdir(self.records_dir) if os.path.isdir(self.records_dir) else []
            self.samples.append((sum(r.endswith(".json") for r in records), rss))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.ray
def test_actor_rss_stays_flat_as_episodes_accumulate(ray_cluster, tmp_path):
    if os.environ.get("RAY_ADDRESS"):
        pytest.skip("actors run on a remote cluster: their RSS cannot be sampled from here")
    out = tmp_path / "memory"
    sampler = ActorRSS(str(out / SHARD_RECORD_DIR.format(config=TASK)))
    try:
        summary = rollout(
            RolloutConfig(
                out=str(out),
                tasks=(TASK,),
                episodes=EPISODES,
                workers=1,
                policy="random",
                episodes_per_shard=PER_SHARD,
                progress=False,
            )
        )
    finally:
        sampler.stop()
    units = EPISODES // PER_SHARD
    assert summary.configs[TASK]["steps"] == EPISODES * 1000

    early = [rss for records, rss in sampler.samples if records == 1]  # first shard written: warmed up
    late = [rss for records, rss in sampler.samples if records >= units - 1]
    assert early and late, f"too few RSS samples to judge: {sampler.samples}"
    growth = max(late) - max(early)
    obs_bytes = 4 * get_task(TASK).observation.shape[0]
    kept_if_leaking = (units - 2) * PER_SHARD * 1000 * obs_bytes  # observations recorded in between
    assert growth < kept_if_leaking / 3, (
        f"actor RSS grew {growth / 2**20:.1f} MB between its first and its last shards, while "
        f"keeping the episodes would take {kept_if_leaking / 2**20:.1f} MB: is something holding episodes?"
    )
