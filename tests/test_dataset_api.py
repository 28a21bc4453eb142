"""`pipeline.dataset`: episodes with their ids, seeds and returns, from a folder, S3 and the Hub."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from publish_helpers import CONFIGS
from test_s3 import s3_server  # noqa: F401 (the moto S3 server fixture)

from pipeline.dataset import CACHED_ROW_GROUPS, open_dataset
from pipeline.errors import PipelineError
from pipeline.format.manifest import read_manifest
from pipeline.runtime.storage import open_location
from pipeline.suites import get_suite


def _stored_rows(dataset: Path, config: str) -> dict[int, dict]:
    """Every episode's row read with plain pyarrow, keyed by the id the manifest gives its position."""
    manifest = read_manifest(open_location(str(dataset)), config)
    out = {}
    for shard in manifest.shards:
        rows = pq.read_table(dataset / shard.path).to_pylist()
        assert len(rows) == len(shard.episodes)
        for record, row in zip(shard.episodes, rows, strict=True):
            out[record.episode_id] = {"split": shard.split, "record": record, "row": row}
    return out


def _as_stored(name: str, value) -> list:
    """An API column in the form pyarrow's to_pylist gives the stored one."""
    if name == "image_observations":
        return [{"bytes": b, "path": None} for b in value]
    return value if isinstance(value, list) else np.asarray(value).tolist()


def _checksum(item: tuple[str, object]) -> str:
    name, value = item
    return hashlib.sha256(json.dumps(_as_stored(name, value), default=repr).encode()).hexdigest()


def _digests(dataset) -> dict[str, list]:
    """(config, id, seed, split, return, per-column checksum) of every episode, via the API."""
    out = {}
    for name in dataset.configs:
        out[name] = [
            (
                e.episode_id,
                e.seed,
                e.split,
                e.episode_return,
                e.length,
                e.success,
                *map(_checksum, e.columns.items()),
            )
            for e in dataset.config(name).iterate_episodes()
        ]
    return out


def test_episodes_come_with_their_manifest_metadata_and_stored_steps(sample_dataset):
    dataset = open_dataset(str(sample_dataset))
    assert dataset.configs == CONFIGS and dataset.info is not None and dataset.repo_id is None
    for name in CONFIGS:
        config = dataset.config(name)
        stored = _stored_rows(sample_dataset, name)
        assert config.episode_ids == sorted(stored) and len(config) == len(stored)
        seen = []
        for episode in config.iterate_episodes():
            truth = stored[episode.episode_id]
            record = truth["record"]
            assert (episode.seed, episode.split, episode.length) == (
                record.seed,
                truth["split"],
                record.length,
            )
            assert (episode.episode_return, episode.success) == (record.episode_return, record.success)
            assert (
                list(episode.columns) == get_suite(config.spec.suite).layout.columns
            )  # JAT's columns, in order
            for column, value in episode.columns.items():
                assert _as_stored(column, value) == truth["row"][column], (name, episode.episode_id, column)
            assert episode.rewards.dtype == np.float32 and len(episode.rewards) == episode.length
            assert abs(float(episode.rewards.sum(dtype=np.float64)) - episode.episode_return) < 1e-4
            seen.append(episode.episode_id)
        assert seen == config.episode_ids  # by episode id
        assert len(config._row_groups) <= CACHED_ROW_GROUPS
        test_ids = [e.episode_id for e in config.episodes("test")]
        assert test_ids and [e.episode_id for e in config.iterate_episodes(split="test")] == test_ids
        assert {e.split for e in config.iterate_episodes(split="train")} == {"train"}
        assert config.total_steps == sum(r["record"].length for r in stored.values())
        assert config.num_bytes == sum(s.num_bytes for s in config.manifest.shards)


def test_rows_match_what_load_dataset_gives_in_the_same_order(sample_dataset):
    """A `load_dataset` user can put ids on rows: the i-th row of a split is the i-th episode of that
    split in manifest order, which `EpisodeInfo.shard`/`row` name."""
    from datasets import load_dataset

    config = open_dataset(str(sample_dataset)).config("babyai-go-to")
    loaded = load_dataset(str(sample_dataset), "babyai-go-to")
    for split in ("train", "test"):
        ordered = sorted(config.episodes(split), key=lambda e: (e.shard, e.row))
        assert len(ordered) == loaded[split].num_rows
        for position, info in enumerate(ordered):
            row = loaded[split][position]
            episode = config.episode(info.episode_id)
            assert row["text_observations"] == episode.columns["text_observations"]
            assert row["discrete_actions"] == episode.actions.tolist()
            np.testing.assert_array_equal(np.asarray(row["rewards"], dtype=np.float32), episode.rewards)


def test_atari_frames_decode_and_selection_keeps_the_order_asked(sample_dataset):
    config = open_dataset(str(sample_dataset)).config("atari-breakout")
    wanted = list(reversed(config.episode_ids[:3]))
    episodes = list(config.iterate_episodes(episode_ids=wanted))
    assert [e.episode_id for e in episodes] == wanted
    frames = episodes[0].frames()
    assert frames.shape == (episodes[0].length, 84, 84, 4) and frames.dtype == np.uint8
    # stacks, oldest first: each step pushes one new frame, except where envpool's semantics start the
    # next life inside the step that lost one (its reset frame is pushed too): at most 4 in Breakout
    shifted = [np.array_equal(a[..., 1:], b[..., :3]) for a, b in itertools.pairwise(frames)]
    assert shifted.count(False) <= 4 and len(shifted) > 8 and frames.std() > 0
    with pytest.raises(PipelineError, match="only Atari stores frames"):
        open_dataset(str(sample_dataset)).config("mujoco-hopper").episode(0).frames()


