"""In-process latency, throughput and size of the member preferences (``streams.bench`` calls :func:`bench`).

``prefs`` is the preferences module under test (default :mod:`salepulse.streams.domain.preferences`), so an older
version can be measured in the same process, before/after.
"""

from __future__ import annotations

import random
import time
from types import ModuleType
from typing import Any

import numpy as np
from tqdm import tqdm

import salepulse.streams.domain.preferences as _prefs
from salepulse.streams.domain.preferences.teach import TeachBudget


def _simulated_member(
    model: Any, rng: random.Random, member: str, n_events: int, t0: float, n_skus: int = 50_000
) -> Any:
    st = model.new_state(member)
    t = t0
    for _ in range(n_events):
        t += rng.expovariate(1 / 600.0)
        b = rng.randrange(200)
        st.observe(
            sku=f"sku{rng.randrange(n_skus)}",
            brand=f"brand{b}",
            category=f"cat{b % 40}.{rng.randrange(5)}",
            price=rng.uniform(5, 300),
            sale_id=f"sale{b}",
            kind=rng.choices(["browse", "cart", "order"], [0.9, 0.07, 0.03])[0],
            t=t,
        )
    return st


def bench(
    n_members: int = 100_000, calls: int = 2000, progress: bool = True, prefs: ModuleType = _prefs
) -> dict[str, Any]:
    """Ranking latency (200 sales / 5,000 products), update throughput, bytes per member."""
    rng = random.Random(7)
    model = prefs.PreferenceModel()
    t0 = 1_700_000_000.0
    # warm the co-visitation with a replay of simulated sessions
    upd = []
    for m in range(2000):
        t = t0
        for _ in range(20):
            t += 30
            b = rng.randrange(200)
            upd.append(
                {
                    "member_id": f"w{m}",
                    "sku": f"sku{rng.randrange(50_000)}",
                    "brand": f"brand{b}",
                    "category": f"cat{b % 40}.{rng.randrange(5)}",
                    "sale_id": f"sale{b}",
                    "price": rng.uniform(5, 300),
                    "kind": "browse",
                    "ts": int(t * 1000),
                }
            )
    states: dict[str, Any] = {}
    ts = time.perf_counter()
    for e in upd:
        states[e["member_id"]] = model.update(states.get(e["member_id"]), e)
    update_eps = len(upd) / (time.perf_counter() - ts)
    member = _simulated_member(model, rng, "heavy", 400, t0)  # saturated caps
    sales = prefs.SaleCandidates.build(
        [f"sale{i}" for i in range(200)],
        [f"brand{i}" for i in range(200)],
        [[f"cat{i % 40}.{j}" for j in range(3)] for i in range(200)],
        [rng.random() * 50 for _ in range(200)],
        [0.0] * 200,
        [2e13] * 200,
    )
    prods = prefs.ProductCandidates.build(
        [f"sku{rng.randrange(50_000)}" for _ in range(5000)],
        [f"brand{rng.randrange(200)}" for _ in range(5000)],
        [f"cat{rng.randrange(40)}.{rng.randrange(5)}" for _ in range(5000)],
        [rng.uniform(5, 300) for _ in range(5000)],
        [rng.random() * 20 for _ in range(5000)],
        stock=[rng.randrange(0, 20) for _ in range(5000)],
    )
    now_ms = member.last_t * 1000

    def lat(fn) -> dict[str, float]:
        out = []
        for _ in range(calls):
            a = time.perf_counter()
            fn()
            out.append((time.perf_counter() - a) * 1000)
        return {
            "p50_ms": round(float(np.percentile(out, 50)), 3),
            "p99_ms": round(float(np.percentile(out, 99)), 3),
        }

    lat_sales = lat(lambda: model.rank_sales(member, sales, 20, now_ms))
    lat_prods = lat(lambda: model.rank_products(member, prods, 50, now_ms))
    sizes = np.empty(n_members)
    ts = time.perf_counter()
    for m in tqdm(range(n_members), desc="members", disable=not progress, mininterval=1.0):
        n = min(400, int(rng.paretovariate(1.2) * 5))  # heavy-tailed activity, most members few events
        sizes[m] = prefs.state_size_bytes(_simulated_member(model, rng, f"member{m}", n, t0))
    sim_s = time.perf_counter() - ts
    return {
        "rank_sales_200": lat_sales,
        "rank_products_5000": lat_prods,
        "update_events_per_s": round(update_eps),
        "bytes_per_member": {
            "members": n_members,
            "mean": round(float(sizes.mean()), 1),
            "p99": float(np.percentile(sizes, 99)),
            "max": float(sizes.max()),
            "saturated_member": prefs.state_size_bytes(member),
            "total_mb": round(float(sizes.sum()) / 1e6, 1),
        },
        "simulation_s": round(sim_s, 1),
    }




