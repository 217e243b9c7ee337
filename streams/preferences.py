"""Member preferences and personalised ranking of open sales and products (pure logic, no Kafka/Faust).

The pieces, each with one job:

* :class:`DecayedCounter` - bounded, exponentially decayed weights per key (half-life, cap, evicts weakest).
* :class:`MemberState` - one member's decayed affinities (items, brands, categories, price bands, sales),
  the cart and the brands ordered; serialisable to compact bytes for a Faust table with a changelog.
* :class:`CoVisitation` - global item-to-item co-occurrence learnt from each member's recent items.
* :class:`PopularityTracker` - exponentially decayed event counts per item (a velocity), vectorised.
* :class:`ProductCandidates` / :class:`SaleCandidates` - numpy arrays of what may be ranked.
* :class:`Ranker` - feature matrices, a River logistic regression per task that learns the blend weights,
  vectorised scoring (one matrix-vector product over all candidates), top-k with a human reason.
* :class:`PreferenceModel` - glue used by the live agent and by the offline evaluation: ``update`` a member
  from an event dict, ``rank_sales`` / ``rank_products``.

Timestamps in event dicts are epoch milliseconds (as in the Avro schemas) or ``datetime``; internally seconds.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import math
import random
import sys
import zlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

import numpy as np
from river import linear_model, optim

__all__ = [
    "KIND_WEIGHTS",
    "CoVisitation",
    "DecayedCounter",
    "MemberState",
    "PopularityTracker",
    "PreferenceConfig",
    "PreferenceModel",
    "ProductCandidates",
    "Ranked",
    "Ranker",
    "SaleCandidates",
    "event_weight",
    "in_stock_mask",
    "key_hash",
    "open_sales_mask",
    "price_band",
    "rank_products",
    "rank_sales",
    "state_size_bytes",
    "to_seconds",
]

#: Weight of one event per kind: browse < fav < cart < order. A cart ``remove`` counts as ``REMOVE_WEIGHT``.
KIND_WEIGHTS: dict[str, float] = {"browse": 1.0, "view": 1.0, "fav": 2.0, "cart": 3.0, "order": 5.0}
REMOVE_WEIGHT = -2.0


def to_seconds(ts: Any) -> float:
    """Epoch seconds from epoch milliseconds (int/float, Avro ``timestamp-millis``) or a ``datetime``.

    >>> to_seconds(1_700_000_000_000)
    1700000000.0
    >>> from datetime import datetime, timezone
    >>> to_seconds(datetime(2024, 1, 1, tzinfo=timezone.utc))
    1704067200.0
    """
    if isinstance(ts, datetime):
        return ts.timestamp()
    return float(ts) / 1000.0


def event_weight(kind: str, action: str | None = None, quantity: int | float | None = None) -> float:
    """Signal strength of one event: browse < cart < order; removing from the cart is negative.

    Quantity counts with diminishing returns (``1 + log(quantity)``).

    >>> event_weight("browse"), event_weight("cart"), event_weight("order")
    (1.0, 3.0, 5.0)
    >>> event_weight("cart", action="remove")
    -2.0
    >>> round(event_weight("order", quantity=3), 3)
    10.493
    """
    base = REMOVE_WEIGHT if (kind == "cart" and action == "remove") else KIND_WEIGHTS.get(kind, 1.0)
    q = float(quantity or 1)
    return base * (1.0 + math.log(q)) if q > 1 else base


def price_band(price: float | None) -> str:
    """Logarithmic price band label (factor 2 per band); ``""`` when the price is unknown or not positive.

    >>> price_band(9.99), price_band(10.0), price_band(35.0), price_band(0), price_band(None)
    ('p3', 'p3', 'p5', '', '')
    """
    if price is None or not price > 0:
        return ""
    return f"p{max(0, int(math.log2(price)))}"


@lru_cache(maxsize=1 << 18)
def key_hash(key: str) -> int:
    """Stable signed 64-bit hash of a key (sku, brand, category, sale id) used to match arrays quickly.

    >>> key_hash("sku-1") == key_hash("sku-1"), key_hash("sku-1") == key_hash("sku-2")
    (True, False)
    """
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little", signed=True)


def _hashes(keys: Iterable[str]) -> np.ndarray:
    return np.fromiter((key_hash(k) for k in keys), dtype=np.int64)


def _lookup(keys: np.ndarray, vals: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Value of each ``query`` hash in the sorted ``keys`` (0 when absent); O(n log m), vectorised."""
    if keys.size == 0 or query.size == 0:
        return np.zeros(query.shape, dtype=np.float64)
    pos = np.searchsorted(keys, query)
    pos[pos >= keys.size] = 0
    return np.where(keys[pos] == query, vals[pos], 0.0)


