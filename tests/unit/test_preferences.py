"""Unit tests of salepulse.streams.domain.preferences (pure logic) plus a doctest run of the module."""

from __future__ import annotations

import doctest
import importlib
import math
import random

import numpy as np
import pytest

import salepulse.streams.domain.preferences as prefs
from salepulse.streams.domain.preferences import (
    AGAIN_OFFSET,
    PRODUCT_FEATURES,
    SALE_FEATURES,
    DecayedCounter,
    MemberState,
    PreferenceConfig,
    PreferenceModel,
    ProductCandidates,
    SaleCandidates,
    event_weight,
    in_stock_mask,
    open_sales_mask,
    price_band,
    rank_products,
    rank_sales,
    state_size_bytes,
)

T0_MS = 1_700_000_000_000


def _ev(member: str, sku: str, kind: str = "browse", dt_s: float = 0.0, **kw) -> dict:
    d = {
        "member_id": member,
        "sku": sku,
        "kind": kind,
        "ts": T0_MS + int(dt_s * 1000),
        "brand": kw.pop("brand", "b-" + sku),
        "category": kw.pop("category", "cat"),
        "price": 30.0,
        "sale_id": kw.pop("sale_id", "s-" + sku),
    }
    d.update(kw)
    return d


def test_doctests() -> None:
    attempted = failed = 0
    for name in ("state", "covisit", "candidates", "ranker", "model"):
        res = doctest.testmod(importlib.import_module(f"{prefs.__name__}.{name}"), optionflags=doctest.ELLIPSIS)
        attempted, failed = attempted + res.attempted, failed + res.failed
    assert attempted > 15
    assert failed == 0


# ---------------------------------------------------------------------------- features / weights


def test_event_weights_order_and_remove_negative() -> None:
    assert event_weight("browse") < event_weight("cart") < event_weight("order")
    assert event_weight("cart", action="remove") < 0
    assert event_weight("order", quantity=4) > event_weight("order", quantity=1)


def test_price_band() -> None:
    assert price_band(15) == price_band(12) != price_band(40)
    assert price_band(0) == "" and price_band(None) == ""


def test_product_features_built_from_state() -> None:
    pm = PreferenceModel()
    st = pm.update(None, _ev("m", "a", brand="nike", category="shoes"))
    st = pm.update(st, _ev("m", "b", "cart", 10, brand="puma", category="hats", quantity=1, action="add"))
    c = ProductCandidates.build(
        ["a", "b", "z"],
        ["nike", "puma", "nike"],
        ["shoes", "hats", "shoes"],
        [30.0, 30.0, 500.0],
        [0.0, 0.0, 4.0],
    )
    x = pm.ranker.product_features(st, c, now=(T0_MS / 1000) + 20)
    f = {name: x[:, i] for i, name in enumerate(PRODUCT_FEATURES)}
    assert f["seen"][0] > 0 and f["seen"][1] == pytest.approx(1.0) and f["seen"][2] == 0
    assert f["cart"].tolist() == [0.0, 1.0, 0.0]
    assert f["brand"][2] == f["brand"][0] > 0  # z is of a brand the member viewed
    assert f["category"][2] > 0
    assert f["band"][0] == pytest.approx(1.0) and f["band"][2] == 0
    assert f["pop"].tolist() == [0.0, 0.0, 1.0]
    assert f["covisit"][0] > 0  # a was viewed together with b (member's own items)


# ---------------------------------------------------------------------------- decay / bounded state


def test_decay_half_life() -> None:
    c = DecayedCounter(half_life=100.0, cap=10)
    c.add("k", 8.0, t=0.0)
    assert c.get("k", t=100.0) == pytest.approx(4.0)
    assert c.get("k", t=300.0) == pytest.approx(1.0)
    c.add("j", 1.0, t=200.0)
    assert c.get("k") == pytest.approx(2.0)
    c.add("late", 1.0, t=100.0)  # a late event is decayed to the counter's time
    assert c.get("late") == pytest.approx(0.5)


def test_cap_evicts_weakest() -> None:
    c = DecayedCounter(half_life=1e9, cap=3)
    for k, w in [("a", 5.0), ("b", 1.0), ("c", 3.0), ("d", 2.0)]:
        c.add(k, w, t=0.0)
    assert set(c.weights) == {"a", "c", "d"}


