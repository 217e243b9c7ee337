"""One member's state: decayed affinities, the cart and the recently touched items (pure logic).

Timestamps in event dicts are epoch milliseconds (as in the Avro schemas) or ``datetime``; internally seconds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

import lz4.block
import numpy as np

#: Weight of one event per kind: browse < fav < cart < order. A cart ``remove`` counts as ``REMOVE_WEIGHT``.
KIND_WEIGHTS: dict[str, float] = {"browse": 1.0, "view": 1.0, "fav": 2.0, "cart": 3.0, "order": 5.0}
REMOVE_WEIGHT = -2.0
_HALF_REMOVE = REMOVE_WEIGHT / 2


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


@lru_cache(maxsize=1 << 16)  # a catalogue's prices repeat; the log and the format were ~3% of learning
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


def hashes(keys: Iterable[str]) -> np.ndarray:
    """:func:`key_hash` of each key, as an int64 array."""
    return np.fromiter((key_hash(k) for k in keys), dtype=np.int64)


def lookup(keys: np.ndarray, vals: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Value of each ``query`` hash in the sorted ``keys`` (0 when absent); O(n log m), vectorised."""
    if keys.size == 0 or query.size == 0:
        return np.zeros(query.shape, dtype=np.float64)
    pos = np.searchsorted(keys, query)
    pos[pos >= keys.size] = 0
    return np.where(keys[pos] == query, vals[pos], 0.0)


