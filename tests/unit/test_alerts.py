"""Unit tests of salepulse.streams.domain.alerts: the replenishment rule and the hysteresis state machine."""

from __future__ import annotations

import doctest
from datetime import datetime, timedelta

import salepulse.streams.domain.alerts as alerts_mod
from salepulse.streams.domain.alerts import (
    AlertPolicy,
    AlertStateMachine,
    Assessment,
    assess,
    available_stock,
    project_stockout,
)
from salepulse.streams.domain.forecast import DemandForecaster, GammaPrior

START, END = datetime(2024, 5, 1), datetime(2024, 5, 5)


def test_doctests() -> None:
    res = doctest.testmod(alerts_mod)
    assert res.attempted > 10 and res.failed == 0


def _forecaster(units: float, at: float) -> DemandForecaster:
    fc = DemandForecaster(GammaPrior(alpha=50.0, beta=0.25), curve=lambda t: t)  # prior mean 200
    fc.update(units, at)
    return fc


def test_available_counts_only_inbound_before_end() -> None:
    inbound = [(END - timedelta(hours=1), 10.0), (END, 99.0), (END + timedelta(days=1), 5.0)]
    assert available_stock(20, inbound, END) == 30.0


def test_no_alert_when_stock_covers_demand() -> None:
    a = assess(_forecaster(60, 0.25), START + timedelta(days=1), START, END, on_hand=1000)
    assert not a.condition and a.clear
    assert a.projected_stockout_at is None
    assert a.recommended_quantity == 0.0
    assert a.probability < 0.01


def test_alert_when_short_and_early() -> None:
    fc = _forecaster(60, 0.25)
    a = assess(fc, START + timedelta(days=1), START, END, on_hand=40, curve=fc.curve, sku="X")
    assert a.condition
    assert a.projected_stockout_at is not None and a.projected_stockout_at < END - timedelta(hours=24)
    assert a.recommended_quantity == max(round(fc.forecast(0.25).p90 - 60 - 40 + 0.5), 0)
    assert a.shortfall > 0 and a.p90 == fc.forecast(0.25).p90
    assert a.reason.startswith("X: ") and "reorder" in a.reason


def test_inbound_before_end_removes_alert() -> None:
    fc = _forecaster(60, 0.25)
    inbound = [(START + timedelta(days=2), 500.0)]
    a = assess(fc, START + timedelta(days=1), START, END, on_hand=40, inbound=inbound)
    assert not a.condition and a.available == 540.0


def test_lead_time_gates_the_condition() -> None:
    fc = _forecaster(60, 0.25)
    now = START + timedelta(days=1)
    # slight shortage: stockout late in the sale, inside the lead time before the end -> no alert
    long_lead = AlertPolicy(lead_time=timedelta(days=3, hours=23))
    a = assess(fc, now, START, END, on_hand=150, policy=long_lead)
    assert a.projected_stockout_at is not None
    assert not a.condition


def test_project_stockout_follows_the_curve() -> None:
    front = lambda t: 1 - (1 - t) ** 2  # noqa: E731
    lin = project_stockout(100, 50, START, START, END)
    fr = project_stockout(100, 50, START, START, END, curve=front)
    assert lin is not None and fr is not None and fr < lin  # front-loaded: runs out sooner
    assert project_stockout(100, 0, START + timedelta(hours=5), START, END) == START + timedelta(hours=5)


def _v(cond: bool, clear: bool, sev: str) -> Assessment:
    return Assessment(cond, clear, sev, 0.8, 5.0, END - timedelta(days=2), 20.0, 10.0, 50.0, "r")  # type: ignore[arg-type]