def test_member_state_bounded_and_serialisable() -> None:
    cfg = PreferenceConfig()
    pm = PreferenceModel(cfg)
    rng = random.Random(1)
    st = None
    for i in range(3000):
        kind = rng.choice(["browse", "browse", "cart", "order"])
        st = pm.update(
            st,
            _ev(
                "m",
                f"sku{rng.randrange(10_000)}",
                kind,
                i * 10,
                brand=f"b{rng.randrange(500)}",
                category=f"c{rng.randrange(500)}",
                price=rng.uniform(1, 1000),
            ),
        )
    assert len(st.items.weights) <= cfg.item_cap
    assert len(st.brands.weights) <= cfg.brand_cap
    assert len(st.categories.weights) <= cfg.category_cap
    assert len(st.bands.weights) <= cfg.band_cap
    assert len(st.sales.weights) <= cfg.sale_cap
    assert len(st.cart) <= cfg.cart_cap
    size = state_size_bytes(st)
    assert size < 4000
    back = MemberState.from_bytes(st.to_bytes(), cfg)
    assert back.to_dict() == st.to_dict()
    assert state_size_bytes(back) == size


def test_cart_remove_and_order_clear_the_cart() -> None:
    pm = PreferenceModel()
    st = pm.update(None, _ev("m", "a", "cart", quantity=2, action="add"))
    st = pm.update(st, _ev("m", "a", "cart", 1, quantity=1, action="remove"))
    assert st.cart["a"][0] == 1
    st = pm.update(st, _ev("m", "a", "cart", 2, quantity=1, action="remove"))
    assert "a" not in st.cart
    assert st.items.get("a") < 3.0  # remove lowered the item weight
    st = pm.update(st, _ev("m", "b", "cart", 3, action="add"))
    st = pm.update(
        st,
        {
            "member_id": "m",
            "kind": "order",
            "ts": T0_MS + 4000,
            "lines": [{"sku": "b", "sale_id": "s-b", "brand": "acme", "quantity": 1, "unit_price": 9.0}],
        },
    )
    assert st.cart == {} and "acme" in st.ordered_brands.weights


# ---------------------------------------------------------------------------- filters


def test_filter_functions() -> None:
    assert open_sales_mask(np.array([0, 5, 0]), np.array([10, 9, 3]), 4).tolist() == [True, False, False]
    assert open_sales_mask(np.array([0]), np.array([4]), 4).tolist() == [False]  # ends_at is exclusive
    assert in_stock_mask(np.array([0, 1, -2])).tolist() == [False, True, False]


def test_closed_sales_never_returned() -> None:
    pm = PreferenceModel()
    st = pm.update(None, _ev("m", "a", sale_id="closed", brand="nike"))
    sales = SaleCandidates.from_records(
        [
            {
                "sale_id": "closed",
                "brand": "nike",
                "categories": ["cat"],
                "popularity": 100.0,
                "starts_at": T0_MS - 10_000,
                "ends_at": T0_MS + 1000,
            },
            {
                "sale_id": "future",
                "brand": "nike",
                "categories": ["cat"],
                "popularity": 100.0,
                "starts_at": T0_MS + 50_000,
                "ends_at": T0_MS + 90_000,
            },
            {
                "sale_id": "open",
                "brand": "x",
                "categories": [],
                "popularity": 0.0,
                "starts_at": T0_MS - 10_000,
                "ends_at": T0_MS + 90_000,
            },
        ]
    )
    now = T0_MS + 2000
    for state in (st, None):
        assert [r.id for r in pm.rank_sales(state, sales, 10, now_ms=now)] == ["open"]
        assert [r.id for r in rank_sales(state, sales, 10, now_ms=now, model=pm)] == ["open"]


def test_sold_out_products_never_returned() -> None:
    pm = PreferenceModel()
    st = pm.update(None, _ev("m", "gone"))
    st = pm.update(st, _ev("m", "gone", "cart", 1, action="add"))
    c = ProductCandidates.from_records(
        [
            {
                "sku": "gone",
                "brand": "b-gone",
                "category": "cat",
                "price": 30.0,
                "popularity": 99.0,
                "stock": 0,
            },
            {"sku": "ok", "brand": "x", "category": "y", "price": 1.0, "popularity": 0.0, "stock": 2},
        ]
    )
    for state in (st, None):
        assert [r.id for r in pm.rank_products(state, c, 10)] == ["ok"]
        assert [r.id for r in rank_products(state, c, 10, model=pm)] == ["ok"]


# ---------------------------------------------------------------------------- cold start / reasons


