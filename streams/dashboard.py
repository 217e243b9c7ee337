"""The JSON behind ``GET /api/dashboard``: every open sale, its products and the open alerts, most urgent first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from salepulse.streams.live import LiveBoard, ms_to_dt

SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def dashboard_payload(board: LiveBoard, events_processed: int) -> dict[str, Any]:
    sales = []
    for summary in board.sales_view():
        detail = board.sale_view(summary["sale_id"]) or summary
        products = detail.get("products", [])
        severities = [p["alert_severity"] for p in products if p.get("alert_severity")]
        sales.append({
            **{k: v for k, v in detail.items() if k not in ("products", "is_open")},
            "velocity_series": [list(point) for point in board.velocity_history.get(summary["sale_id"], [])],
            "worst_severity": min(severities, key=SEVERITY_RANK.__getitem__) if severities else None,
            "products": [{key: p[key] for key in ("sku", "units", "velocity_uph", "expert_prior", "p10", "p50", "p90",
                                                  "stock", "projected_stockout_at", "alert")} for p in products],
        })
    alerts = sorted(
        (dict(alert) for alert in board.open_alerts.values()),
        key=lambda a: (SEVERITY_RANK.get(a["severity"], 9), a["projected_stockout_at"] or float("inf")),
    )
    for alert in alerts:
        for key in ("projected_stockout_at", "raised_at"):
            if alert.get(key) is not None:
                alert[key] = ms_to_dt(alert[key]).isoformat()
    return {
        "generated_at": datetime.now(UTC).isoformat(),
        "stream_time": ms_to_dt(board.stream_ms).isoformat() if board.stream_ms else None,
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