def _sorted_table(weights: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted hashes, values) of a small key->weight mapping, values relative to the largest one."""
    if not weights:
        return np.empty(0, np.int64), np.empty(0)
    h = _hashes(weights)
    v = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
    top = v.max()
    v = v / top if top > 0 else np.zeros_like(v)
    order = np.argsort(h)
    return h[order], v[order]


# --------------------------------------------------------------------------------------------- counters


class DecayedCounter:
    """Weights per key that halve every ``half_life`` seconds; at most ``cap`` keys, the weakest is evicted.

    All weights are stored as of ``t`` (the newest event time), so decay costs one multiply per key per event.

    >>> c = DecayedCounter(half_life=3600.0, cap=2)
    >>> c.add("nike", 1.0, t=0.0); c.add("nike", 1.0, t=3600.0)
    >>> round(c.get("nike"), 3)
    1.5
    >>> c.add("puma", 3.0, t=3600.0); c.add("adidas", 0.1, t=3600.0)  # over the cap: weakest key goes
    >>> sorted(c.weights)
    ['nike', 'puma']
    >>> DecayedCounter.from_list(c.to_list(), 3600.0, 2).weights == c.weights
    True
    """

    __slots__ = ("half_life", "cap", "t", "weights")

    def __init__(self, half_life: float, cap: int) -> None:
        self.half_life = float(half_life)
        self.cap = int(cap)
        self.t = 0.0
        self.weights: dict[str, float] = {}

    def _advance(self, t: float) -> None:
        if t > self.t:
            if self.weights:
                f = 0.5 ** ((t - self.t) / self.half_life)
                w = self.weights
                for k in w:
                    w[k] *= f
            self.t = t

    def add(self, key: str, weight: float, t: float) -> None:
        """Add ``weight`` to ``key`` at ``t`` (seconds); late events are decayed to the counter's time."""
        if not key:
            return
        self._advance(t)
        if t < self.t:
            weight *= 0.5 ** ((self.t - t) / self.half_life)
        w = self.weights
        w[key] = w.get(key, 0.0) + weight
        if len(w) > self.cap:
            del w[min(w, key=w.__getitem__)]

    def get(self, key: str, t: float | None = None) -> float:
        """Weight of ``key`` (decayed to ``t`` when given)."""
        v = self.weights.get(key, 0.0)
        if t is not None and t > self.t:
            v *= 0.5 ** ((t - self.t) / self.half_life)
        return v

    def top(self, n: int) -> list[tuple[str, float]]:
        """The ``n`` strongest keys with their weights."""
        return sorted(self.weights.items(), key=itemgetter(1), reverse=True)[:n]

    def to_list(self) -> list:
        """Compact form ``[t, [keys...], weights]``, the weights as base64 of little-endian float32 (7 digits).

        Formatting a hundred floats as JSON text was most of the cost of writing a member to its changelog.
        """
        packed = array("f", self.weights.values())
        if sys.byteorder == "big":
            packed.byteswap()
        return [round(self.t, 1), list(self.weights), base64.b64encode(packed.tobytes()).decode()]

    @classmethod
    def from_list(cls, data: Sequence, half_life: float, cap: int) -> DecayedCounter:
        """Inverse of :meth:`to_list` (also reads weights written as a JSON list of numbers)."""
        c = cls(half_life, cap)
        c.t = float(data[0])
        weights = data[2]
        if isinstance(weights, str):
            packed = array("f", base64.b64decode(weights))
            if sys.byteorder == "big":
                packed.byteswap()
            weights = packed.tolist()
        c.weights = dict(zip(data[1], weights, strict=True))
        return c


@dataclass(frozen=True)
class PreferenceConfig:
    """Half-lives (seconds) and caps that bound the memory of one member.

    >>> PreferenceConfig().item_cap
    40
    """

    item_half_life: float = 6 * 3600.0
    affinity_half_life: float = 14 * 86400.0
    cart_ttl: float = 2 * 86400.0
    item_cap: int = 40
    brand_cap: int = 16
    category_cap: int = 16
    band_cap: int = 8
    sale_cap: int = 16
    ordered_brand_cap: int = 8
    cart_cap: int = 20


_COUNTERS = {
    "items": "i",
    "brands": "b",
    "categories": "c",
    "bands": "p",
    "sales": "s",
    "ordered_brands": "o",
}


