"""A stand-in for the worker's dashboard routes, stdlib only, so the page can be checked in a browser now.

Serves ``streams/runtime/web/`` the way the worker does:

* ``GET /dashboard``                  -> ``streams/runtime/web/dashboard.html``
* ``GET /dashboard/static/<file>``    -> ``streams/runtime/web/<file>`` (or ``streams/runtime/web/vendor/<file>``)
* ``GET /api/dashboard``              -> the JSON contract of the dashboard, whose numbers move on EVERY call:
  stream time advances by :data:`STEP_S` seconds, units only grow, velocity series get a point longer.

Run it by hand::

    python tests/web/fake_dashboard_server.py --port 8765      # then open http://127.0.0.1:8765/dashboard

or from a test with :func:`serve` (free port, background thread, ``with`` closes it).
``fail_api`` / ``fail_after`` make ``/api/dashboard`` answer 503 (to see the page's "stale since" badge);
``freeze_after`` repeats one payload (the data stopped: the "no new events" badge).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import mimetypes
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from salepulse.streams.domain.dashboard import coverage

WEB_DIR = Path(__file__).resolve().parents[2] / "streams" / "runtime" / "web"
T0 = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)  #: stream time of the first call
STEP_S = 20  #: stream seconds per API call
SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


@dataclass(frozen=True)
class FakeProduct:
    sku: str
    stock: int | None
    demand: float  #: the "true" total demand the forecast converges to
    prior: float | None
    start_units: int
    rate_per_call: float  #: units sold per API call
    forecast: bool = True  #: False: no forecast yet (all forecast fields null)


@dataclass(frozen=True)
class FakeSale:
    sale_id: str
    brand: str
    started_min_ago: int
    duration_h: float
    products: tuple[FakeProduct, ...]


def _p(sku: str, stock: int | None, demand: float, prior: float | None, start: int, rate: float,
       forecast: bool = True) -> FakeProduct:
    return FakeProduct(sku, stock, demand, prior, start, rate, forecast)


SALES: tuple[FakeSale, ...] = (
    FakeSale("s-12", "nike", 95, 6, (
        _p("k-3", 140, 205, 150, 80, 0.9),
        _p("k-7", 600, 470, 480, 260, 2.1),
        _p("k-9", 420, 340, 420, 190, 1.6),
        _p("k-11", 250, 330, 260, 120, 1.2),
    )),
    FakeSale("s-14", "adidas", 60, 4, (
        _p("a-1", 900, 720, 800, 210, 2.4),
        _p("a-2", 300, 240, 240, 70, 0.8),
        _p("a-5", 150, 140, 180, 40, 0.5),
    )),
    FakeSale("s-15", "dyson", 30, 3, (
        _p("d-1", 80, 150, 90, 35, 0.7),
        _p("d-2", 120, 95, 100, 22, 0.3),
    )),
    FakeSale("s-17", "lego", 140, 8, (
        _p("l-10", 2000, 1500, 1600, 700, 3.0),
        _p("l-11", 1200, 950, 900, 400, 1.9),
        _p("l-12", 500, 380, 450, 160, 0.9),
    )),
    FakeSale("s-18", "levi's", 15, 5, (
        _p("v-501", 700, 620, 650, 35, 1.1),
        _p("v-511", 500, 560, 400, 20, 0.9),
    )),
    FakeSale("s-19", "ray-ban", 5, 6, (  # just started: no forecast yet
        _p("r-1", 300, 0, None, 3, 0.4, forecast=False),
        _p("r-2", None, 0, None, 1, 0.2, forecast=False),
    )),
    FakeSale("s-21", "puma", 200, 5, (
        _p("p-4", 1000, 620, 700, 520, 0.6),
        _p("p-8", 800, 430, 500, 350, 0.4),
    )),
    FakeSale("s-23", "asics", 50, 6, (  # one product sold out, the rest comfortably covered
        _p("g-1", 40, 38, 40, 40, 0.0),
        _p("g-2", 900, 300, 320, 90, 0.5),
    )),
    FakeSale("s-24", "fila", 2, 6, (  # quiet: no unit sold yet
        _p("f-1", 200, 80, 90, 0, 0.0),
    )),
    FakeSale("s-25", "kappa", 1, 6, (  # quiet too
        _p("q-1", 150, 60, 70, 0, 0.0),
    )),
)
#: Product names as a catalogue carries them (a few skus have none, like real feeds).
NAMES = {"k-3": "Air Zoom Pegasus 41", "k-7": "Dri-FIT tee", "k-9": "Club fleece hoodie", "a-1": "Samba OG",
         "a-2": "Trefoil cap", "d-1": "V15 Detect vacuum", "d-2": "Supersonic dryer", "l-10": "Millennium Falcon",
         "v-501": "501 Original jeans", "v-511": "511 Slim jeans", "g-1": "Gel-Kayano 31", "g-2": "Gel-Nimbus 26",
         "f-1": "Disruptor II", "q-1": "Banda track jacket", "p-4": "Suede Classic", "r-1": "Wayfarer"}
CURRENCY = "EUR"


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


@dataclass
class FakeDashboard:
    """The state behind the fake ``/api/dashboard``: call number ``n`` fully determines the payload."""

    calls: int = 0  #: payloads served
    attempts: int = 0  #: requests to /api/dashboard, failed ones included
    fail_api: bool = False  #: answer 503 from now on
    fail_after: int | None = None  #: answer 503 once this many payloads were served
    freeze_after: int | None = None  #: from this call on, repeat the same payload (the data stopped)
    currency: str = CURRENCY
    lock: threading.Lock = field(default_factory=threading.Lock)

    def should_fail(self) -> bool:
        with self.lock:
            self.attempts += 1
            return self.fail_api or (self.fail_after is not None and self.calls >= self.fail_after)

    def next_payload(self) -> dict[str, Any]:
        with self.lock:
            n = self.calls if self.freeze_after is None else min(self.calls, self.freeze_after)
            self.calls += 1
        return payload(n, self.currency)


def _product(sale: FakeSale, prod: FakeProduct, n: int, now: datetime) -> dict[str, Any]:
    cap = prod.stock if prod.stock is not None else 10**9
    units = int(min(cap, prod.start_units + prod.rate_per_call * n))
    velocity = round(prod.rate_per_call * 3600 / STEP_S * (1 + 0.18 * math.sin(n / 3 + len(prod.sku))), 1)
    left = None if prod.stock is None else prod.stock - units  # like the worker: the stock still available
    row: dict[str, Any] = {"sku": prod.sku, "name": NAMES.get(prod.sku, ""), "units": units, "velocity_uph": velocity,
                           "expert_prior": prod.prior, "p10": None, "p50": None, "p90": None, "stock": left,
                           "projected_stockout_at": None, "alert": None, "alert_severity": None}
    if not prod.forecast:
        return row
    p50 = max(units, prod.demand * (1 + 0.06 * math.sin(n / 5 + len(prod.sku))))
    row.update(p10=round(max(units, p50 * 0.84), 1), p50=round(p50, 1), p90=round(p50 * 1.17, 1))
    if prod.stock is not None and p50 > prod.stock and velocity > 0:
        hours = max(0.0, (prod.stock - units) / velocity)
        row["projected_stockout_at"] = _iso(now + timedelta(hours=hours))
    return row


def _alert(sale: FakeSale, row: dict[str, Any], n: int, now: datetime) -> dict[str, Any] | None:
    stock = None if row["stock"] is None else row["stock"] + row["units"]  # the sale's whole allocation
    p50, p90 = row["p50"], row["p90"]
    if stock is None or p90 is None or p90 <= stock:
        return None
    if p50 > stock * 1.25:
        severity = "critical"
    elif p50 > stock:
        severity = "high"
    else:
        severity = "medium" if p90 > stock * 1.08 else "low"
    recommended = math.ceil(p90 - stock)
    shortfall = round(max(p50, stock) - stock if p50 > stock else p90 - stock)
    when = row["projected_stockout_at"]
    clock = f"; stock runs out ~{when[11:16]} UTC" if when else ""
    return {
        "alert_id": f"{sale.sale_id}:{row['sku']}:1",
        "sale_id": sale.sale_id,
        "sku": row["sku"],
        "status": "escalated" if severity == "critical" and n > 5 else "open",
        "severity": severity,
        "shortfall": shortfall,
        "recommended_quantity": recommended,
        "projected_stockout_at": when,
        "reason": f"{row['sku']}: p90 demand {p90:,.0f} exceeds stock {stock:,} by {p90 - stock:,.0f} "
                  f"at {row['velocity_uph']:,.0f} u/h{clock}; reorder {recommended} units within 1h30m (lead time 2h)",
        "raised_at": _iso(T0 - timedelta(minutes=12)),
        "product_name": row["name"] or None,
        "sale_name": sale.brand,
        "order_by": _iso(datetime.fromisoformat(when.replace("Z", "+00:00")) - timedelta(hours=2)) if when else None,
        "wall_clock_at": _iso(datetime.now(UTC)),
    }


def payload(n: int, currency: str = CURRENCY) -> dict[str, Any]:
    """The ``/api/dashboard`` body of the ``n``-th call (0-based)."""
    now = T0 + timedelta(seconds=STEP_S * n)
    sales, alerts = [], []
    for sale in SALES:
        starts = T0 - timedelta(minutes=sale.started_min_ago)
        ends = starts + timedelta(hours=sale.duration_h)
        products = [_product(sale, prod, n, now) for prod in sale.products]
        sale_alerts = [a for a in (_alert(sale, row, n, now) for row in products) if a]
        for row in products:
            hit = next((a for a in sale_alerts if a["sku"] == row["sku"]), None)
            row["alert"] = hit["status"] if hit else None
            row["alert_severity"] = hit["severity"] if hit else None
        alerts += sale_alerts

        def band(key: str, rows: list[dict[str, Any]] = products) -> float | None:
            values = [r[key] for r in rows if r[key] is not None]
            return round(sum(values), 1) if values else None

        stockouts = [r["projected_stockout_at"] for r in products if r["projected_stockout_at"]]
        severities = [a["severity"] for a in sale_alerts]
        series = []
        for i in range(n - 59, n + 1):  # the last 60 samples (one per call) since the sale started
            at = T0 + timedelta(seconds=STEP_S * i)
            if at < starts:
                continue
            v = sum(p.rate_per_call * 3600 / STEP_S * (1 + 0.18 * math.sin(i / 3 + len(p.sku))) for p in sale.products)
            series.append([_ms(at), round(v, 1)])
        sales.append({
            "sale_id": sale.sale_id,
            "brand": sale.brand,
            "starts_at": _iso(starts),
            "ends_at": _iso(ends),
            "elapsed_fraction": round(min(1.0, (now - starts) / (ends - starts)), 4),
            "units": sum(r["units"] for r in products),
            "revenue": round(sum(r["units"] for r in products) * 27.5, 2),
            "velocity_uph": round(sum(r["velocity_uph"] for r in products), 1),
            "velocity_series": series,
            "expert_prior": band("expert_prior"),
            "p10": band("p10"),
            "p50": band("p50"),
            "p90": band("p90"),
            "stock": sum(r["stock"] or 0 for r in products),
            "projected_stockout_at": min(stockouts) if stockouts else None,
            "open_alerts": len(sale_alerts),
            "worst_severity": min(severities, key=SEVERITY_RANK.__getitem__) if severities else None,
            "out_of_stock": sum(1 for r in products if r["stock"] is not None and r["stock"] <= 0),
            "coverage": coverage(products, len(sale_alerts)),
            "quiet": sum(r["units"] for r in products) == 0 and not sale_alerts,
            "products": [{**r, "coverage": coverage([r], 1 if r["alert"] else 0)} for r in products],
        })
    alerts.sort(key=lambda a: (SEVERITY_RANK[a["severity"]], a["projected_stockout_at"] or "9999"))
    return {
        "generated_at": _iso(datetime.now(UTC)),
        "stream_time": _iso(now),
        "stream_is_wall_clock": False,  # a fixed 2026-11-29 morning: the page must label the stream's clock
        "currency": currency,
        "totals": {
            "open_sales": len(sales),
            "units": sum(s["units"] for s in sales),
            "revenue": round(sum(s["revenue"] for s in sales), 2),
            "velocity_uph": round(sum(s["velocity_uph"] for s in sales), 1),
            "open_alerts": len(alerts),
            "events_processed": 120_000 + 37 * n * 11,
        },
        "sales": sales,
        "alerts": alerts,
    }


def _handler(state: FakeDashboard, web_dir: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: tests read their own output
            pass

        def _send(self, status: int, body: bytes, content_type: str, cache: str = "no-store") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", cache)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = urlsplit(self.path).path
            if path == "/api/dashboard":
                if state.should_fail():
                    self._send(503, b'{"error": "fake outage"}', "application/json")
                    return
                body = json.dumps(state.next_payload()).encode()
                self._send(200, body, "application/json")
            elif path in ("/dashboard", "/dashboard/"):
                self._send(200, (web_dir / "dashboard.html").read_bytes(), "text/html; charset=utf-8")
            elif path.startswith("/dashboard/static/"):
                name = path[len("/dashboard/static/"):]
                for folder in (web_dir, web_dir / "vendor"):
                    file = (folder / name).resolve()
                    if file.parent == folder.resolve() and file.is_file():
                        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                        self._send(200, file.read_bytes(), kind, cache="max-age=300")
                        return
                self._send(404, b"no such static file", "text/plain")
            else:
                self._send(404, b"not found", "text/plain")

    return Handler


@contextlib.contextmanager
def serve(host: str = "127.0.0.1", port: int = 0, web_dir: Path = WEB_DIR) -> Iterator[tuple[str, FakeDashboard]]:
    """Run the fake server in a thread; yields ``(base_url, state)`` and shuts it down on exit."""
    state = FakeDashboard()
    server = ThreadingHTTPServer((host, port), _handler(state, web_dir))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-dashboard", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    with serve(args.host, args.port) as (url, _state):
        print(f"fake dashboard at {url}/dashboard (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
