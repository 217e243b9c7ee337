"""The JSON behind ``GET /api/dashboard``: every open sale, its products and the open alerts, most urgent first.

Also what the page needs to be trusted at a glance: one clock (the wall clock, with the stream's own time only
when it differs, e.g. in a replay), badges computed from the same numbers as the rows (``out_of_stock``), the
currency of the revenue figures, product names on alerts, and which sales are quiet (no unit sold yet) so the
page can fold them away.
"""

from __future__ import annotations

import time
from typing import Any

from salepulse.streams.domain.live import LiveBoard, iso_time, ms_to_dt

SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
#: Stream time this close to the wall clock is "live": the page then shows a single clock.
SAME_CLOCK_MS = 120_000
PRODUCT_KEYS = ("sku", "name", "units", "velocity_uph", "expert_prior", "p10", "p50", "p90", "stock",
                "projected_stockout_at", "alert", "alert_severity")


def coverage(products: list[dict[str, Any]], open_alerts: int) -> str:
    """One verdict per sale or product, so that two badges never disagree.

    ``stock`` is what is left (units already sold are not in it) and ``p50``/``p90`` forecast the sale's total
    demand, so the comparison is of what is still to sell (``p50 - units``) with what is left. ``out of stock``
    when any product has nothing left, ``at risk`` while an alert is open, ``short`` when the median of the
    remaining demand exceeds stock, ``tight`` when only the p90 does, ``covered`` otherwise, ``unknown`` without
    a forecast.

    >>> coverage([{"stock": 0, "p50": 5, "p90": 8}, {"stock": 100, "p50": 5, "p90": 8}], 0)
    'out of stock'
    >>> coverage([{"stock": 100, "p50": 5, "p90": 8}], 1), coverage([{"stock": 100, "p50": 5, "p90": 8}], 0)
    ('at risk', 'covered')
    >>> coverage([{"stock": 10, "units": 90, "p50": 95, "p90": 105}], 0)   # 5 to sell, 10 left; p90 wants 15
    'tight'
    """
    if any(p.get("stock") is not None and p["stock"] <= 0 for p in products):
        return "out of stock"
    if open_alerts:
        return "at risk"
    known = [p for p in products if p.get("p50") is not None and p.get("stock") is not None]
    if not known:
        return "unknown"
    if any(p["p50"] - (p.get("units") or 0) > p["stock"] for p in known):
        return "short"
    if any((p.get("p90") or 0) - (p.get("units") or 0) > p["stock"] for p in known):
        return "tight"
    return "covered"


def dashboard_payload(board: LiveBoard, events_processed: int, currency: str = "EUR",
                      wall_ms: int | None = None) -> dict[str, Any]:
    wall_ms = int(time.time() * 1000) if wall_ms is None else wall_ms
    sales = []
    for summary in board.sales_view():
        detail = board.sale_view(summary["sale_id"]) or summary
        products = detail.get("products", [])
        severities = [p["alert_severity"] for p in products if p.get("alert_severity")]
        rows = [{key: p.get(key) for key in PRODUCT_KEYS} for p in products]
        for row, product in zip(rows, products, strict=True):
            row["coverage"] = coverage([product], 1 if product.get("alert") else 0)
        sales.append({
            **{k: v for k, v in detail.items() if k not in ("products", "is_open")},
            "velocity_series": [list(point) for point in board.velocity_history.get(summary["sale_id"], [])],
            "worst_severity": min(severities, key=SEVERITY_RANK.__getitem__) if severities else None,
            "out_of_stock": sum(1 for p in products if p.get("stock") is not None and p["stock"] <= 0),
            "coverage": coverage(products, summary["open_alerts"]),
            "quiet": summary["units"] == 0 and not summary["open_alerts"],
            "products": rows,
        })
    alerts = sorted(
        (dict(alert) for alert in board.shop_alerts()),
        key=lambda a: (SEVERITY_RANK.get(a["severity"], 9), a["projected_stockout_at"] or float("inf")),
    )
    for alert in alerts:
        for key in ("projected_stockout_at", "raised_at", "order_by", "wall_clock_at"):
            if alert.get(key) is not None:
                alert[key] = ms_to_dt(alert[key]).isoformat()
    stream_ms = board.stream_ms or None
    return {
        "generated_at": ms_to_dt(wall_ms).isoformat(),
        "stream_time": iso_time(stream_ms),
        "stream_is_wall_clock": stream_ms is None or abs(wall_ms - stream_ms) <= SAME_CLOCK_MS,
        "currency": currency,
        "totals": {
            "open_sales": len(sales),
            "units": sum(s["units"] for s in sales),
            "revenue": round(sum(s["revenue"] for s in sales), 2),
            "velocity_uph": round(sum(s["velocity_uph"] for s in sales), 3),
            "open_alerts": len(alerts),
            "events_processed": events_processed,
        },
        "sales": sales,
        "alerts": alerts,
    }
