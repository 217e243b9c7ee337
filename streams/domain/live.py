"""The live board of a worker: per (sale, sku) totals joined with the catalogue, the demand forecast and alerts.

Pure logic between the agents and the views: the agents feed it counted facts and the stream clock; it answers
with snapshots, alerts and the JSON of ``GET /sales`` and ``GET /sales/{id}``. No Kafka, no Faust.

Clock: everything runs on *stream time* (:class:`salepulse.streams.platform.clock.StreamClock`: a high percentile of
recent
event times, bounded by the wall clock plus a skew), so a replay of last year's data or a simulation running 60
times faster than real time forecasts exactly as it would have live, and one event dated 2100 moves nothing.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from salepulse.streams.domain.alerts import Alert, AlertPolicy, AlertStateMachine, assess
from salepulse.streams.domain.buyer_desk import sale_outcomes
from salepulse.streams.domain.catalog import Catalog, Sale
from salepulse.streams.domain.forecast import DemandForecaster, DemandModel, ExpertPrior
from salepulse.streams.domain.sale_summaries import SummaryCache
from salepulse.streams.domain.velocity import Fact, SkuTotals
from salepulse.streams.platform.clock import StreamClock

MAX_DATETIME_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last instant a Python datetime holds."""


def ms_to_dt(ms: int) -> datetime:
    """A UTC datetime; times beyond what a datetime holds are clamped, so no answer fails on a stored time.

    >>> ms_to_dt(9e15).year, ms_to_dt(-1e18).year
    (9999, 1970)
    """
    ms = min(max(0, int(ms)), MAX_DATETIME_MS)
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def iso_time(ms: int | None) -> str | None:
    """``ms`` as an ISO 8601 UTC string, or None for no time (0 or None: a stream before its first event, a product
    with no projected stockout).

    >>> iso_time(0), iso_time(1_000)
    (None, '1970-01-01T00:00:01+00:00')
    """
    return ms_to_dt(ms).isoformat() if ms else None


def dt_to_ms(dt: datetime | None) -> int | None:
    return None if dt is None else int(dt.timestamp() * 1000)


@dataclass
class Tracked:
    """One (sale, sku) under watch: its forecaster and which expert forecast it was built from."""

    forecaster: DemandForecaster
    prior_event_id: str | None