def sorted_table(weights: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(sorted hashes, values) of a small key->weight mapping, values relative to the largest one."""
    if not weights:
        return np.empty(0, np.int64), np.empty(0)
    h = hashes(weights)
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

    def __len__(self) -> int:
        return len(self.weights)

    def _advance(self, t: float) -> None:
        if t > self.t:
            if self.weights:
                # Eager and in place: a stored weight is the product of every decay since its last add, in order.
                # Lazy decay (weights scaled to a base time) rounds differently, and 1-ulp differences change which
                # near-tied neighbours a pruned co-visitation row keeps; rebuilding the dict in C was slower.
                f = 0.5 ** ((t - self.t) / self.half_life)
                w = self.weights
                for k, v in w.items():  # the value from the iteration, not a second lookup (same product)
                    w[k] = v * f
            self.t = t

    def add(self, key: str, weight: float, t: float) -> None:
        """Add ``weight`` to ``key`` at ``t`` (seconds); late events are decayed to the counter's time."""
        if not key:
            return
        w = self.weights
        if t > self.t:  # _advance(t), inlined (five adds per event)
            if w:
                f = 0.5 ** ((t - self.t) / self.half_life)
                for k, v in w.items():
                    w[k] = v * f
            self.t = t
        elif t < self.t:
            weight *= 0.5 ** ((self.t - t) / self.half_life)
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
    recent_cap: int = 40
    session_gap: float = 30 * 60.0


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

    # no attribute dict: one allocation less per member created or loaded
    __slots__ = ("config", "member_id", "n_events", "last_t", "items", "brands", "categories", "bands", "sales",
                 "ordered_brands", "cart", "_recent", "_recent_categories", "session_start", "_session_key")

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
        # The distinct items (-> time of their last touch, seconds) and categories touched last, LEAST recent
        # first: a touch is a pop and an append, where rebuilding a most-recent-first list cost more than the rest
        # of observe. ``recent`` and ``recent_categories`` read them most recent first.
        self._recent: dict[str, float] = {}
        self._recent_categories: dict[str, None] = {}
        #: when the member's current session started (a gap over ``config.session_gap`` starts a new one)
        self.session_start = 0.0
        self._session_key = ("", -1.0)

    @property
    def recent(self) -> list[tuple[str, float]]:
        """The distinct items touched last, most recent first, with the time of their last touch (seconds)."""
        return list(reversed(self._recent.items()))

    @recent.setter
    def recent(self, items: Iterable[tuple[str, float]]) -> None:
        self._recent = dict(reversed(list(items)))

    @property
    def recent_categories(self) -> list[str]:
        """The distinct categories touched last, most recent first."""
        return list(reversed(self._recent_categories))

    @recent_categories.setter
    def recent_categories(self, categories: Iterable[str]) -> None:
        self._recent_categories = dict.fromkeys(reversed(list(categories)))

    @property
    def session_key(self) -> str:
        """``member@session start`` (seconds): the member's current session in :class:`SessionKNN`.

        >>> s = MemberState("m1"); s.observe(sku="a", kind="browse", t=12.4)
        >>> s.session_key
        'm1@12'
        """
        start, key = self._session_key[1], self._session_key[0]
        if start != self.session_start:
            key = f"{self.member_id}@{self.session_start:.0f}"
            self._session_key = (key, self.session_start)
        return key

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
        # once per signal: the steps of before in the same order, with the recency update (_touch) inlined
        cfg = self.config
        w = event_weight(kind, action, quantity)
        if self.n_events == 0 or t - self.last_t > cfg.session_gap:
            self.session_start = t
        self.n_events += 1
        if t > self.last_t:  # max(last_t, t), NaN included: a NaN ``t`` leaves last_t as max() did
            self.last_t = t
        if action != "remove":
            recent = self._recent
            recent.pop(sku, None)
            recent[sku] = t
            if len(recent) > cfg.recent_cap:
                del recent[next(iter(recent))]
            if category:
                cats = self._recent_categories
                cats.pop(category, 0)
                cats[category] = None
                if len(cats) > cfg.category_cap:
                    del cats[next(iter(cats))]
        self.items.add(sku, w, t)
        aff = _HALF_REMOVE if w < _HALF_REMOVE else w  # max(w, REMOVE_WEIGHT / 2), NaN too: removal hurts the item more
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
        if cart:
            self._expire_cart(t)

    def touched(self) -> list[str]:
        """Items the member touched, most recent first (a record written before ``recent`` existed falls back to
        its decayed item weights)."""
        if self._recent:
            return list(reversed(self._recent))
        return [s for s, _ in self.items.top(len(self.items))]

    def session_items(self, n: int = 10) -> list[str]:
        """The member's last ``n`` items, most recent first: the query of session-based neighbours."""
        return self.touched()[:n]

    def _expire_cart(self, t: float) -> None:
        cart = self.cart
        if not cart:
            return
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
        if self.recent:
            # seconds before last_t, as integers: the list costs a few bytes per item
            d["r"] = [[s for s, _ in self.recent], [int(self.last_t - ts) for _, ts in self.recent]]
            d["ss"] = round(self.session_start, 1)
        if self.recent_categories:
            d["rc"] = self.recent_categories
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
        # "r", "ss" and "rc" are absent from records written before they existed: such a member loads with no recency
        # list (touched() then falls back to the item weights)
        recent = d.get("r")
        if recent:
            s.recent = [(sku, s.last_t - ago) for sku, ago in zip(recent[0], recent[1], strict=True)]
        s.session_start = float(d.get("ss", s.last_t))
        s.recent_categories = list(d.get("rc", ()))
        return s

    def to_bytes(self) -> bytes:
        """The value stored in the Faust table: :func:`pack` (the zlib JSON of :meth:`to_dict` when a string
        holds a NUL or cannot be encoded, or a number does not fit 64 bits)."""
        try:
            return pack(self)
        except (ValueError, TypeError, OverflowError, UnicodeEncodeError):
            return self.to_json_bytes()

    def to_json_bytes(self) -> bytes:
        """zlib-compressed compact JSON of :meth:`to_dict` (every record before issue #13 was written so)."""
        return zlib.compress(json.dumps(self.to_dict(), separators=(",", ":")).encode(), 1)

    @classmethod
    def from_bytes(cls, data: bytes, config: PreferenceConfig | None = None) -> MemberState:
        """Inverse of :meth:`to_bytes`; also reads :meth:`to_json_bytes` records."""
        if data[:1] == PACKED:
            return unpack(data, config)
        return cls.from_dict(json.loads(zlib.decompress(data)), config)


#: First byte of a :func:`pack` record (a zlib stream starts with 0x78, so older records are told apart).
PACKED = b"\x02"
_HEADER = struct.Struct("<III")
_SWAP = sys.byteorder == "big"  # the arrays are stored little-endian


def _le(a: array) -> bytes:
    if _SWAP:
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def _from_le(typecode: str, data: bytes) -> array:
    a = array(typecode, data)
    if _SWAP:
        a.byteswap()
    return a


def _ago(last_t: float, recent: dict[str, float]) -> array:
    """Whole seconds from each recent item's touch to ``last_t``, truncated as ``int()`` does, in Python's ints
    (numpy's set-up cost more than 40 items); a time not finite or over 64 bits takes numpy's cast, as before.

    >>> _ago(100.0, {"a": 10.5, "b": 99.9, "c": 100.7}).tolist()
    [89, 0, 0]
    """
    try:
        return array("q", [int(last_t - v) for v in recent.values()])
    except (ValueError, OverflowError):
        ago = (last_t - np.fromiter(recent.values(), np.float64, len(recent))).astype(np.int64)
        return array("q", ago.tobytes())


def pack(state: MemberState) -> bytes:
    """A member as LZ4-compressed arrays: what :meth:`MemberState.to_dict` holds, at the same precision (weights
    as float32, times to 0.1 s, recent items as whole seconds before the last event), so a member reads back the
    same whichever format wrote it.

    Writing members to the changelog was ~60 µs each in JSON and zlib (zlib's set-up alone, for a few hundred
    bytes); this is a few µs: the strings go in one NUL-joined text, the numbers in three arrays.

    >>> s = MemberState("m1")
    >>> s.observe(sku="a", brand="nike", category="shoes", price=60.0, sale_id="s1", kind="cart", t=60.0)
    >>> data = pack(s)
    >>> data[:1] == PACKED, unpack(data).to_dict() == MemberState.from_bytes(s.to_json_bytes()).to_dict()
    (True, True)
    """
    strings = [state.member_id]
    sizes = []
    times = []
    values: list[float] = []
    last_t = state.last_t
    last_t1 = round(last_t, 1)
    # the counters in _COUNTERS order, read directly (getattr by name per counter showed in the flush's profile)
    for c in (state.items, state.brands, state.categories, state.bands, state.sales, state.ordered_brands):
        w = c.weights
        strings += w
        values += w.values()
        sizes.append(len(w))
        # round(x, 1) formats its float (a seventh of the write): a counter the last event touched holds last_t itself
        times.append(0.0 if not w else last_t1 if c.t is last_t else round(c.t, 1))
    cart, recent, cats = state.cart, state._recent, state._recent_categories
    strings += cart
    strings += [e[1] for e in cart.values()]
    strings += recent
    strings += cats
    text = "\x00".join(strings)
    if text.count("\x00") != len(strings) - 1:
        raise ValueError("a string holds a NUL")
    ints = array("q", [state.n_events, *sizes, len(cart), len(recent), len(cats)])
    ints.extend([e[0] for e in cart.values()])
    ago = _ago(last_t, recent)
    times += [last_t1, round(state.session_start, 1)]
    times += [round(e[2], 1) for e in cart.values()]
    body = b"".join((_HEADER.pack(len(ints) + len(ago), len(times), len(values)), _le(ints), _le(ago),
                     _le(array("d", times)), _le(array("f", values)), text.encode()))
    return PACKED + lz4.block.compress(body)


def unpack(data: bytes, config: PreferenceConfig | None = None) -> MemberState:
    """Inverse of :func:`pack`."""
    body = lz4.block.decompress(memoryview(data)[1:])
    n_ints, n_nums, n_weights = _HEADER.unpack_from(body)
    at = _HEADER.size
    ints = _from_le("q", body[at:at + 8 * n_ints]).tolist()
    at += 8 * n_ints
    nums = _from_le("d", body[at:at + 8 * n_nums]).tolist()
    at += 8 * n_nums
    weights = _from_le("f", body[at:at + 4 * n_weights]).tolist()
    strings = body[at + 4 * n_weights:].decode().split("\x00")
    n_counters = len(_COUNTERS)
    sizes = ints[1:1 + n_counters]
    n_cart, n_recent, n_cats = ints[1 + n_counters:4 + n_counters]
    s = MemberState(strings[0], config)
    s.n_events = ints[0]
    s.last_t = nums[n_counters]
    k = 1
    w = 0
    for i, name in enumerate(_COUNTERS):
        n = sizes[i]
        if n:
            c: DecayedCounter = getattr(s, name)
            c.t = nums[i]
            c.weights = dict(zip(strings[k:k + n], weights[w:w + n], strict=True))
            k += n
            w += n
    skus, sale_ids = strings[k:k + n_cart], strings[k + n_cart:k + 2 * n_cart]
    k += 2 * n_cart
    q = 4 + n_counters
    s.cart = {sku: [qty, sale_id, t] for sku, qty, sale_id, t
              in zip(skus, ints[q:q + n_cart], sale_ids, nums[n_counters + 2:], strict=True)}
    ago = ints[q + n_cart:]
    s._recent = {sku: s.last_t - a for sku, a in zip(strings[k:k + n_recent], ago, strict=True)}
    k += n_recent
    s._recent_categories = dict.fromkeys(strings[k:k + n_cats])
    # as from_dict: a member without recent items was written without its session start
    s.session_start = nums[n_counters + 1] if n_recent else s.last_t
    return s


def state_size_bytes(state: MemberState) -> int:
    """Bytes one member takes in the table (size of :meth:`MemberState.to_bytes`).

    >>> s = MemberState("m1")
    >>> s.observe(sku="a", kind="browse", t=0.0)
    >>> 20 < state_size_bytes(s) < 200
    True
    """
    return len(state.to_bytes())
