"""The budget an expert below JAT's level needs, read from its learning curve (experts/budget.py)."""

from __future__ import annotations

import math

import pytest

from experts.budget import MAX_FACTOR, TARGET, estimate_budget

RANDOM, EXPERT = -100.0, 900.0  # normalised = (return + 100) / 1000


def _curve(points: list[tuple[float, float]]) -> list[dict[str, float]]:
    """Rows as the backends write them, from (steps, normalised score) pairs."""
    return [{"steps": s, "mean_return": RANDOM + n * (EXPERT - RANDOM)} for s, n in points]


def _estimate(curve, evaluated, steps_trained):
    return estimate_budget(
        curve, random_mean=RANDOM, expert_mean=EXPERT, evaluated=evaluated, steps_trained=steps_trained
    )


def test_a_log_linear_curve_gives_the_steps_where_its_line_crosses_the_target():
    # +0.2 per tenfold steps: 0.5 at 1M, so 0.9 at 1M * 10 ** (0.4 / 0.2) = 100M
    curve = _curve([(10**e, 0.5 + 0.2 * (e - 6)) for e in (4, 4.5, 5, 5.25, 5.5, 5.75, 6)])
    estimate = _estimate(curve, evaluated=0.5, steps_trained=1_000_000)
    assert estimate.slope_per_decade == pytest.approx(0.2)
    assert estimate.steps == pytest.approx(100_000_000, rel=1e-6)
    assert estimate.short() == "~100.0M steps"


def test_the_line_is_anchored_at_the_evaluation_not_the_training_curve():
    """Deterministic evaluation often beats the stochastic training return: the gate's score counts."""
    curve = _curve([(10**e, 0.3 + 0.2 * (e - 6)) for e in (4.5, 4.75, 5, 5.25, 5.5, 5.75, 6)])
    estimate = _estimate(curve, evaluated=0.7, steps_trained=1_000_000)
    assert estimate.steps == pytest.approx(10_000_000, rel=1e-6)


def test_only_the_second_half_of_the_curve_sets_the_slope():
    early = [(10**e, 0.0) for e in (3, 3.5, 4, 4.5, 5)]  # nothing learnt at first
    late = [(10**e, 0.1 * (e - 5)) for e in (5.2, 5.4, 5.6, 5.8, 6)]
    estimate = _estimate(_curve(early + late), evaluated=0.1, steps_trained=1_000_000)
    assert estimate.slope_per_decade == pytest.approx(0.1)


def test_nothing_to_estimate_at_the_target():
    curve = _curve([(10**e, 0.9) for e in (4, 5, 6, 7)])
    assert _estimate(curve, evaluated=TARGET, steps_trained=10**7) is None


EXPONENTS = (4, 4.5, 5, 5.5, 6, 6.5, 7, 7.5)


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        ([(10**e, 0.4) for e in EXPONENTS], "flat over the last half"),
        ([(10**e, 0.6 - 0.1 * e) for e in EXPONENTS], "flat over the last half"),
        ([(10**4, 0.1), (10**5, 0.3)], "curve too short"),
        ([], "curve too short"),
    ],
)
def test_a_curve_that_cannot_tell_says_why_instead_of_a_number(points, reason):
    estimate = _estimate(_curve(points), evaluated=0.4, steps_trained=10**7)
    assert estimate.steps is None and reason in estimate.reason and estimate.short() == estimate.reason


def test_a_far_target_is_capped_and_said_to_be_more():
    curve = _curve([(10**e, 0.015 * (e - 4)) for e in EXPONENTS])
    estimate = _estimate(curve, evaluated=0.02, steps_trained=10**6)
    assert estimate.steps == int(10**6 * MAX_FACTOR) and estimate.short().startswith(">")
    assert math.isfinite(estimate.slope_per_decade)
