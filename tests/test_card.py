"""The dataset card: a YAML header `datasets` loads configs from, and statistics people can read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from publish_helpers import CONFIGS

from pipeline.format.manifest import read_manifest
from pipeline.format.schema import SHARD_GLOB
from pipeline.release.card import CardConfig, card_configs, render_card, render_from_stats
from pipeline.report.plots import returns_histogram, suite_summary
from pipeline.report.stats import episode_stats
from pipeline.runtime.storage import open_location
from pipeline.tasks.registry import get_task


@pytest.fixture
def dataset(sample_dataset: Path) -> Path:
    """conftest's four-task dataset (read-only)."""
    return sample_dataset


def _split(card: str) -> tuple[dict, str]:
    _, header, body = card.split("---", 2)
    return yaml.safe_load(header), body


def test_local_card_loads_with_datasets_and_shows_statistics(dataset: Path, tmp_path: Path) -> None:
    from datasets import load_dataset

    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    location = open_location(str(copy))
    card = render_card(location, list(CONFIGS))
    header, body = _split(card)
    assert header["license"] == "apache-2.0" and "reinforcement-learning" in header["task_categories"]
    assert {"jat", "babyai", "metaworld", "mujoco"} <= set(header["tags"])
    for entry in header["configs"]:
        for files in entry["data_files"]:
            assert files["path"] == SHARD_GLOB.format(config=entry["config_name"], split=files["split"])
    (copy / "README.md").write_text(card)
    loaded = load_dataset(str(copy), "mujoco-hopper")
    manifest = read_manifest(location, "mujoco-hopper")
    assert loaded["train"].num_rows == manifest.totals()["train"]["episodes"]
    assert loaded["test"].num_rows == manifest.totals()["test"]["episodes"]
    stats = episode_stats(manifest, get_task("mujoco-hopper"))
    train = stats.splits["train"]
    row = (
        f"| train | {train.episodes} | {train.steps} | {train.shards} | "
        f"{train.episode_return.mean:.4g} ± {train.episode_return.std:.4g} |"
    )
    assert row in body
    # relative: the folder's own name, never the absolute path of the machine that wrote it
    assert f'load_dataset("ds", "{CONFIGS[0]}")  # this folder\'s path' in body and str(tmp_path) not in body
    assert "stats.json" not in body  # not published to this folder: not advertised


def test_card_keeps_configs_it_only_knows_from_an_earlier_card(dataset: Path) -> None:
    location = open_location(str(dataset))
    stats = episode_stats(read_manifest(location, "babyai-go-to"), get_task("babyai-go-to"))
    foreign = {"config_name": "custom-extra", "data_files": [{"split": "train", "path": "extra/*.parquet"}]}
    card = render_from_stats(
        "org/name",
        [CardConfig("babyai-go-to", stats, stats_file=True), CardConfig("custom-extra", yaml_entry=foreign)],
    )
    assert card_configs(card) == [
        {
            "config_name": "babyai-go-to",
            "data_files": [
                {"split": "train", "path": "data/babyai-go-to/train-*.parquet"},
                {"split": "test", "path": "data/babyai-go-to/test-*.parquet"},
            ],
        },
        foreign,
    ]
    _, body = _split(card)
    assert "| custom-extra |" in body and "statistics not published" in body
    assert 'hf_hub_download("org/name", "meta/babyai-go-to/stats.json"' in body


def test_figures_are_deterministic_pngs(dataset: Path) -> None:
    location = open_location(str(dataset))
    stats = [episode_stats(read_manifest(location, c), get_task(c)) for c in CONFIGS]
    first, again = returns_histogram(stats[1]), returns_histogram(stats[1])
    assert first.startswith(b"\x89PNG\r\n\x1a\n") and first == again
    assert suite_summary("mujoco", stats) == suite_summary("mujoco", stats)
    assert suite_summary("mujoco", stats) != suite_summary("babyai", stats)


def test_a_folder_rewritten_in_place_loads_its_new_rows_not_the_cached_ones(tmp_path: Path) -> None:
    """`datasets` caches a local folder by name, config and card: the card must change with the data."""
    from datasets import load_dataset

    from pipeline.rollout.run import RolloutConfig, rollout

    out = tmp_path / "rewritten"  # a name no other test uses: the cache is shared by the session
    for episodes, overwrite in ((6, False), (12, True)):
        config = RolloutConfig(
            out=str(out),
            tasks=("babyai-go-to",),
            episodes=episodes,
            workers=0,
            overwrite=overwrite,
            progress=False,
        )
        rollout(config)
        loaded = load_dataset(str(out), "babyai-go-to")
        stored = read_manifest(open_location(str(out)), "babyai-go-to").totals()
        assert {s: loaded[s].num_rows for s in loaded} == {s: t["episodes"] for s, t in stored.items()}
        header, _ = _split((out / "README.md").read_text())
        (info,) = header["dataset_info"]
        assert info["config_name"] == "babyai-go-to" and info["download_size"] > 0
        assert {s["name"]: s["num_examples"] for s in info["splits"]} == {
            s: t["episodes"] for s, t in stored.items()
        }

    # datasets reads the entry (an entry it finds malformed is ignored with a warning): it checks counts
    from datasets.exceptions import NonMatchingSplitsSizesError

    train = stored["train"]["episodes"]
    card = (out / "README.md").read_text()
    (out / "README.md").write_text(
        card.replace(f"num_examples: {train}\n", f"num_examples: {train + 1}\n", 1)
    )
    with pytest.raises(NonMatchingSplitsSizesError):
        load_dataset(str(out), "babyai-go-to")
