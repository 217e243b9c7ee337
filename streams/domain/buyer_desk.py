"""The buyer desk of a worker: the pre-sale desk kept current from the catalogue, plans, scorecards, outcomes.

Pure logic between the agents and the views (no Kafka, no Faust), the way :mod:`salepulse.streams.domain.live` is:

* :meth:`BuyerDesk.sync` learns the ``ForecastOutcome`` records the catalogue follower has read since the last
  call (every worker reads the compacted ``forecast.outcomes`` topic whole, so every worker's desk is the same,
  and a restarted worker rebuilds it from the beginning of the topic).
* :func:`sale_outcomes` turns a finished sale's totals into those records (sent by the worker that counted it).
* :meth:`BuyerDesk.plans_due` gives the ``StockPlan`` records of sales not yet open whose plan changed (a new
  buyer forecast, or the desk learned from another finished sale); :meth:`BuyerDesk.plan_view` and
  :meth:`BuyerDesk.scorecard` answer ``GET /sales/{id}/plan`` and ``GET /buyers/{id}``.

>>> from salepulse.streams.domain.catalog import Catalog
>>> catalog = Catalog()
>>> catalog.apply("Sale", {"sale_id": "s1", "brand": "acme", "starts_at": 7_200_000, "ends_at": 10_800_000,
...                        "products": [{"sku": "k1", "name": "Boot", "category": "shoes", "price": 80.0,
...                                      "stock": 50}]})
>>> catalog.apply("ExpertForecast", {"event_id": "f1", "sale_id": "s1", "sku": "k1", "expected_units": 40.0,
...                                  "low": None, "high": None, "buyer_id": "alice"})
>>> desk = BuyerDesk(catalog)
>>> [(r["sku"], r["source"], r["quantity"] >= 40) for r in desk.plans_due(stream_ms=0, now_ms=1)]
[('k1', 'expert', True)]
>>> desk.plans_due(stream_ms=0, now_ms=2)  # nothing changed: nothing to send again
[]
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from salepulse.streams.domain.catalog import Catalog, Sale
from salepulse.streams.domain.forecast import ExpertPrior
from salepulse.streams.domain.presale import DEFAULT_PRIOR_STRENGTH, Outcome, PresaleDesk, PresaleForecast
from salepulse.streams.domain.stocking import PlanLine, RegionShares, newsvendor_service_level, plan_sale


def sale_outcomes(catalog: Catalog, sale: Sale, units: Callable[[str], float],
                  sold_out: Callable[[str], bool],
                  regions: Callable[[str], Mapping[str, float]] | None = None) -> list[dict[str, Any]]:
    """``ForecastOutcome`` records of every product of a finished sale (``units``/``sold_out``/``regions`` per
    sku; ``regions``: units by delivery region)."""
    records = []
    for sku in sale.skus:
        prior = catalog.priors.get((sale.sale_id, sku)) or {}
        product = catalog.products.get((sale.sale_id, sku))
        outcome = Outcome(
            sale.sale_id, sku, prior.get("expected_units"), float(units(sku)), bool(sold_out(sku)),
            prior.get("low"), prior.get("high"), prior.get("buyer_id"), product.category if product else None,
            product.price if product else None, sale.brand, (sale.ends_ms - sale.starts_ms) / 3_600_000,
            sale.ends_ms, tuple(sorted((regions(sku) if regions else {}).items())))
        records.append(outcome.to_record())
    return records


class BuyerDesk:
    """The :class:`PresaleDesk` of this worker, fed from ``catalog.outcomes``."""

    def __init__(self, catalog: Catalog, cost_ratio: float = 9.0,
                 prior_strength: float = DEFAULT_PRIOR_STRENGTH) -> None:
        self.catalog = catalog
        self.service_level = newsvendor_service_level(cost_ratio)
        self.desk = PresaleDesk(prior_strength=prior_strength)
        self.regions = RegionShares()
        self._learned: dict[tuple[str, str], Any] = {}
        self._rebuilds = 0
        self._planned: dict[str, tuple[Any, ...]] = {}

    # --- learning ----------------------------------------------------------------------------------------
    def sync(self) -> int:
        """Learn the outcomes that arrived since the last call, in the order their sales ended.

        A revised outcome (orders counted after the sale had finished, on a lagging partition) cannot be unlearned
        from running sums, so the desk is then rebuilt from every outcome: rare, and deterministic.
        """
        # one C-level copy: the follower thread may add outcomes meanwhile
        items = list(self.catalog.outcomes.items())
        seen = {key: (record.get("actual"), record.get("censored")) for key, record in items}
        if any(key in self._learned and self._learned[key] != value for key, value in seen.items()):
            self.desk = PresaleDesk(prior_strength=self.desk.corrections.prior_strength)
            self.regions = RegionShares()
            self._learned = {}
            self._rebuilds += 1
        new = [Outcome.from_record(dict(record)) for key, record in items if key not in self._learned]
        self._learned.update(seen)
        for outcome in new:
            if outcome.regions:
                self.regions.observe(dict(outcome.regions), brand=outcome.brand, category=outcome.category)
        return self.desk.observe_many(new)

    # --- forecasts and plans -----------------------------------------------------------------------------
    def forecasts(self, sale: Sale) -> list[PresaleForecast]:
        hours = (sale.ends_ms - sale.starts_ms) / 3_600_000
        out = []
        for sku in sale.skus:
            prior = self.catalog.priors.get((sale.sale_id, sku)) or {}
            product = self.catalog.products.get((sale.sale_id, sku))
            out.append(self.desk.forecast(
                sale.sale_id, sku, expert=prior.get("expected_units"), buyer_id=prior.get("buyer_id"),
                category=product.category if product else None, price=product.price if product else None,
                brand=sale.brand, sale_hours=hours))
        return out

    def corrected_prior(self, sale_id: str, sku: str) -> ExpertPrior | None:
        """The Gamma prior the live forecast starts from: the corrected mean, the desk's p10-p90 as its range."""
        sale = self.catalog.sales.get(sale_id)
        prior = self.catalog.priors.get((sale_id, sku))
        if sale is None or prior is None:
            return None
        product = self.catalog.products.get((sale_id, sku))
        f = self.desk.forecast(sale_id, sku, expert=prior.get("expected_units"), buyer_id=prior.get("buyer_id"),
                               category=product.category if product else None,
                               price=product.price if product else None, brand=sale.brand,
                               sale_hours=(sale.ends_ms - sale.starts_ms) / 3_600_000)
        if f.source != "expert-corrected":
            return None  # nothing learned yet: the buyer's own number and range, as before
        return ExpertPrior(f.mean, f.p10, f.p90)

    def plan(self, sale: Sale) -> list[PlanLine]:
        def shares(f: PresaleForecast) -> Mapping[str, float]:
            return self.regions.shares(brand=sale.brand, category=f.category)

        return plan_sale(self.forecasts(sale), self.service_level, shares)

    def _signature(self, sale: Sale) -> tuple[Any, ...]:
        priors = tuple((self.catalog.priors.get((sale.sale_id, sku)) or {}).get("event_id") for sku in sale.skus)
        return (self._rebuilds, self.desk.version, sale.skus, priors)

    def plans_due(self, stream_ms: int, now_ms: int) -> list[dict[str, Any]]:
        """``StockPlan`` records of the sales not yet open (at stream time) whose plan changed since it was sent.

        A sale first seen already open is planned once, so the warehouse still gets its numbers.
        """
        self.sync()
        records = []
        for sale in self.catalog.all_sales():
            if sale.ends_ms <= stream_ms:
                continue
            signature = self._signature(sale)
            sent = self._planned.get(sale.sale_id)
            if sent == signature or (sent is not None and sale.starts_ms <= stream_ms):
                continue
            self._planned[sale.sale_id] = signature
            records.extend(line.record(now_ms, version=now_ms) for line in self.plan(sale))
        return records

    def plan_view(self, sale_id: str) -> dict[str, Any] | None:
        """``GET /sales/{id}/plan``: the plan as the desk would send it now; None for an unknown sale."""
        sale = self.catalog.sales.get(sale_id)
        if sale is None:
            return None
        self.sync()
        lines = self.plan(sale)
        return {"sale_id": sale_id, "brand": sale.brand, "service_level": self.service_level,
                "quantity": sum(line.quantity for line in lines),
                "products": [line.record(0, 0) | {"warehouses": line.warehouses} for line in lines]}

    # --- scorecards --------------------------------------------------------------------------------------
    def scorecard(self, buyer_id: str) -> dict[str, Any] | None:
        self.sync()
        return self.desk.scorecard(buyer_id)

    def buyers(self) -> list[dict[str, Any]]:
        self.sync()
        cards = (self.desk.scorecard(b) for b in sorted(self.desk.buyers))
        return [{k: c[k] for k in ("buyer_id", "forecasts", "sales", "bias", "learned_bias", "range_coverage")}
                for c in cards if c is not None]


