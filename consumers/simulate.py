"""A simulated flash-sale shop, deterministic under a seed, and a producer that plays it into Kafka.

Why a simulator at all: real logs (see ``replay``) have no buyer forecasts, no stock and no known truth, so they
cannot tell whether the forecast is right or whether a replenishment alert was deserved. Here the truth is
known by construction, and everything the pipeline has to cope with is present on purpose:

- **Members with lasting tastes**: favourite brands and categories and a price band each, with heavy-tailed
  activity (a few members do much of the browsing), so personalization has something to learn.
- **Sales on a schedule**: staggered openings, several open at once; each is one brand with 10-60 products in a
  few categories, with a price and an allocated stock. Buyers allocate stock from their own (wrong) forecast,
  so some products sell out (alerts are deserved) and some never come close.
- **Expert forecasts as real judgement is**: per-buyer optimism or pessimism, lognormal noise, shrinkage toward
  the sale's typical product, rounding to round numbers, occasional big misses, over-confident 80 % ranges on
  some products and none on others, and a few products with no forecast at all.
- **Known true demand** per (sale, sku) (``true_demand``: units that would sell with unlimited stock), realised
  through front-loaded arrivals (intensity ~ exp(-k t) plus a small last-chance bump), overdispersed units per
  order, and view -> cart -> order funnels of realistic conversion with cart removals. An order never takes more
  than the stock left; a sold-out product stops selling and its stock-out time is recorded (``stockouts``).

Two layers, so the world is tested without a broker:

1. **Pure** - :class:`SimulatedWorld` (imports neither Kafka nor Faust). Catalogue, priors and stock are built
   eagerly (they are small); :meth:`SimulatedWorld.events` generates events lazily, one simulated minute of
   one sale at a time, merged across sales through a heap, so memory stays flat however long the run.
2. **Kafka** - :func:`run_simulation` sends the catalogue, priors and stock, then the events at a target rate,
   optionally interleaved with malformed messages so the dead-letter path is exercised.

Events carry *simulated* time starting at ``start``; consumers work in event time, so a sale of a few simulated
hours can be played in a few real minutes (``time_scale`` simulated seconds per real second).
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from salepulse.streams.config import Settings

if TYPE_CHECKING:
    from salepulse.consumers.publish import Publisher

Record = dict[str, Any]
Event = tuple[str, Record]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_START = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
"""A fixed default so that ``SimulatedWorld(seed)`` is the same world on every machine and every day."""
DEFAULT_TIME_SCALE = 60.0
MINUTE_MS = 60_000
HOUR_MS = 3_600_000

# (category path, typical full price in EUR). Prices of a category differ by brand and product around it.
CATEGORIES: tuple[tuple[str, float], ...] = (
    ("apparel.dresses", 59.0), ("apparel.tops", 29.0), ("apparel.jeans", 49.0), ("apparel.outerwear", 99.0),
    ("shoes.sneakers", 69.0), ("shoes.boots", 109.0), ("shoes.sandals", 39.0), ("accessories.bags", 79.0),
    ("accessories.watches", 129.0), ("accessories.jewellery", 45.0), ("beauty.skincare", 25.0),
    ("beauty.fragrance", 55.0), ("home.kitchen", 35.0), ("home.textiles", 30.0), ("home.decor", 40.0),
    ("sports.fitness", 35.0), ("kids.apparel", 22.0), ("electronics.audio", 89.0),
)
ADJECTIVES = ("Classic", "Urban", "Essential", "Soft", "Bold", "Studio", "Coastal", "Alpine", "Vintage", "Nova",
              "Luxe", "Everyday", "Signature", "Pure", "Metro", "Heritage")
SYLLABLES = ("lu", "na", "ro", "ve", "ski", "mo", "ri", "ta", "zen", "ko", "li", "sa", "vi", "or", "el", "da",
             "ne", "ba", "quo", "fi", "ar", "mi", "tes", "ul")

PRICE_BANDS = 5
"""Products and members fall into 5 price bands (budget .. premium) relative to the category's usual price."""
PRICE_AFFINITY = np.array([1.0, 0.45, 0.15, 0.06, 0.03])
"""How much a member likes a product 0, 1, 2, ... bands away from her own band."""
CATEGORY_BOOST = 4.0
"""A favourite category is (1 + boost) times as attractive as another one."""
BRAND_BOOST = 7.0
"""A member with the sale's brand among her favourites visits it (1 + boost) times as often."""
APP_SHARE = 0.55
N_BUYERS = 6
REGIONS = ("north", "south", "east", "west")
REGION_WEIGHTS = (0.35, 0.3, 0.2, 0.15)
"""Members' delivery regions (one warehouse each) and how the membership is spread over them."""
CURRENCY = "EUR"

# heap entry kinds
_VIEW, _CART, _UNCART, _ORDER = 0, 1, 2, 3