class LiveBoard:
    """Forecasts and alerts for every (sale, sku) this worker counts."""

    def __init__(self, catalog: Catalog, model: DemandModel | None = None, alert_probability: float = 0.8,
                 clock: StreamClock | None = None,
                 corrected_prior: Callable[[str, str], ExpertPrior | None] | None = None) -> None:
        self.catalog = catalog
        # buyer desk: the pre-sale correction of the expert's number, when one is learned (None: the raw number)
        self.corrected_prior = corrected_prior
        self.finished_outcomes: list[dict[str, Any]] = []
        self._late: set[str] = set()
        """Finished sales that counted orders after they finished (partitions lag each other): re-sent outcomes."""
        """ForecastOutcome records of the sales this worker counted and saw end, to be sent (buyer desk)."""
        self.model = model or DemandModel()
        self.alerts = AlertStateMachine()
        self.alert_probability = alert_probability
        self.totals: dict[tuple[str, str], SkuTotals] = {}
        self.tracked: dict[tuple[str, str], Tracked] = {}
        self.open_alerts: dict[tuple[str, str], dict[str, Any]] = {}
        self.finished: set[str] = set()
        self.velocity_history: dict[str, deque[tuple[int, float]]] = {}
        self.active: dict[str, set[str]] = {}
        """sale_id -> skus with counted facts: what the clock-driven work iterates, not the whole catalogue."""
        self._forecast_cache: dict[tuple[str, str], tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self.clock = clock or StreamClock()
        self.finish_failures = 0
        self.versions: dict[str, int] = {}
        """sale_id -> how often its answer changed here (facts, restores, alerts): see :meth:`sale_version`."""
        self.summaries = SummaryCache(self.build_sale, self.sale_version)
        self._unlearned: deque[tuple[DemandForecaster, float | None]] = deque()
        """Forecasters of finished series the model has not learned from yet (see :meth:`finish_ended_sales`)."""

    @property
    def stream_ms(self) -> int:
        """Stream time: see :mod:`salepulse.streams.platform.clock` (advanced lazily, when read after new facts)."""
        return self.clock.advance()

    # --- feeding -----------------------------------------------------------------------------------------
    def observe(self, totals: SkuTotals, fact: Fact) -> None:
        """A fact was counted into ``totals`` (the agent's table state for that sku)."""
        key = (fact.sale_id, fact.sku)
        sale = self.catalog.sales.get(fact.sale_id)
        # A forecaster built now is seeded with the units counted so far; ``totals`` already holds this fact, so it
        # is built from the totals before it, and the fact is added once, below (it used to be counted twice).
        tracked = self._tracked(key, sale) if fact.kind == "order" else None
        self.totals[key] = totals
        self.active.setdefault(fact.sale_id, set()).add(fact.sku)
        self.changed(fact.sale_id)
        self.clock.observe(fact.ts_ms)
        if fact.kind == "order" and fact.sale_id in self.finished:
            self._late.add(fact.sale_id)  # counted after its sale finished: its outcomes are re-sent
        if tracked is None or sale is None:
            return
        at = sale.elapsed_fraction(fact.ts_ms)
        tracked.forecaster.update(fact.units, at)
        on_hand = self.catalog.on_hand(*key)
        if on_hand is not None and tracked.forecaster.units >= on_hand:
            tracked.forecaster.mark_stockout(at)

    def restore(self, sale_id: str, sku: str, totals: SkuTotals) -> None:
        """Adopt totals recovered from the changelog after a restart; the forecaster is rebuilt from them."""
        self.totals[(sale_id, sku)] = totals
        self.active.setdefault(sale_id, set()).add(sku)
        self.changed(sale_id)
        self.clock.observe(totals.last_ms)

    def _tracked(self, key: tuple[str, str], sale: Sale | None) -> Tracked | None:
        """The forecaster of ``key``, (re)built when missing or when the buyer revised the forecast."""
        if sale is None:
            return None
        prior = self.catalog.priors.get(key)
        prior_id = prior.get("event_id") if prior else None
        tracked = self.tracked.get(key)
        if tracked is not None and tracked.prior_event_id == prior_id:
            return tracked
        product = self.catalog.products.get(key)
        expert = ExpertPrior(prior["expected_units"], prior.get("low"), prior.get("high")) if prior else None
        if expert is not None and self.corrected_prior is not None:
            expert = self.corrected_prior(*key) or expert  # the live posterior starts from the corrected prior
        forecaster = self.model.start(key[0], key[1], category=product.category if product else None,
                                      expert=expert, price=product.price if product else None)
        totals = self.totals.get(key)
        if totals is not None and totals.units:
            # A revised or late forecast takes over from now on: the units already sold are its evidence.
            forecaster.update(totals.units, sale.elapsed_fraction(totals.rate_ms or self.stream_ms))
        if tracked is not None:
            forecaster.stockout_fraction = tracked.forecaster.stockout_fraction
        self.tracked[key] = Tracked(forecaster, prior_id)
        return self.tracked[key]

    # --- answers -----------------------------------------------------------------------------------------
    def forecast(self, sale_id: str, sku: str) -> dict[str, Any]:
        """Forecast fields of one (sale, sku) at stream time; empty when its sale is unknown.

        Cached until units, the catalogue or the stream minute change: views and carts alone do not move the
        forecast, and recomputing quantiles and the stockout projection per view would stall the event loop.
        """
        sale = self.catalog.sales.get(sale_id)
        tracked = self._tracked((sale_id, sku), sale)
        if tracked is None or sale is None:
            return {}
        key = (id(tracked), tracked.forecaster.units, tracked.forecaster.stockout_fraction,
               self.catalog.version, self.stream_ms // 60_000)
        cached = self._forecast_cache.get((sale_id, sku))
        if cached is not None and cached[0] == key:
            return cached[1]
        fields = self._compute_forecast(tracked, sale, sku)
        self._forecast_cache[(sale_id, sku)] = (key, fields)
        return fields

    def _compute_forecast(self, tracked: Tracked, sale: Sale, sku: str) -> dict[str, Any]:
        now = min(max(self.stream_ms, sale.starts_ms), sale.ends_ms)
        fc = tracked.forecaster.forecast(sale.elapsed_fraction(now))
        available = self.available(sale, sku)
        stockout_at = None
        if available is not None:
            verdict = self._assess(tracked, sale, sku, available)
            stockout_at = dt_to_ms(verdict.projected_stockout_at)
        return {
            "expert_prior": fc.prior_mean,
            "prior_source": fc.prior_source,
            "p10": fc.p10,
            "p50": fc.p50,
            "p90": fc.p90,
            "stock_available": None if available is None else int(available),
            "projected_stockout_at": stockout_at,
        }

    def available(self, sale: Sale, sku: str) -> float | None:
        """Units that can still serve the sale: stock left plus inbound arriving before the sale ends."""
        on_hand = self.catalog.on_hand(sale.sale_id, sku)
        if on_hand is None:
            return None
        sold = self.totals.get((sale.sale_id, sku), SkuTotals()).units
        stock = self.catalog.stock.get(sku)
        inbound = 0
        if stock and stock.inbound and stock.inbound_eta_ms is not None and stock.inbound_eta_ms < sale.ends_ms:
            inbound = stock.inbound
        return max(0, on_hand - sold) + inbound

    def _policy(self, sku: str) -> AlertPolicy:
        stock = self.catalog.stock.get(sku)
        lead = stock.lead_time_hours if stock else 24.0
        return AlertPolicy(threshold=self.alert_probability, lead_time=timedelta(hours=lead))

    def _assess(self, tracked: Tracked, sale: Sale, sku: str, available: float) -> Any:
        now = min(max(self.stream_ms, sale.starts_ms), sale.ends_ms)
        # ``assess`` adds units sold itself; it wants stock on hand excluding what is already sold.
        return assess(tracked.forecaster, ms_to_dt(now), ms_to_dt(sale.starts_ms), ms_to_dt(sale.ends_ms),
                      on_hand=available, policy=self._policy(sku), curve=tracked.forecaster.curve, sku=sku)

    def snapshot(self, sale_id: str, sku: str) -> dict[str, Any]:
        """The VelocitySnapshot record of one (sale, sku)."""
        totals = self.totals.get((sale_id, sku), SkuTotals())
        fields = self.forecast(sale_id, sku)
        # Facts counted so far: grows with every counted fact and survives restarts (it is table state), so
        # ClickHouse's ReplacingMergeTree(version) keeps the newest snapshot whatever order they arrive in.
        version = totals.views + totals.carts + totals.uncarts + totals.orders
        return {
            "event_id": f"{sale_id}:{sku}:{version}",
            "sale_id": sale_id,
            "sku": sku,
            "as_of": totals.last_ms,
            "version": version,
            "views": totals.views,
            "carts": totals.carts,
            "orders": totals.orders,
            "units": totals.units,
            "revenue": totals.revenue,
            # As of ``as_of`` like every figure here: a reader decays it from there (remote_totals). Decayed to the
            # stream time instead, a snapshot re-sent long after the sku's last fact (a rebuild after a move) was
            # decayed twice by every other worker.
            "velocity_uph": totals.velocity_at(totals.last_ms),
            "expert_prior": fields.get("expert_prior"),
            "prior_source": fields.get("prior_source"),
            "p10": fields.get("p10"),
            "p50": fields.get("p50"),
            "p90": fields.get("p90"),
            "stock_available": fields.get("stock_available"),
            "projected_stockout_at": fields.get("projected_stockout_at"),
        }

    def check_alert(self, sale_id: str, sku: str) -> dict[str, Any] | None:
        """Run the replenishment rule for one (sale, sku); the ReplenishmentAlert record to send, if any."""
        sale = self.catalog.sales.get(sale_id)
        tracked = self._tracked((sale_id, sku), sale)
        if tracked is None or sale is None or not sale.is_open(self.stream_ms):
            return None
        available = self.available(sale, sku)
        if available is None:
            return None
        alert = self.alerts.update(sale_id, sku, self._assess(tracked, sale, sku, available))
        if alert is None:
            return None
        product = self.catalog.products.get((sale_id, sku))
        record = alert_record(alert, self.stream_ms, product_name=product.name if product else None,
                              sale_name=sale.brand)
        self.changed(sale_id)
        if alert.status == "resolved":
            self.open_alerts.pop((sale_id, sku), None)
        else:
            self.open_alerts[(sale_id, sku)] = record
        return record

    def shop_alerts(self) -> list[dict[str, Any]]:
        """The open alerts the dashboard lists (a :class:`~salepulse.streams.domain.shop_view.ShopBoard` adds the
        rest of the shop's)."""
        return list(self.open_alerts.values())

    def finish_ended_sales(self, learn_budget_s: float = math.inf) -> list[str]:
        """Teach the model from sales that ended (stream time), once each; returns their ids.

        Learning from a finished series costs about a millisecond (the calibration's grid), and a weekly sale can end
        thousands at once: the worker passes a ``learn_budget_s`` so the event loop never stalls for seconds, and
        calls :meth:`learn_finished` on later ticks for the rest (in order, so the model learns the same things).
        """
        ended = [s for s in self.catalog.all_sales() if s.ends_ms <= self.stream_ms and s.sale_id not in
                 self.finished]
        late, self._late = self._late, set()
        for sale_id in late:  # revised outcomes: the desks rebuild from the corrected topic
            sale = self.catalog.sales.get(sale_id)
            if sale is not None:
                self.finished_outcomes.extend(self._sale_outcomes(sale))
        for sale in ended:
            if sale.sale_id in self.active:  # counted here (one sale, one partition): its outcomes are ours to send
                self.finished_outcomes.extend(self._sale_outcomes(sale))
            for sku in sale.skus:
                # Per-sale caches go with the sale (bounded state); the totals stay for /sales/{id}.
                tracked = self.tracked.pop((sale.sale_id, sku), None)
                if tracked is not None:
                    product = self.catalog.products.get((sale.sale_id, sku))
                    self._unlearned.append((tracked.forecaster, product.price if product else None))
                self.open_alerts.pop((sale.sale_id, sku), None)
                self.alerts.forget(sale.sale_id, sku)
                self._forecast_cache.pop((sale.sale_id, sku), None)
            self.active.pop(sale.sale_id, None)
            self.velocity_history.pop(sale.sale_id, None)
            self.finished.add(sale.sale_id)
            self.changed(sale.sale_id)
        self.learn_finished(learn_budget_s)
        return [s.sale_id for s in ended]

    def learn_finished(self, budget_s: float = math.inf) -> int:
        """Teach the model from finished series still queued, for at most ``budget_s`` seconds; returns how many."""
        deadline = time.perf_counter() + budget_s
        learned = 0
        while self._unlearned and time.perf_counter() < deadline:
            forecaster, price = self._unlearned.popleft()
            learned += 1
            try:
                self.model.finish(forecaster, price=price)
            except (ArithmeticError, ValueError):  # one odd sku must not keep its sale from finishing
                self.finish_failures += 1
        return learned

    def _sale_outcomes(self, sale: Sale) -> list[dict[str, Any]]:
        def units(sku: str) -> float:
            return float(self.totals.get((sale.sale_id, sku), SkuTotals()).units)

        def sold_out(sku: str) -> bool:
            tracked = self.tracked.get((sale.sale_id, sku))
            on_hand = self.catalog.on_hand(sale.sale_id, sku)
            return (tracked is not None and tracked.forecaster.stockout_fraction is not None) or (
                on_hand is not None and units(sku) >= on_hand)

        def regions(sku: str) -> dict[str, float]:
            return {r: float(u) for r, u in self.totals.get((sale.sale_id, sku), SkuTotals()).regions.items()}

        def exposure(sku: str) -> float | None:
            # the share of demand the sales curve expected by the sell-out: what the desk scales units by
            tracked = self.tracked.get((sale.sale_id, sku))
            at = None if tracked is None else tracked.forecaster.stockout_fraction
            return None if at is None else float(tracked.forecaster.curve(at))  # type: ignore[union-attr]

        return sale_outcomes(self.catalog, sale, units, sold_out, regions, exposure)

    def open_active(self) -> list[tuple[str, str]]:
        """(sale, sku) pairs with counted facts whose sale is open at stream time."""
        return [(sale_id, sku) for sale_id, skus in self.active.items() if self.catalog.is_open(sale_id, self.stream_ms)
                for sku in skus]

    def sample_velocity(self, points: int = 120) -> None:
        """Append each active open sale's current velocity to its sparkline (called once a second)."""
        for sale_id, skus in self.active.items():
            sale = self.catalog.sales.get(sale_id)
            if sale is None or not sale.is_open(self.stream_ms):
                continue
            velocity = sum(self.totals[(sale_id, sku)].velocity_at(self.stream_ms) for sku in skus)
            history = self.velocity_history.setdefault(sale.sale_id, deque(maxlen=points))
            if not history or history[-1][0] < self.stream_ms:
                history.append((self.stream_ms, round(velocity, 3)))

    # --- answers per sale: built once per change (streams/domain/sale_summaries.py) --------------------------
    def changed(self, sale_id: str) -> None:
        """Something a sale's answer shows changed: its kept answer is rebuilt on the next read."""
        self.versions[sale_id] = self.versions.get(sale_id, 0) + 1

    def sale_version(self, sale_id: str) -> tuple[Any, ...]:
        """What a sale's answer depends on besides stream time: its own changes and the catalogue's."""
        return self.versions.get(sale_id, 0), self.catalog.version

    def sales_view(self) -> list[dict[str, Any]]:
        """``GET /sales``: the open sales at stream time, most urgent first (shared dicts: copy to change)."""
        now = self.stream_ms
        return self.summaries.sales(self.catalog.open_sales(now), now)

    def publish_sales(self, tag: Hashable = 0) -> bytes:
        """``GET /sales``'s body rendered now and kept for readers on any thread (``SummaryCache.publish``)."""
        now = self.stream_ms
        head = b'{"stream_time": ' + json.dumps(iso_time(now)).encode() + b', "sales": '
        return self.summaries.publish(head, self.catalog.open_sales(now), now, tag)

    def kept_sale_view(self, sale_id: str) -> dict[str, Any] | None:
        """:meth:`sale_view`'s answer when it is kept and current, else None; builds nothing and leaves the clock
        alone, so another thread may call it."""
        return self.summaries.kept_detail(sale_id, self.sale_version(sale_id))

    def refresh_answers(self, chunk: int = 4) -> Any:
        """Rebuild the answers that only stream time moved (the worker's 1 s tick); yields every ``chunk``."""
        now = self.stream_ms
        return self.summaries.refresh(self.catalog.open_sales(now), now, chunk)

    def build_sale(self, sale: Sale) -> dict[str, Any]:
        """One sale's detail, built now: its summary, ``is_open`` and every product."""
        products = [self.product_view(sale, sku) for sku in sale.skus]
        return {**self.sale_summary(sale, products), "is_open": sale.is_open(self.stream_ms), "products": products}

    def sale_summary(self, sale: Sale, products: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        if products is None:
            products = [self.product_view(sale, sku) for sku in sale.skus]
        band = {q: sum(p[q] or 0.0 for p in products) if any(p[q] is not None for p in products) else None
                for q in ("expert_prior", "p10", "p50", "p90")}
        stockouts = [p["projected_stockout_at"] for p in products if p["projected_stockout_at"]]
        return {
            "sale_id": sale.sale_id,
            "brand": sale.brand,
            "starts_at": ms_to_dt(sale.starts_ms).isoformat(),
            "ends_at": ms_to_dt(sale.ends_ms).isoformat(),
            "elapsed_fraction": round(sale.elapsed_fraction(self.stream_ms), 4),
            "units": sum(p["units"] for p in products),
            "revenue": round(sum(p["revenue"] for p in products), 2),
            "velocity_uph": round(sum(p["velocity_uph"] for p in products), 3),
            **band,
            "stock": sum(p["stock"] or 0 for p in products),
            "projected_stockout_at": min(stockouts) if stockouts else None,
            "open_alerts": sum(1 for p in products if p["alert"]),
        }

    def product_view(self, sale: Sale, sku: str) -> dict[str, Any]:
        fields = self.forecast(sale.sale_id, sku)
        return self.product_row(sale, sku, self.totals.get((sale.sale_id, sku), SkuTotals()), fields,
                                self.open_alerts.get((sale.sale_id, sku)), fields.get("stock_available"))

    def product_row(self, sale: Sale, sku: str, totals: SkuTotals, fields: Mapping[str, Any],
                    alert: Mapping[str, Any] | None, stock: int | None) -> dict[str, Any]:
        """One product of ``GET /sales/{id}``: its totals, forecast ``fields``, stock left and open alert."""
        stockout = fields.get("projected_stockout_at")
        product = self.catalog.products.get((sale.sale_id, sku))
        return {
            "sku": sku,
            "name": product.name if product else "",
            "category": product.category if product else None,
            "price": product.price if product else None,
            "views": totals.views,
            "carts": totals.carts,
            "orders": totals.orders,
            "units": totals.units,
            "revenue": round(totals.revenue, 2),
            "velocity_uph": round(totals.velocity_at(max(self.stream_ms, totals.last_ms)), 3),
            "expert_prior": fields.get("expert_prior"),
            "prior_source": fields.get("prior_source"),
            "p10": fields.get("p10"),
            "p50": fields.get("p50"),
            "p90": fields.get("p90"),
            "stock": stock,
            "projected_stockout_at": iso_time(stockout),
            "alert": alert["status"] if alert else None,
            "alert_severity": alert["severity"] if alert else None,
        }

    def sale_view(self, sale_id: str) -> dict[str, Any] | None:
        """``GET /sales/{sale_id}``: the sale and every product; None when the sale is unknown."""
        sale = self.catalog.sales.get(sale_id)
        if sale is None:
            return None
        return self.summaries.detail(sale, self.stream_ms)


def alert_record(alert: Alert, now_ms: int, *, product_name: str | None = None, sale_name: str | None = None,
                 wall_ms: int | None = None) -> dict[str, Any]:
    """The ReplenishmentAlert Avro record of a state-machine alert (``now_ms`` stream time, ``wall_ms`` the wall
    clock, now by default)."""
    return {
        "event_id": alert.alert_id,
        "alert_id": alert.alert_id,
        "sale_id": alert.sale_id,
        "sku": alert.sku,
        "status": alert.status,
        "severity": alert.severity,
        "probability": float(alert.probability),
        "shortfall": float(alert.shortfall),
        "available": int(alert.available),
        "p90": float(alert.p90),
        "recommended_quantity": int(alert.recommended_quantity),
        "projected_stockout_at": dt_to_ms(alert.projected_stockout_at),
        "reason": alert.reason,
        "raised_at": now_ms,
        "product_name": product_name or None,
        "sale_name": sale_name or None,
        "units_sold": int(alert.units_sold),
        "order_by": dt_to_ms(alert.order_by),
        "lead_time_hours": float(alert.lead_time_hours),
        "wall_clock_at": wall_ms if wall_ms is not None else int(time.time() * 1000),
    }
