"""Prequential (test-then-learn) evaluation of the personalised ranking against strong baselines.

Events are read through the shared data layer (:mod:`salepulse.consumers.data`) and replayed in time order. At a
scored event, the candidates are ranked by the SAME :class:`salepulse.streams.domain.preferences.PreferenceModel` the
live agent uses and by every baseline of :mod:`salepulse.consumers.tools.recommend_baselines`; only then do the model
and the baselines learn the event.

Protocol
    candidates  products with any event in the preceding 24 h (Online Retail: items sold in the last 30 days);
                a target outside them is a miss for every ranker (``targets_not_in_candidates``).
    product     each cart add or order (Online Retail: each invoice of a returning customer, a next basket);
                targets = its products.
    reengage    the same events, targets = those of its products the member touched before.
    discover    targets = products the member never touched, for members with a history; the member's touched
                items are removed from EVERY ranker's list. Scored on cart adds and orders, and on click-streams
                also on novel views (REES46 carts and orders hold almost no novel target), a deterministic
                sample (hash of member, item and time) at ``view_rate`` of the novel views.
    sale        REES46 only (a sale is a brand there): the brand of the carted/bought product among brands
                active in 24 h; rankers model, repeat (brands by recency), popular, trending.
Ties are broken the same way for every ranker: all-time popularity, then the most recent event.
Metrics: hit@1, hit@5, hit@20 (any target in the top k), mrr@20 (best target), ndcg@20 (all targets).
"""

from __future__ import annotations

import json
import math
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from salepulse.consumers.data import Interaction, interactions
from salepulse.consumers.data.datasets import REPLAYABLE
from salepulse.consumers.tools.recommend_baselines import (
    History,
    ItemKNN,
    Items,
    SessionKNNBaseline,
    category_trend,
    rank_of,
    repeat,
)
from salepulse.streams.domain.preferences import (
    MemberState,
    PopularityTracker,
    PreferenceConfig,
    PreferenceModel,
    ProductCandidates,
    SaleCandidates,
    key_hash,
    price_band,
)
from salepulse.streams.platform.logs import get_logger

log = get_logger(__name__)

DATASETS = REPLAYABLE  # the datasets with a reader in consumers/data
RANKERS = ("model", "repeat", "popular", "trending", "item_knn", "session_knn", "category_trend")
SALE_RANKERS = ("model", "repeat", "popular", "trending")
TASKS = ("product", "reengage", "discover", "sale")
METRICS = ("hit@1", "hit@5", "hit@20", "mrr@20", "ndcg@20")
DAY = 86400.0
HOUR = 3600.0
SESSION_GAP = 30 * 60.0


def settings_for(dataset: str) -> dict[str, Any]:
    """Per-dataset time scales: click-streams live in minutes, Online Retail in weeks (the model's popularity
    half-life is the trending baseline's window)."""
    if dataset == "online-retail":
        return {"horizon": 30 * DAY, "window": 7 * DAY, "pop_half_life": 7 * DAY, "view_rate": 0.0,
                "config": PreferenceConfig(item_half_life=60 * DAY, affinity_half_life=90 * DAY)}
    return {"horizon": DAY, "window": HOUR, "pop_half_life": HOUR,
            "view_rate": 1.0 if dataset == "rees46" else 0.05, "config": PreferenceConfig()}


class Scores:
    """Sums of the metrics per ranker for one task.

    >>> s = Scores(("a",))
    >>> s.add({"a": [1, 30]}, 2); s.add({"a": []}, 1)
    >>> s.result()["a"]["hit@1"], s.result()["n"]
    (0.5, 2)
    """

    def __init__(self, rankers: tuple[str, ...]) -> None:
        self.n = 0
        self.sums = {r: dict.fromkeys(METRICS, 0.0) for r in rankers}

    def add(self, ranks: dict[str, list[int]], size: int) -> None:
        """``ranks[ranker]``: 1-based ranks of the targets found among the candidates; ``size``: all targets."""
        self.n += 1
        idcg = sum(1.0 / math.log2(r + 1) for r in range(1, min(size, 20) + 1))
        for name, rs in ranks.items():
            s = self.sums[name]
            best = min(rs) if rs else math.inf
            for k in (1, 5, 20):
                s[f"hit@{k}"] += best <= k
            s["mrr@20"] += 1.0 / best if best <= 20 else 0.0
            s["ndcg@20"] += sum(1.0 / math.log2(r + 1) for r in rs if r <= 20) / idcg if idcg else 0.0

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n}
        for name, s in self.sums.items():
            out[name] = {m: round(v / max(self.n, 1), 4) for m, v in s.items()}
        return out