def _ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (exact integer arithmetic, no float rounding)."""
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _dt(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def _nice(value: float) -> float:
    """Round the way people round forecasts: to 1 below 10, 5 below 100, 10 below 300, then 25, 50, 100."""
    for limit, step in ((10, 1), (100, 5), (300, 10), (1000, 25), (3000, 50)):
        if value < limit:
            return float(max(step, round(value / step) * step)) if value >= step / 2 else float(round(value))
    return float(round(value / 100) * 100)


@dataclass
class _SalePlan:
    """Everything decided about one sale before it opens (numpy arrays are per product)."""

    index: int
    sale_id: str
    brand: int
    start_ms: int
    end_ms: int
    skus: list[str]
    categories: np.ndarray  # category index per product
    bands: np.ndarray  # price band per product
    prices: list[float]
    view_weight: np.ndarray  # relative attention a product gets, before member taste
    extra_units: np.ndarray  # mean units per order line minus 1 (overdispersion differs by product)
    expected: np.ndarray  # mean demand the buyers try to forecast
    demand: np.ndarray  # realised unconstrained demand (units)
    stock: list[int]
    view_to_cart: float
    cart_to_order: float
    decay: float  # k of the exp(-k t) arrival intensity, t in sale fractions
    late_bump: float  # share of arrivals in the last-chance bump
    expected_events: float

    @property
    def n_slices(self) -> int:
        """One slice per simulated minute (at most 720): the unit of lazy generation."""
        return int(min(720, max(1, math.ceil((self.end_ms - self.start_ms) / MINUTE_MS))))

    def arrival_cdf(self, u: np.ndarray) -> np.ndarray:
        """Share of a sale's arrivals before fraction ``u`` of its life: decaying start plus a late bump."""
        k, beta, k2 = self.decay, self.late_bump, 25.0
        early = (1.0 - np.exp(-k * u)) / (1.0 - math.exp(-k))
        late = (np.exp(-k2 * (1.0 - u)) - math.exp(-k2)) / (1.0 - math.exp(-k2))
        return (1.0 - beta) * early + beta * late


@dataclass
class _SaleRun:
    """The state of an open sale while its slices are being generated; dropped after its last slice."""

    plan: _SalePlan
    rng: np.random.Generator
    audience: np.ndarray  # cumulative visit weights over members
    orders: list[tuple[tuple[int, int], ...]]  # planned orders: ((product, units), ...), in arrival order
    next_order: int
    order_counts: np.ndarray  # order journeys per slice
    session_counts: np.ndarray  # browse-only sessions per slice
    p_cart: float  # chance that a browse-session view becomes a cart add


