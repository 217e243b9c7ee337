"""Unit tests of salepulse.consumers.io.alerts_follow:
the alert line, the JSON shape, the backoff policy, the webhook client.

No broker here; the webhook client runs against httpx.MockTransport, so retries and headers are checked exactly.
"""

from __future__ import annotations

import doctest
import json
import threading
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

import salepulse.consumers.io.alerts_follow as follow_mod
from salepulse.consumers.io.alerts_follow import (
    BACKOFF_CAP_S,
    RETRY_AFTER_CAP_S,
    DeliveryAbandoned,
    WebhookClient,
    alert_to_json,
    backoff_delay,
    default_group_id,
    format_alert,
    json_line,
    parse_retry_after,
)

RAISED = datetime(2026, 11, 29, 10, 2, tzinfo=UTC)


def make_alert(status: str = "open", severity: str = "high", **overrides: Any) -> dict[str, Any]:
    """An alert as the codec decodes it (timestamps are aware datetimes)."""
    alert: dict[str, Any] = {
        "event_id": f"s-12:k-3:{status}", "alert_id": f"s-12:k-3:{status}", "sale_id": "s-12", "sku": "k-3",
        "status": status, "severity": severity, "probability": 0.87, "shortfall": 80.4, "available": 40,
        "p90": 160.0, "recommended_quantity": 120, "projected_stockout_at": RAISED.replace(hour=14, minute=30),
        "reason": "demand runs 3x the prior", "raised_at": RAISED,
    }
    alert.update(overrides)
    return alert


def test_doctests() -> None:
    res = doctest.testmod(follow_mod)
    assert res.attempted >= 8 and res.failed == 0


# --- format_alert ---------------------------------------------------------------------------------------------
def named(**overrides: Any) -> dict[str, Any]:
    """An alert from a worker that knows the catalogue's names, raised live (stream time = wall clock)."""
    return make_alert(**{"product_name": "Air Max 90", "sale_name": "nike", "wall_clock_at": RAISED,
                         "order_by": RAISED.replace(hour=11, minute=30), **overrides})


def test_format_open_names_product_and_sale_and_the_order_by_deadline() -> None:
    line = format_alert(named())
    assert line == ("2026-11-29 10:02 OPEN      high     Air Max 90 (k-3) · nike sale · order 120 u by 11:30 · "
                    "runs out ~14:30")
    assert "stream" not in line  # live: one clock


def test_format_without_names_falls_back_to_ids() -> None:
    line = format_alert(make_alert("open", "high"))
    assert line.startswith("2026-11-29 10:02 OPEN      high     sku k-3 · sale s-12 · order 120 u · runs out ~14:30")


def test_format_escalated_other_day_stockout() -> None:
    line = format_alert(named(status="escalated", severity="critical",
                              projected_stockout_at=RAISED + timedelta(days=1, hours=2)))
    assert line.startswith("2026-11-29 10:02 ESCALATED critical Air Max 90 (k-3)")
    assert "runs out ~11-30 12:02" in line  # a stockout tomorrow carries its date


def test_format_a_passed_deadline_says_now() -> None:
    line = format_alert(named(order_by=RAISED - timedelta(minutes=30)))
    assert "order 120 u NOW (deadline 09:32 passed)" in line


def test_format_labels_stream_time_when_it_differs_from_the_wall_clock() -> None:
    replayed = RAISED.replace(year=2019, month=10, day=1)
    line = format_alert(named(raised_at=replayed, order_by=replayed + timedelta(hours=1),
                              projected_stockout_at=replayed + timedelta(hours=3)))
    assert line.startswith("2026-11-29 10:02 OPEN")  # when it was raised, on the wall clock
    assert "order 120 u by 11:02" in line and "runs out ~13:02" in line
    assert line.endswith("[stream time 10-01 10:02]")


def test_format_resolved_says_what_changed() -> None:
    reason = "resolved: available 60 → 1100 units; 97% → 5% chance of running short; no stockout projected"
    line = format_alert(named(status="resolved", severity="medium", shortfall=0.0, recommended_quantity=0,
                              available=1100, projected_stockout_at=None, reason=reason))
    assert line == ("2026-11-29 10:02 RESOLVED  medium   Air Max 90 (k-3) · nike sale · cleared: available 60 → "
                    "1100 units; 97% → 5% chance of running short; no stockout projected")
    assert "reorder" not in line


def test_format_accepts_epoch_millis_and_missing_stockout() -> None:
    ms = int(RAISED.timestamp() * 1000)
    line = format_alert(make_alert(raised_at=ms, projected_stockout_at=None))
    assert line.startswith("2026-11-29 10:02 OPEN") and "no stockout projected" in line


def test_format_in_another_timezone() -> None:
    line = format_alert(named(), tz=timezone(timedelta(hours=1)))
    assert line.startswith("2026-11-29 11:02 OPEN") and "runs out ~15:30" in line and "by 12:30" in line


@pytest.mark.parametrize("status", ["open", "escalated", "resolved"])
def test_lines_stay_under_160_characters_with_long_names(status: str) -> None:
    """The worst usual case: long catalogue names, a replay (stream time shown), deadlines on other days."""
    replayed = RAISED.replace(year=2019)
    alert = named(status=status, product_name="Extra long product description " * 4, sale_name="brand " * 10,
                  sku="sku-12345678", sale_id="rees46-samsung-2019", raised_at=replayed,
                  order_by=replayed + timedelta(days=1), projected_stockout_at=replayed + timedelta(days=2),
                  reason="resolved: " + "available 1 → 2 units; " * 10, recommended_quantity=12345)
    line = format_alert(alert)
    assert len(line) <= 160, line
    assert "(sku-12345678)" in line and " sale · " in line


