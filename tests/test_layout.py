"""`pipeline.release.loading`: the dataset folder's README, and loading a config from a folder or a
filesystem URI."""

from __future__ import annotations

import shutil

import pytest
import yaml

from pipeline.errors import PipelineError
from pipeline.format.manifest import read_manifest
from pipeline.release.card import write_readme
from pipeline.release.loading import load_config, mirror_config
from pipeline.rollout.run import RolloutConfig, rollout
from pipeline.runtime.storage import open_location

PENDULUM, CHEETAH, HOPPER = "mujoco-pendulum", "mujoco-halfcheetah", "mujoco-hopper"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two real configs recorded in-process by two rollouts with a random policy, in about a second."""
    out = tmp_path_factory.mktemp("layout") / "dataset"
    for config, episodes in ((PENDULUM, 4), (CHEETAH, 2)):
        rollout(
            RolloutConfig(
                out=str(out), tasks=(config,), episodes=episodes, workers=0, policy="random", progress=False
            )
        )
    return out


def _header(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


def test_the_readme_maps_every_config_to_its_files(dataset, tmp_path):
    header = _header((dataset / "README.md").read_text())  # the second rollout kept the first's config
    assert header["configs"] == [
        {
            "config_name": config,
            "data_files": [
                {"split": "train", "path": f"data/{config}/train-*.parquet"},
                {"split": "test", "path": f"data/{config}/test-*.parquet"},
            ],
        }
        for config in (CHEETAH, PENDULUM)
    ]
    copy = tmp_path / "elsewhere" / dataset.name
    shutil.copytree(dataset, copy)
    (copy / "README.md").unlink()
    write_readme(open_location(str(copy)))
    # the card names its folder relatively: written anywhere else, it is the same card
    assert (copy / "README.md").read_text() == (dataset / "README.md").read_text()


def test_a_local_folder_loads_by_config_name_with_the_manifests_episodes(dataset):
    manifest = read_manifest(open_location(str(dataset)), PENDULUM)
    totals = manifest.totals()
    train = load_config(str(dataset), PENDULUM, split="train")
    assert train.num_rows == totals["train"]["episodes"] == 3
    lengths = [e.length for s in manifest.shards if s.split == "train" for e in s.episodes]
    assert [len(r) for r in train["rewards"]] == lengths
    assert set(train.column_names) == {"continuous_observations", "continuous_actions", "rewards"}
    both = load_config(str(dataset), PENDULUM)
    assert {name: d.num_rows for name, d in both.items()} == {"train": 3, "test": 1}


def test_a_uri_is_mirrored_with_checksums_then_loaded(dataset):
    test = load_config(f"file://{dataset}", PENDULUM, split="test")
    assert test.num_rows == 1
    assert test["rewards"] == load_config(str(dataset), PENDULUM, split="test")["rewards"]


def test_a_mirror_fetches_only_what_changed_and_drops_stale_shards(dataset, tmp_path):
    location = open_location(str(dataset))
    cache = tmp_path / "cache"
    root = mirror_config(location, PENDULUM, cache_dir=cache)
    assert root.parent == cache
    shards = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    assert shards == [f"data/{PENDULUM}/test-00000.parquet", f"data/{PENDULUM}/train-00000.parquet"]
    assert (root / f"meta/{PENDULUM}/manifest.json").read_bytes() == (
        dataset / f"meta/{PENDULUM}/manifest.json"
    ).read_bytes()
    assert [c["config_name"] for c in _header((root / "README.md").read_text())["configs"]] == [PENDULUM]

    train = root / f"data/{PENDULUM}/train-00000.parquet"
    kept_ns = train.stat().st_mtime_ns
    stale = root / f"data/{PENDULUM}/train-00007.parquet"  # left by an earlier rollout of this config
    stale.write_bytes(b"old")
    assert mirror_config(location, PENDULUM, cache_dir=cache) == root
    assert train.stat().st_mtime_ns == kept_ns  # already has the manifest's checksum: not fetched again
    assert not stale.exists()

    train.write_bytes(b"damaged in the cache")  # a cached copy that does not match is fetched again
    mirror_config(location, PENDULUM, cache_dir=cache)
    assert train.read_bytes() == (dataset / f"data/{PENDULUM}/train-00000.parquet").read_bytes()


def test_a_source_shard_that_does_not_match_its_manifest_is_refused(dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    shard = copy / f"data/{PENDULUM}/test-00000.parquet"
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")
    with pytest.raises(PipelineError) as info:
        mirror_config(open_location(str(copy)), PENDULUM, cache_dir=tmp_path / "cache")
    assert str(info.value) == (
        f"{copy}/data/{PENDULUM}/test-00000.parquet does not match its manifest checksum: "
        f"run `pipeline validate {copy}` and re-run the rollout of {PENDULUM}"
    )
    assert not list((tmp_path / "cache").rglob("*.partial"))  # nothing that looks complete is left


def test_a_config_the_dataset_does_not_hold_is_refused(dataset, tmp_path):
    with pytest.raises(PipelineError, match=rf"has no meta/{HOPPER}/manifest.json: not a finished rollout"):
        mirror_config(open_location(str(dataset)), HOPPER, cache_dir=tmp_path)
