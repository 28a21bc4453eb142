"""`pipeline.report.quality`: each config's data scored against JAT's experts, from its manifest alone."""

from __future__ import annotations

import shutil

import pytest

from pipeline.configs.datasets import ReportConfig
from pipeline.errors import PipelineError, ValidationFailed
from pipeline.format.manifest import Manifest, read_manifest
from pipeline.format.shards import EpisodeRecord, ShardRecord
from pipeline.report.quality import (
    JAT_BAR,
    QualityRow,
    below,
    dataset_quality,
    describe_policy,
    quality_row,
)
from pipeline.runtime.storage import open_location
from pipeline.tasks.registry import get_task

HOPPER = get_task("mujoco-hopper").scores


def _hopper_return(fraction: float) -> float:
    """The return scoring `fraction` on Hopper's expert-normalised scale."""
    return HOPPER.random_mean + fraction * (HOPPER.expert_mean - HOPPER.random_mean)


def _manifest(
    config: str,
    suite: str,
    train: list[tuple[float, bool | None]],
    test: list[tuple[float, bool | None]] = (),
) -> Manifest:
    """A manifest with one shard per split, holding episodes of the given (return, success)."""

    def shard(split: str, episodes: list[tuple[float, bool | None]], first: int) -> ShardRecord:
        records = [EpisodeRecord(first + i, i, 10, r, s) for i, (r, s) in enumerate(episodes)]
        return ShardRecord(f"data/{config}/{split}-00000.parquet", split, 0, "0" * 64, 1, records)

    shards = [shard("train", train, 0)] + ([shard("test", list(test), len(train))] if test else [])
    return Manifest(config, suite, "env-v0", {}, {"policy": "random"}, {"policy": "random"}, shards)


def test_a_row_scores_all_episodes_of_both_splits_against_jats_references():
    fractions = [0.5, 1.0, 1.5, 1.2]
    manifest = _manifest(
        "mujoco-hopper",
        "mujoco",
        [(_hopper_return(f), None) for f in fractions[:3]],
        [(_hopper_return(1.2), None)],
    )
    row = quality_row(manifest, reps=200, seed=0)
    assert (row.config, row.suite, row.train_episodes, row.test_episodes, row.episodes) == (
        "mujoco-hopper",
        "mujoco",
        3,
        1,
        4,
    )
    assert row.normalised == pytest.approx(1.05)
    assert row.mean_return == pytest.approx(_hopper_return(1.05))
    assert (row.expert_return, row.random_return) == (HOPPER.expert_mean, HOPPER.random_mean)
    assert row.success_rate is None  # MuJoCo records no success
    low, high = row.ci
    assert 0.5 <= low < row.normalised < high <= 1.5
    assert row.below_bar is False
    assert (row.policy_kind, row.policy, row.provenance) == ("random", "random", {"policy": "random"})


def test_the_interval_depends_on_the_seed_alone():
    manifest = _manifest(
        "mujoco-hopper", "mujoco", [(_hopper_return(f), None) for f in (0.1, 0.4, 0.7, 0.95)]
    )
    first = quality_row(manifest, reps=300, seed=1).ci
    assert quality_row(manifest, reps=300, seed=1).ci == first
    assert quality_row(manifest, reps=300, seed=2).ci != first


def test_success_rate_bar_and_variants_use_their_tasks_references():
    manifest = _manifest(
        "mujoco-hopper-top80", "mujoco", [(_hopper_return(0.85), None), (_hopper_return(0.87), None)]
    )
    row = quality_row(manifest, reps=50)
    assert row.expert_return == HOPPER.expert_mean and row.normalised == pytest.approx(0.86)
    assert row.below_bar is True and JAT_BAR == 0.9
    babyai = quality_row(
        _manifest("babyai-go-to", "babyai", [(0.9, True), (0.0, False), (0.8, True), (0.7, True)])
    )
    assert babyai.success_rate == 0.75


@pytest.mark.parametrize("config", ["atari-bowling", "atari-venture"])
def test_where_jats_expert_does_not_beat_random_the_score_is_left_undefined(config):
    row = quality_row(_manifest(config, "atari", [(30.0, None), (10.0, None)]), reps=50)
    assert (row.normalised, row.ci, row.below_bar) == (None, None, None)
    assert row.mean_return == 20.0
    assert below([row], 0.5) == []  # cannot be judged, so it does not fail a gate


def test_a_config_without_episodes_has_no_score_and_fails_every_gate():
    manifest = Manifest("mujoco-hopper", "mujoco", "Hopper-v5", {}, {"policy": "random"}, {}, [])
    row = quality_row(manifest)
    assert (row.episodes, row.mean_return, row.normalised, row.ci, row.success_rate) == (
        0,
        None,
        None,
        None,
        None,
    )
    assert below([row], -100.0) == [row]