def test_cold_start_is_popularity_trending() -> None:
    pm = PreferenceModel()
    pops = [3.0, 10.0, 1.0, 7.0]
    c = ProductCandidates.build(list("abcd"), ["x"] * 4, ["y"] * 4, [1.0] * 4, pops)
    ranked = pm.rank_products(None, c, 3)
    assert [r.id for r in ranked] == ["b", "d", "a"]
    assert {r.reason for r in ranked} == {"trending now"}
    assert [r.id for r in pm.rank_products(pm.new_state("new"), c, 3)] == ["b", "d", "a"]


def test_reason_strings() -> None:
    pm = PreferenceModel()
    st = pm.update(None, _ev("m", "viewed", category="shoes", brand="v"))
    st = pm.update(st, _ev("m", "carted", "cart", 5, action="add", brand="c", category="bags"))
    st = pm.update(
        st,
        {
            "member_id": "m",
            "kind": "order",
            "ts": T0_MS + 10_000,
            "lines": [{"sku": "old", "brand": "loved", "category": "toys", "price": 30.0}],
        },
    )
    c = ProductCandidates.build(
        ["carted", "viewed", "new-loved", "hot"],
        ["c", "v", "loved", "zz"],
        ["bags", "shoes", "other", "other2"],
        [30.0, 30.0, 999.0, 999.0],
        [0.0, 0.0, 0.0, 50.0],
    )
    reasons = {r.id: r.reason for r in pm.rank_products(st, c, 4, now_ms=T0_MS + 11_000)}
    assert reasons["carted"] == "in your cart"
    assert reasons["viewed"] in {"you viewed it recently", "like items you viewed"}
    assert reasons["new-loved"] in {"brand you ordered", "brand you like"}
    assert reasons["hot"] == "trending now"


# ---------------------------------------------------------------------------- vectorised == slow reference


def _slow_product_score(
    pm: PreferenceModel,
    st: MemberState,
    sku: str,
    brand: str,
    cat: str,
    price: float,
    pop: float,
    max_pop: float,
    max_basket: float = 0.0,
) -> float:
    """One candidate's score from the feature definitions, key by key (no arrays)."""
    w = pm.ranker.product_weights

    def rel(weights: dict[str, float], key: str) -> float:
        top = max(weights.values(), default=0.0)
        return weights.get(key, 0.0) / top if top > 0 else 0.0

    top_items = st.items.top(10)
    vmax = top_items[0][1] if top_items else 0.0
    num = norm = 0.0
    for item, v in top_items:
        if v <= 0:
            continue
        norm += v / vmax
        num += (v / vmax) * pm.ranker.covisit.conditional(item, sku)
    touched = st.touched()
    cats = st.recent_categories
    cat_recent = 1.0 / (1 + cats.index(cat)) if cat in cats else 0.0
    pop_f = np.log1p(pop) / np.log1p(max_pop) if max_pop > 0 else 0.0
    feats = {
        "recency": 1.0 / (1 + touched.index(sku)) if sku in touched else 0.0,
        "seen": rel(st.items.weights, sku),
        "cart": 1.0 if sku in st.cart else 0.0,
        "covisit": num / norm if norm else 0.0,
        "basket": _slow_basket(pm, st, sku) / max_basket if max_basket > 0 else 0.0,
        "session": rel(pm.ranker.sessions.scores(st.session_items()), sku),
        "category": rel(st.categories.weights, cat),
        "category_recent": cat_recent,
        "category_trend": cat_recent * (1 + pop_f) / 2,
        "brand": rel(st.brands.weights, brand),
        "brand_ordered": rel(st.ordered_brands.weights, brand),
        "band": rel(st.bands.weights, price_band(price)),
        "pop": pop_f,
        "fresh": 0.0,  # these candidates carry no first-event times
    }
    if sku in touched:
        return AGAIN_OFFSET + sum(v * feats[f.split(".", 1)[1]] for f, v in w.items() if f.startswith("again."))
    return sum(v * feats[f.split(".", 1)[1]] for f, v in w.items() if f.startswith("new."))


def _slow_basket(pm: PreferenceModel, st: MemberState, sku: str) -> float:
    """Cosine co-purchase of ``sku`` with the member's last 20 items, pair by pair."""
    b = pm.ranker.baskets
    return sum(b.row(q).get(sku, 0.0) / math.sqrt(b.orders[q] * b.orders[sku])
               for q in st.touched()[:20] if b.row(q).get(sku))


