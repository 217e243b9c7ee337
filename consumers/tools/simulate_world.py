"""The planned half of a simulated flash-sale shop: members, brands, sales, buyer forecasts, stock and the known
truth (:class:`SimulatedWorld`; its events come from :class:`salepulse.consumers.tools.simulate_traffic.SaleTraffic`).
Part of :mod:`salepulse.consumers.tools.simulate` (pure, no Kafka, no Faust); the why is in that module's docstring.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from salepulse.consumers.tools.buyer_habits import (
    ANCHORING,
    BIG_MISS_RATE,
    BIG_MISS_SD,
    BUYER_ROUNDING_SHARE,
    FORECAST_NOISE_SD,
    TYPICAL_PULL,
    expected_forecast,
    habit_log_forecast,
)
from salepulse.consumers.tools.simulate_plan import (
    ADJECTIVES,
    CATEGORIES,
    DEFAULT_START,
    DEFAULT_TIME_SCALE,
    HOUR_MS,
    MINUTE_MS,
    N_BUYERS,
    PRICE_BANDS,
    REGION_WEIGHTS,
    REGIONS,
    SYLLABLES,
    Record,
    SalePlan,
    epoch_ms,
    from_epoch_ms,
    round_like_a_buyer,
)
from salepulse.consumers.tools.simulate_traffic import SaleTraffic


class SimulatedWorld(SaleTraffic):
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
    ) -> list[SalePlan]:
        start_ms = epoch_ms(self.start)
        plans: list[SalePlan] = []
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
            plans.append(SalePlan(
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
            starts = from_epoch_ms(plan.start_ms)
            submitted = starts - timedelta(minutes=int(rng.integers(18 * 60, 72 * 60)))
            updated = starts - timedelta(minutes=int(rng.integers(24 * 60, 96 * 60)))
            typical = float(np.exp(np.log(plan.expected + 0.5).mean()))
            stock: list[int] = []
            for k, sku in enumerate(plan.skus):
                mu = float(plan.expected[k])
                dept = CATEGORIES[int(plan.categories[k])][0].split(".")[0]
                habit = dept_bias[(buyer, dept)] + size_slope[buyer] * (math.log(mu + 0.5) - math.log(typical))
                log_f = math.log(mu + 0.5) + buyer_bias[buyer] + habit + rng.normal(0.0, FORECAST_NOISE_SD)
                if rng.random() < BIG_MISS_RATE:  # the occasional big miss: a product nobody saw coming (or going)
                    log_f += rng.normal(0.0, BIG_MISS_SD)
                # anchoring on the sale's typical product
                log_f = ANCHORING * log_f + TYPICAL_PULL * math.log(typical)
                forecast = max(1.0, math.exp(log_f))
                forecast = (round_like_a_buyer(forecast) if rng.random() < BUYER_ROUNDING_SHARE
                            else float(round(forecast)))
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
                "ends_at": from_epoch_ms(plan.end_ms), "products": products, "updated_at": updated,
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
        return from_epoch_ms(max(p.end_ms for p in self._plans))

    @property
    def expected_demand(self) -> dict[tuple[str, str], float]:
        """(sale_id, sku) -> the mean demand the buyers try to forecast (``true_demand`` is one draw around it)."""
        return {(p.sale_id, sku): float(p.expected[k]) for p in self._plans for k, sku in enumerate(p.skus)}

    def habit_forecasts(self, sale_id: str, rounding: bool = True) -> dict[str, float]:
        """sku -> the forecast the sale's buyer would give on average (their habit, the per-forecast noise and
        the rounding integrated out: :func:`salepulse.consumers.tools.buyer_habits.expected_forecast`), for the
        products they forecast. Read from :attr:`buyer_habits`, the same truth the forecasts were drawn from.
        """
        plan = self._plan_of(sale_id)
        skus = {p["sku"]: p for p in self.priors_of(sale_id)}
        if not skus:
            return {}
        habit = self.buyer_habits[next(iter(skus.values()))["buyer_id"]]
        typical = float(np.exp(np.log(plan.expected + 0.5).mean()))
        depts = [CATEGORIES[int(c)][0].split(".")[0] for c in plan.categories]
        log_f = habit_log_forecast(plan.expected, typical, habit["bias"],
                                   np.array([habit[f"bias.{d}"] for d in depts]), habit["size_slope"])
        mean_f = expected_forecast(log_f, rounding=rounding)
        return {sku: float(mean_f[k]) for k, sku in enumerate(plan.skus) if sku in skus}

    def priors_of(self, sale_id: str) -> list[Record]:
        """The sale's buyer forecasts (``ExpertForecast`` records)."""
        if not hasattr(self, "_priors_index"):
            self._priors_index: dict[str, list[Record]] = {}
            for p in self.priors:
                self._priors_index.setdefault(p["sale_id"], []).append(p)
        return self._priors_index.get(sale_id, [])

    def arrival_share(self, sale_id: str, fraction: float) -> float:
        """The sale's true sales curve: the share of its demand that arrives before ``fraction`` of its life."""
        plan = self._plan_of(sale_id)
        return float(plan.arrival_cdf(np.asarray([min(max(fraction, 0.0), 1.0)]))[0])

    def sellout_fraction(self, sale_id: str, sku: str, on_hand: float) -> float | None:
        """When a product with ``on_hand`` units sells out, as a fraction of its sale's life; None if it does not.

        Drawn without generating the sale's events (the pre-sale evaluation plans hundreds of sales): the
        product's demand split into order lines of 1+ units by the same rule as :meth:`events`, each line at an
        independent time from the sale's arrival curve; it sells out with the line that reaches ``on_hand``.
        Deterministic for a given world.

        >>> world = SimulatedWorld(seed=3, n_members=1_000, n_sales=4)
        >>> sale = world.sales[0]["sale_id"]
        >>> sku = max(world.sales[0]["products"], key=lambda p: world.true_demand[(sale, p["sku"])])["sku"]
        >>> 0.0 < world.sellout_fraction(sale, sku, 1) < 1.0, world.sellout_fraction(sale, sku, 10**9)
        (True, None)
        """
        plan = self._plan_of(sale_id)
        k = plan.skus.index(sku)
        demand = int(plan.demand[k])
        if demand < on_hand or on_hand <= 0:
            return None
        rng = np.random.default_rng([self.seed, 2_000 + plan.index, k])
        extra = float(plan.extra_units[k])
        n = max(4, int(demand / (1.0 + extra) * 1.3) + 4)
        units = 1 + np.minimum(11, rng.negative_binomial(0.6, 0.6 / (0.6 + extra), n))
        units = units[: int(np.searchsorted(np.cumsum(units), demand)) + 1]
        grid = np.linspace(0.0, 1.0, 2001)
        times = np.sort(np.interp(rng.random(units.size), plan.arrival_cdf(grid), grid))
        cut = min(int(np.searchsorted(np.cumsum(units), on_hand)), units.size - 1)
        return float(times[cut])

    def _plan_of(self, sale_id: str) -> Any:
        if not hasattr(self, "_plan_index"):
            self._plan_index = {p.sale_id: p for p in self._plans}
        return self._plan_index[sale_id]

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