class _Brands:
    """Brands as sales (REES46): recency per member, counts, trending window, categories."""

    def __init__(self, window: float, pop_half_life: float) -> None:
        self.items = Items(window)
        self.pop = PopularityTracker(pop_half_life)
        self.cats: list[set[str]] = []

    def seen(self, brand: str, category: str, t: float) -> int:
        b = self.items.index(brand)
        if b == len(self.cats):
            self.cats.append(set())
        self.items.seen(b, t)
        self.pop.add(b, 1.0, t)
        if category:
            self.cats[b].add(category)
        return b


def _member_event(ev: Interaction) -> dict[str, Any]:
    """The event dict :meth:`PreferenceModel.update` folds (the live agent's member-signal shape)."""
    ms = int(ev.t * 1000)
    if len(ev.lines) == 1:
        ln = ev.lines[0]
        return {"member_id": ev.member, "sale_id": ln.brand, "sku": ln.sku, "brand": ln.brand,
                "category": ln.category, "price": ln.price, "kind": ev.kind, "quantity": ln.quantity,
                "action": ev.action, "ts": ms}
    return {"member_id": ev.member, "kind": ev.kind, "ts": ms, "action": ev.action,
            "lines": [{"sku": ln.sku, "sale_id": ln.brand, "brand": ln.brand, "category": ln.category,
                       "price": ln.price, "quantity": ln.quantity} for ln in ev.lines]}


def _sampled(ev: Interaction, rate: float) -> bool:
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    key = f"{ev.member}|{ev.lines[0].sku}|{ev.t}".encode()
    return zlib.crc32(key) % 10_000 < rate * 10_000