def bench_learning(n_members: int = 1000, events_per_member: int = 20, n_products: int = 5000,
                   progress: bool = True, prefs: ModuleType = _prefs) -> dict[str, Any]:
    """Update throughput of the live learner, events/s, on one stream (90 % browse, 7 % cart, 3 % order) four
    ways: ``no_candidates`` (member state only, as the worker learnt before issue 10), ``budgeted`` (as the worker
    does now: carts and orders teach the blends on a sample of the candidates, within the time budget of
    ``TeachBudget``), ``sampled`` (every cart and order teaches) and ``all_rows`` (every one, on all candidates)."""
    rng = random.Random(11)
    n_sales = 200
    skus = [f"sku{i}" for i in range(n_products)]
    cats = [f"cat{rng.randrange(40)}.{rng.randrange(5)}" for _ in skus]
    prods = prefs.ProductCandidates.build(skus, ["brand0"] * n_products, cats,
                                          [rng.uniform(5, 300) for _ in skus], [rng.random() * 20 for _ in skus])
    sales = prefs.SaleCandidates.build([f"sale{i}" for i in range(n_sales)], [f"brand{i}" for i in range(n_sales)],
                                       [[f"cat{i % 40}.{j}" for j in range(3)] for i in range(n_sales)],
                                       [rng.random() * 50 for _ in range(n_sales)])
    t0 = 1_700_000_000.0
    stream = []
    for m in range(n_members):
        t = t0 + m
        for _ in range(events_per_member):
            t += 30
            i = rng.randrange(n_products)
            stream.append({"member_id": f"m{m}", "sku": skus[i], "brand": "brand0", "category": cats[i],
                           "sale_id": "sale0", "price": 50.0, "ts": int(t * 1000),
                           "kind": rng.choices(["browse", "cart", "order"], [0.90, 0.07, 0.03])[0]})
    rng.shuffle(stream)  # members interleave, as on a partition; each member's own order does not matter here
    stream.sort(key=lambda e: e["ts"])
    out: dict[str, Any] = {"events": len(stream), "products": n_products, "sales": n_sales}
    for mode in ("no_candidates", "budgeted", "sampled", "all_rows"):
        model = prefs.PreferenceModel(learn_sample=0) if mode == "all_rows" else prefs.PreferenceModel()
        budget = TeachBudget(spent=lambda m=model: m.learn_seconds) if mode == "budgeted" else None
        states: dict[str, Any] = {}
        ts = time.perf_counter()
        for e in tqdm(stream, desc=mode, disable=not progress, mininterval=1.0):
            positive = mode != "no_candidates" and e["kind"] != "browse" and (budget is None or budget.allow())
            states[e["member_id"]] = model.update(states.get(e["member_id"]), e,
                                                  prods if positive else None, sales if positive else None)
        out[mode] = {"events_per_s": round(len(stream) / (time.perf_counter() - ts)),
                     "ranker_updates": dict(getattr(model, "ranker_updates", {})),
                     "over_budget": budget.skipped if budget is not None else 0}
    return out