@pytest.mark.parametrize("name", CONFIGS)
def test_recovered_environment_is_the_recording_one_and_episodes_replay(sample_dataset, name):
    config = open_dataset(str(sample_dataset)).config(name)
    first = config.episode(config.episode_ids[0])
    env = config.recover_environment()
    try:
        observation, _ = env.reset(seed=first.seed)
        if config.spec.suite == "babyai":
            assert observation["discrete_observations"].tolist() == first.observations[0].tolist()
            assert observation["text_observations"] == first.columns["text_observations"][0]
        elif config.spec.suite in ("mujoco", "metaworld"):
            np.testing.assert_allclose(
                np.asarray(observation, dtype=np.float32), first.observations[0], rtol=1e-6
            )
        result = config.replay(first.episode_id, env=env)
    finally:
        env.close()
    assert result.mismatch is None and result.steps == first.length and result.episode_id == first.episode_id


def test_bad_input_is_one_line(sample_dataset, dataset_copy, tmp_path):
    cases = [
        (lambda: open_dataset(str(tmp_path / "missing")), "does not exist: give a dataset folder"),
        (lambda: open_dataset(str(tmp_path)), "is not a jat-pipeline dataset"),
        (lambda: open_dataset(str(sample_dataset / "README.md")), "is a file, not a dataset folder"),
        (lambda: open_dataset(str(sample_dataset)).config("babyai-goto"), "did you mean babyai-go-to"),
        (lambda: open_dataset(str(sample_dataset)).config("babyai-go-to").episode(999), "has no episode 999"),
        (lambda: open_dataset(str(sample_dataset)).config("babyai-go-to").episodes("dev"), "split must be"),
    ]
    for call, message in cases:
        with pytest.raises(PipelineError, match=message) as error:
            call()
        assert "\n" not in str(error.value)
    manifest = dataset_copy / "meta" / "mujoco-hopper" / "manifest.json"  # recorded on another env
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "env_id": "Hopper-v4"}))
    with pytest.raises(PipelineError, match=r"was recorded on Hopper-v4 .* this registry builds Hopper-v5"):
        open_dataset(str(dataset_copy)).config("mujoco-hopper").recover_environment()
    shard = dataset_copy / "data" / "babyai-go-to" / "train-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(PipelineError, match=r"cannot read .*train-00000.parquet .*pipeline validate"):
        open_dataset(str(dataset_copy)).config("babyai-go-to").episode(0)


def test_import_pulls_in_neither_ray_nor_torch():
    code = (
        "import sys, pipeline.dataset, pipeline.browse.info; "
        "print(sorted({'ray', 'torch'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]


@pytest.mark.s3
def test_s3_gives_the_episodes_of_the_folder(sample_dataset, s3_server):  # noqa: F811
    import pyarrow.fs as pafs

    uri = f"{s3_server}/episodes"
    location = open_location(uri)
    pafs.copy_files(str(sample_dataset), location.root, destination_filesystem=location.fs)
    remote, local = open_dataset(uri), open_dataset(str(sample_dataset))
    assert remote.configs == local.configs
    assert _digests(remote) == _digests(local)
    with pytest.raises(PipelineError, match="does not exist: check the bucket and prefix"):
        open_dataset(f"{s3_server}/nothing-here")


@pytest.mark.hub
def test_hub_repo_gives_the_episodes_of_the_folder(sample_dataset, hub, monkeypatch):
    """Published to the local Hub-API server and opened by repo id: card and manifests first, shards
    only once steps are read, from the commit opened; the tag `jat-format-v1` opens too."""
    from huggingface_hub import constants

    from pipeline.configs.publish import PublishConfig
    from pipeline.format.schema import FORMAT_VERSION
    from pipeline.release.publish import publish

    repo = "jat-org/episodes"
    publish(PublishConfig(str(sample_dataset), repo_id=repo, xet=False, progress=False, clips=False))
    dataset = open_dataset(repo)
    root = Path(dataset.location.root)
    assert dataset.repo_id == repo and dataset.revision == hub.head(repo) and root.name == hub.head(repo)
    assert root.is_relative_to(os.environ["HF_HOME"])  # the fixture's cache, set after import
    assert dataset.configs == CONFIGS and not (root / "data").exists()  # no shard fetched yet
    local = open_dataset(str(sample_dataset))
    assert [e.seed for e in dataset.config("mujoco-hopper").episodes()] == [
        e.seed for e in local.config("mujoco-hopper").episodes()
    ]
    assert not (root / "data").exists()  # metadata needs no shard
    assert _digests(dataset) == _digests(local)
    assert sorted(p.name for p in (root / "data" / "babyai-go-to").iterdir()) == [
        "test-00000.parquet",
        "train-00000.parquet",
    ]
    tagged = open_dataset(repo, revision=f"jat-format-v{FORMAT_VERSION}")
    assert tagged.revision == dataset.revision
    reads = hub.counts["resolve"]
    with monkeypatch.context() as offline:  # the cached snapshot serves offline, without a request
        offline.setattr(constants, "HF_HUB_OFFLINE", True)
        assert open_dataset(repo).config("babyai-go-to").episode(0).length > 0
    assert hub.counts["resolve"] == reads
    with pytest.raises(PipelineError, match="no such folder, and no such dataset on the Hub") as error:
        open_dataset("jat-org/missing")
    assert "\n" not in str(error.value)