class MemberState:
    """Everything known about one member, bounded in size by :class:`PreferenceConfig`.

    >>> s = MemberState("m1")
    >>> s.observe(sku="a", brand="nike", category="shoes", price=60.0, sale_id="s1", kind="browse", t=0.0)
    >>> s.observe(sku="a", brand="nike", category="shoes", price=60.0, sale_id="s1", kind="cart", t=60.0)
    >>> s.cart
    {'a': [1, 's1', 60.0]}
    >>> s.observe(sku="a", brand="nike", category="shoes", price=60.0, sale_id="s1", kind="order", t=120.0)
    >>> s.cart, list(s.ordered_brands.weights), s.n_events
    ({}, ['nike'], 3)
    >>> MemberState.from_bytes(s.to_bytes()).to_dict() == s.to_dict()
    True
    """

    def __init__(self, member_id: str, config: PreferenceConfig | None = None) -> None:
        cfg = config or PreferenceConfig()
        self.config = cfg
        self.member_id = member_id
        self.n_events = 0
        self.last_t = 0.0
        self.items = DecayedCounter(cfg.item_half_life, cfg.item_cap)
        self.brands = DecayedCounter(cfg.affinity_half_life, cfg.brand_cap)
        self.categories = DecayedCounter(cfg.affinity_half_life, cfg.category_cap)
        self.bands = DecayedCounter(cfg.affinity_half_life, cfg.band_cap)
        self.sales = DecayedCounter(cfg.item_half_life, cfg.sale_cap)
        self.ordered_brands = DecayedCounter(cfg.affinity_half_life, cfg.ordered_brand_cap)
        #: sku -> [quantity, sale_id, t]
        self.cart: dict[str, list] = {}

    @property
    def is_cold(self) -> bool:
        """True when nothing is known about the member yet."""
        return self.n_events == 0

    def observe(
        self,
        *,
        sku: str,
        kind: str,
        t: float,
        brand: str | None = None,
        category: str | None = None,
        price: float | None = None,
        sale_id: str | None = None,
        action: str | None = None,
        quantity: int | float | None = None,
    ) -> None:
        """Fold one event (``t`` in seconds) into the decayed counters and the cart."""
        w = event_weight(kind, action, quantity)
        self.n_events += 1
        self.last_t = max(self.last_t, t)
        self.items.add(sku, w, t)
        aff = max(w, REMOVE_WEIGHT / 2)  # a removal hurts the item more than the brand/category
        if brand:
            self.brands.add(brand, aff, t)
        if category:
            self.categories.add(category, aff, t)
        band = price_band(price)
        if band:
            self.bands.add(band, aff, t)
        if sale_id:
            self.sales.add(sale_id, aff, t)
        cart = self.cart
        if kind == "cart":
            q = int(quantity or 1)
            if action == "remove":
                entry = cart.get(sku)
                if entry is not None:
                    entry[0] -= q
                    if entry[0] <= 0:
                        del cart[sku]
            else:
                entry = cart.setdefault(sku, [0, sale_id or "", t])
                entry[0] += q
                entry[2] = t
        elif kind == "order":
            cart.pop(sku, None)
            if brand:
                self.ordered_brands.add(brand, w, t)
        self._expire_cart(t)

    def _expire_cart(self, t: float) -> None:
        cart = self.cart
        ttl = self.config.cart_ttl
        for sku in [s for s, e in cart.items() if t - e[2] > ttl]:
            del cart[sku]
        while len(cart) > self.config.cart_cap:
            del cart[min(cart, key=lambda s: cart[s][2])]

    def cart_items(self, t: float | None = None) -> dict[str, list]:
        """Cart lines still alive at ``t``."""
        if t is None:
            return self.cart
        ttl = self.config.cart_ttl
        return {s: e for s, e in self.cart.items() if t - e[2] <= ttl}

    # -- serialisation
    def to_dict(self) -> dict:
        """Compact JSON-able dict."""
        d: dict[str, Any] = {"m": self.member_id, "n": self.n_events, "t": round(self.last_t, 1)}
        for name, short in _COUNTERS.items():
            c: DecayedCounter = getattr(self, name)
            if c.weights:
                d[short] = c.to_list()
        if self.cart:
            d["ca"] = {s: [e[0], e[1], round(e[2], 1)] for s, e in self.cart.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], config: PreferenceConfig | None = None) -> MemberState:
        """Inverse of :meth:`to_dict`."""
        s = cls(str(d["m"]), config)
        s.n_events = int(d["n"])
        s.last_t = float(d["t"])
        for name, short in _COUNTERS.items():
            data = d.get(short)
            if data is not None:
                old: DecayedCounter = getattr(s, name)
                setattr(s, name, DecayedCounter.from_list(data, old.half_life, old.cap))
        s.cart = {k: list(v) for k, v in d.get("ca", {}).items()}
        return s

    def to_bytes(self) -> bytes:
        """zlib-compressed compact JSON (the value stored in the Faust table)."""
        return zlib.compress(json.dumps(self.to_dict(), separators=(",", ":")).encode(), 1)

    @classmethod
    def from_bytes(cls, data: bytes, config: PreferenceConfig | None = None) -> MemberState:
        """Inverse of :meth:`to_bytes`."""
        return cls.from_dict(json.loads(zlib.decompress(data)), config)


def state_size_bytes(state: MemberState) -> int:
    """Bytes one member takes in the table (size of :meth:`MemberState.to_bytes`).

    >>> s = MemberState("m1")
    >>> s.observe(sku="a", kind="browse", t=0.0)
    >>> 20 < state_size_bytes(s) < 200
    True
    """
    return len(state.to_bytes())


# --------------------------------------------------------------------------------------------- global models


class CoVisitation:
    """Item-to-item co-occurrence from each member's recent items ("people who viewed X also viewed Y").

    Each item keeps its ``neighbours`` strongest neighbours (pruned to that whenever a row doubles); at most
    ``max_items`` rows (least recently touched evicted).

    >>> cv = CoVisitation()
    >>> cv.observe("b", [("a", 1.0)])
    >>> cv.row("a")
    {'b': 1.0}
    >>> round(cv.conditional("a", "b"), 2)  # smoothed P(b | a)
    0.5
    """

    def __init__(self, neighbours: int = 30, max_items: int = 500_000) -> None:
        self.neighbours = neighbours
        self.max_items = max_items
        self.rows: dict[str, dict[str, float]] = {}
        self.totals: dict[str, float] = {}

    def _bump(self, a: str, b: str, w: float) -> None:
        row = self.rows.pop(a, None)
        if row is None:
            row = {}
            if len(self.rows) >= self.max_items:
                old = next(iter(self.rows))
                del self.rows[old]
                self.totals.pop(old, None)
        self.rows[a] = row
        row[b] = row.get(b, 0.0) + w
        self.totals[a] = self.totals.get(a, 0.0) + w
        if len(row) > 2 * self.neighbours:
            # Pruning to the strongest once the row doubles costs one sort per ``neighbours`` new entries, where
            # evicting the weakest on every insert scanned the row each time (a quarter of an update's time).
            kept = dict(heapq.nlargest(self.neighbours, row.items(), key=itemgetter(1)))
            self.totals[a] -= sum(row.values()) - sum(kept.values())
            self.rows[a] = kept

    def observe(self, item: str, recent: Iterable[tuple[str, float]]) -> None:
        """Count ``item`` together with the member's recent items (weights in [0, 1]), both directions."""
        for other, w in recent:
            if other != item and w > 0:
                self._bump(other, item, w)
                self._bump(item, other, w)

    def row(self, item: str) -> dict[str, float]:
        """Neighbours of ``item`` with their counts."""
        return self.rows.get(item, {})

    def conditional(self, a: str, b: str) -> float:
        """Smoothed P(b | a) = count(a, b) / (total(a) + 1)."""
        return self.rows.get(a, {}).get(b, 0.0) / (self.totals.get(a, 0.0) + 1.0)


