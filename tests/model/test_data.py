"""Data loading from the published layout: windows, the task mixture, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from model_helpers import SAMPLE_CONFIGS
from test_s3 import s3_server  # noqa: F401 (the moto S3 server fixture)

from pipeline.errors import PipelineError
from pipeline.format.manifest import read_manifest
from pipeline.model.data import (
    EpisodeTable,
    ShardSplit,
    TaskData,
    TaskMixture,
    _RowGroupCache,
    jat_loss_weight,
    load_split,
    load_tables,
)
from pipeline.model.tokenizer import MissionTokenizer
from pipeline.runtime.storage import open_location
from pipeline.tasks.registry import get_task


def test_tables_match_the_manifest(sample_dataset, episode_tables):
    for config in SAMPLE_CONFIGS:
        manifest = read_manifest(open_location(str(sample_dataset)), config)
        lengths = sorted(e.length for s in manifest.shards if s.split == "train" for e in s.episodes)
        assert sorted(episode_tables[config].lengths.tolist()) == lengths


def test_windows_hold_the_stored_steps(episode_tables):
    babyai = episode_tables["babyai-go-to"]
    window = babyai.window(0, 2, 5)
    stored = babyai.source.episode(0).column("discrete_observations")[0].as_py()
    np.testing.assert_array_equal(window["discrete_observations"], np.asarray(stored[2:7]))
    assert window["text_observations"].shape == (5, 64) and (window["text_observations"][:, 0] > 1).all()
    atari = episode_tables["atari-breakout"].window(0, 0, 3)
    assert (
        atari["image_observations"].shape == (3, 84, 84, 4) and atari["image_observations"].dtype == np.uint8
    )
    assert atari["image_observations"].any()


def test_batches_are_windows_of_at_most_the_context(episode_tables):
    task = TaskData(get_task("metaworld-reach"), episode_tables["metaworld-reach"], None, 1.0, 50.0, 16)
    batch = task.sample(np.random.default_rng(0), 3)
    assert batch["continuous_observations"].shape == (3, 16, 39)
    assert batch["mask"].all()
    with pytest.raises(PipelineError, match="no test episodes"):
        task.sample(np.random.default_rng(0), 1, "test")


def test_mixture_follows_the_sampling_weights(episode_tables):
    tasks = [
        TaskData(get_task(c), episode_tables[c], None, w, 1.0, 4)
        for c, w in (("metaworld-reach", 3.0), ("mujoco-hopper", 1.0))
    ]
    mixture = TaskMixture(tasks)
    np.testing.assert_allclose(mixture.probabilities, [0.75, 0.25])
    rng = np.random.default_rng(0)
    picks = [mixture.sample(rng, 1)[0].config for _ in range(400)]
    share = picks.count("metaworld-reach") / len(picks)
    assert 0.68 < share < 0.82


def test_jat_loss_weights():
    assert jat_loss_weight("metaworld-reach") == 50.0
    assert jat_loss_weight("mujoco-hopper") == 10.0
    assert jat_loss_weight("mujoco-pendulum") == 50.0
    assert jat_loss_weight("atari-pong") == jat_loss_weight("babyai-go-to") == 1.0


def test_load_errors_name_the_cause(sample_dataset, tmp_path):
    with pytest.raises(PipelineError, match="unknown task"):
        load_split(str(sample_dataset), "babyai-go-too", "train")
    with pytest.raises(PipelineError, match="cannot load config 'babyai-open'"):
        load_split(str(sample_dataset), "babyai-open", "train")
    with pytest.raises(PipelineError, match="cannot load"):
        load_split(str(tmp_path / "missing"), "babyai-go-to", "train")


def test_tokenizer_round_trip_and_unknown_words(tmp_path):
    tok = MissionTokenizer.train(["go to the red ball", "open the door on your left"])
    ids = tok.encode(["go to the red ball", "go to the zebra"])
    assert ids.shape == (2, 64) and ids[0, 5] == 0  # padded
    assert ids[1, 3] == 1  # unknown word
    assert tok.encode_one("go to the purple key")[3] > 1  # seeded from minigrid's colours
    tok.save(tmp_path)
    again = MissionTokenizer.load(tmp_path, 64)
    np.testing.assert_array_equal(again.encode(["go to the red ball"]), ids[:1])


def test_missing_data_stops_in_one_line(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PipelineError, match="no such folder, and the Hub is offline"):
        load_tables("nobody/no-such-dataset", ["babyai-go-to"])


@pytest.mark.s3
def test_s3_shards_stream_like_the_local_folder(sample_dataset, s3_server):  # noqa: F811
    """The same episodes from s3:// as from the folder, read row group by row group (bounded cache)."""
    import pyarrow.fs as pafs

    location = open_location(f"{s3_server}/copy")
    pafs.copy_files(str(sample_dataset), location.root, destination_filesystem=location.fs)
    local = load_tables(str(sample_dataset), ["atari-breakout", "mujoco-hopper"])
    remote = load_tables(f"{s3_server}/copy", ["atari-breakout", "mujoco-hopper"])
    for config in ("atari-breakout", "mujoco-hopper"):
        np.testing.assert_array_equal(remote[config][0].lengths, local[config][0].lengths)
    spec = get_task("atari-breakout")
    cache = _RowGroupCache(1)  # holds one row group at a time
    split = ShardSplit(remote["atari-breakout"][0].fs, remote["atari-breakout"][0].paths, cache)
    here, there = EpisodeTable(local["atari-breakout"][0], spec, None), EpisodeTable(split, spec, None)
    for row in range(len(there)):
        np.testing.assert_array_equal(
            there.window(row, 1, 3)["image_observations"], here.window(row, 1, 3)["image_observations"]
        )
    assert len(cache.items) == 1
    with pytest.raises(PipelineError, match="nothing there"):
        load_tables(f"{s3_server}/missing", ["babyai-go-to"])


