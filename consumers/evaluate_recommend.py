"""Prequential (test-then-learn) evaluation of the personalised ranking of :mod:`salepulse.streams.preferences`.

Events are replayed in time order. Before a cart add or a purchase is learnt, the candidates are ranked with
the SAME :class:`salepulse.streams.preferences.PreferenceModel` the live agent uses and the chosen item is looked up in
the ranking; then the model learns the event (blend weights, member state, co-visitation).

Tasks
    product  the carted/bought product among the products with any event in the preceding 24 h;
             online-retail: each invoice of a returning customer as a next basket (Recall@20 over its lines).
    sale     (REES46 only, a sale is a brand there) the brand of that product among brands active in 24 h.
Baselines on the same candidates: ``popular`` (all-time event counts so far) and ``trending`` (counts in the
last hour); ties broken by the most recent event.

Run: ``python -m salepulse.consumers.evaluate_recommend --dataset rees46`` (``--bench`` for latency/size figures).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import random
import re
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from salepulse.streams.preferences import (
    MemberState,
    PopularityTracker,
    PreferenceConfig,
    PreferenceModel,
    ProductCandidates,
    SaleCandidates,
    _topk,
    key_hash,
    price_band,
    state_size_bytes,
)

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_PATHS = {
    "rees46": DATA_DIR / "rees46-ecommerce-behavior-sample" / "2019-Oct.csv.gz",
    "taobao": DATA_DIR / "taobao-user-behavior-sample" / "UserBehavior.csv.gz",
    "online-retail": DATA_DIR / "uci-online-retail" / "online_retail_2010-12-01_2011-10-31.csv.gz",
}
KS = (5, 20)
DAY = 86400.0
HOUR = 3600.0


@dataclass(slots=True)
class Line:
    """One product of an event."""

    sku: str
    brand: str
    category: str
    price: float
    quantity: int


@dataclass(slots=True)
class Event:
    """A replayed event: a browse/fav/cart of one product, or an order with one or more lines."""

    t: float
    member: str
    kind: str
    lines: list[Line]


# ------------------------------------------------------------------------------------------------ loaders


def _open(path: Path):
    return gzip.open(path, "rt", newline="", encoding="utf-8") if str(path).endswith(".gz") else open(path)


def load_rees46(path: Path) -> list[Event]:
    """REES46: view->browse, cart->cart, purchase->order. Category = category_id (always present)."""
    kinds = {"view": "browse", "cart": "cart", "purchase": "order", "remove_from_cart": "cart"}
    out = []
    with _open(path) as f:
        for r in csv.DictReader(f):
            t = datetime.strptime(r["event_time"][:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            kind = kinds.get(r["event_type"])
            if kind is None:
                continue
            price = float(r["price"] or 0.0)
            out.append(
                Event(
                    t.timestamp(),
                    r["user_id"],
                    kind,
                    [Line(r["product_id"], r["brand"], r["category_id"], price, 1)],
                )
            )
    out.sort(key=lambda e: e.t)
    return out


def load_taobao(path: Path) -> list[Event]:
    """Taobao: pv->browse, fav->fav, cart->cart, buy->order; no brand nor price."""
    kinds = {"pv": "browse", "fav": "fav", "cart": "cart", "buy": "order"}
    out = []
    with _open(path) as f:
        for user, item, cat, beh, ts in csv.reader(f):
            out.append(Event(float(ts), user, kinds[beh], [Line(item, "", cat, 0.0, 1)]))
    out.sort(key=lambda e: e.t)
    return out


_PRODUCT_CODE = re.compile(r"^\d{5}")


def load_online_retail(path: Path) -> list[Event]:
    """Online retail: one order event per invoice of a known customer; cancellations, non-product codes
    (POST, D, M, DOT, BANK CHARGES, ...), non-positive quantities/prices and empty customers skipped.
    Category = the first 3 digits of the StockCode (the shop's own families)."""
    invoices: dict[str, Event] = {}
    with _open(path) as f:
        for r in csv.DictReader(f):
            inv, code, cust = r["InvoiceNo"], r["StockCode"].strip(), r["CustomerID"]
            if not cust or inv.startswith("C") or not _PRODUCT_CODE.match(code):
                continue
            q, p = int(r["Quantity"]), float(r["UnitPrice"] or 0.0)
            if q <= 0 or p <= 0:
                continue
            ev = invoices.get(inv)
            if ev is None:
                t = datetime.strptime(r["InvoiceDate"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
                ev = invoices[inv] = Event(t.timestamp(), str(int(float(cust))), "order", [])
            ev.lines.append(Line(code, "", code[:3], p, q))
    out = list(invoices.values())
    out.sort(key=lambda e: e.t)
    return out


LOADERS = {"rees46": load_rees46, "taobao": load_taobao, "online-retail": load_online_retail}


# ------------------------------------------------------------------------------------------------ registries


class _Registry:
    """Growable arrays of everything seen so far (items or brands): hashes, counts, last event time."""

    def __init__(self, pop_half_life: float) -> None:
        self.index: dict[str, int] = {}
        self.keys: list[str] = []
        self.cap = 1024
        self.h = np.zeros(self.cap, np.int64)
        self.brand_h = np.zeros(self.cap, np.int64)
        self.cat_h = np.zeros(self.cap, np.int64)
        self.band_h = np.zeros(self.cap, np.int64)
        self.price = np.zeros(self.cap)
        self.last = np.full(self.cap, -np.inf)
        self.count = np.zeros(self.cap)
        self.count_1h = np.zeros(self.cap)
        self.window: deque[tuple[float, int]] = deque()
        self.pop = PopularityTracker(pop_half_life)
        self.cats: list[set[str]] = []
        self.brand: list[str] = []
        self.sku_obj = np.empty(self.cap, dtype=object)

    def get(self, key: str, brand: str = "", cat: str = "", price: float = 0.0) -> int:
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.keys)
            self.keys.append(key)
            self.cats.append(set())
            self.brand.append(brand)
            if i >= self.cap:
                self.cap *= 2
                for name in ("h", "brand_h", "cat_h", "band_h", "price", "count", "count_1h"):
                    a = getattr(self, name)
                    setattr(self, name, np.concatenate([a, np.zeros_like(a)]))
                self.last = np.concatenate([self.last, np.full(self.last.size, -np.inf)])
                self.sku_obj = np.concatenate([self.sku_obj, np.empty(self.sku_obj.size, dtype=object)])
            self.h[i] = key_hash(key)
            self.sku_obj[i] = key
            self.brand_h[i] = key_hash(brand)
            self.cat_h[i] = key_hash(cat)
            self.band_h[i] = key_hash(price_band(price))
            self.price[i] = price
        return i

    def expire(self, t: float) -> None:
        w = self.window
        while w and w[0][0] < t - HOUR:
            self.count_1h[w.popleft()[1]] -= 1.0

    def seen(self, i: int, t: float) -> None:
        self.last[i] = t
        self.count[i] += 1.0
        self.count_1h[i] += 1.0
        self.window.append((t, i))
        self.pop.add(i, 1.0, t)

    def active(self, t: float, horizon: float = DAY) -> np.ndarray:
        n = len(self.keys)
        return np.flatnonzero(self.last[:n] >= t - horizon)

    def baselines(self, idx: np.ndarray, t: float) -> dict[str, np.ndarray]:
        """Baseline scores; a fraction < 1 from the last event time breaks count ties (recent first)."""
        rec = np.clip((self.last[idx] - (t - DAY)) / (DAY + 1.0), 0.0, 0.999)
        return {"popular": self.count[idx] + rec, "trending": self.count_1h[idx] + rec}


# ------------------------------------------------------------------------------------------------ metrics


class _Scores:
    """Accumulates HitRate@K, MRR@K, NDCG@20 (and Recall@20 for baskets) per method."""

    def __init__(self, basket: bool) -> None:
        self.basket = basket
        self.n = 0
        self.sums: dict[str, dict[str, float]] = {}

    def add(self, method: str, ranks: list[int], size: int) -> None:
        """``ranks``: 1-based ranks of the relevant items present among the candidates; ``size``: how many
        items were relevant in total (those missing from the candidates count as misses)."""
        s = self.sums.setdefault(method, {})
        best = min(ranks) if ranks else math.inf
        for k in KS:
            s[f"hit@{k}"] = s.get(f"hit@{k}", 0.0) + (best <= k)
            s[f"mrr@{k}"] = s.get(f"mrr@{k}", 0.0) + (1.0 / best if best <= k else 0.0)
        dcg = sum(1.0 / math.log2(r + 1) for r in ranks if r <= 20)
        idcg = sum(1.0 / math.log2(r + 1) for r in range(1, min(size, 20) + 1))
        s["ndcg@20"] = s.get("ndcg@20", 0.0) + (dcg / idcg if idcg else 0.0)
        if self.basket:
            s["recall@20"] = s.get("recall@20", 0.0) + sum(r <= 20 for r in ranks) / max(size, 1)

    def result(self) -> dict[str, dict[str, float]]:
        return {m: {k: round(v / max(self.n, 1), 4) for k, v in s.items()} for m, s in self.sums.items()}


def _rank_of(scores: np.ndarray, pos: int) -> int:
    """1-based rank of ``pos``, ties as in :func:`salepulse.streams.preferences._topk` (lower position first)."""
    sp = scores[pos]
    return int((scores > sp).sum() + (scores[:pos] == sp).sum()) + 1


def _ranks(scores: np.ndarray, positives: list[int]) -> list[int]:
    if len(positives) == 1:
        return [_rank_of(scores, positives[0])]
    top = _topk(scores, 20).tolist()
    where = {p: r + 1 for r, p in enumerate(top)}
    return [where.get(p, 10**9) for p in positives]


# ------------------------------------------------------------------------------------------------ run


def _config_for(dataset: str) -> tuple[PreferenceConfig, float]:
    """Member-state config and popularity half-life per dataset time scale (minutes vs months)."""
    if dataset == "online-retail":
        return PreferenceConfig(item_half_life=60 * DAY, affinity_half_life=90 * DAY, item_cap=40), DAY
    return PreferenceConfig(), HOUR


def run(
    dataset: str,
    path: Path | None = None,
    json_out: Path | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> dict[str, Any]:
    """Replay ``dataset`` (rees46 | taobao | online-retail) from ``path`` and return the metrics dict."""
    if dataset not in LOADERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {sorted(LOADERS)}")
    path = Path(path) if path is not None else DEFAULT_PATHS[dataset]
    t0 = time.perf_counter()
    events = LOADERS[dataset](path)
    if limit:
        events = events[:limit]
    load_s = time.perf_counter() - t0
    cfg, pop_hl = _config_for(dataset)
    model = PreferenceModel(cfg)
    ranker = model.ranker
    items = _Registry(pop_hl)
    brands = _Registry(pop_hl)
    members: dict[str, MemberState] = {}
    basket = dataset == "online-retail"
    do_sale = dataset == "rees46"
    prod = _Scores(basket)
    sale = _Scores(False)
    n_scored = n_missing = 0
    t1 = time.perf_counter()
    score_s = 0.0
    for ev in tqdm(events, desc=f"{dataset}", unit="ev", disable=not progress, mininterval=1.0):
        t = ev.t
        items.expire(t)
        brands.expire(t)
        state = members.get(ev.member)
        positive = ev.kind in ("cart", "order")
        if positive and (not basket or state is not None):
            ts0 = time.perf_counter()
            n_scored += 1
            prod.n += 1
            # ---- product task
            idx = items.active(t)
            skus = list(dict.fromkeys(ln.sku for ln in ev.lines))
            wanted = [items.index[s] for s in skus if s in items.index]
            pos_in = np.searchsorted(idx, wanted) if wanted else np.empty(0, np.int64)
            positives = [
                int(p) for p, w in zip(pos_in.tolist(), wanted, strict=True) if p < idx.size and idx[p] == w
            ]
            n_missing += len(skus) - len(positives)
            if idx.size:
                cands = ProductCandidates(
                    sku=items.sku_obj[idx],
                    sku_h=items.h[idx],
                    brand=[],
                    brand_h=items.brand_h[idx],
                    category=[],
                    category_h=items.cat_h[idx],
                    band_h=items.band_h[idx],
                    price=items.price[idx],
                    popularity=items.pop.values(idx, t),
                )
                scores, x = ranker.score_products(state, cands, t)
                methods = {"model": scores, **items.baselines(idx, t)}
                for m, sc in methods.items():
                    prod.add(m, _ranks(sc, positives) if positives else [], len(skus))
                if positives:
                    ranker.learn_products(x, scores, positives[:5])
            else:
                for m in ("model", "popular", "trending"):
                    prod.add(m, [], len(skus))
            # ---- sale task (a sale is a brand)
            brand = ev.lines[0].brand
            if do_sale and brand:
                sale.n += 1
                bidx = brands.active(t)
                b = brands.index.get(brand)
                p = int(np.searchsorted(bidx, b)) if b is not None else -1
                ok = b is not None and p < bidx.size and bidx[p] == b
                if bidx.size:
                    sc_cands = SaleCandidates.build(
                        [brands.keys[i] for i in bidx.tolist()],
                        [brands.keys[i] for i in bidx.tolist()],
                        [sorted(brands.cats[i]) for i in bidx.tolist()],
                        brands.pop.values(bidx, t),
                    )
                    s_scores, sx = ranker.score_sales(state, sc_cands, t)
                    for m, sc in {"model": s_scores, **brands.baselines(bidx, t)}.items():
                        sale.add(m, [_rank_of(sc, p)] if ok else [], 1)
                    if ok:
                        ranker.learn_sales(sx, s_scores, [p])
            score_s += time.perf_counter() - ts0
        # ---- learn the event (same update as the live agent)
        for ln in ev.lines:
            i = items.get(ln.sku, ln.brand, ln.category, ln.price)
            items.seen(i, t)
            if ln.brand:
                b = brands.get(ln.brand)
                brands.seen(b, t)
                if ln.category:
                    brands.cats[b].add(ln.category)
        ms = int(t * 1000)
        if len(ev.lines) == 1:
            ln = ev.lines[0]
            d = {
                "member_id": ev.member,
                "sale_id": ln.brand,
                "sku": ln.sku,
                "brand": ln.brand,
                "category": ln.category,
                "price": ln.price,
                "kind": ev.kind,
                "quantity": ln.quantity,
                "action": "add",
                "ts": ms,
            }
        else:
            d = {
                "member_id": ev.member,
                "kind": ev.kind,
                "ts": ms,
                "lines": [
                    {
                        "sku": ln.sku,
                        "sale_id": ln.brand,
                        "brand": ln.brand,
                        "category": ln.category,
                        "price": ln.price,
                        "quantity": ln.quantity,
                    }
                    for ln in ev.lines
                ],
            }
        members[ev.member] = model.update(state, d)
    total_s = time.perf_counter() - t1
    tasks: dict[str, Any] = {"product": prod.result()}
    if do_sale:
        tasks["sale"] = sale.result()
    sizes = [
        state_size_bytes(s) for s in random.Random(0).sample(list(members.values()), min(2000, len(members)))
    ]
    result: dict[str, Any] = {
        "dataset": dataset,
        "path": str(path),
        "events": len(events),
        "events_scored": n_scored,
        "sale_events_scored": sale.n if do_sale else 0,
        "positives_not_in_candidates": n_missing,
        "members": len(members),
        "tasks": tasks,
        "blend_weights": ranker.to_dict(),
        "bytes_per_member_mean": round(float(np.mean(sizes)), 1) if sizes else 0.0,
        "seconds": {"load": round(load_s, 2), "replay": round(total_s, 2), "scoring": round(score_s, 2)},
    }
    if json_out is not None:
        Path(json_out).write_text(json.dumps(result, indent=2))
    return result


def print_table(result: dict[str, Any]) -> None:
    """Print one row per (task, method) with the metrics as columns."""
    cols = ["hit@5", "mrr@5", "hit@20", "mrr@20", "ndcg@20", "recall@20"]
    print(f"{result['dataset']}: {result['events_scored']} events scored of {result['events']}")
    print(f"{'task':<8} {'method':<9} " + " ".join(f"{c:>9}" for c in cols))
    for task, methods in result["tasks"].items():
        for m, met in methods.items():
            print(
                f"{task:<8} {m:<9} " + " ".join(f"{met[c]:>9.4f}" if c in met else f"{'-':>9}" for c in cols)
            )


# ------------------------------------------------------------------------------------------------ bench


def _simulated_member(
    model: PreferenceModel, rng: random.Random, member: str, n_events: int, t0: float, n_skus: int = 50_000
) -> MemberState:
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


def bench(n_members: int = 100_000, calls: int = 2000, progress: bool = True) -> dict[str, Any]:
    """Ranking latency (200 sales / 5,000 products), update throughput, bytes per member."""
    rng = random.Random(7)
    model = PreferenceModel()
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
    states: dict[str, MemberState] = {}
    ts = time.perf_counter()
    for e in upd:
        states[e["member_id"]] = model.update(states.get(e["member_id"]), e)
    update_eps = len(upd) / (time.perf_counter() - ts)
    member = _simulated_member(model, rng, "heavy", 400, t0)  # saturated caps
    sales = SaleCandidates.build(
        [f"sale{i}" for i in range(200)],
        [f"brand{i}" for i in range(200)],
        [[f"cat{i % 40}.{j}" for j in range(3)] for i in range(200)],
        [rng.random() * 50 for _ in range(200)],
        [0.0] * 200,
        [2e13] * 200,
    )
    prods = ProductCandidates.build(
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
        sizes[m] = state_size_bytes(_simulated_member(model, rng, f"member{m}", n, t0))
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
            "saturated_member": state_size_bytes(member),
            "total_mb": round(float(sizes.sum()) / 1e6, 1),
        },
        "simulation_s": round(sim_s, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(LOADERS), default="rees46")
    ap.add_argument("--path", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--bench", action="store_true", help="latency, throughput and bytes per member instead")
    ap.add_argument("--members", type=int, default=100_000)
    a = ap.parse_args(argv)
    if a.bench:
        print(json.dumps(bench(a.members, progress=not a.no_progress), indent=2))
        return
    res = run(a.dataset, a.path, a.json, progress=not a.no_progress, limit=a.limit)
    print_table(res)
    print(
        json.dumps(
            {
                k: res[k]
                for k in ("blend_weights", "bytes_per_member_mean", "seconds", "positives_not_in_candidates")
            }
        )
    )


if __name__ == "__main__":
    main()
