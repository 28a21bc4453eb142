"""`pipeline.report.plots`: the card's figures, drawn from statistics alone, byte-for-byte reproducible."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from pipeline.format.manifest import read_manifest
from pipeline.report.plots import returns_histogram, suite_summary
from pipeline.report.stats import episode_stats
from pipeline.report.stats_types import ConfigStats, NormalisedScore
from pipeline.runtime.storage import open_location
from pipeline.tasks.registry import get_task

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def stats(sample_dataset: Path) -> dict[str, ConfigStats]:
    location = open_location(str(sample_dataset))
    configs = ("babyai-go-to", "metaworld-reach", "mujoco-hopper", "atari-breakout")
    return {c: episode_stats(read_manifest(location, c), get_task(c)) for c in configs}


def _size(png: bytes) -> tuple[int, int]:
    assert png.startswith(PNG)
    return Image.open(io.BytesIO(png)).size


def _with_score(stats: ConfigStats, config: str, mean: float | None) -> ConfigStats:
    train = dataclasses.replace(stats.splits["train"], normalised_score=NormalisedScore(mean, 0.1))
    return dataclasses.replace(stats, config=config, splits={**stats.splits, "train": train})


def test_the_returns_histogram_is_a_750_by_320_png_and_the_same_for_the_same_stats(stats):
    hopper = stats["mujoco-hopper"]
    first = returns_histogram(hopper)
    assert _size(first) == (750, 320)
    assert returns_histogram(hopper) == first
    read_back = ConfigStats.from_dict(json.loads(json.dumps(hopper.to_dict())), "stats.json")
    assert returns_histogram(read_back) == first  # as redrawn later from the published stats.json


def test_the_png_carries_no_software_version_or_date(stats):
    png = returns_histogram(stats["mujoco-hopper"])
    image = Image.open(io.BytesIO(png))
    assert "Software" not in image.info and "Creation Time" not in image.info
    assert b"Matplotlib" not in png and b"matplotlib" not in png


def test_other_returns_or_references_draw_another_histogram(stats):
    hopper = stats["mujoco-hopper"]
    base = returns_histogram(hopper)
    train = hopper.splits["train"]
    counts = (*train.histogram[:-1], train.histogram[-1] + 3)
    more = dataclasses.replace(
        hopper, splits={**hopper.splits, "train": dataclasses.replace(train, histogram=counts)}
    )
    assert returns_histogram(more) != base
    moved = dataclasses.replace(hopper.reference_scores, expert=hopper.reference_scores.expert + 100)
    assert returns_histogram(dataclasses.replace(hopper, reference_scores=moved)) != base
    assert returns_histogram(stats["babyai-go-to"]) != base


def test_a_config_with_one_split_still_draws(stats):
    hopper = stats["mujoco-hopper"]
    only_train = dataclasses.replace(hopper, splits={"train": hopper.splits["train"]})
    png = returns_histogram(only_train)
    assert _size(png) == (750, 320) and png != returns_histogram(hopper)


def test_the_suite_summary_grows_with_its_configs_and_ignores_other_suites(stats):
    one = suite_summary("mujoco", list(stats.values()))
    assert _size(one) == (700, 148)  # 1.2 in + 0.28 in per config, at 100 dpi
    assert one == suite_summary("mujoco", [stats["mujoco-hopper"]])  # other suites are left out
    hopper = stats["mujoco-hopper"]
    three = [hopper, _with_score(hopper, "mujoco-walker", 0.4), _with_score(hopper, "mujoco-ant", 0.9)]
    png = suite_summary("mujoco", three)
    assert _size(png) == (700, 204)
    assert suite_summary("mujoco", three[::-1]) == png  # rows are sorted by config, not by input order


def test_other_scores_draw_another_summary(stats):
    hopper = stats["mujoco-hopper"]
    assert suite_summary("mujoco", [_with_score(hopper, hopper.config, 0.2)]) != suite_summary(
        "mujoco", [_with_score(hopper, hopper.config, 0.8)]
    )


def test_an_undefined_score_or_an_empty_suite_still_draws(stats):
    undefined = _with_score(stats["atari-breakout"], "atari-bowling", None)
    assert _size(suite_summary("atari", [undefined])) == (700, 148)
    assert _size(suite_summary("atari", [])) == (700, 148)  # room for one row, none drawn


def test_the_return_axis_is_the_datas_and_references_beyond_it_are_marked_at_its_edge(stats):
    """A random Hopper (returns ~20) against JAT's expert (1859): the axis ran to 1859 and the bars
    were slivers; now it spans the data, the expert is an arrow at the right edge, random a line."""
    import numpy as np
    from matplotlib.figure import Figure

    from pipeline.report.plots import _mark_references

    hopper = stats["mujoco-hopper"]
    edges = np.asarray(hopper.histogram_edges)
    assert hopper.reference_scores.expert > 10 * edges[-1]  # the sample's random policy is far below
    ax = Figure().add_subplot()
    _mark_references(ax, edges, hopper)
    low, high = ax.get_xlim()
    assert low < edges[0] and edges[-1] < high < edges[-1] + 0.1 * (edges[-1] - edges[0]) + 1e-9
    texts = [t.get_text() for t in ax.texts]
    assert texts == [f"JAT expert ({hopper.reference_scores.expert:.4g}) →"], texts
    lines = [line.get_xdata()[0] for line in ax.get_lines()]
    random = hopper.reference_scores.random
    assert lines == ([random] if low <= random <= high else []), lines