class PopularityTracker:
    """Exponentially decayed counts per integer item index - a velocity (events per half-life), vectorised.

    >>> p = PopularityTracker(half_life=3600.0)
    >>> p.add(0, 1.0, t=0.0); p.add(2, 1.0, t=0.0); p.add(2, 1.0, t=3600.0)
    >>> np.round(p.values(np.array([0, 1, 2]), t=3600.0), 3).tolist()
    [0.5, 0.0, 1.5]
    """

    def __init__(self, half_life: float = 3600.0, size: int = 1024) -> None:
        self.half_life = half_life
        self.val = np.zeros(size)
        self.t = np.zeros(size)

    def add(self, idx: int, weight: float, t: float) -> None:
        """Count ``weight`` for item ``idx`` at ``t`` (seconds)."""
        if idx >= self.val.size:
            n = max(idx + 1, 2 * self.val.size)
            self.val = np.concatenate([self.val, np.zeros(n - self.val.size)])
            self.t = np.concatenate([self.t, np.zeros(n - self.t.size)])
        dt = t - self.t[idx]
        self.val[idx] = self.val[idx] * 0.5 ** (max(dt, 0.0) / self.half_life) + weight
        self.t[idx] = max(t, self.t[idx])

    def values(self, idx: np.ndarray, t: float) -> np.ndarray:
        """Decayed counts of the items ``idx`` at time ``t``."""
        idx = np.asarray(idx)
        out = np.zeros(idx.shape)
        ok = idx < self.val.size
        i = idx[ok]
        out[ok] = self.val[i] * 0.5 ** (np.maximum(t - self.t[i], 0.0) / self.half_life)
        return out


# --------------------------------------------------------------------------------------------- candidates


def open_sales_mask(starts_at: np.ndarray, ends_at: np.ndarray, now: float) -> np.ndarray:
    """Sales open at ``now`` (same unit as the arrays): ``starts_at <= now < ends_at``.

    >>> open_sales_mask(np.array([0, 0, 50]), np.array([100, 10, 200]), now=20).tolist()
    [True, False, False]
    """
    return (np.asarray(starts_at) <= now) & (now < np.asarray(ends_at))


def in_stock_mask(stock: np.ndarray) -> np.ndarray:
    """Products that can still be bought: stock > 0.

    >>> in_stock_mask(np.array([3, 0, -1, 1])).tolist()
    [True, False, False, True]
    """
    return np.asarray(stock) > 0


@dataclass
class ProductCandidates:
    """In-stock products of open sales, as parallel arrays (build once per catalogue version and reuse).

    ``popularity`` is the live velocity (e.g. ``velocity_uph`` of the velocity snapshots); ``stock`` and
    ``sale_id`` are optional.

    >>> c = ProductCandidates.from_records([
    ...     {"sku": "a", "brand": "nike", "category": "shoes", "price": 50.0, "popularity": 3.0, "stock": 5},
    ...     {"sku": "b", "brand": "puma", "category": "shoes", "price": 20.0, "popularity": 9.0, "stock": 0}])
    >>> len(c), c.available().sku
    (2, ['a'])
    """

    sku: list[str]
    sku_h: np.ndarray
    brand: list[str]
    brand_h: np.ndarray
    category: list[str]
    category_h: np.ndarray
    band_h: np.ndarray
    price: np.ndarray
    popularity: np.ndarray
    stock: np.ndarray | None = None
    sale_id: list[str] | None = None

    def __len__(self) -> int:
        return len(self.sku)

    @classmethod
    def build(
        cls,
        sku: Sequence[str],
        brand: Sequence[str],
        category: Sequence[str],
        price: Sequence[float],
        popularity: Sequence[float],
        stock: Sequence[int] | None = None,
        sale_id: Sequence[str] | None = None,
    ) -> ProductCandidates:
        """From parallel sequences."""
        price_a = np.asarray(price, dtype=np.float64)
        return cls(
            sku=list(sku),
            sku_h=_hashes(sku),
            brand=list(brand),
            brand_h=_hashes(brand),
            category=list(category),
            category_h=_hashes(category),
            band_h=_hashes(price_band(p) for p in price_a),
            price=price_a,
            popularity=np.asarray(popularity, dtype=np.float64),
            stock=None if stock is None else np.asarray(stock),
            sale_id=None if sale_id is None else list(sale_id),
        )

    @classmethod
    def from_records(cls, rows: Sequence[Mapping[str, Any]]) -> ProductCandidates:
        """From dicts with sku, brand, category, price, popularity and optional stock, sale_id."""
        has_stock = bool(rows) and all("stock" in r for r in rows)
        has_sale = bool(rows) and all("sale_id" in r for r in rows)
        return cls.build(
            [r["sku"] for r in rows],
            [r.get("brand") or "" for r in rows],
            [r.get("category") or "" for r in rows],
            [float(r.get("price") or 0.0) for r in rows],
            [float(r.get("popularity") or 0.0) for r in rows],
            [int(r["stock"]) for r in rows] if has_stock else None,
            [r["sale_id"] for r in rows] if has_sale else None,
        )

    def take(self, idx: np.ndarray) -> ProductCandidates:
        """Subset by integer positions."""
        idx = np.asarray(idx)
        pick = idx.tolist()
        return ProductCandidates(
            sku=[self.sku[i] for i in pick],
            sku_h=self.sku_h[idx],
            brand=[self.brand[i] for i in pick],
            brand_h=self.brand_h[idx],
            category=[self.category[i] for i in pick],
            category_h=self.category_h[idx],
            band_h=self.band_h[idx],
            price=self.price[idx],
            popularity=self.popularity[idx],
            stock=None if self.stock is None else self.stock[idx],
            sale_id=None if self.sale_id is None else [self.sale_id[i] for i in pick],
        )

    def available(self) -> ProductCandidates:
        """Only products in stock (all of them when no stock is given)."""
        if self.stock is None:
            return self
        return self.take(np.flatnonzero(in_stock_mask(self.stock)))