class Evaluation:
    """The replay state: items, members (model state and baseline history), global models, scores."""

    def __init__(self, dataset: str, view_rate: float | None = None) -> None:
        cfg = settings_for(dataset)
        self.dataset = dataset
        self.horizon = cfg["horizon"]
        self.view_rate = cfg["view_rate"] if view_rate is None else view_rate
        self.model = PreferenceModel(cfg["config"])
        self.items = Items(cfg["window"])
        self.pop = PopularityTracker(cfg["pop_half_life"])
        self.brand_h = np.zeros(1024, np.int64)
        self.cat_h = np.zeros(1024, np.int64)
        self.band_h = np.zeros(1024, np.int64)
        self.price = np.zeros(1024)
        self.first_seen = np.full(1024, math.nan)  # an item's first event (s): the model's freshness
        self.sku_obj = np.empty(1024, dtype=object)
        self.sku_h = np.zeros(1024, np.int64)
        self.states: dict[str, MemberState] = {}
        self.hist: dict[str, History] = {}
        self.item_knn = ItemKNN()
        self.session_knn = SessionKNNBaseline()
        self.brands = _Brands(cfg["window"], cfg["pop_half_life"]) if dataset == "rees46" else None
        self.scores = {t: Scores(SALE_RANKERS if t == "sale" else RANKERS) for t in TASKS}
        self.not_in_candidates = 0
        self.score_s = 0.0
        self.update_s = 0.0

    # -- registry of items (arrays the model's candidates are sliced from)
    def _index(self, sku: str, brand: str, category: str, price: float) -> int:
        n = len(self.items)
        i = self.items.index(sku, category)
        if i == n:
            if i >= self.sku_h.size:
                for name in ("brand_h", "cat_h", "band_h", "price", "sku_h", "first_seen"):
                    a = getattr(self, name)
                    setattr(self, name, np.concatenate([a, np.zeros_like(a)]))
                self.sku_obj = np.concatenate([self.sku_obj, np.empty(self.sku_obj.size, dtype=object)])
            self.sku_obj[i] = sku
            self.sku_h[i] = key_hash(sku)
            self.brand_h[i] = key_hash(brand)
            self.cat_h[i] = key_hash(category)
            self.band_h[i] = key_hash(price_band(price))
            self.price[i] = price
            self.first_seen[i] = math.nan  # set by the item's first event, after it was scored
        return i

    def _candidates(self, idx: np.ndarray, t: float) -> ProductCandidates:
        return ProductCandidates(sku=self.sku_obj[idx], sku_h=self.sku_h[idx], brand=[], brand_h=self.brand_h[idx],
                                 category=[], category_h=self.cat_h[idx], band_h=self.band_h[idx],
                                 price=self.price[idx], popularity=self.pop.values(idx, t),
                                 first_seen=self.first_seen[idx])

    # -- one event
    def step(self, ev: Interaction) -> None:
        t = ev.t
        self.items.expire(t)
        if self.brands is not None:
            self.brands.items.expire(t)
        hist = self.hist.get(ev.member)
        known = hist is not None and bool(hist.items)
        skus = list(dict.fromkeys(ln.sku for ln in ev.lines))
        wanted = [self.items.ids.get(s, -1) for s in skus]
        touched = {i for i in wanted if known and i in hist.items}
        novel = [i for i in wanted if i not in touched]
        basket = self.dataset == "online-retail"
        tasks = []
        if ev.positive and (known or not basket):
            tasks += ["product"] + (["reengage"] if touched else [])
        if known and novel and (ev.positive or (ev.kind in ("browse", "fav") and _sampled(ev, self.view_rate))):
            tasks.append("discover")
        if tasks:
            a = time.perf_counter()
            self._score(ev, hist, wanted, touched, novel, tasks)
            if ev.positive and self.brands is not None and ev.lines[0].brand:
                self._score_sale(ev, hist)
            self.score_s += time.perf_counter() - a
        a = time.perf_counter()
        self._learn(ev, hist)
        self.update_s += time.perf_counter() - a

    def _score(self, ev: Interaction, hist: History | None, wanted: list[int], touched: set[int],
               novel: list[int], tasks: list[str]) -> None:
        t = ev.t
        idx = self.items.active(t, self.horizon)
        where = np.full(len(self.items) + 1, -1, np.int64)  # item -> position among the candidates
        where[idx] = np.arange(idx.size)
        pos_of = {i: int(where[i]) for i in (*wanted, *(hist.items if hist is not None else ())) if where[i] >= 0}
        state = self.states.get(ev.member)
        cands = self._candidates(idx, t)
        model_scores, cols = self.model.ranker.score_products(state, cands, t)
        scores = {
            "model": model_scores,
            "repeat": repeat(hist, idx),
            "popular": self.items.count[idx].copy(),
            "trending": self.items.trend[idx].copy(),
            "item_knn": self.item_knn.scores(hist, idx),
            "session_knn": self.session_knn.scores(hist, idx),
            "category_trend": category_trend(hist, self.items, idx),
        }
        tiebreak = self.items.count[idx] + np.clip((self.items.last[idx] - (t - DAY)) / (DAY + 1.0), 0.0, 0.999)
        all_pos = [pos_of[i] for i in wanted if i in pos_of]
        self.not_in_candidates += len(wanted) - len(all_pos)
        for task in tasks:
            if task == "product":
                targets, size = all_pos, len(wanted)
            elif task == "reengage":
                targets, size = [pos_of[i] for i in touched if i in pos_of], len(touched)
            else:
                targets, size = [pos_of[i] for i in novel if i in pos_of], len(novel)
            if task == "discover":
                mask = np.zeros(idx.size, bool)
                if hist is not None:
                    own = [pos_of[i] for i in hist.items if i in pos_of]
                    mask[own] = True
                ranked = {name: np.where(mask, -np.inf, s) for name, s in scores.items()}
            else:
                ranked = scores
            self.scores[task].add({name: rank_of(s, tiebreak, targets) for name, s in ranked.items()}, size)
        positives = all_pos if ev.positive else [pos_of[i] for i in novel if i in pos_of]
        if positives:
            self.model.ranker.learn_products(cols, positives[:5])

    def _score_sale(self, ev: Interaction, hist: History | None) -> None:
        brands = self.brands
        assert brands is not None
        t = ev.t
        bidx = brands.items.active(t, DAY)
        b = brands.items.ids.get(ev.lines[0].brand)
        pos = {int(i): p for p, i in enumerate(bidx.tolist())}
        target = [pos[b]] if b is not None and b in pos else []
        if not bidx.size:
            self.scores["sale"].add({name: [] for name in SALE_RANKERS}, 1)
            return
        keys = [brands.items.keys[i] for i in bidx.tolist()]
        cands = SaleCandidates.build(keys, keys, [sorted(brands.cats[i]) for i in bidx.tolist()],
                                     brands.pop.values(bidx, t))
        state = self.states.get(ev.member)
        s_model, x = self.model.ranker.score_sales(state, cands, t)
        rep = np.zeros(bidx.size)
        if state is not None:
            for rank, (sale, _) in enumerate(state.sales.top(len(state.sales.weights))):
                p = brands.items.ids.get(sale)
                if p is not None and p in pos:
                    rep[pos[p]] = 1.0 + 1.0 / (1 + rank)
        scores = {"model": s_model, "repeat": rep, "popular": brands.items.count[bidx].copy(),
                  "trending": brands.items.trend[bidx].copy()}
        tiebreak = brands.items.count[bidx] + np.clip((brands.items.last[bidx] - (t - DAY)) / (DAY + 1.0), 0, 0.999)
        self.scores["sale"].add({n: rank_of(s, tiebreak, target) for n, s in scores.items()}, 1)
        if target:
            self.model.ranker.learn_sales(x, s_model, target)

    def _learn(self, ev: Interaction, hist: History | None) -> None:
        t = ev.t
        removal = ev.kind == "cart" and ev.action == "remove"
        if hist is None:
            hist = self.hist[ev.member] = History()
        for ln in ev.lines:
            i = self._index(ln.sku, ln.brand, ln.category, ln.price)
            self.items.seen(i, t)
            if math.isnan(self.first_seen[i]):
                self.first_seen[i] = t
            self.pop.add(i, 1.0, t)
            if self.brands is not None and ln.brand:
                self.brands.seen(ln.brand, ln.category, t)
            if not removal:
                self.item_knn.observe(hist, i)
                hist.touch(i, int(self.items.cat[i]), t, SESSION_GAP)
                self.session_knn.observe(ev.member, hist, i)
        self.states[ev.member] = self.model.update(self.states.get(ev.member), _member_event(ev))

    def result(self) -> dict[str, Any]:
        tasks = {name: s.result() for name, s in self.scores.items() if name != "sale" or self.brands is not None}
        return {"tasks": tasks, "targets_not_in_candidates": self.not_in_candidates,
                "blend_weights": self.model.ranker.to_dict()}


