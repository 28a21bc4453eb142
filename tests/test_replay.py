"""`pipeline replay`: stored episodes re-simulated from seed and actions, compared step by step.

Real envs and real recorded datasets (the session's `sample_dataset`); the tampered copies are
changed the way a bug or an edit would change them, and must be named with episode, step and feature.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.checks.replay import replay_config
from pipeline.checks.validate import validate
from pipeline.cli import main
from pipeline.configs.datasets import ValidateConfig
from pipeline.runtime.storage import open_location

SUITE_CONFIGS = ("babyai-go-to", "metaworld-reach", "mujoco-hopper", "atari-breakout")


def _manifest(root: Path, config: str) -> tuple[Path, dict]:
    path = root / "meta" / config / "manifest.json"
    return path, json.loads(path.read_text())


def _train_shard(data: dict) -> dict:
    return next(s for s in data["shards"] if s["split"] == "train" and len(s["episodes"]) >= 2)


def _rewrite(root: Path, shard: dict, rows: list[dict], schema: pa.Schema) -> None:
    """Write the shard's rows back and give the manifest the new file's checksum and size."""
    path = root / shard["path"]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, compression="zstd")
    shard["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    shard["num_bytes"] = path.stat().st_size


@pytest.mark.parametrize("config", SUITE_CONFIGS)
def test_every_suite_reproduces_bit_for_bit(sample_dataset, config):
    result = replay_config(open_location(str(sample_dataset)), config)
    assert result.ok, [m.line(config) for m in result.mismatches]
    assert len(result.episodes) == 5
    assert result.steps == sum(e.steps for e in result.episodes) > 5
    # Same code, same packages, same machine: even float32 MuJoCo physics comes back identical.
    assert result.exact == 5 and result.max_abs_diff == 0.0


def test_episode_sample_is_the_first_by_id_of_the_split(sample_dataset):
    location = open_location(str(sample_dataset))
    first = replay_config(location, "mujoco-hopper", episodes=2)
    assert [e.episode_id for e in first.episodes] == [0, 1]
    test_only = replay_config(location, "mujoco-hopper", split="test")
    assert test_only.episodes and {e.split for e in test_only.episodes} == {"test"}


@pytest.mark.parametrize("config", ["babyai-go-to", "mujoco-hopper"])
def test_rows_swapped_between_seeds_pass_validate_but_not_replay(dataset_copy, config, capsys):
    """Two episodes' rows trade places with their manifest records' lengths, returns and digests:
    every file and manifest check still passes (ids and seeds follow the plan, digests the rows),
    but each row now claims the other's seed produced it."""
    manifest_path, data = _manifest(dataset_copy, config)
    shard = _train_shard(data)
    table = pq.read_table(dataset_copy / shard["path"])
    rows = table.to_pylist()
    rows[0], rows[1] = rows[1], rows[0]
    first, second = shard["episodes"][0], shard["episodes"][1]
    for key in ("length", "episode_return", "success", "digest"):
        first[key], second[key] = second[key], first[key]
    _rewrite(dataset_copy, shard, rows, table.schema)
    manifest_path.write_text(json.dumps(data, indent=1))

    assert validate(ValidateConfig(str(dataset_copy), configs=(config,))).ok
    result = replay_config(open_location(str(dataset_copy)), config)
    assert {m.episode_id for m in result.mismatches} == {first["episode_id"], second["episode_id"]}
    assert all(m.step == 0 and m.row in (0, 1) for m in result.mismatches)  # a seed shows at reset

    capsys.readouterr()
    assert main(["validate", str(dataset_copy), "--configs", config, "--replay", "3"]) == 1
    out = capsys.readouterr().out
    assert f"episode {first['episode_id']} ({shard['path']} row 0) does not reproduce: step 0" in out
    assert main(["validate", str(dataset_copy), "--configs", config]) == 0


def test_a_changed_reward_is_named_with_episode_step_and_feature(dataset_copy, capsys):
    config = "mujoco-hopper"
    _, data = _manifest(dataset_copy, config)
    shard = _train_shard(data)
    table = pq.read_table(dataset_copy / shard["path"])
    rows = table.to_pylist()
    rows[1]["rewards"][3] += 0.5
    _rewrite(dataset_copy, shard, rows, table.schema)

    capsys.readouterr()
    assert main(["replay", str(dataset_copy), "--config", config]) == 1
    out = capsys.readouterr().out
    episode = shard["episodes"][1]["episode_id"]
    assert f"episode {episode} ({shard['path']} row 1) does not reproduce: step 3, rewards: stored" in out
    assert "4/5 episodes reproduce" in out


def test_a_changed_atari_frame_is_caught_exactly(dataset_copy):
    config = "atari-breakout"
    _, data = _manifest(dataset_copy, config)
    shard = _train_shard(data)
    table = pq.read_table(dataset_copy / shard["path"])
    rows = table.to_pylist()
    frames = rows[0]["image_observations"]
    step = next(t for t in range(5, len(frames) - 1) if frames[t]["bytes"] != frames[t + 1]["bytes"])
    frames[step] = dict(frames[step + 1])  # a valid frame stack, one step late
    _rewrite(dataset_copy, shard, rows, table.schema)

    (mismatch,) = replay_config(open_location(str(dataset_copy)), config).mismatches
    assert (mismatch.episode_id, mismatch.step, mismatch.feature) == (
        shard["episodes"][0]["episode_id"],
        step,
        "image_observations",
    )


def test_a_changed_babyai_action_shows_where_the_paths_part(dataset_copy):
    """An action changed mid-episode: replay follows the stored (wrong) action and the stored
    observations stop matching from the next step on (or the episode ends elsewhere)."""
    config = "babyai-go-to"
    _, data = _manifest(dataset_copy, config)
    shard = _train_shard(data)
    table = pq.read_table(dataset_copy / shard["path"])
    rows = table.to_pylist()
    actions = rows[0]["discrete_actions"]
    actions[2] = 0 if actions[2] != 0 else 1  # turn left, or right: the view's direction changes
    _rewrite(dataset_copy, shard, rows, table.schema)

    (mismatch,) = replay_config(open_location(str(dataset_copy)), config).mismatches
    assert (mismatch.step, mismatch.feature) == (3, "discrete_observations")
    assert mismatch.detail.startswith("stored[0] ")  # index 0 is the agent's direction


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--config", "babyai-goto"], "unknown task 'babyai-goto'; did you mean babyai-go-to"),
        (["--config", "babyai-go-to", "--episodes", "0"], "--episodes must be a positive integer, got 0"),
        (
            ["--config", "babyai-go-to", "--episodes", "some"],
            "--episodes: must be a positive integer or `all`",
        ),
        (["--config", "babyai-go-to", "--split", "dev"], "--split: invalid choice: 'dev'"),
        (["--config", "babyai-pickup"], "has no meta/babyai-pickup/manifest.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sample_dataset, capsys, argv, expected):
    assert main(["replay", str(sample_dataset), *argv]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], captured.err


def test_a_missing_dataset_and_a_bad_replay_count_are_one_line(tmp_path, capsys):
    assert main(["replay", str(tmp_path / "absent"), "--config", "babyai-go-to"]) == 2
    assert main(["validate", str(tmp_path), "--replay", "-1"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"error: {tmp_path / 'absent'} does not exist: give the folder or URI a rollout wrote"
    assert lines[1] == "error: --replay must be 0 or a positive integer, got -1"
