"""Normalisation and rliable-style aggregates."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.model.metrics import aggregate, human_normalised, iqm, normalised, stratified_bootstrap_ci
from pipeline.tasks.registry import Scores, get_task


def test_iqm_drops_the_outer_quartiles():
    assert iqm(np.arange(8.0)) == pytest.approx(np.mean([2, 3, 4, 5]))
    assert iqm(np.array([[0.0, 100.0], [1.0, 2.0]])) == pytest.approx(1.5)


def test_normalisation_uses_the_registry_references():
    spec = get_task("metaworld-reach")
    s = spec.scores
    assert normalised(s, [s.random_mean, s.expert_mean]) == pytest.approx([0.0, 1.0])
    breakout = get_task("atari-breakout").scores
    assert human_normalised(breakout, [breakout.human_mean]) == pytest.approx([1.0])
    assert normalised(Scores(expert_mean=1.0, random_mean=2.0), [3.0]) is None  # undefined, not 1.0


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(1)
    matrix = rng.normal(0.5, 0.2, size=(20, 3))
    low, high = stratified_bootstrap_ci(matrix, iqm, reps=500)
    assert low < iqm(matrix) < high
    assert high - low < 0.3
    agg = aggregate("metaworld", "expert", {f"t{i}": matrix[:, i].tolist() for i in range(3)}, reps=300)
    assert agg.tasks == 3 and agg.episodes == 60
    assert agg.mean_ci[0] < agg.mean < agg.mean_ci[1]
    assert aggregate("x", "expert", {}, reps=10) is None