@dataclass
class SaleCandidates:
    """Sales that may be shown, as arrays; ``categories`` is a CSR (``cat_h`` flat, ``cat_ptr`` offsets).

    ``starts_at``/``ends_at`` (epoch ms, optional) let the ranker drop sales not open at ``now``.

    >>> s = SaleCandidates.from_records([
    ...     {"sale_id": "s1", "brand": "nike", "categories": ["shoes", "bags"], "popularity": 5.0,
    ...      "starts_at": 0, "ends_at": 1000},
    ...     {"sale_id": "s2", "brand": "puma", "categories": [], "popularity": 1.0,
    ...      "starts_at": 0, "ends_at": 10}])
    >>> s.cat_ptr.tolist(), s.open_at(500).sale_id
    ([0, 2, 2], ['s1'])
    """

    sale_id: list[str]
    sale_h: np.ndarray
    brand: list[str]
    brand_h: np.ndarray
    cat_h: np.ndarray
    cat_ptr: np.ndarray
    popularity: np.ndarray
    starts_at: np.ndarray | None = None
    ends_at: np.ndarray | None = None
    categories: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sale_id)

    @classmethod
    def build(
        cls,
        sale_id: Sequence[str],
        brand: Sequence[str],
        categories: Sequence[Sequence[str]],
        popularity: Sequence[float],
        starts_at: Sequence[float] | None = None,
        ends_at: Sequence[float] | None = None,
    ) -> SaleCandidates:
        """From parallel sequences."""
        cats = [list(c) for c in categories]
        ptr = np.zeros(len(cats) + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(c) for c in cats])
        return cls(
            sale_id=list(sale_id),
            sale_h=_hashes(sale_id),
            brand=list(brand),
            brand_h=_hashes(brand),
            cat_h=_hashes(c for cs in cats for c in cs),
            cat_ptr=ptr,
            popularity=np.asarray(popularity, dtype=np.float64),
            starts_at=None if starts_at is None else np.asarray(starts_at, dtype=np.float64),
            ends_at=None if ends_at is None else np.asarray(ends_at, dtype=np.float64),
            categories=cats,
        )

    @classmethod
    def from_records(cls, rows: Sequence[Mapping[str, Any]]) -> SaleCandidates:
        """From dicts with sale_id, brand, categories, popularity and optional starts_at/ends_at (ms)."""
        timed = bool(rows) and all("starts_at" in r and "ends_at" in r for r in rows)
        return cls.build(
            [r["sale_id"] for r in rows],
            [r.get("brand") or "" for r in rows],
            [r.get("categories") or [] for r in rows],
            [float(r.get("popularity") or 0.0) for r in rows],
            [r["starts_at"] for r in rows] if timed else None,
            [r["ends_at"] for r in rows] if timed else None,
        )

    def take(self, idx: np.ndarray) -> SaleCandidates:
        """Subset by integer positions."""
        pick = np.asarray(idx).tolist()
        return SaleCandidates.build(
            [self.sale_id[i] for i in pick],
            [self.brand[i] for i in pick],
            [self.categories[i] for i in pick],
            self.popularity[pick],
            None if self.starts_at is None else self.starts_at[pick],
            None if self.ends_at is None else self.ends_at[pick],
        )

    def open_at(self, now_ms: float | None) -> SaleCandidates:
        """Only sales open at ``now_ms`` (all of them when no times are known)."""
        if now_ms is None or self.starts_at is None or self.ends_at is None:
            return self
        mask = open_sales_mask(self.starts_at, self.ends_at, now_ms)
        return self if mask.all() else self.take(np.flatnonzero(mask))


# --------------------------------------------------------------------------------------------- ranking

PRODUCT_FEATURES = ("seen", "cart", "covisit", "category", "brand", "brand_ordered", "band", "pop")
SALE_FEATURES = ("sale_seen", "cart", "brand", "brand_ordered", "category", "pop")

REASONS = {
    "seen": "you viewed it recently",
    "sale_seen": "sale you visited",
    "cart": "in your cart",
    "covisit": "like items you viewed",
    "category": "category you browse",
    "brand": "brand you like",
    "brand_ordered": "brand you ordered",
    "band": "in your price range",
    "pop": "trending now",
}
TRENDING = REASONS["pop"]

_PRIOR_PRODUCT = {
    "seen": 3.0,
    "cart": 3.0,
    "covisit": 2.0,
    "category": 1.0,
    "brand": 1.0,
    "brand_ordered": 0.5,
    "band": 0.3,
    "pop": 1.0,
}
_PRIOR_SALE = {"sale_seen": 2.0, "cart": 2.0, "brand": 2.0, "brand_ordered": 1.0, "category": 1.0, "pop": 1.0}


@dataclass(frozen=True)
class Ranked:
    """One ranked candidate: its id, score and a short human reason."""

    id: str
    score: float
    reason: str