def test_very_long_ids_are_clipped_not_wrapped() -> None:
    line = format_alert(named(sku="sku-" + "9" * 40, sale_id="sale-" + "x" * 40))
    assert len(line) <= 160 and "\n" not in line and "sku-9999" in line


# --- JSON -------------------------------------------------------------------------------------------------------
def test_json_line_shape() -> None:
    line = json_line(make_alert())
    assert "\n" not in line
    obj = json.loads(line)
    assert set(obj) == {"event_id", "alert_id", "sale_id", "sku", "status", "severity", "probability", "shortfall",
                        "available", "p90", "recommended_quantity", "projected_stockout_at", "reason", "raised_at"}
    assert json.loads(json_line(named()))["order_by"] == "2026-11-29T11:30:00.000+00:00"
    assert obj["alert_id"] == "s-12:k-3:open"
    assert obj["raised_at"] == "2026-11-29T10:02:00.000+00:00"
    assert datetime.fromisoformat(obj["projected_stockout_at"]) == RAISED.replace(hour=14, minute=30)
    assert obj["recommended_quantity"] == 120 and obj["probability"] == 0.87


def test_json_null_stockout_and_millis() -> None:
    obj = alert_to_json(make_alert(projected_stockout_at=None, raised_at=int(RAISED.timestamp() * 1000)))
    assert obj["projected_stockout_at"] is None
    assert obj["raised_at"] == "2026-11-29T10:02:00.000+00:00"


# --- backoff ----------------------------------------------------------------------------------------------------
def test_backoff_grows_exponentially_until_the_cap() -> None:
    top = [backoff_delay(n, jitter=1.0) for n in range(1, 10)]
    assert top[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert all(b >= a for a, b in zip(top, top[1:], strict=False))
    assert max(top) == BACKOFF_CAP_S and backoff_delay(100, jitter=1.0) == BACKOFF_CAP_S


def test_backoff_jitter_stays_between_half_and_full() -> None:
    for attempt in (1, 4, 12):
        ceiling = backoff_delay(attempt, jitter=1.0)
        assert backoff_delay(attempt, jitter=0.0) == ceiling / 2
        draws = {backoff_delay(attempt) for _ in range(200)}
        assert all(ceiling / 2 <= d <= ceiling for d in draws)
        assert len(draws) > 50  # really jittered


def test_backoff_honours_retry_after() -> None:
    assert backoff_delay(1, retry_after=0.1) == 0.1
    assert backoff_delay(9, retry_after=0.1) == 0.1  # the server's word beats the formula
    assert backoff_delay(1, retry_after=45.0) == 45.0  # even above the backoff cap
    assert backoff_delay(1, retry_after=10_000) == RETRY_AFTER_CAP_S
    assert backoff_delay(1, retry_after=-3) == 0.0


def test_parse_retry_after() -> None:
    now = datetime(2026, 11, 29, 10, 2, tzinfo=UTC)
    assert parse_retry_after("0.1") == 0.1
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after("Sun, 29 Nov 2026 10:03:00 GMT", now=now) == 60.0
    assert parse_retry_after("Sun, 29 Nov 2026 10:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("nan") is None
    assert parse_retry_after("") is None and parse_retry_after("later") is None


def test_default_group_id() -> None:
    assert default_group_id("text", None) == "salepulse-alerts-text"
    assert default_group_id("json", None) == "salepulse-alerts-json"
    assert default_group_id("text", "http://user:pw@127.0.0.1:8080/hook?token=x") == \
        "salepulse-alerts-webhook-127.0.0.1-8080"


# --- webhook client ----------------------------------------------------------------------------------------------
def _client(handler: Any, stop: threading.Event | None = None) -> WebhookClient:
    return WebhookClient("http://receiver.test/hook", stop=stop,
                         client=httpx.Client(transport=httpx.MockTransport(handler)))


def test_webhook_retries_until_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow_mod, "backoff_delay", lambda attempt, retry_after=None: retry_after or 0.001)
    answers = iter([httpx.Response(500, text="boom"), httpx.Response(400, text="bad field"),
                    httpx.Response(429, headers={"Retry-After": "0.01"}), httpx.Response(204)])
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    client = _client(handler)
    client.deliver(make_alert())
    assert len(seen) == 4
    assert {r.headers["Idempotency-Key"] for r in seen} == {"s-12:k-3:open"}
    assert all(json.loads(r.content)["alert_id"] == "s-12:k-3:open" for r in seen)
    assert seen[0].headers["Content-Type"] == "application/json"
    assert client.delivered.total() == 1
    assert client.failures.get(status="500") == 1 and client.failures.get(status="400") == 1
    assert client.failures.get(status="429") == 1


def test_webhook_network_error_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(follow_mod, "backoff_delay", lambda attempt, retry_after=None: 0.001)
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200)

    client = _client(handler)
    client.deliver(make_alert())
    assert calls["n"] == 2 and client.failures.get(status="network") == 1


def test_webhook_stop_abandons_without_success() -> None:
    stop = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        stop.set()  # shut down while the receiver is failing
        return httpx.Response(503, headers={"Retry-After": "60"})

    client = _client(handler, stop=stop)
    with pytest.raises(DeliveryAbandoned):
        client.deliver(make_alert())  # must return at once, not after 60 s
    assert client.delivered.total() == 0
