"""The "new for you" learning aids: popularity-proportional negatives and the baseline-exact category trend,
each on a tiny hand-made log with a known answer."""

from __future__ import annotations

import math
import random

import numpy as np

from salepulse.consumers.tools.recommend_baselines import History, Items, category_trend
from salepulse.streams.domain.preferences import MemberState, ProductCandidates
from salepulse.streams.domain.preferences.ranker import Blend, Ranker, _draw, f_category_trend_log


def test_popular_negatives_stop_popularity_crowding_out_taste() -> None:
    # The chosen row has the member's taste (aff 1) and is popular; so is the popular head, without the taste;
    # most rows are neither. Against uniform negatives the chosen row beats a random row on popularity too, so
    # popularity gains weight; drawn in proportion to popularity, the negatives are as popular as the chosen row
    # and only the taste tells it apart.
    n = 200
    x = np.zeros((n, 2))  # columns: aff, pop
    x[:20, 1] = 1.0
    x[50, :] = (1.0, 1.0)

    def weights(popular: bool) -> dict[str, float]:
        b = Blend({"aff": 1.0, "pop": 1.0})
        rng = random.Random(0)
        for _ in range(200):
            b.learn(x, np.empty(0), [50], rng, 8, sampling=x[:, 1] if popular else None)
        return b.weights()

    uniform, popular = weights(False), weights(True)
    assert uniform["pop"] > 1.5
    assert popular["pop"] == 1.0  # every negative is as popular as the chosen row: no gradient on pop
    assert popular["aff"] > uniform["aff"]


def test_draw_follows_the_sampling_weights() -> None:
    rng = random.Random(1)
    got = _draw(4, 4000, rng, np.array([0.0, 1.0, 3.0, 0.0]))
    counts = np.bincount(got, minlength=4)
    assert counts[0] == counts[3] == 0
    assert abs(counts[2] / counts[1] - 3.0) < 0.4
    assert set(_draw(4, 50, rng, np.zeros(4))) <= {0, 1, 2, 3}  # all-zero weights fall back to uniform


def test_category_trend_feature_is_the_baseline_rescaled() -> None:
    # Member touched categories x, then y: y is the latest (weight 1), x the one before (1/2). Candidates:
    # a in x with 3 recent events, b in y with none, c in z (never touched) with 9.
    st = MemberState("m")
    st.observe(sku="i1", kind="browse", t=0.0, category="x")
    st.observe(sku="i2", kind="browse", t=1.0, category="y")
    c = ProductCandidates.build(["a", "b", "c"], ["", "", ""], ["x", "y", "z"], [1.0] * 3, [3.0, 0.0, 9.0])
    r = Ranker()
    got = f_category_trend_log(r._ctx(st, c, 2.0))
    a = 0.5 * (1 + math.log(4.0))
    np.testing.assert_allclose(got, [1.0, 1.0 / a, 0.0])
    # the same order as the evaluation's category_trend baseline on the same log
    items = Items(window=100.0)
    h = History()
    for key, cat, t in (("i1", "x", 0.0), ("i2", "y", 1.0)):
        i = items.index(key, cat)
        h.touch(i, int(items.cat[i]), t, 60.0)
    for key, cat, n_ev in (("a", "x", 3), ("b", "y", 0), ("c", "z", 9)):
        i = items.index(key, cat)
        for _ in range(n_ev):
            items.seen(i, 2.0)
    base = category_trend(h, items, np.array([2, 3, 4]))
    np.testing.assert_allclose(got, base / base.max())