def test_vectorised_product_scoring_equals_reference() -> None:
    pm = PreferenceModel()
    rng = random.Random(3)
    states = {}
    for i in range(400):
        m = f"m{rng.randrange(20)}"
        sku = f"s{rng.randrange(30)}"
        states[m] = pm.update(
            states.get(m),
            _ev(
                m,
                sku,
                rng.choice(["browse", "cart", "order"]),
                i,
                brand=f"b{int(sku[1:]) % 7}",
                category=f"c{int(sku[1:]) % 5}",
                price=float(int(sku[1:]) * 3 + 1),
                action="add",
            ),
        )
    for i in range(40):  # multi-line orders: the same-basket co-purchase
        m = f"m{rng.randrange(20)}"
        skus = [f"s{rng.randrange(30)}" for _ in range(rng.randrange(2, 6))]
        states[m] = pm.update(states.get(m), {"member_id": m, "kind": "order", "ts": T0_MS + 500_000 + i,
                                              "lines": [{"sku": x, "price": 1.0} for x in skus]})
    # make the blend weights non-trivial by learning a few choices
    c = ProductCandidates.build(
        [f"s{j}" for j in range(30)],
        [f"b{j % 7}" for j in range(30)],
        [f"c{j % 5}" for j in range(30)],
        [float(j * 3 + 1) for j in range(30)],
        [float(rng.randrange(10)) for _ in range(30)],
    )
    for st in list(states.values())[:5]:
        _, cols = pm.ranker.score_products(st, c)
        pm.ranker.learn_products(cols, [rng.randrange(30)])
    assert pm.ranker.product_weights != PreferenceModel().ranker.product_weights
    st = states["m1"]
    fast, _ = pm.ranker.score_products(st, c)
    max_pop = float(c.popularity.max())
    max_basket = max(_slow_basket(pm, st, c.sku[j]) for j in range(30))
    assert max_basket > 0
    slow = [
        _slow_product_score(
            pm, st, c.sku[j], c.brand[j], c.category[j], float(c.price[j]), float(c.popularity[j]), max_pop,
            max_basket,
        )
        for j in range(30)
    ]
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)
    ranked = pm.rank_products(st, c, 5)
    assert [r.id for r in ranked] == [c.sku[j] for j in sorted(range(30), key=lambda j: (-slow[j], j))[:5]]


def test_vectorised_sale_scoring_equals_reference() -> None:
    pm = PreferenceModel()
    st = None
    for i, (sku, brand, cat) in enumerate(
        [("a", "nike", "shoes"), ("b", "puma", "hats"), ("c", "nike", "bags")]
    ):
        st = pm.update(st, _ev("m", sku, "browse", i, brand=brand, category=cat, sale_id="sale-" + brand))
    sales = SaleCandidates.build(
        ["sale-nike", "sale-puma", "sale-x"],
        ["nike", "puma", "x"],
        [["shoes", "bags"], [], ["hats"]],
        [1.0, 2.0, 3.0],
    )
    fast, x = pm.ranker.score_sales(st, sales)
    w = pm.ranker.sale_weights

    def rel(counter: DecayedCounter, key: str) -> float:
        return counter.weights.get(key, 0.0) / max(counter.weights.values())

    for j in range(3):
        feats = {
            "sale_seen": rel(st.sales, sales.sale_id[j]),
            "cart": 0.0,
            "brand": rel(st.brands, sales.brand[j]),
            "brand_ordered": 0.0,
            "category": max((rel(st.categories, cat) for cat in sales.categories[j]), default=0.0),
            "pop": np.log1p(sales.popularity[j]) / np.log1p(3.0),
        }
        assert fast[j] == pytest.approx(sum(w[f] * feats[f] for f in SALE_FEATURES))
    assert x.shape == (3, len(SALE_FEATURES))


# ---------------------------------------------------------------------------- re-engagement floor (issue #10)

def _again_log(pm: PreferenceModel, choose_most_viewed: bool, rounds: int = 60) -> tuple[MemberState, list[str]]:
    """A member views old items often and new ones once; then picks either the latest or the most viewed item.

    Returns the member state and the touched items, most recent first."""
    skus = [f"s{j}" for j in range(6)]
    c = ProductCandidates.build(skus, ["b"] * 6, ["c"] * 6, [10.0] * 6, [1.0] * 6)
    st = None
    t = 0.0
    for r in range(rounds):
        # s0 gets many views long ago (high decayed weight), the rest one view each, most recent last
        order = ["s0"] * 4 + [s for s in skus[1:] if s != f"s{1 + r % 5}"] + [f"s{1 + r % 5}"]
        for s in order:
            t += 1.0
            st = pm.update(st, _ev("m", s, "browse", t))
        latest = st.touched()[0]
        target = "s0" if choose_most_viewed else latest
        _, cols = pm.ranker.score_products(st, c, t)
        pm.ranker.learn_products(cols, [skus.index(target)])
    assert st is not None
    return st, st.touched()