def test_below_keeps_the_rows_under_the_threshold_in_order():
    rows = [
        quality_row(_manifest("mujoco-hopper", "mujoco", [(_hopper_return(f), None)] * 2), reps=10)
        for f in (0.3, 0.95, 0.6)
    ]
    assert [r.normalised for r in below(rows, 0.7)] == pytest.approx([0.3, 0.6])
    assert below(rows, 0.3) == [] and below(rows, 0.31) == [rows[0]]


def test_the_row_as_json():
    row = quality_row(
        _manifest("mujoco-hopper", "mujoco", [(_hopper_return(1.0), None)], [(_hopper_return(0.5), None)])
    )
    data = row.to_dict()
    assert data["episodes"] == {"train": 1, "test": 1}
    assert data["reference"] == {"expert": HOPPER.expert_mean, "random": HOPPER.random_mean}
    assert data["normalised_score"] == pytest.approx(0.75) and data["ci95"] == list(row.ci)
    assert data["below_bar"] is True and data["policy_kind"] == "random"
    assert isinstance(row, QualityRow)


@pytest.mark.parametrize(
    ("plan", "provenance", "expected"),
    [
        ({"policy": "random"}, {"policy": "random"}, "random"),
        (
            {"policy": "scripted"},
            {"policy": "babyai-bot", "minigrid": "3.2.0", "replan_timeout_s": 0.02},
            "scripted: babyai-bot (minigrid 3.2.0)",
        ),
        (
            {"policy": "expert"},
            {
                "policy": "expert",
                "backend": "sample-factory",
                "algo": "APPO",
                "steps_trained": 1000000,
                "evaluation": {"normalised": 0.953, "episodes": 20},
                "status": "accepted",
                "sample-factory": "2.1.1",
            },
            "expert: sample-factory APPO, 1,000,000 steps trained, evaluated 0.95 over 20 episodes (accepted)"
            " (sample-factory 2.1.1)",
        ),
        (
            {"policy": "expert", "history": {"snapshots": [1, 2, 3]}, "min_return_fraction": 0.8},
            {"policy": "expert", "backend": "sb3"},
            "expert: sb3, learning history, 3 snapshots, episodes scoring ≥ 0.8 kept",
        ),
        ({}, {}, "unknown"),
    ],
)
def test_describe_policy_names_what_acted_in_one_line(plan, provenance, expected):
    assert describe_policy(plan, provenance) == expected


def test_a_dataset_is_scored_per_config_in_the_order_asked(sample_dataset):
    location = open_location(str(sample_dataset))
    rows = dataset_quality(ReportConfig(str(sample_dataset), bootstrap_reps=20))
    assert [r.config for r in rows] == ["atari-breakout", "babyai-go-to", "metaworld-reach", "mujoco-hopper"]
    assert rows[3] == quality_row(read_manifest(location, "mujoco-hopper"), 20, 0)
    asked = dataset_quality(
        ReportConfig(str(sample_dataset), ("mujoco-hopper", "babyai-go-to", "mujoco-hopper"), 20)
    )
    assert [r.config for r in asked] == ["mujoco-hopper", "babyai-go-to"]  # asked twice, scored once
    assert asked[1].success_rate == 1.0 and asked[1].policy.startswith("scripted: babyai-bot")


def test_missing_empty_or_unknown_is_refused_naming_the_fix(sample_dataset, tmp_path):
    with pytest.raises(
        PipelineError, match=r"does not exist: give the folder a `pipeline rollout --out` wrote$"
    ):
        dataset_quality(ReportConfig(str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        PipelineError, match=r"holds no finished config .*record one with `pipeline rollout --out "
    ):
        dataset_quality(ReportConfig(str(tmp_path / "empty")))
    with pytest.raises(PipelineError) as info:
        dataset_quality(ReportConfig(str(sample_dataset), ("mujoco-hoper",)))
    assert str(info.value) == (
        f"{sample_dataset} has no config 'mujoco-hoper': did you mean mujoco-hopper? "
        "it holds atari-breakout, babyai-go-to, metaworld-reach, mujoco-hopper"
    )
    with pytest.raises(PipelineError, match=r"^--bootstrap-reps must be a positive integer, got 0$"):
        ReportConfig(str(sample_dataset), bootstrap_reps=0)


def test_a_config_without_a_manifest_is_refused_unless_left_out(sample_dataset, tmp_path):
    """A planned config whose manifest is gone (deleted, or its rollout never finished) fails
    validation, so the report refuses the dataset, naming the repair; the others can be named."""
    copy = tmp_path / "dataset"
    shutil.copytree(sample_dataset, copy)
    (copy / "meta" / "atari-breakout" / "manifest.json").unlink()
    with pytest.raises(
        ValidationFailed, match=r"^atari-breakout: meta/atari-breakout/manifest.json is missing.*--resume"
    ):
        dataset_quality(ReportConfig(str(copy), bootstrap_reps=5))
    others = ("babyai-go-to", "metaworld-reach", "mujoco-hopper")
    assert [r.config for r in dataset_quality(ReportConfig(str(copy), others, bootstrap_reps=5))] == list(
        others
    )
