"""Unit tests of salepulse.consumers.alerts_follow:
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

import salepulse.consumers.alerts_follow as follow_mod
from salepulse.consumers.alerts_follow import (
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
def test_format_open() -> None:
    line = format_alert(make_alert("open", "high"))
    assert line == ("2026-11-29 10:02 OPEN      high     sale s-12 sku k-3  short 80 u, send 120 u, "
                    "stockout ~14:30 — demand runs 3x the prior")


def test_format_escalated_other_day_stockout() -> None:
    alert = make_alert("escalated", "critical", projected_stockout_at=RAISED + timedelta(days=1, hours=2))
    line = format_alert(alert)
    assert line.startswith("2026-11-29 10:02 ESCALATED critical sale s-12 sku k-3  short 80 u, send 120 u")
    assert "stockout ~11-30 12:02" in line  # a stockout tomorrow carries its date


def test_format_resolved() -> None:
    line = format_alert(make_alert("resolved", "medium", shortfall=0.0, recommended_quantity=0, available=300,
                                   projected_stockout_at=None, reason="restocked"))
    assert line == "2026-11-29 10:02 RESOLVED  medium   sale s-12 sku k-3  cleared, available 300 u — restocked"


def test_format_accepts_epoch_millis_and_missing_stockout() -> None:
    ms = int(RAISED.timestamp() * 1000)
    line = format_alert(make_alert(raised_at=ms, projected_stockout_at=None))
    assert line.startswith("2026-11-29 10:02 OPEN") and "stockout n/a" in line


def test_format_in_another_timezone() -> None:
    line = format_alert(make_alert(), tz=timezone(timedelta(hours=1)))
    assert line.startswith("2026-11-29 11:02 OPEN") and "stockout ~15:30" in line


# --- JSON -------------------------------------------------------------------------------------------------------
def test_json_line_shape() -> None:
    line = json_line(make_alert())
    assert "\n" not in line
    obj = json.loads(line)
    assert set(obj) == {"event_id", "alert_id", "sale_id", "sku", "status", "severity", "probability", "shortfall",
                        "available", "p90", "recommended_quantity", "projected_stockout_at", "reason", "raised_at"}
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