class SimulatedWorld:
    """A flash-sale shop with known truth: catalogue, buyer forecasts, stock, and a lazy stream of events.

    Built eagerly: ``sales`` (``Sale`` records), ``priors`` (``ExpertForecast``), ``stock`` (``StockLevel``),
    ``true_demand`` (unconstrained units per (sale_id, sku)). Generated lazily: :meth:`events`. Everything
    depends only on the constructor arguments, so the same seed gives the same world, ids included.

    >>> from datetime import UTC, datetime
    >>> world = SimulatedWorld(seed=3, n_members=1_000, n_sales=4, start=datetime(2025, 3, 3, 9, tzinfo=UTC))
    >>> len(world.sales), world.sales[0]["starts_at"].isoformat(), 10 <= len(world.sales[0]["products"]) <= 60
    (4, '2025-03-03T09:00:00+00:00', True)
    >>> events = list(world.events())
    >>> sorted({kind for kind, _ in events})
    ['browse', 'cart', 'order']
    >>> all(a[1]["ts"] <= b[1]["ts"] for a, b in zip(events, events[1:]))
    True
    >>> events == list(SimulatedWorld(seed=3, n_members=1_000, n_sales=4,
    ...                               start=datetime(2025, 3, 3, 9, tzinfo=UTC)).events())
    True
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        n_members: int = 20_000,
        n_sales: int = 24,
        start: datetime = DEFAULT_START,
        sale_hours: tuple[float, float] = (2.0, 6.0),
        stagger_minutes: float = 30.0,
        open_at_start: int = 3,
        products_per_sale: tuple[int, int] = (10, 60),
        lines_per_member: float = 0.015,
        time_scale: float = DEFAULT_TIME_SCALE,
        id_prefix: str | None = None,
    ) -> None:
        """Plan the world.

        ``lines_per_member`` sets demand: the expected order lines of an average sale per member (about 0.4
        lines per member over 24 sales); with the funnel that gives roughly 40 events per member.
        ``id_prefix`` (default ``sim<seed>``) starts every id, so two worlds with different prefixes never
        share a sale, sku or event id.
        """
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        if n_members < 1 or n_sales < 1:
            raise ValueError("need at least one member and one sale")
        self.seed = seed
        self.n_members = n_members
        self.n_sales = n_sales
        self.start = start.astimezone(UTC)
        self.time_scale = time_scale
        self.prefix = id_prefix or f"sim{seed}"
        rng = np.random.default_rng(seed)
        self._make_brands(rng)
        self._make_members(rng)
        self._plans = self._make_sales(rng, sale_hours, stagger_minutes, open_at_start, products_per_sale,
                                       lines_per_member)
        self.sales: list[Record] = []
        self.priors: list[Record] = []
        self.stock: list[Record] = []
        self.true_demand: dict[tuple[str, str], int] = {}
        self._make_records(rng)
        self.stockouts: dict[tuple[str, str], datetime] = {}
        """(sale_id, sku) -> when the last unit sold; filled while :meth:`events` runs."""

    # ------------------------------------------------------------------ planning
    def _make_brands(self, rng: np.random.Generator) -> None:
        n_brands = max(8, self.n_sales)
        names: list[str] = []
        while len(names) < n_brands:
            parts = rng.choice(len(SYLLABLES), size=int(rng.integers(2, 4)))
            name = "".join(SYLLABLES[i] for i in parts).capitalize()
            if name not in names:
                names.append(name)
        self.brands = names
        popularity = 1.0 / np.arange(1, n_brands + 1) ** 0.8  # Zipf: a few brands draw the crowds
        self._brand_pop = popularity / popularity.mean()
        self._brand_price = rng.lognormal(0.0, 0.3, n_brands)  # some brands are pricier across the board
        self._category_pop = rng.dirichlet(np.full(len(CATEGORIES), 0.8))
        self._brand_categories = [
            rng.choice(len(CATEGORIES), size=int(rng.integers(2, 6)), replace=False, p=self._category_pop)
            for _ in range(n_brands)
        ]

    def _make_members(self, rng: np.random.Generator) -> None:
        n = self.n_members
        # heavy-tailed activity: lognormal with sigma 1.1 puts ~40 % of visits on the most active 10 %
        self._activity = rng.lognormal(0.0, 1.1, n)
        brand_p = self._brand_pop / self._brand_pop.sum()
        self._fav_brands = rng.choice(len(self.brands), size=(n, 3), p=brand_p).astype(np.int16)
        self._fav_categories = rng.choice(len(CATEGORIES), size=(n, 3), p=self._category_pop).astype(np.int16)
        self._price_band = rng.choice(PRICE_BANDS, size=n, p=[0.2, 0.3, 0.25, 0.15, 0.1]).astype(np.int16)
        # own stream: adding regions must not change the members (or anything else) of an existing seed
        self._region = np.random.default_rng([self.seed, 16]).choice(
            len(REGIONS), size=n, p=REGION_WEIGHTS).astype(np.int8)

    def _make_sales(
        self,
        rng: np.random.Generator,
        sale_hours: tuple[float, float],
        stagger_minutes: float,
        open_at_start: int,
        products_per_sale: tuple[int, int],
        lines_per_member: float,
    ) -> list[_SalePlan]:
        start_ms = _ms(self.start)
        plans: list[_SalePlan] = []
        offset = 0.0
        brand_p = self._brand_pop / self._brand_pop.sum()
        lo, hi = products_per_sale
        for i in range(self.n_sales):
            if i >= open_at_start:
                offset += stagger_minutes * rng.uniform(0.5, 1.5)
            opens = start_ms + int(round(offset / 5.0)) * 5 * MINUTE_MS  # sales open on the 5 minutes
            hours = rng.uniform(*sale_hours)
            closes = opens + max(1, int(round(hours * 2))) * HOUR_MS // 2  # ... and run whole half hours
            brand = int(rng.choice(len(self.brands), p=brand_p))
            n_products = int(rng.integers(lo, hi + 1))
            own = self._brand_categories[brand]
            cats_here = rng.choice(own, size=min(len(own), int(rng.integers(1, 5))), replace=False)
            cat_weights = rng.dirichlet(np.ones(len(cats_here)))
            cats = rng.choice(cats_here, size=n_products, p=cat_weights).astype(np.int16)
            typical = np.array([CATEGORIES[c][1] for c in cats])
            relative = self._brand_price[brand] * rng.lognormal(0.0, 0.35, n_products)
            prices = [max(4.99, round(float(p)) - 0.01) for p in typical * relative]
            bands = np.digitize(np.log(relative), [-0.45, -0.15, 0.15, 0.45]).astype(np.int16)
            attract = rng.lognormal(0.0, 0.9, n_products)  # a few hero products, a long tail
            price_effect = relative ** -1.0
            share = attract * price_effect
            share /= share.sum()
            view_weight = attract ** 0.8 * price_effect ** 0.5 * rng.lognormal(0.0, 0.3, n_products)
            extra = np.minimum(2.0, rng.lognormal(math.log(0.25), 0.6, n_products))
            lines = (lines_per_member * self.n_members * self._brand_pop[brand] * rng.lognormal(0.0, 0.5)
                     * math.sqrt(hours / 4.0))
            expected = lines * share * (1.0 + extra)
            shape = 5.0  # demand around its mean is negative binomial: more spread than Poisson
            demand = rng.poisson(rng.gamma(shape, expected / shape)).astype(np.int64)
            view_to_cart = rng.uniform(0.035, 0.07)
            cart_to_order = rng.uniform(0.32, 0.48)
            exp_lines = float((demand / (1.0 + extra)).sum())
            carts = exp_lines / cart_to_order
            expected_events = carts / view_to_cart + carts * 1.45 + exp_lines / 1.2
            sale_id = f"{self.prefix}-sale{i:03d}"
            plans.append(_SalePlan(
                index=i, sale_id=sale_id, brand=brand, start_ms=opens, end_ms=closes,
                skus=[f"{sale_id}-p{j:02d}" for j in range(n_products)], categories=cats, bands=bands,
                prices=prices, view_weight=view_weight, extra_units=extra, expected=expected, demand=demand,
                stock=[], view_to_cart=view_to_cart, cart_to_order=cart_to_order,
                decay=rng.uniform(2.5, 4.5), late_bump=rng.uniform(0.03, 0.08), expected_events=expected_events,
            ))
        return plans

    def _make_records(self, rng: np.random.Generator) -> None:
        """Buyer forecasts (and the stock they allocate from them), then the Sale and StockLevel records."""
        n_buyers = N_BUYERS
        buyer_bias = rng.normal(0.08, 0.25, n_buyers)  # buyers tend to be optimistic, some pessimistic
        buyer_sigma = rng.uniform(0.2, 0.45, n_buyers)  # stated spread: narrower than their real error
        # Habits drawn from their own stream, so the rest of the world stays what it was for a given seed:
        # each buyer misjudges some departments more than others, and big numbers differently from small ones
        # (a positive slope: optimistic on big numbers; negative: cautious on them).
        habits = np.random.default_rng([self.seed, 15])
        departments = sorted({c.split(".")[0] for c, _ in CATEGORIES})
        dept_bias = {(b, d): habits.normal(0.0, 0.15) for b in range(n_buyers) for d in departments}
        size_slope = habits.normal(0.0, 0.12, n_buyers)
        self.buyer_habits = {
            f"buyer-{b + 1:02d}": {"bias": float(buyer_bias[b]), "size_slope": float(size_slope[b]),
                                   **{f"bias.{d}": float(dept_bias[(b, d)]) for d in departments}}
            for b in range(n_buyers)
        }
        """Each buyer's log-scale habits (ground truth for the pre-sale desk's evaluation)."""
        for plan in self._plans:
            buyer = int(rng.integers(n_buyers))
            author = f"buyer-{buyer + 1:02d}"
            starts = _dt(plan.start_ms)
            submitted = starts - timedelta(minutes=int(rng.integers(18 * 60, 72 * 60)))
            updated = starts - timedelta(minutes=int(rng.integers(24 * 60, 96 * 60)))
            typical = float(np.exp(np.log(plan.expected + 0.5).mean()))
            stock: list[int] = []
            for k, sku in enumerate(plan.skus):
                mu = float(plan.expected[k])
                dept = CATEGORIES[int(plan.categories[k])][0].split(".")[0]
                habit = dept_bias[(buyer, dept)] + size_slope[buyer] * (math.log(mu + 0.5) - math.log(typical))
                log_f = math.log(mu + 0.5) + buyer_bias[buyer] + habit + rng.normal(0.0, 0.35)
                if rng.random() < 0.06:  # the occasional big miss: a product nobody saw coming (or going)
                    log_f += rng.normal(0.0, 1.1)
                log_f = 0.8 * log_f + 0.2 * math.log(typical)  # anchoring on the sale's typical product
                forecast = max(1.0, math.exp(log_f))
                forecast = _nice(forecast) if rng.random() < 0.75 else float(round(forecast))
                has_forecast = rng.random() >= 0.04
                if has_forecast:
                    low = high = None
                    if rng.random() < 0.6:
                        spread = math.exp(1.2816 * buyer_sigma[buyer])
                        low = float(math.floor(forecast / spread))
                        high = float(math.ceil(forecast * spread))
                    self.priors.append({
                        "event_id": f"{sku}-fc1", "sale_id": plan.sale_id, "sku": sku,
                        "expected_units": forecast, "low": low, "high": high, "author": author, "buyer_id": author,
                        "submitted_at": submitted,
                    })
                    cover = math.exp(rng.normal(math.log(1.35), 0.3))
                    if rng.random() < 0.15:
                        cover *= rng.uniform(2.0, 4.0)  # a generous allocation: no chance of selling out
                    stock.append(max(1, math.ceil(forecast * cover)))
                else:
                    stock.append(max(1, math.ceil(typical * rng.lognormal(0.2, 0.5))))
                self.true_demand[(plan.sale_id, sku)] = int(plan.demand[k])
            plan.stock = stock
            brand = self.brands[plan.brand]
            products = [
                {"sku": sku, "name": f"{brand} {ADJECTIVES[(k * 7 + plan.index) % len(ADJECTIVES)]} "
                                     f"{CATEGORIES[int(plan.categories[k])][0].split('.')[1].title()}",
                 "category": CATEGORIES[int(plan.categories[k])][0], "price": plan.prices[k], "stock": stock[k]}
                for k, sku in enumerate(plan.skus)
            ]
            self.sales.append({
                "event_id": f"{plan.sale_id}-v1", "sale_id": plan.sale_id, "brand": brand, "starts_at": starts,
                "ends_at": _dt(plan.end_ms), "products": products, "updated_at": updated,
            })
            # Restocking a flash sale comes from the central depot, hours not days away; scaled to the sale's
            # length so that a replenishment alert can still help before the sale ends.
            hours = (plan.end_ms - plan.start_ms) / 3_600_000
            lead = round(hours * float(rng.choice([0.1, 0.15, 0.2, 0.3])), 2)
            self.stock.extend(
                {"event_id": f"{sku}-st1", "sku": sku, "on_hand": stock[k], "inbound": 0, "inbound_eta": None,
                 "lead_time_hours": lead, "updated_at": updated}
                for k, sku in enumerate(plan.skus)
            )

    # ------------------------------------------------------------------ introspection
    @property
    def expected_events(self) -> float:
        """Planned number of events (before stock-outs cut some carts and orders): sizes runs and bars."""
        return float(sum(p.expected_events for p in self._plans))

    @property
    def ends_at(self) -> datetime:
        """When the last sale closes: the end of simulated time."""
        return _dt(max(p.end_ms for p in self._plans))

    @property
    def expected_demand(self) -> dict[tuple[str, str], float]:
        """(sale_id, sku) -> the mean demand the buyers try to forecast (``true_demand`` is one draw around it)."""
        return {(p.sale_id, sku): float(p.expected[k]) for p in self._plans for k, sku in enumerate(p.skus)}

    def region(self, member_id: str) -> str:
        """The member's delivery region (the warehouse that serves her)."""
        return REGIONS[int(self._region[int(member_id.lstrip("m"))])]

    def taste(self, member_id: str) -> dict[str, Any]:
        """A member's lasting tastes (the ground truth personalization should discover)."""
        m = int(member_id.lstrip("m"))
        return {
            "brands": sorted({self.brands[b] for b in self._fav_brands[m]}),
            "categories": sorted({CATEGORIES[c][0] for c in self._fav_categories[m]}),
            "price_band": int(self._price_band[m]),
            "activity": float(self._activity[m]),
            "region": REGIONS[int(self._region[m])],
        }

    # ------------------------------------------------------------------ lazy events
    def _open(self, plan: _SalePlan) -> _SaleRun:
        """Draw what a sale needs only once it opens: its audience, its orders and its arrival schedule."""
        rng = np.random.default_rng([self.seed, 1_000 + plan.index])
        fans = (self._fav_brands == plan.brand).any(axis=1)
        audience = np.cumsum(self._activity * (1.0 + BRAND_BOOST * fans))
        # split each product's demand into order lines of 1+ units (negative binomial extra units)
        line_product: list[np.ndarray] = []
        line_units: list[np.ndarray] = []
        for k in np.flatnonzero(plan.demand > 0):
            remaining, extra = int(plan.demand[k]), float(plan.extra_units[k])
            while remaining > 0:
                n = max(4, int(remaining / (1.0 + extra) * 1.3) + 4)
                units = 1 + np.minimum(11, rng.negative_binomial(0.6, 0.6 / (0.6 + extra), n))
                total = np.cumsum(units)
                cut = int(np.searchsorted(total, remaining))
                if cut < n:
                    units = units[: cut + 1]
                    units[-1] -= int(total[cut]) - remaining
                    remaining = 0
                else:
                    remaining -= int(total[-1])
                line_product.append(np.full(len(units), k))
                line_units.append(units)
        orders: list[tuple[tuple[int, int], ...]] = []
        if line_product:
            products = np.concatenate(line_product)
            units = np.concatenate(line_units)
            order = rng.permutation(len(products))
            products, units = products[order].tolist(), units[order].tolist()
            sizes = rng.choice([1, 2, 3], size=len(products), p=[0.84, 0.12, 0.04]).tolist()
            i = 0
            while i < len(products):
                lines: list[tuple[int, int]] = []
                want = sizes[i]
                while i < len(products) and len(lines) < want and all(products[i] != p for p, _ in lines):
                    lines.append((products[i], units[i]))
                    i += 1
                orders.append(tuple(lines))
        n_lines = sum(len(o) for o in orders)
        carts = n_lines / plan.cart_to_order
        views_needed = carts / plan.view_to_cart
        order_views = n_lines * 1.3 + len(orders) * 1.2  # what the buying journeys view themselves
        browse_views = max(4.0 * 20, views_needed - order_views)
        sessions = int(round(browse_views / 4.0))
        p_cart = min(0.5, max(0.0, carts - n_lines) / browse_views)
        edges = np.linspace(0.0, 1.0, plan.n_slices + 1)
        probs = np.diff(plan.arrival_cdf(edges))
        probs = np.clip(probs, 0.0, None)
        probs /= probs.sum()
        return _SaleRun(plan, rng, audience, orders, 0, rng.multinomial(len(orders), probs),
                        rng.multinomial(sessions, probs), p_cart)

    def _members(self, run: _SaleRun, n: int) -> np.ndarray:
        picks = np.searchsorted(run.audience, run.rng.random(n) * run.audience[-1], side="right")
        return np.minimum(picks, self.n_members - 1)

    def _affinity(self, members: np.ndarray, plan: _SalePlan) -> np.ndarray:
        """(members x products) attractiveness of each product to each member: category and price band."""
        fav = (self._fav_categories[members][:, :, None] == plan.categories[None, None, :]).any(axis=1)
        gap = np.abs(self._price_band[members][:, None] - plan.bands[None, :])
        return (1.0 + CATEGORY_BOOST * fav) * PRICE_AFFINITY[np.minimum(gap, PRICE_BANDS - 1)]

    def _expand(self, run: _SaleRun, j: int, heap: list[tuple[Any, ...]], counters: list[int]) -> None:
        """Generate the journeys that start in slice ``j`` of a sale and push their events onto ``heap``.

        Every event of a journey is at or after the journey's start, which is at or after the slice's start;
        that is what lets :meth:`events` emit anything earlier than the next unexpanded slice.
        """
        plan, rng = run.plan, run.rng
        slice_ms = (plan.end_ms - plan.start_ms) / plan.n_slices
        a = plan.start_ms + int(j * slice_ms)
        b = plan.start_ms + int((j + 1) * slice_ms)
        last = plan.end_ms - 1
        n_products = len(plan.skus)
        push = heapq.heappush
        prefix = self.prefix

        # ---- browse-only sessions: member first, then what she looks at (her categories, her price band)
        n_b = int(run.session_counts[j])
        if n_b:
            members = self._members(run, n_b)
            weights = self._affinity(members, plan) * plan.view_weight[None, :]
            cum = np.cumsum(weights, axis=1)
            cum /= cum[:, -1:]
            cum += np.arange(n_b)[:, None]
            n_views = 1 + np.minimum(29, rng.negative_binomial(1, 0.25, n_b))
            total = int(n_views.sum())
            row = np.repeat(np.arange(n_b), n_views)
            picked = np.searchsorted(cum.ravel(), rng.random(total) + row, side="right") - row * n_products
            picked = np.clip(picked, 0, n_products - 1)
            first = np.concatenate(([0], np.cumsum(n_views)[:-1]))
            gaps = rng.exponential(45_000.0, total)
            gaps[first] = 0.0
            steps = np.cumsum(gaps)
            anchors = a + rng.random(n_b) * (b - a)
            view_t = np.minimum(last, (anchors[row] + steps - steps[first][row]).astype(np.int64))
            carted = rng.random(total) < run.p_cart
            cart_t = np.minimum(last, view_t + rng.integers(10_000, 180_000, total))
            cart_units = 1 + (rng.random(total) < 0.08)
            removed = rng.random(total) < 0.45
            remove_t = np.minimum(last, cart_t + 5_000 + rng.exponential(360_000.0, total).astype(np.int64))
            app = rng.random(n_b) < APP_SHARE
            anonymous = rng.random(n_b) < 0.05
            sessions: list[str | None] = []
            for s in range(n_b):
                counters[1] += 1
                sessions.append(None if anonymous[s] else f"{prefix}-s{counters[1]}")
            channels = ["app" if x else "web" for x in app.tolist()]
            members_l = members.tolist()
            for v, (r, k, t) in enumerate(zip(row.tolist(), picked.tolist(), view_t.tolist(), strict=True)):
                m, ch, sess = members_l[r], channels[r], sessions[r]
                counters[0] += 1
                push(heap, (t, counters[0], _VIEW, plan.index, k, m, ch, sess))
                if carted[v]:
                    alive = [True]  # cleared if the add is refused (sold out), so the remove goes too
                    q = int(cart_units[v])
                    counters[0] += 1
                    push(heap, (int(cart_t[v]), counters[0], _CART, plan.index, k, m, ch, sess, q, alive))
                    if removed[v]:
                        counters[0] += 1
                        push(heap, (int(remove_t[v]), counters[0], _UNCART, plan.index, k, m, ch, sess, q, alive))

        # ---- buying journeys: the order is planned; find a member who fits it, then walk her to checkout
        n_o = int(run.order_counts[j])
        if n_o:
            planned = run.orders[run.next_order: run.next_order + n_o]
            run.next_order += n_o
            tries = 8
            candidates = self._members(run, n_o * tries).reshape(n_o, tries)
            lead = np.array([o[0][0] for o in planned])
            fav = (self._fav_categories[candidates] == plan.categories[lead][:, None, None]).any(axis=2)
            gap = np.abs(self._price_band[candidates] - plan.bands[lead][:, None])
            fit = (1.0 + CATEGORY_BOOST * fav) * PRICE_AFFINITY[np.minimum(gap, PRICE_BANDS - 1)]
            accept = rng.random((n_o, tries)) * (1.0 + CATEGORY_BOOST) < fit
            chosen = np.where(accept.any(axis=1), accept.argmax(axis=1), tries - 1)
            buyers = candidates[np.arange(n_o), chosen].tolist()
            anchors = (a + rng.random(n_o) * (b - a)).astype(np.int64).tolist()
            app = (rng.random(n_o) < APP_SHARE).tolist()
            browse_p = plan.view_weight / plan.view_weight.sum()
            for o, lines in enumerate(planned):
                m, t = buyers[o], anchors[o]
                ch = "app" if app[o] else "web"
                counters[1] += 1
                sess = f"{prefix}-s{counters[1]}"
                for k in rng.choice(n_products, size=int(rng.poisson(1.2)), p=browse_p).tolist():
                    counters[0] += 1
                    push(heap, (min(last, t), counters[0], _VIEW, plan.index, k, m, ch, sess))
                    t += int(rng.exponential(40_000.0))
                for k, q in lines:
                    for _ in range(1 + (rng.random() < 0.3)):
                        counters[0] += 1
                        push(heap, (min(last, t), counters[0], _VIEW, plan.index, k, m, ch, sess))
                        t += 5_000 + int(rng.exponential(50_000.0))
                    t += int(rng.integers(10_000, 200_000))
                    counters[0] += 1
                    push(heap, (min(last, t), counters[0], _CART, plan.index, k, m, ch, sess, q, [True]))
                    t += int(rng.exponential(40_000.0))
                t += int(rng.integers(60_000, 600_000))
                counters[0] += 1
                push(heap, (min(last, t), counters[0], _ORDER, plan.index, lines, m, ch))

    def events(self) -> Iterator[Event]:
        """Yield ``(kind, record)`` in event-time order; kind is ``browse``, ``cart`` or ``order``.

        Lazy: a heap holds the not-yet-expanded slice of every sale (keyed by its start) and the pending events
        of expanded journeys; an event is emitted once no unexpanded slice can start before it. Stock is
        applied at emission, in time order: a cart add of a sold-out product is refused (its remove too), an
        order line is cut to the units left and dropped at zero, and an order with no line left is not placed.
        Each call starts from full stock and replays the identical stream.
        """
        plans = self._plans
        skus = [p.skus for p in plans]
        sale_ids = [p.sale_id for p in plans]
        prices = [p.prices for p in plans]
        left = [list(p.stock) for p in plans]
        self.stockouts = stockouts = {}
        runs: dict[int, _SaleRun] = {}
        slices: list[tuple[int, int, int]] = [(p.start_ms, p.index, 0) for p in plans]
        heapq.heapify(slices)
        heap: list[tuple[Any, ...]] = []
        counters = [0, 0]  # heap sequence (tie-break), session number
        pop = heapq.heappop
        prefix = self.prefix
        n_view = n_cart = n_order = 0
        while heap or slices:
            if slices and (not heap or slices[0][0] <= heap[0][0]):
                _, s, j = pop(slices)
                run = runs.get(s)
                if run is None:
                    run = runs[s] = self._open(plans[s])
                self._expand(run, j, heap, counters)
                if j + 1 < plans[s].n_slices:
                    plan = plans[s]
                    nxt = plan.start_ms + int((j + 1) * (plan.end_ms - plan.start_ms) / plan.n_slices)
                    heapq.heappush(slices, (nxt, s, j + 1))
                else:
                    del runs[s]  # its events are all on the heap now
                continue
            entry = pop(heap)
            t, code, s = entry[0], entry[2], entry[3]
            if code == _VIEW:
                n_view += 1
                yield "browse", {
                    "event_id": f"{prefix}-v{n_view}", "member_id": f"m{entry[5]:06d}", "sale_id": sale_ids[s],
                    "sku": skus[s][entry[4]], "ts": EPOCH + timedelta(milliseconds=t), "channel": entry[6],
                    "session_id": entry[7],
                }
            elif code == _ORDER:
                stock_left = left[s]
                lines = []
                for k, q in entry[4]:
                    have = stock_left[k]
                    if have <= 0:
                        continue
                    q = min(q, have)
                    stock_left[k] = have - q
                    if have == q:
                        stockouts[(sale_ids[s], skus[s][k])] = _dt(t)
                    lines.append({"sale_id": sale_ids[s], "sku": skus[s][k], "quantity": q,
                                  "unit_price": prices[s][k]})
                if not lines:
                    continue  # everything in the basket sold out meanwhile: checkout fails, no order
                n_order += 1
                order_id = f"{prefix}-o{n_order}"
                yield "order", {
                    "event_id": order_id, "order_id": order_id, "member_id": f"m{entry[5]:06d}", "lines": lines,
                    "currency": CURRENCY, "ts": _dt(t), "channel": entry[6],
                    "region": REGIONS[int(self._region[entry[5]])],
                }
            else:
                alive = entry[9]
                k = entry[4]
                if code == _CART:
                    if left[s][k] <= 0:
                        alive[0] = False
                        continue
                elif not alive[0]:
                    continue
                n_cart += 1
                yield "cart", {
                    "event_id": f"{prefix}-c{n_cart}", "member_id": f"m{entry[5]:06d}", "sale_id": sale_ids[s],
                    "sku": skus[s][k], "action": "add" if code == _CART else "remove", "quantity": entry[8],
                    "unit_price": prices[s][k], "ts": _dt(t), "channel": entry[6], "session_id": entry[7],
                }