def _pop_feature(pop: np.ndarray) -> np.ndarray:
    lp = np.log1p(np.maximum(pop, 0.0))
    top = lp.max() if lp.size else 0.0
    return lp / top if top > 0 else lp


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best scores, best first (ties: lower position first)."""
    n = scores.size
    if n == 0 or k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    return part[np.lexsort((part, -scores[part]))]


class Ranker:
    """Scores candidates for a member: features (n x f matrix) @ weights learnt online by River.

    Each task (products, sales) has a :class:`river.linear_model.LogisticRegression` taught, at each cart or
    order, the chosen item (positive) against sampled candidates (negatives); its weights are read back into
    a numpy vector, so scoring is one matrix-vector product over all candidates.

    >>> r = Ranker()
    >>> s = MemberState("m")
    >>> s.observe(sku="a", brand="nike", category="shoes", price=50.0, kind="browse", t=0.0)
    >>> c = ProductCandidates.build(["a", "b", "c"], ["nike", "x", "y"], ["shoes", "hats", "hats"],
    ...                             [50.0, 20.0, 5.0], [0.0, 10.0, 1.0])
    >>> [(x.id, x.reason) for x in r.rank_products(s, c, 2)]
    [('a', 'you viewed it recently'), ('b', 'trending now')]
    """

    def __init__(
        self,
        covisit: CoVisitation | None = None,
        lr: float = 0.05,
        n_negatives: int = 8,
        hard_fraction: float = 0.0,
        seed: int = 42,
    ) -> None:
        self.covisit = covisit if covisit is not None else CoVisitation()
        self.n_negatives = n_negatives
        self.hard_fraction = hard_fraction
        self._rng = random.Random(seed)
        self.product_lr = self._logreg(_PRIOR_PRODUCT, lr)
        self.sale_lr = self._logreg(_PRIOR_SALE, lr)

    @staticmethod
    def _logreg(prior: Mapping[str, float], lr: float) -> linear_model.LogisticRegression:
        m = linear_model.LogisticRegression(optimizer=optim.SGD(lr), l2=1e-4, intercept_lr=0.01)
        for f, w in prior.items():
            m._weights[f] = w
        return m

    @staticmethod
    def _weights(model: linear_model.LogisticRegression, names: Sequence[str]) -> np.ndarray:
        w = model.weights
        return np.array([w.get(f, 0.0) for f in names])

    @property
    def product_weights(self) -> dict[str, float]:
        """Current blend weights of the product task."""
        return dict(
            zip(PRODUCT_FEATURES, self._weights(self.product_lr, PRODUCT_FEATURES).tolist(), strict=True)
        )

    @property
    def sale_weights(self) -> dict[str, float]:
        """Current blend weights of the sale task."""
        return dict(zip(SALE_FEATURES, self._weights(self.sale_lr, SALE_FEATURES).tolist(), strict=True))

    # -- features
    def _covisit_scores(self, state: MemberState, query: np.ndarray) -> np.ndarray:
        top = state.items.top(10)
        vmax = top[0][1] if top else 0.0
        if vmax <= 0:
            return np.zeros(query.shape)
        acc: dict[str, float] = {}
        norm = 0.0
        cv = self.covisit
        for item, v in top:
            if v <= 0:
                continue
            rel = v / vmax
            norm += rel
            row = cv.rows.get(item)
            if not row:
                continue
            f = rel / (cv.totals.get(item, 0.0) + 1.0)
            for other, c in row.items():
                acc[other] = acc.get(other, 0.0) + f * c
        if not acc:
            return np.zeros(query.shape)
        h = _hashes(acc)
        v = np.fromiter(acc.values(), dtype=np.float64, count=len(acc)) / norm
        order = np.argsort(h)
        return _lookup(h[order], v[order], query)

    def product_features(
        self, state: MemberState | None, cands: ProductCandidates, now: float | None = None
    ) -> np.ndarray:
        """Feature matrix (len(cands) x len(PRODUCT_FEATURES)); member features are relative to the member's
        strongest key so that they lie in [-1, 1] whatever the decay. ``now`` in seconds."""
        n = len(cands)
        x = np.zeros((n, len(PRODUCT_FEATURES)))
        x[:, 7] = _pop_feature(cands.popularity)
        if state is None or state.is_cold:
            return x
        x[:, 0] = _lookup(*_sorted_table(state.items.weights), cands.sku_h)
        cart = state.cart_items(now)
        if cart:
            x[:, 1] = np.isin(cands.sku_h, _hashes(cart)).astype(np.float64)
        x[:, 2] = self._covisit_scores(state, cands.sku_h)
        x[:, 3] = _lookup(*_sorted_table(state.categories.weights), cands.category_h)
        x[:, 4] = _lookup(*_sorted_table(state.brands.weights), cands.brand_h)
        x[:, 5] = _lookup(*_sorted_table(state.ordered_brands.weights), cands.brand_h)
        x[:, 6] = _lookup(*_sorted_table(state.bands.weights), cands.band_h)
        return x

    def sale_features(
        self, state: MemberState | None, cands: SaleCandidates, now: float | None = None
    ) -> np.ndarray:
        """Feature matrix (len(cands) x len(SALE_FEATURES)); ``now`` in seconds."""
        n = len(cands)
        x = np.zeros((n, len(SALE_FEATURES)))
        x[:, 5] = _pop_feature(cands.popularity)
        if state is None or state.is_cold:
            return x
        x[:, 0] = _lookup(*_sorted_table(state.sales.weights), cands.sale_h)
        cart = state.cart_items(now)
        if cart:
            x[:, 1] = np.isin(cands.sale_h, _hashes(e[1] for e in cart.values())).astype(np.float64)
        x[:, 2] = _lookup(*_sorted_table(state.brands.weights), cands.brand_h)
        x[:, 3] = _lookup(*_sorted_table(state.ordered_brands.weights), cands.brand_h)
        if cands.cat_h.size and state.categories.weights:
            flat = _lookup(*_sorted_table(state.categories.weights), cands.cat_h)
            ptr = cands.cat_ptr
            nonempty = ptr[1:] > ptr[:-1]
            if nonempty.any():
                x[nonempty, 4] = np.maximum.reduceat(flat, ptr[:-1][nonempty])
        return x

    # -- scoring
    def score_products(
        self, state: MemberState | None, cands: ProductCandidates, now: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, features) of all candidates - one matrix-vector product."""
        x = self.product_features(state, cands, now)
        return x @ self._weights(self.product_lr, PRODUCT_FEATURES), x

    def score_sales(
        self, state: MemberState | None, cands: SaleCandidates, now: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, features) of all candidate sales - one matrix-vector product."""
        x = self.sale_features(state, cands, now)
        return x @ self._weights(self.sale_lr, SALE_FEATURES), x

    @staticmethod
    def _reasons(x: np.ndarray, w: np.ndarray, names: Sequence[str], rows: np.ndarray) -> list[str]:
        contrib = x[rows] * w
        best = contrib.argmax(axis=1) if rows.size else np.empty(0, dtype=np.int64)
        return [REASONS[names[b]] if contrib[i, b] > 0 else TRENDING for i, b in enumerate(best.tolist())]

    def rank_products(
        self, state: MemberState | None, cands: ProductCandidates, k: int, now_ms: float | None = None
    ) -> list[Ranked]:
        """Top ``k`` in-stock products, best first, each with a score and a reason."""
        cands = cands.available()
        now = None if now_ms is None else now_ms / 1000.0
        scores, x = self.score_products(state, cands, now)
        top = _topk(scores, k)
        reasons = self._reasons(x, self._weights(self.product_lr, PRODUCT_FEATURES), PRODUCT_FEATURES, top)
        return [Ranked(cands.sku[i], float(scores[i]), r) for i, r in zip(top.tolist(), reasons, strict=True)]

    def rank_sales(
        self, state: MemberState | None, cands: SaleCandidates, k: int, now_ms: float | None = None
    ) -> list[Ranked]:
        """Top ``k`` sales open at ``now_ms`` (epoch ms; no filter when None), best first."""
        cands = cands.open_at(now_ms)
        now = None if now_ms is None else now_ms / 1000.0
        scores, x = self.score_sales(state, cands, now)
        top = _topk(scores, k)
        reasons = self._reasons(x, self._weights(self.sale_lr, SALE_FEATURES), SALE_FEATURES, top)
        return [
            Ranked(cands.sale_id[i], float(scores[i]), r) for i, r in zip(top.tolist(), reasons, strict=True)
        ]

    # -- learning
    def _learn(
        self,
        model: linear_model.LogisticRegression,
        names: Sequence[str],
        x: np.ndarray,
        scores: np.ndarray,
        positives: Sequence[int],
    ) -> None:
        """Pairwise (BPR-like) update: for each chosen row and each sampled other row, the logistic model
        learns ``x_pos - x_neg -> True`` and ``x_neg - x_pos -> False`` (a symmetric pair leaves the
        intercept alone). Negatives are uniform (``hard_fraction`` of them from the current top)."""
        n = x.shape[0]
        pos = set(positives)
        if not pos or n <= len(pos):
            return
        half = int(self.n_negatives * self.hard_fraction)
        hard = [i for i in _topk(scores, half + len(pos)).tolist() if i not in pos][:half] if half else []
        rand = [
            i for i in (self._rng.randrange(n) for _ in range(self.n_negatives - len(hard))) if i not in pos
        ]
        negs = hard + rand
        for p in pos:
            for q in negs:
                d = x[p] - x[q]
                if not d.any():
                    continue
                model.learn_one(dict(zip(names, d.tolist(), strict=True)), True)
                model.learn_one(dict(zip(names, (-d).tolist(), strict=True)), False)

    def learn_products(self, x: np.ndarray, scores: np.ndarray, positives: Sequence[int]) -> None:
        """Teach the product blend: rows ``positives`` of ``x`` were chosen, sampled others were not."""
        self._learn(self.product_lr, PRODUCT_FEATURES, x, scores, positives)

    def learn_sales(self, x: np.ndarray, scores: np.ndarray, positives: Sequence[int]) -> None:
        """Teach the sale blend."""
        self._learn(self.sale_lr, SALE_FEATURES, x, scores, positives)

    def to_dict(self) -> dict:
        """Blend weights (to checkpoint the ranker; the co-visitation rows are kept separately)."""
        return {"product": self.product_weights, "sale": self.sale_weights}

    def load_weights(self, d: Mapping[str, Mapping[str, float]]) -> None:
        """Restore weights from :meth:`to_dict`."""
        for f, w in d.get("product", {}).items():
            self.product_lr._weights[f] = float(w)
        for f, w in d.get("sale", {}).items():
            self.sale_lr._weights[f] = float(w)


# --------------------------------------------------------------------------------------------- glue


class PreferenceModel:
    """What the live agent holds: config, :class:`Ranker` (with its co-visitation) and the update rule.

    >>> pm = PreferenceModel()
    >>> st = pm.update(None, {"member_id": "m1", "sale_id": "s1", "sku": "a", "brand": "nike",
    ...                       "category": "shoes", "price": 50.0, "kind": "browse", "ts": 1_700_000_000_000})
    >>> st.member_id, st.n_events
    ('m1', 1)
    >>> sales = SaleCandidates.from_records([
    ...     {"sale_id": "s1", "brand": "nike", "categories": ["shoes"], "popularity": 1.0},
    ...     {"sale_id": "s2", "brand": "puma", "categories": ["hats"], "popularity": 8.0}])
    >>> [(r.id, r.reason) for r in pm.rank_sales(st, sales, k=2)]
    [('s1', 'sale you visited'), ('s2', 'trending now')]
    >>> [(r.id, r.reason) for r in pm.rank_sales(None, sales, k=1)]  # cold start
    [('s2', 'trending now')]
    """

    def __init__(self, config: PreferenceConfig | None = None, ranker: Ranker | None = None) -> None:
        self.config = config or PreferenceConfig()
        self.ranker = ranker or Ranker()

    def new_state(self, member_id: str) -> MemberState:
        """An empty member."""
        return MemberState(member_id, self.config)

    def load_state(self, data: bytes | None, member_id: str) -> MemberState:
        """Member from table bytes (empty member when ``data`` is None)."""
        return self.new_state(member_id) if data is None else MemberState.from_bytes(data, self.config)

    def update(
        self,
        state: MemberState | None,
        event: Mapping[str, Any],
        products: ProductCandidates | None = None,
        sales: SaleCandidates | None = None,
    ) -> MemberState:
        """Fold one event dict into the member (created when ``state`` is None) and the co-visitation.

        Fields: member_id, sku, kind (browse/fav/cart/order), ts (epoch ms or datetime), optional sale_id,
        brand, category, price, quantity, action (add/remove). An order may carry ``lines`` (dicts with
        sku, sale_id, quantity, price/unit_price, brand, category) instead of one sku. When ``products`` /
        ``sales`` (the candidates the member saw) are given for a cart add or an order, the ranking blend
        is taught too - before the member state changes, as in the prequential evaluation.
        """
        if state is None:
            state = self.new_state(str(event["member_id"]))
        t = to_seconds(event["ts"])
        kind = str(event.get("kind", "browse"))
        lines = event.get("lines") or [event]
        positive = kind == "order" or (kind == "cart" and event.get("action", "add") != "remove")
        if positive and (products is not None or sales is not None):
            self.learn(state, lines, products, sales, t)
        for line in lines:
            sku = str(line["sku"])
            top = state.items.top(10)
            recent = [(i, w) for i, w in top if i != sku]
            if recent and kind != "remove" and event.get("action") != "remove":
                vmax = top[0][1] or 1.0
                self.ranker.covisit.observe(sku, [(i, min(1.0, w / vmax)) for i, w in recent])
            state.observe(
                sku=sku,
                kind=kind,
                t=t,
                brand=line.get("brand"),
                category=line.get("category"),
                price=line.get("price", line.get("unit_price")),
                sale_id=line.get("sale_id"),
                action=event.get("action"),
                quantity=line.get("quantity"),
            )
        return state

    def learn(
        self,
        state: MemberState,
        lines: Sequence[Mapping[str, Any]],
        products: ProductCandidates | None,
        sales: SaleCandidates | None,
        t: float,
    ) -> None:
        """Teach the ranker that the member chose ``lines`` among ``products`` / ``sales``."""
        if products is not None and len(products):
            want = {key_hash(str(ln["sku"])) for ln in lines}
            pos = [i for i, h in enumerate(products.sku_h.tolist()) if h in want]
            if pos:
                scores, x = self.ranker.score_products(state, products, t)
                self.ranker.learn_products(x, scores, pos)
        if sales is not None and len(sales):
            want = {key_hash(str(ln.get("sale_id", ""))) for ln in lines}
            pos = [i for i, h in enumerate(sales.sale_h.tolist()) if h in want]
            if pos:
                scores, x = self.ranker.score_sales(state, sales, t)
                self.ranker.learn_sales(x, scores, pos)

    def rank_sales(
        self, state: MemberState | None, candidates: SaleCandidates, k: int, now_ms: float | None = None
    ) -> list[Ranked]:
        """Top ``k`` open sales for the member (popularity only when cold)."""
        return self.ranker.rank_sales(state, candidates, k, now_ms)

    def rank_products(
        self, state: MemberState | None, candidates: ProductCandidates, k: int, now_ms: float | None = None
    ) -> list[Ranked]:
        """Top ``k`` in-stock products for the member (popularity only when cold)."""
        return self.ranker.rank_products(state, candidates, k, now_ms)


_DEFAULT: PreferenceModel | None = None


def _default() -> PreferenceModel:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = PreferenceModel()
    return _DEFAULT


def rank_sales(
    member_state: MemberState | None,
    candidates: SaleCandidates,
    k: int,
    now_ms: float | None = None,
    model: PreferenceModel | None = None,
) -> list[Ranked]:
    """Rank open sales for a member with ``model`` (a process-wide default model when None).

    >>> sales = SaleCandidates.from_records([
    ...     {"sale_id": "s1", "brand": "b", "categories": [], "popularity": 1.0,
    ...      "starts_at": 0, "ends_at": 10},
    ...     {"sale_id": "s2", "brand": "c", "categories": [], "popularity": 0.0,
    ...      "starts_at": 0, "ends_at": 99}])
    >>> [r.id for r in rank_sales(None, sales, k=5, now_ms=50)]  # s1 is closed at t=50
    ['s2']
    """
    return (model or _default()).rank_sales(member_state, candidates, k, now_ms)


def rank_products(
    member_state: MemberState | None,
    candidates: ProductCandidates,
    k: int,
    now_ms: float | None = None,
    model: PreferenceModel | None = None,
) -> list[Ranked]:
    """Rank in-stock products for a member with ``model`` (a process-wide default model when None).

    >>> c = ProductCandidates.build(["a", "b"], ["x", "y"], ["c", "c"], [1.0, 2.0], [5.0, 1.0], stock=[0, 3])
    >>> [r.id for r in rank_products(None, c, k=5)]  # a is sold out
    ['b']
    """
    return (model or _default()).rank_products(member_state, candidates, k, now_ms)