def csv_lines(plan: Mapping[str, Any]) -> Iterable[list[Any]]:
    """Rows of ``salepulse plan --csv``: one per (sku, warehouse), or per sku without regions."""
    yield ["sale_id", "sku", "warehouse", "quantity", "p10", "p50", "p90", "expert", "correction", "reason"]
    for p in plan["products"]:
        parts = p["warehouses"] or {"": p["quantity"]}
        for region, quantity in parts.items():
            yield [p["sale_id"], p["sku"], region, quantity, round(p["p10"], 1), round(p["p50"], 1),
                   round(p["p90"], 1), p["expert"], round(p["correction"], 3), p["reason"]]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.0f}%"


def scorecard_html(card: Mapping[str, Any]) -> str:
    """The scorecard as a page a buyer reads: one row per category, then the last sales.

    >>> page = scorecard_html({"buyer_id": "alice", "forecasts": 3, "sales": 1, "sold_out": 0, "bias": 0.18,
    ...                        "range_coverage": 0.5, "learned_bias": 0.2, "categories": [], "recent_sales": []})
    >>> "alice" in page and "+18%" in page
    True
    """
    e = html.escape
    def share(x: float | None) -> str:
        return "–" if x is None else f"{x * 100:.0f}%"

    rows = "".join(
        f"<tr><td>{e(str(c['category']))}</td><td>{c['forecasts']}</td><td>{c['sales']}</td>"
        f"<td>{_pct(c['bias'])}</td><td>{share(c['range_coverage'])}"
        f"</td><td>×{c['correction']:.2f}</td><td>{e(c['reason'])}</td></tr>"
        for c in card["categories"])
    sales = "".join(
        f"<tr><td>{e(s['sale_id'])}</td><td>{s['forecast']:.0f}</td><td>{s['actual']:.0f}</td>"
        f"<td>{s['skus']}</td><td>{s['sold_out']}</td></tr>" for s in card["recent_sales"])
    coverage = card.get("range_coverage")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Buyer {e(card['buyer_id'])}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:.3em .8em;text-align:left}}
