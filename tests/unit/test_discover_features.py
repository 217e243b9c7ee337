"""The "new for you" challenger: popularity-proportional negatives and the gate that adopts them only when they
win, each on a tiny hand-made log with a known answer."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from salepulse.streams.domain.preferences import PreferenceModel, ProductCandidates
from salepulse.streams.domain.preferences.baskets import Baskets
from salepulse.streams.domain.preferences.ranker import Blend, Ranker, _draw


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


def _log(ranker: Ranker, chosen: int, rounds: int = 150) -> None:
    # 200 "new" rows: a popular head of 20 (0-19), 30 rows weakly in the member's categories and less popular
    # (20-49), and a cold tail (50-199).
    n = 200
    cols = {name: np.zeros(n) for name in (*ranker.again.names, *ranker.new.names, "touched")}
    cols["pop"][:20] = 1.0
    cols["pop"][20:50] = 0.2
    cols["category_recent"][20:50] = 0.3
    cols["pop"][50:] = 0.01
    for _ in range(rounds):
        ranker.learn_products(cols, [chosen])


def test_the_challenger_orders_new_for_you_only_when_it_wins() -> None:
    r = Ranker()
    _log(r, chosen=30, rounds=150)
    assert r.new_gate.n == 150  # both blends scored every choice before learning it
    # against popular negatives popularity loses weight, so far here that the cold tail rises above the
    # member's categories; the uniform blend ranks the chosen rows better and keeps the part
    assert r.new_hard.weights()["pop"] < 0.0 < r.new.weights()["pop"]
    assert r.new_gate.s1 < 0.0
    assert r.new_blend() is r.new
    back = Ranker()
    back.load_weights(r.to_dict())
    assert back.new_gate.n == 150 and back.new_blend() is back.new
    off = Ranker(popular_negatives=False)
    _log(off, chosen=30)
    assert off.new_gate.n == 0 and off.new_blend() is off.new  # no challenger: one blend learns, as before


# ------------------------------------------------------------------------------ same-basket co-purchase


def _order(pm: PreferenceModel, states: dict, member: str, skus: list[str], t_s: int) -> None:
    states[member] = pm.update(states.get(member), {
        "member_id": member, "kind": "order", "ts": t_s * 1000,
        "lines": [{"sku": s, "category": "c", "price": 2.0} for s in skus]})


def test_baskets_count_orders_holding_both_items_and_score_by_cosine() -> None:
    b = Baskets()
    for basket in (["a", "b", "c"], ["a", "b"], ["b", "a", "a"], ["d"]):
        b.observe(basket)
    assert b.orders == {"a": 3.0, "b": 3.0, "c": 1.0}  # a one-line order pairs nothing and counts nothing
    assert b.row("a") == {"b": 3.0, "c": 1.0}
    got = b.scores(["a"])
    assert got["b"] == pytest.approx(3 / math.sqrt(3 * 3)) and got["c"] == pytest.approx(1 / math.sqrt(3 * 1))


def test_new_for_you_ranks_what_others_bought_with_the_members_last_basket() -> None:
    # Others bought "lamp" with "shade" in the same order three times, "vase" once; the member bought a shade.
    # Both candidates are equally popular and in the member's category: only the co-purchase separates them.
    pm = PreferenceModel()
    states: dict = {}
    for i, other in enumerate(("u1", "u2", "u3")):
        _order(pm, states, other, ["shade", "lamp", f"x{i}"], 100 + i)
    _order(pm, states, "u4", ["shade", "vase"], 200)
    _order(pm, states, "me", ["shade"], 300)
    c = ProductCandidates.build(["vase", "lamp", "shade"], ["", "", ""], ["c", "c", "c"], [2.0] * 3, [1.0] * 3)
    _, cols = pm.ranker.score_products(states["me"], c, 301.0)
    # orders holding shade 4, lamp 3, vase 1: cosine 3/sqrt(4*3) and 1/sqrt(4*1), relative to the best candidate
    np.testing.assert_allclose(cols["basket"], [(1 / 2) / (3 / math.sqrt(12)), 1.0, 0.0])
    ranked = pm.rank_products(states["me"], c, 3, now_ms=301_000)
    assert [(r.id, r.part) for r in ranked] == [("shade", "again"), ("lamp", "new"), ("vase", "new")]
    assert ranked[1].reason == "bought together with your items"


def test_single_item_events_teach_no_basket() -> None:
    pm = PreferenceModel()
    states: dict = {}
    for i, sku in enumerate(("a", "b", "a", "c")):
        states["m"] = pm.update(states.get("m"), {"member_id": "m", "sku": sku, "kind": "order", "ts": i * 1000})
    assert pm.ranker.baskets.orders == {}


# ------------------------------------------------------------------------------ freshness


def test_new_for_you_puts_the_newer_item_first_when_nothing_else_differs() -> None:
    # A member bought "old"-category items; "x" first sold a day ago, "y" 30 days ago, equally popular and in the
    # same category: -log1p(age in days) is the only difference.
    pm = PreferenceModel()
    now = 100 * 86400.0
    st = pm.update(None, {"member_id": "m", "sku": "a", "kind": "order", "category": "c", "ts": (now - 60) * 1000})
    c = ProductCandidates.build(["y", "x"], ["", ""], ["c", "c"], [2.0, 2.0], [1.0, 1.0])
    c.first_seen = np.array([now - 30 * 86400.0, now - 86400.0])
    _, cols = pm.ranker.score_products(st, c, now)
    np.testing.assert_allclose(cols["fresh"], [-math.log(31.0), -math.log(2.0)])
    assert [r.id for r in pm.rank_products(st, c, 2, now_ms=now * 1000)] == ["x", "y"]
    assert [r.id for r in pm.rank_products(st, c.take(np.array([0, 1])), 2, now_ms=now * 1000)] == ["x", "y"]
    c.first_seen = None  # unknown first events: no freshness, the order falls back to position
    assert not pm.ranker.score_products(st, c, now)[1]["fresh"].any()
