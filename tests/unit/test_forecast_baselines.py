"""Each forecast baseline on a tiny hand-made log whose answer is worked out by hand."""

from __future__ import annotations

import math

import pytest

from salepulse.consumers.tools.forecast_baselines import (
    BaselineBook,
    PooledShare,
    TunedBlend,
    so_far_plus_prior,
    velocity,
)

# Two finished sales.  Lines (elapsed fraction, units), pooled: 6 of 12 units by t = 0.25, 9 of 12 by t = 0.5.
SALE_1 = [(0.1, 2.0), (0.2, 2.0), (0.4, 2.0), (0.9, 2.0)]
SALE_2 = [(0.25, 2.0), (0.5, 1.0), (0.75, 1.0)]


def test_velocity_extrapolates_linearly_and_is_undefined_before_the_open() -> None:
    assert velocity(3.0, 0.1) == pytest.approx(30.0)
    assert math.isnan(velocity(0.0, 0.0))


def test_pooled_share_over_past_sales_only() -> None:
    g = PooledShare()
    assert g(0.25) == 0.25  # nothing finished yet: linear time
    g.learn(SALE_1)
    g.learn(SALE_2)
    assert g(0.25) == pytest.approx(6 / 12)
    assert g(0.5) == pytest.approx(9 / 12)
    assert g(0.05) == 0.0
    assert g(1.0) == 1.0


def test_so_far_plus_prior_adds_the_priors_share_of_the_rest() -> None:
    # 4 units by t = 0.5 with G = 0.75 and a prior of 20: 4 + 20 * 0.25
    assert so_far_plus_prior(4.0, 20.0, 0.75) == pytest.approx(9.0)


def test_tuned_blend_recovers_known_weights_and_fits_only_what_it_was_given() -> None:
    # history built so that truth = so_far + (1 - G) (0.5 prior + 1.0 so_far / G) exactly, G = 0.5
    g = 0.5
    prior = [10.0, 40.0, 6.0, 0.0]
    so_far = [3.0, 8.0, 0.0, 2.0]
    truth = [s + (1 - g) * (0.5 * p + 1.0 * s / g) for p, s in zip(prior, so_far, strict=True)]
    tb = TunedBlend(step=0.05, upper=2.0)
    assert tb.fit(0.5, g) == (1.0, 0.0)  # no finished sale: so far + prior
    tb.add_sale(0.5, prior, so_far, truth)
    a, b = tb.fit(0.5, g)
    assert (a, b) == pytest.approx((0.5, 1.0))
    assert tb.predict(a, b, prior=20.0, so_far=5.0, g=g) == pytest.approx(5.0 + 0.5 * (10.0 + 10.0))
    assert tb.fit(0.25, 0.3) == (1.0, 0.0)  # another checkpoint has no history


def test_tuned_blend_is_l1_optimal_on_the_grid() -> None:
    prior = [10.0, 10.0, 10.0]
    so_far = [0.0, 0.0, 0.0]
    truth = [2.0, 3.0, 100.0]  # the median remaining demand is 3 = 0.6 * (1 - 0.5) * 10
    tb = TunedBlend(step=0.1)
    tb.add_sale(0.5, prior, so_far, truth)
    a, b = tb.fit(0.5, 0.5)
    assert a == pytest.approx(0.6)
    assert b == 0.0


def test_book_learns_only_after_finish() -> None:
    book = BaselineBook()
    before = book.points(0.25, prior=8.0, so_far=2.0)
    assert before == {"prior": 8.0, "velocity": 8.0, "so_far_plus_prior": 8.0, "tuned_blend": 8.0}
    book.finish({0.25: ([8.0], [2.0], [4.0])}, SALE_1 + SALE_2)
    after = book.points(0.25, prior=8.0, so_far=2.0)
    assert after["so_far_plus_prior"] == pytest.approx(2.0 + 8.0 * 0.5)
    assert after["tuned_blend"] == pytest.approx(4.0)  # the one past series is fitted exactly
    assert book.params(0.25)["G"] == pytest.approx(0.5)