def test_hysteresis_open_no_repeat_escalate_resolve() -> None:
    sm = AlertStateMachine()
    first = sm.update("s", "k", _v(True, False, "medium"))
    assert first is not None and (first.status, first.alert_id, first.severity) == ("open", "s:k:1", "medium")
    assert sm.update("s", "k", _v(True, False, "medium")) is None
    assert sm.update("s", "k", _v(True, False, "low")) is None  # de-escalation is silent
    esc = sm.update("s", "k", _v(True, False, "high"))
    assert esc is not None and (esc.status, esc.alert_id, esc.severity) == ("escalated", "s:k:2", "high")
    assert sm.update("s", "k", _v(False, False, "low")) is None  # between thresholds: hold
    res = sm.update("s", "k", _v(False, True, "low"))
    assert res is not None and (res.status, res.alert_id, res.severity) == ("resolved", "s:k:2:resolved", "high")
    assert sm.update("s", "k", _v(False, True, "low")) is None
    again = sm.update("s", "k", _v(True, False, "low"))
    assert again is not None and (again.status, again.alert_id) == ("open", "s:k:3")
    d = again.as_dict()
    for key in (
        "alert_id",
        "sale_id",
        "sku",
        "status",
        "severity",
        "probability",
        "shortfall",
        "projected_stockout_at",
        "recommended_quantity",
        "available",
        "p90",
        "reason",
    ):
        assert key in d


def test_alert_ids_deterministic_and_restorable() -> None:
    seq = [
        _v(True, False, "low"),
        _v(True, False, "low"),
        _v(True, False, "critical"),
        _v(False, True, "low"),
    ]
    runs = []
    for _ in range(2):
        sm = AlertStateMachine()
        runs.append([(a.alert_id, a.status) for v in seq if (a := sm.update("s", "k", v)) is not None])
    assert runs[0] == runs[1] == [("s:k:1", "open"), ("s:k:2", "escalated"), ("s:k:2:resolved", "resolved")]
    # state survives a restart: the redelivered event produces nothing, the next one continues the ids
    sm = AlertStateMachine()
    sm.update("s", "k", seq[0])
    restored = AlertStateMachine.from_dict(sm.to_dict())
    assert restored.update("s", "k", seq[1]) is None
    nxt = restored.update("s", "k", seq[2])
    assert nxt is not None and nxt.alert_id == "s:k:2"
    # keys are independent per (sale, sku)
    assert restored.update("s", "other", seq[0]).alert_id == "s:other:1"  # type: ignore[union-attr]


def test_resolved_reason_says_what_changed_and_no_longer_asks_for_a_reorder() -> None:
    sm = AlertStateMachine()
    opened = sm.update("s", "k", Assessment(True, False, "high", 0.97, 40.0, END - timedelta(days=2), 190.0, 60.0,
                                            250.0, "X: reorder 190 units"))  # type: ignore[arg-type]
    assert opened is not None and opened.status == "open"
    cleared = Assessment(False, True, "low", 0.05, 0.0, None, 0.0, 1100.0, 250.0, "X: reorder 0 units")  # type: ignore[arg-type]
    resolved = sm.update("s", "k", cleared)
    assert resolved is not None and resolved.status == "resolved"
    assert resolved.reason == ("resolved: available 60 → 1100 units; 97% → 5% chance of running short; "
                               "no stockout projected")
    assert "reorder" not in resolved.reason


def test_state_written_before_the_last_alert_was_kept_still_restores() -> None:
    sm = AlertStateMachine.from_dict({"s\x1fk": [2, True, "high"]})
    assert sm.state("s", "k") == (2, True, "high")
    restored = AlertStateMachine.from_dict(sm.to_dict())
    assert restored.state("s", "k") == (2, True, "high")


def test_order_by_is_the_stockout_minus_the_lead_time() -> None:
    fc = _forecaster(60, 0.25)
    policy = AlertPolicy(lead_time=timedelta(hours=6))
    a = assess(fc, START + timedelta(days=1), START, END, on_hand=40, curve=fc.curve, sku="X", policy=policy)
    assert a.projected_stockout_at is not None
    assert a.order_by == a.projected_stockout_at - timedelta(hours=6)
    assert "lead time 6h" in a.reason or "too late for the 6h lead time" in a.reason