def test_reengagement_ranks_like_repeat_when_recency_alone_is_right() -> None:
    pm = PreferenceModel()
    skus = [f"s{j}" for j in range(6)]
    c = ProductCandidates.build(skus, ["b"] * 6, ["c"] * 6, [10.0] * 6, [1.0] * 6)
    st, touched = _again_log(pm, choose_most_viewed=False)
    ranked = pm.rank_products(st, c, 6)
    assert [r.id for r in ranked if r.part == "again"] == touched  # exactly the repeat baseline's order
    assert pm.ranker.again.weights()["recency"] >= 0.0


def test_recency_weight_never_negative_and_gate_keeps_a_winning_blend() -> None:
    pm = PreferenceModel()
    skus = [f"s{j}" for j in range(6)]
    c = ProductCandidates.build(skus, ["b"] * 6, ["c"] * 6, [10.0] * 6, [1.0] * 6)
    st, touched = _again_log(pm, choose_most_viewed=True, rounds=200)
    # the learner pushes recency down here; the weight that scores is projected at 0, never below
    assert pm.ranker.again.weights()["recency"] >= 0.0
    assert pm.ranker.again_gate.use_learnt  # the blend beat recency prequentially, so it orders "again"
    ranked = pm.rank_products(st, c, 6)
    assert ranked[0].id == "s0" and touched[0] != "s0"


def test_again_gate_survives_a_checkpoint() -> None:
    pm = PreferenceModel()
    _again_log(pm, choose_most_viewed=True, rounds=200)
    back = PreferenceModel()
    back.ranker.load_weights(pm.ranker.to_dict())
    assert back.ranker.again_gate.use_learnt
    np.testing.assert_allclose(back.ranker.again_vector(), pm.ranker.again_vector())


def test_hard_negatives_teach_what_the_list_got_wrong() -> None:
    # Chosen rows have affinity 1 and middling popularity; the rows the blend ranks first are the most popular
    # ones with no affinity; most rows are neither. Against uniform negatives, popularity looks like a reason
    # to be chosen (the chosen row is more popular than a random one); against the top of the list it is not.
    from salepulse.streams.domain.preferences.ranker import Blend

    n = 200
    x = np.zeros((n, 2))  # columns: aff, pop
    x[:20, 1] = 1.0  # the popular head
    x[100:, 1] = 0.02
    x[50, :] = (1.0, 0.5)  # the chosen row

    def pop_weight(hard: int) -> float:
        b = Blend({"aff": 1.0, "pop": 1.0})
        rng = random.Random(0)
        for _ in range(200):
            b.learn(x, x @ b.vector(), [50], rng, 8, hard)
        return b.weights()["pop"]

    assert pop_weight(hard=0) > 1.0  # uniform negatives: popularity gains
    assert pop_weight(hard=4) < 1.0  # half hard: the popular head, shown above the chosen row, loses


def test_new_gate_orders_by_the_hard_negative_blend_only_when_it_wins() -> None:
    from salepulse.streams.domain.preferences.ranker import Ranker

    def log(ranker: Ranker, chosen_is_popular: bool, rounds: int = 120) -> None:
        n = 200
        cols = {name: np.zeros(n) for name in (*ranker.again.names, *ranker.new.names, "touched")}
        cols["pop"][:20] = 1.0  # the popular head
        cols["category_recent"][50] = 0.2  # a weak sign of the member's taste, middling popularity
        cols["pop"][50] = 0.5
        for _ in range(rounds):
            ranker.learn_products(cols, [3] if chosen_is_popular else [50])

    mine = Ranker(hard_negatives=4)
    log(mine, chosen_is_popular=False)
    assert mine.new_blend() is mine.new_hard  # it ranked the chosen row first, the uniform blend did not
    back = Ranker(hard_negatives=4)
    back.load_weights(mine.to_dict())
    assert back.new_blend() is back.new_hard
    np.testing.assert_allclose(back.new_blend().vector(), mine.new_blend().vector())
    popular = Ranker(hard_negatives=4)
    log(popular, chosen_is_popular=True)
    assert popular.new_blend() is popular.new  # no significant gain: the uniform blend keeps the part