# ---------------------------------------------------------------------- Kafka
@dataclass
class SimulationReport:
    """What a run produced; ``units_produced`` is what ClickHouse must end up holding for ``sale_ids``."""

    seed: int
    events_produced: dict[str, int] = field(default_factory=dict)
    """Valid events by kind (browse, cart, order)."""
    orders_produced: int = 0
    units_produced: int = 0
    bad_produced: int = 0
    """Malformed messages injected on purpose (not counted in events_produced)."""
    sales: int = 0
    sale_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    simulated_until: datetime | None = None
    """Event time of the last valid event produced."""


def world_for_rate(seed: int, rate: float, *, start: datetime | None = None,
                   time_scale: float = DEFAULT_TIME_SCALE) -> SimulatedWorld:
    """A world whose event density makes ``rate`` real events/s advance simulated time by ~``time_scale``.

    Why: pacing is by event count (the demo promises a rate), so the member base is sized to make that rate
    mean "a few simulated hours in a few real minutes". Ids carry the start minute, so a rerun with the
    same seed at another time is a new set of sales rather than a silent duplicate of the last run.
    """
    if start is None:
        start = datetime.now(UTC).replace(second=0, microsecond=0)
    prefix = f"sim{seed}-{start:%y%m%d%H%M}"
    probe = SimulatedWorld(seed, n_members=20_000, start=start, id_prefix=prefix)
    span = (probe.ends_at - probe.start).total_seconds()
    density = probe.expected_events / span  # events per simulated second at 20k members
    members = int(np.clip(20_000 * (rate / time_scale) / density, 1_000, 200_000))
    return SimulatedWorld(seed, n_members=members, start=start, time_scale=time_scale, id_prefix=prefix)


