"""`pipeline.format.manifest`: per-config manifests and `meta/info.json`, written, read back, versions
checked."""

from __future__ import annotations

import json
import re

import pytest

from pipeline.errors import PipelineError
from pipeline.format.manifest import (
    DatasetInfo,
    Manifest,
    dataset_configs,
    git_sha,
    package_versions,
    read_info,
    read_manifest,
    tracked_packages,
    write_info,
    write_manifest,
)
from pipeline.format.schema import FORMAT_VERSION
from pipeline.format.shards import EpisodeRecord, ShardRecord
from pipeline.runtime.storage import open_location


def _shard(split: str, index: int, first_id: int, lengths: list[int]) -> ShardRecord:
    episodes = [
        EpisodeRecord(first_id + i, 100 + first_id + i, n, float(n) / 2, None, digest=f"d{first_id + i}")
        for i, n in enumerate(lengths)
    ]
    path = f"data/mujoco-hopper/{split}-{index:05d}.parquet"
    return ShardRecord(path, split, index, sha256="ab" * 32, num_bytes=1234 + index, episodes=episodes)


def _manifest(config: str = "mujoco-hopper") -> Manifest:
    return Manifest(
        config=config,
        suite="mujoco",
        env_id="Hopper-v5",
        make_kwargs={"a": 1},
        plan={"seed": 0, "budget": {"episodes": 6}, "test_fraction": 0.1, "planned_episodes": 6},
        provenance={"policy": "random"},
        # out of order on purpose: the written file lists train before test, by index
        shards=[_shard("test", 0, 4, [7]), _shard("train", 1, 2, [3, 4]), _shard("train", 0, 0, [5, 6])],
        dropped=[{"episode_id": 5, "reason": "episode timeout"}, {"episode_id": 1, "reason": "x"}],
    )


def test_a_manifest_written_reads_back_equal(tmp_path):
    location = open_location(str(tmp_path))
    manifest = _manifest()
    write_manifest(location, manifest)
    on_disk = json.loads((tmp_path / "meta/mujoco-hopper/manifest.json").read_text())
    assert on_disk["format_version"] == FORMAT_VERSION
    assert [(s["split"], s["index"]) for s in on_disk["shards"]] == [("train", 0), ("train", 1), ("test", 0)]
    assert [d["episode_id"] for d in on_disk["dropped"]] == [1, 5]
    assert on_disk["totals"] == {
        "train": {"episodes": 4, "steps": 18, "shards": 2},
        "test": {"episodes": 1, "steps": 7, "shards": 1},
    }
    back = read_manifest(location, "mujoco-hopper")
    assert back.to_dict() == manifest.to_dict()
    assert back.planned_episodes == 6
    assert back.shards[2].episodes[0] == EpisodeRecord(4, 104, 7, 3.5, None, digest="d4")
    assert "checkpoint_step" not in on_disk["shards"][0]["episodes"][0]  # only histories carry one


def test_learning_history_episodes_keep_their_checkpoint_step(tmp_path):
    location = open_location(str(tmp_path))
    manifest = _manifest()
    manifest.shards[0].episodes[0].checkpoint_step = 2048
    write_manifest(location, manifest)
    back = read_manifest(location, "mujoco-hopper")
    assert [e.checkpoint_step for s in back.shards for e in s.episodes] == [None, None, None, None, 2048]


def test_provenance_is_recorded():
    manifest = _manifest()
    assert set(manifest.versions) <= set(tracked_packages())
    assert {"gymnasium", "numpy", "pyarrow"} <= set(manifest.versions)
    assert manifest.versions == package_versions()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", manifest.created)
    sha = git_sha()  # this checkout is a git repository
    assert sha is not None and re.fullmatch(r"[0-9a-f]{40}", sha)
    assert manifest.git_sha == sha


@pytest.mark.parametrize("version", [0, FORMAT_VERSION + 1, None, "1"])
def test_a_manifest_of_another_format_version_is_refused_with_the_fix(tmp_path, version):
    location = open_location(str(tmp_path))
    data = _manifest().to_dict()
    if version is None:
        del data["format_version"]
    else:
        data["format_version"] = version
    location.write_json("meta/mujoco-hopper/manifest.json", data)
    with pytest.raises(PipelineError) as info:
        read_manifest(location, "mujoco-hopper")
    assert str(info.value) == (
        f"manifest of mujoco-hopper has format_version {version}, this pipeline reads {FORMAT_VERSION}: "
        "re-run the rollout with this version"
    )


def test_a_missing_or_broken_manifest_is_one_line_naming_the_file(tmp_path):
    location = open_location(str(tmp_path))
    with pytest.raises(
        PipelineError, match=r"has no meta/babyai-go-to/manifest.json: not a finished rollout"
    ):
        read_manifest(location, "babyai-go-to")
    data = _manifest().to_dict()
    del data["shards"]
    location.write_json("meta/mujoco-hopper/manifest.json", data)
    with pytest.raises(PipelineError) as info:
        read_manifest(location, "mujoco-hopper")
    assert str(info.value) == (
        f"{tmp_path}/meta/mujoco-hopper/manifest.json is unreadable ('shards'): "
        "re-run the rollout of mujoco-hopper"
    )
    (tmp_path / "meta/mujoco-hopper/manifest.json").write_text("{not json")
    with pytest.raises(PipelineError, match=r"manifest.json is unreadable \(Expecting"):
        read_manifest(location, "mujoco-hopper")


def test_dataset_configs_are_the_folders_with_a_manifest(tmp_path):
    location = open_location(str(tmp_path))
    assert dataset_configs(location) == []
    for config in ("mujoco-hopper", "babyai-go-to"):
        write_manifest(location, _manifest(config))
    (tmp_path / "meta/atari-pong/shards").mkdir(parents=True)  # started, never committed
    (tmp_path / "meta/plots").mkdir()
    assert dataset_configs(location) == ["babyai-go-to", "mujoco-hopper"]


def test_info_lists_the_configs_and_reads_back(tmp_path):
    location = open_location(str(tmp_path))
    assert read_info(location) is None
    write_manifest(location, _manifest())
    write_info(location, writer="jat-pipeline publish")
    info = read_info(location)
    assert info == DatasetInfo("jat-pipeline publish", ("mujoco-hopper",))
    assert info.format_version == FORMAT_VERSION and info.versions == package_versions()
    assert json.loads((tmp_path / "meta/info.json").read_text())["configs"] == ["mujoco-hopper"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"format_version": 0},
            "meta/info.json has format_version 0, this pipeline reads {v}: use the jat-pipeline version "
            "that wrote it, or re-run the rollout",
        ),
        (
            {"codebase_version": "v2.0"},
            "meta/info.json: unknown key(s) ['codebase_version'] (did you mean format_version?); "
            "it was not written by this pipeline",
        ),
    ],
)
def test_info_of_another_version_or_writer_is_refused(tmp_path, change, expected):
    location = open_location(str(tmp_path))
    write_info(location)
    location.write_json("meta/info.json", {**location.read_json("meta/info.json"), **change})
    with pytest.raises(PipelineError) as info:
        read_info(location)
    assert str(info.value) == f"{tmp_path}/" + expected.format(v=FORMAT_VERSION)


def test_info_that_is_not_json_names_the_fix(tmp_path):
    location = open_location(str(tmp_path))
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta/info.json").write_text("{")
    with pytest.raises(PipelineError, match=r"meta/info.json is not valid JSON \(.*\): --overwrite the run$"):
        read_info(location)
