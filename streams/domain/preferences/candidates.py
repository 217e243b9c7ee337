"""What may be ranked: in-stock products and open sales, as numpy arrays (built once, reused per request)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salepulse.streams.domain.preferences.state import hashes as _hashes
from salepulse.streams.domain.preferences.state import price_band


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
    first_seen: np.ndarray | None = None
    """Epoch seconds of each product's first event, when known (the ranker's freshness feature)."""

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
            first_seen=None if self.first_seen is None else self.first_seen[idx],
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