def _bad_message(rng: np.random.Generator, publisher: Publisher, world: SimulatedWorld) -> tuple[str, bytes]:
    """One malformed message for an events topic: random bytes, or well-framed Avro that breaks a rule."""
    topics = publisher.settings.topics
    sale = world.sales[int(rng.integers(len(world.sales)))]
    sku = sale["products"][0]["sku"]
    ts = sale["starts_at"]
    choice = int(rng.integers(4))
    if choice == 0:
        return topics.browse if rng.random() < 0.5 else topics.cart, rng.bytes(int(rng.integers(1, 64)))
    n = int(rng.integers(1_000_000_000))
    if choice == 1:  # fastavro accepts quantity 0; the validation rules do not
        bad_id = f"{world.prefix}-bad-o{n}"
        record = {"event_id": bad_id, "order_id": bad_id, "member_id": "m000000", "ts": ts,
                  "lines": [{"sale_id": sale["sale_id"], "sku": sku, "quantity": 0, "unit_price": 9.99}]}
        return topics.order, publisher.codec.encode("OrderEvent", record)
    if choice == 2:
        record = {"event_id": f"{world.prefix}-bad-c{n}", "member_id": "m000000", "sale_id": sale["sale_id"],
                  "sku": sku, "action": "add", "quantity": 0, "unit_price": 9.99, "ts": ts}
        return topics.cart, publisher.codec.encode("CartEvent", record)
    good = publisher.codec.encode("BrowseEvent", {"event_id": f"{world.prefix}-bad-v{n}", "member_id": "m000000",
                                                  "sale_id": sale["sale_id"], "sku": sku, "ts": ts})
    return topics.browse, good[: max(11, len(good) // 2)]  # right framing, truncated body


def run_simulation(
    settings: Settings,
    *,
    seed: int = 7,
    rate: float = 2000.0,
    duration: float | None = None,
    max_events: int | None = None,
    bad_rate: float = 0.0,
    progress: bool = True,
    stop: threading.Event | None = None,
    world: SimulatedWorld | None = None,
) -> SimulationReport:
    """Produce a simulated world to Kafka: catalogue, priors and stock first, then events at ``rate``/s.

    Stops when the world runs out, after ``duration`` real seconds, after ``max_events`` valid events, or when
    ``stop`` is set. With ``bad_rate`` > 0 about that share of all messages on the events topics are malformed
    (counted in ``bad_produced``). ``world`` defaults to :func:`world_for_rate` starting now; pass one to replay
    an exact world.
    """
    from tqdm import tqdm

    from salepulse.consumers.publish import Pacer, Publisher

    began = time.monotonic()
    world = world or world_for_rate(seed, rate)  # when a world is given, ``seed`` is the world's
    report = SimulationReport(seed=world.seed, sales=len(world.sales), sale_ids=[s["sale_id"] for s in world.sales])
    bad_rng = np.random.default_rng([seed, 99])
    kinds: Counter[str] = Counter()
    publisher = Publisher(settings)
    try:
        for kind, records in (("sale", world.sales), ("prior", world.priors), ("stock", world.stock)):
            for record in records:
                publisher.send(kind, record)
        pacer = Pacer(rate=rate)
        deadline = None if duration is None else began + duration
        bar = tqdm(total=max_events, unit="ev", desc="simulate", disable=not progress, mininterval=0.5)
        pending = 0
        for produced, (kind, record) in enumerate(world.events()):
            if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() >= deadline):
                break
            if max_events is not None and produced >= max_events:
                break
            while bad_rate > 0 and bad_rng.random() < bad_rate:
                topic, value = _bad_message(bad_rng, publisher, world)
                pacer.wait()
                publisher.send_raw(topic, value, b"bad")
                report.bad_produced += 1
            pacer.wait()
            publisher.send(kind, record)
            kinds[kind] += 1
            if kind == "order":
                report.orders_produced += 1
                report.units_produced += sum(line["quantity"] for line in record["lines"])
            report.simulated_until = record["ts"]
            pending += 1
            if pending >= 500:
                bar.update(pending)
                pending = 0
        bar.update(pending)
        bar.close()
    finally:
        publisher.flush()
    report.events_produced = dict(kinds)
    report.seconds = round(time.monotonic() - began, 3)
    return report