@pytest.mark.hub
def test_hub_repo_gives_the_episodes_of_the_folder(sample_dataset, hub, tmp_path, monkeypatch):
    """Published to the local Hub-API server, then read back by repo id: the folder's episodes,
    fetched from the fixture's endpoint into the fixture's fresh cache; training runs on them."""
    from huggingface_hub import constants

    from pipeline.configs.publish import PublishConfig
    from pipeline.model.train import TrainModelConfig, train_model
    from pipeline.release.publish import publish

    repo, config = "jat-org/sample", "babyai-go-to"
    publish(PublishConfig(str(sample_dataset), repo_id=repo, xet=False, progress=False, clips=False))
    local = load_tables(str(sample_dataset), [config])[config]
    remote = load_tables(repo, [config])[config]
    assert hub.counts["resolve"] > 0  # read from this server, not from the folder or huggingface.co
    cache = tmp_path / "hf-home"  # the fixture's HF_HOME, set after huggingface_hub was imported
    assert remote[0].paths and all(Path(p).is_relative_to(cache) for p in remote[0].paths)
    assert (remote[1] is None) == (local[1] is None)
    columns = ["rewards", "discrete_actions", "discrete_observations", "text_observations"]
    for there, here in zip(remote, local, strict=True):
        if here is None:
            continue
        np.testing.assert_array_equal(there.lengths, here.lengths)
        for row in range(here.num_rows):
            theirs, ours = there.episode(row), here.episode(row)
            assert theirs.select(columns).to_pylist() == ours.select(columns).to_pylist()

    reads = hub.counts["resolve"]
    with monkeypatch.context() as offline:  # the cached snapshot serves offline, without a request
        offline.setattr(constants, "HF_HUB_OFFLINE", True)
        again = load_tables(repo, [config])[config]
    np.testing.assert_array_equal(again[0].lengths, local[0].lengths)
    assert hub.counts["resolve"] == reads

    out = tmp_path / "tiny"
    result = train_model(
        TrainModelConfig(
            data=repo,
            configs=(config,),
            steps=2,
            size="tiny",
            batch_size=2,
            context_steps=16,
            checkpoint_every=1000,
            eval_batches=0,
            out=str(out),
            progress=False,
        )
    )
    assert result.step == 2 and (out / "model.safetensors").exists()

    missing = "cannot load jat-org/missing: no such folder, and no such dataset on the Hub"
    with pytest.raises(PipelineError, match=missing) as error:
        load_tables("jat-org/missing", [config])
    assert "\n" not in str(error.value)