tr:nth-child(even){{background:#f3f3f3}}</style></head><body>
<h1>Buyer {e(card['buyer_id'])}</h1>
<p>{card['forecasts']} forecasts over {card['sales']} finished sales ({card['sold_out']} sold out).
Forecast units vs units sold (sold-out products left out): <b>{_pct(card['bias'])}</b>.
Truth inside your 80% range: <b>{share(coverage)}</b> (80% is well calibrated).
What the desk reads into your numbers now: <b>{_pct(card.get('learned_bias'))}</b>.</p>
<h2>By category</h2><table><tr><th>category</th><th>forecasts</th><th>sales</th><th>bias</th>
<th>inside 80% range</th><th>correction</th><th>why</th></tr>{rows}</table>
<h2>Last sales</h2><table><tr><th>sale</th><th>forecast</th><th>sold</th><th>products</th><th>sold out</th></tr>
{sales}</table></body></html>"""


def plan_from_rows(sale_id: str, rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A plan (the shape of ``GET /sales/{id}/plan``) from rows of the ClickHouse ``plans`` table."""
    products = [{**row, "warehouses": dict(zip(row["warehouse_regions"], row["warehouse_quantities"], strict=True))}
                for row in rows]
    for p in products:
        p.pop("warehouse_regions", None)
        p.pop("warehouse_quantities", None)
    return {"sale_id": sale_id, "quantity": sum(p["quantity"] for p in products), "products": products}
