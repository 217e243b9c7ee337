"""The live ranking learns its blends from carts and orders (issue 10): the pure update, the sampled rows, the
candidates the worker hands it, and the snapshot that carries the weights over a restart."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from salepulse.streams.domain.catalog import Catalog
from salepulse.streams.domain.preferences import PreferenceModel, ProductCandidates, Ranker, SaleCandidates
from salepulse.streams.domain.preferences.teach import TeachBudget, learning_rows, rows_of
from salepulse.streams.domain.shop_view import ShopBoard
from salepulse.streams.runtime.candidates import CandidateCache, ChoiceCandidates
from salepulse.streams.runtime.ranker_store import RankerStore

T0 = 1_764_403_200_000


def _products(n: int = 600) -> ProductCandidates:
    # the member's category "mine" is a tenth of the sale and never popular; the rest is popular
    cats = ["mine" if i % 10 == 0 else f"other{i % 7}" for i in range(n)]
    pop = [0.0 if c == "mine" else float(1 + i % 50) for i, c in enumerate(cats)]
    return ProductCandidates.build([f"p{i}" for i in range(n)], ["b"] * n, cats, [20.0] * n, pop)


def _teach(pm: PreferenceModel, products: ProductCandidates | None, sales: SaleCandidates | None,
           rounds: int = 60) -> None:
    rng = np.random.default_rng(1)
    mine = [s for s, c in zip(products.sku if products else [f"p{i}" for i in range(0, 600, 10)],
                              products.category if products else ["mine"] * 60, strict=True) if c == "mine"]
    for r in range(rounds):
        member = f"m{r}"
        t = T0 + r * 60_000
        state = None
        for j, sku in enumerate(rng.choice(mine, 3, replace=False)):  # browse the category first
            state = pm.update(state, {"member_id": member, "sku": str(sku), "category": "mine", "brand": "b",
                                      "sale_id": "s1", "kind": "browse", "ts": t + j})
        chosen = str(rng.choice(mine))  # then cart a product of it never viewed
        pm.update(state, {"member_id": member, "sku": chosen, "category": "mine", "brand": "b",
                          "sale_id": "s1", "kind": "cart", "action": None, "ts": t + 10}, products, sales)


def test_blend_weights_move_toward_what_members_choose_only_when_candidates_are_given() -> None:
    products = _products()
    sales = SaleCandidates.build(["s0", "s1", "s2"], ["x", "b", "y"], [["other0"], ["mine"], ["other1"]],
                                 [50.0, 0.0, 30.0])
    initial = PreferenceModel().ranker.to_dict()
    blind = PreferenceModel()
    _teach(blind, None, None)
    assert blind.ranker.to_dict() == initial  # nothing to choose among: the blends keep their priors
    assert blind.ranker_updates == {"products": 0, "sales": 0}
    pm = PreferenceModel()
    _teach(pm, products, sales)
    assert pm.ranker_updates == {"products": 60, "sales": 60}
    new, before = pm.ranker.new.weights(), initial["new"]
    # the chosen items are of the member's recent category and never popular: those weights move accordingly
    assert new["category_recent"] > before["category_recent"]
    assert new["pop"] < before["pop"]
    sale = pm.ranker.sale.weights()
    assert sale["pop"] < initial["sale"]["pop"] and sale["brand"] > initial["sale"]["brand"]


def test_sampled_rows_carry_the_feature_values_of_the_full_ranking() -> None:
    products = _products()
    pm = PreferenceModel()
    _teach(pm, products, None, rounds=5)
    state = pm.update(None, {"member_id": "x", "sku": "p10", "category": "mine", "brand": "b", "kind": "browse",
                             "ts": T0 + 10**7})
    pos = rows_of(products.sku_h, ["p20"])
    keep = np.concatenate([pos, rows_of(products.sku_h, state.touched()), [int(np.argmax(products.popularity))]])
    rows = learning_rows(len(products), keep, 32, np.random.default_rng(0))
    assert 32 < rows.size < len(products)
    full = pm.ranker.product_columns(state, products, T0 / 1000 + 10**4)
    part = pm.ranker.product_columns(state, products.take(rows), T0 / 1000 + 10**4)
    for name, column in full.items():
        np.testing.assert_allclose(part[name], column[rows], err_msg=name)


def test_choice_candidates_are_the_sale_in_stock_products_and_the_open_sales_reused_until_stale() -> None:
    catalog = Catalog()
    for sale_id, brand in (("s1", "acme"), ("s2", "zeta")):
        catalog.apply("Sale", {"sale_id": sale_id, "brand": brand, "starts_at": T0, "ends_at": T0 + 3_600_000,
                               "products": [{"sku": f"{sale_id}-k{i}", "name": "K", "category": "shoes",
                                             "price": 10.0, "stock": 0 if i == 2 else 5} for i in range(4)]})
    now = [0.0]
    # the HTTP ranking's cache reuses live arrays for LIVE_TTL_S: on the same fake clock
    worker = SimpleNamespace(catalog=catalog, board=ShopBoard(catalog), preferences=PreferenceModel(),
                             extensions={"candidates": CandidateCache(clock=lambda: now[0])})
    choices = ChoiceCandidates(worker, max_age_s=5.0, clock=lambda: now[0])
    cart = {"member_id": "m", "sale_id": "s1", "sku": "s1-k0", "kind": "cart", "action": None, "ts": T0 + 60_000}
    products, sales = choices(cart)
    assert products.sku == ["s1-k0", "s1-k1", "s1-k3"]  # s1-k2 is sold out
    assert sorted(sales.sale_id) == ["s1", "s2"]
    assert choices({**cart, "kind": "browse"}) == (None, None)
    assert choices({**cart, "action": "remove"}) == (None, None)
    assert choices({**cart, "sale_id": "nope"}) == (None, None)
    again, _ = choices({**cart, "kind": "order"})
    assert again is products and choices.refreshes == 2  # reused within max_age_s
    now[0] = 6.0
    assert choices(cart)[0] is not products and choices.refreshes == 4
    broke = ChoiceCandidates(worker, budget=TeachBudget(share=0.0))  # no time to teach: nothing is handed over
    assert broke(cart) == (None, None) and broke.budget.skipped == 1


def test_snapshot_keeps_a_weight_the_monotone_projection_hides(tmp_path: Path) -> None:
    ranker = Ranker()
    ranker.again.load({**ranker.again.weights(), "recency": -0.5})
    assert ranker.again.weights()["recency"] == 0.0  # what scores
    store = RankerStore(tmp_path / "ranker" / "w.json")
    store.save(ranker)
    back = Ranker()
    assert RankerStore(store.path).restore(back)
    assert back.again.unclipped()["recency"] == -0.5  # restored as learnt, so it can still climb back
    assert back.to_dict() == ranker.to_dict()
    store.path.write_text("{not json")
    assert not RankerStore(store.path).restore(Ranker())
    assert json.loads(json.dumps(ranker.to_dict())) == ranker.to_dict()
