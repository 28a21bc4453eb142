"""`pipeline.rollout.returns`: returns-to-go, and their sidecar file for a real recorded config."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import PipelineError
from pipeline.format.manifest import read_manifest
from pipeline.format.schema import RTG_PATH
from pipeline.rollout.returns import returns_to_go, write_returns_to_go
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.runtime.storage import open_location

CONFIG = "mujoco-pendulum"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A real 5-episode random rollout of InvertedPendulum (episodes of a few steps), in-process."""
    out = tmp_path_factory.mktemp("rtg") / "dataset"
    rollout(
        RolloutConfig(out=str(out), tasks=(CONFIG,), episodes=5, workers=0, policy="random", progress=False)
    )
    return out


def test_return_to_go_sums_the_rewards_from_each_step_to_the_end():
    rtg = returns_to_go(np.array([1.0, 2.0, 3.0], dtype=np.float32))
    assert rtg.dtype == np.float32 and rtg.tolist() == [6.0, 5.0, 3.0]
    assert returns_to_go(np.array([0.5, -1.0, 0.0, 2.0])).tolist() == [1.5, 1.0, 2.0, 2.0]
    assert returns_to_go(np.array([], dtype=np.float32)).shape == (0,)


def test_sums_are_taken_in_float64_before_the_float32_result():
    rewards = np.array([1e8, 1.0, -1e8, 1.0], dtype=np.float32)
    # float32 running sums would lose both 1s next to 1e8 and give 0 at the start
    assert returns_to_go(rewards).tolist() == [2.0, -1e8, -1e8, 1.0]


def test_the_sidecar_holds_every_episode_of_the_config(dataset):
    location = open_location(str(dataset))
    assert not location.exists(RTG_PATH.format(config=CONFIG))  # only written when asked for
    path = write_returns_to_go(location, CONFIG)
    assert path == f"meta/{CONFIG}/returns_to_go.parquet" and (dataset / path).exists()
    table = pq.read_table(dataset / path)
    assert table.schema.names == ["episode_id", "split", "returns_to_go"]
    assert table.schema.field("returns_to_go").type.value_type == pa.float32()
    rows = table.to_pylist()
    manifest = read_manifest(location, CONFIG)
    stored = {e.episode_id: (s.split, e) for s in manifest.shards for e in s.episodes}
    assert [r["episode_id"] for r in rows] == sorted(stored) == [0, 1, 2, 3, 4]
    for row in rows:
        split, episode = stored[row["episode_id"]]
        assert row["split"] == split
        assert len(row["returns_to_go"]) == episode.length
        assert row["returns_to_go"][0] == pytest.approx(episode.episode_return)
        # InvertedPendulum-v5: 1 per step, 0 on the terminating one
        assert row["returns_to_go"] == [float(episode.length - 1 - t) for t in range(episode.length)]
    assert {r["split"] for r in rows} == {"train", "test"}


def test_a_config_that_was_never_recorded_is_refused(dataset):
    with pytest.raises(PipelineError, match=r"has no meta/mujoco-hopper/manifest\.json"):
        write_returns_to_go(open_location(str(dataset)), "mujoco-hopper")
