"""The band's tails are calibrated on the PIT that decides them (``P(R <= r)`` under p10, ``P(R < r)`` over p90)."""

from __future__ import annotations

import random

import pytest

from salepulse.streams.domain.forecast.calibration import Calibration


def _series(rng: random.Random) -> tuple[float, float, float, float]:
    """A predictive law with an atom ``p0`` at "no more units" and a continuous part above, and an outcome drawn
    from it: (p0, randomised PIT, P(R <= r), P(R < r)), with ``F(r)`` the CDF at the outcome."""
    p0 = rng.uniform(0.0, 0.6)
    if rng.random() < p0:  # no more units: the randomised PIT is spread over the atom
        return p0, rng.uniform(0.0, p0), p0, 0.0
    f = rng.uniform(p0, 1.0)
    return p0, f, f, f


def test_lower_level_puts_a_tenth_of_the_outcomes_under_p10() -> None:
    rng = random.Random(5)
    cal = Calibration(grid=4, bins=200, prior_weight=1.0, upper_from_sold=0.0)
    randomised = Calibration(grid=4, bins=200, prior_weight=1.0, upper_from_sold=0.0)
    for _ in range(4000):
        _, u, lower, upper = _series(rng)
        cal.add(0.5, u=u, predicted=1.0, true=1.0, u_lower=lower, u_upper=upper)
        randomised.add(0.5, u=u, predicted=1.0, true=1.0)
    test = [_series(rng) for _ in range(4000)]

    def tails(c: Calibration) -> tuple[float, float]:
        p10, p90 = c.levels(0.5, (0.1, 0.9))
        # under p10 when the CDF at the outcome is below its level (an outcome on the atom is at "units so far",
        # and p10 is above it only when the level is above the atom); over p90 when P(R < r) reaches its level
        below = sum(lower < p10 for _, _, lower, _ in test) / len(test)
        above = sum(upper > p90 for _, _, _, upper in test) / len(test)
        return below, above

    below, above = tails(cal)
    assert below == pytest.approx(0.10, abs=0.02)
    assert above == pytest.approx(0.10, abs=0.02)
    old_below, _ = tails(randomised)
    assert old_below < 0.03  # the randomised PIT is calibrated, yet almost nothing falls under p10


def test_median_level_still_reads_the_randomised_pit() -> None:
    cal = Calibration(grid=4, bins=100, prior_weight=1.0)
    for i in range(1000):
        cal.add(0.5, u=(i % 100) / 100 + 0.005, predicted=1.0, true=1.0, u_lower=0.99, u_upper=0.99)
    assert cal.levels(0.5, (0.5,))[0] == pytest.approx(0.5, abs=0.02)