def run(dataset: str, path: Path, json_out: Path | None = None, progress: bool = True,
        limit: int | None = None, view_rate: float | None = None) -> dict[str, Any]:
    """Replay ``dataset`` (rees46 | taobao | online-retail) from ``path`` and return the metrics dict."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    t0 = time.perf_counter()
    events = interactions(dataset, Path(path))
    if limit:
        events = events[:limit]
    load_s = time.perf_counter() - t0
    ev_state = Evaluation(dataset, view_rate)
    for ev in tqdm(events, desc=dataset, unit="ev", disable=not progress, mininterval=1.0):
        ev_state.step(ev)
    body = ev_state.result()
    result: dict[str, Any] = {
        "dataset": dataset,
        "path": str(path),
        "events": len(events),
        "members": len(ev_state.hist),
        "protocol": {"candidates_horizon_s": ev_state.horizon, "trending_window_s": ev_state.items.window,
                     "discover_view_rate": ev_state.view_rate},
        **body,
        "seconds": {"load": round(load_s, 2), "scoring": round(ev_state.score_s, 2),
                    "learning": round(ev_state.update_s, 2)},
    }
    log.info("recommend evaluation done", dataset=dataset, events=len(events),
             **{f"n_{k}": v["n"] for k, v in body["tasks"].items()})
    if json_out is not None:
        Path(json_out).write_text(json.dumps(result, indent=2))
    return result


def print_table(result: dict[str, Any]) -> None:
    """One block per task: a row per ranker, the metrics as columns."""
    print(f"{result['dataset']}: {result['events']} events, {result['members']} members")
    for task, body in result["tasks"].items():
        print(f"\n{task} (n={body['n']})")
        print(f"{'ranker':<15}" + "".join(f"{m:>9}" for m in METRICS))
        for name, met in body.items():
            if name == "n":
                continue
            print(f"{name:<15}" + "".join(f"{met[m]:>9.4f}" for m in METRICS))
