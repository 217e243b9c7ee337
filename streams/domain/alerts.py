"""Replenishment alerts: a pure rule plus a hysteresis state machine per (sale, sku).  No Kafka, no Faust.

Rule (:func:`assess`)
    ``available = on_hand + inbound arriving before the sale ends`` (stock that can still serve demand;
    units already sold are not in it).  The condition holds when
    ``P(remaining demand > available) >= threshold`` AND the projected stockout time is before
    ``sale end - lead time`` (a reorder placed now could still land in time).  Remaining demand = final
    demand - units sold so far, from the forecast.  The projected stockout time assumes the expected pace:
    the remaining demand (the posterior mean, or the p90 when the mean fits in stock) sells along the sales
    curve over the rest of the sale.  ``recommended_quantity = max(p90 - sold - available, 0)`` (p90 of the
    final demand, i.e. "p90 - available" on the remaining demand); ``shortfall`` is the median one.
    Severity from the probability: low < 0.5 <= medium < 0.75 <= high < 0.9 <= critical, one level up when
    the stockout is projected sooner than the lead time from now (a reorder now would arrive too late).

State machine (:class:`AlertStateMachine`)
    One alert per condition: ``open`` when it starts; nothing while it holds at the same or a lower
    severity; a new alert ``escalated`` only on a higher severity; ``resolved`` once it clears, with
    hysteresis (the probability must fall below ``threshold - clear_margin``, or the stockout must no longer
    be projected before ``sale end - lead time``).  ``alert_id = f"{sale_id}:{sku}:{sequence}"``:
    redelivering the same input yields nothing new, and a rebuilt state (``from_dict``) continues the ids.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from salepulse.streams.platform.clock import elapsed_fraction

__all__ = [
    "SEVERITIES",
    "Alert",
    "AlertPolicy",
    "AlertStateMachine",
    "Assessment",
    "ForecastLike",
    "assess",
    "available_stock",
    "project_stockout",
]

SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
Severity = Literal["low", "medium", "high", "critical"]
Status = Literal["open", "escalated", "resolved"]


class ForecastLike(Protocol):
    """What the rule needs from a forecaster (``salepulse.streams.domain.forecast.DemandForecaster`` fits)."""

    units: float

    def forecast(self, at_fraction: float | None = None) -> Any: ...

    def prob_exceeds(self, available: float, at_fraction: float | None = None) -> float: ...


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """Knobs of the replenishment rule."""

    threshold: float = 0.5
    clear_margin: float = 0.1
    lead_time: timedelta = timedelta(hours=24)
    # probability where medium, high, critical start
    severity_cuts: tuple[float, float, float] = (0.5, 0.75, 0.9)


def available_stock(on_hand: float, inbound: Iterable[tuple[datetime, float]], sale_end: datetime) -> float:
    """Stock that can still serve the sale: on hand + inbound arriving before the end.

    >>> from datetime import datetime
    >>> end = datetime(2024, 5, 2)
    >>> available_stock(10, [(datetime(2024, 5, 1), 5), (datetime(2024, 5, 3), 100)], end)
    15.0
    """
    return float(on_hand) + float(sum(q for at, q in inbound if at < sale_end))


def project_stockout(
    remaining_demand: float,
    available: float,
    now: datetime,
    starts_at: datetime,
    ends_at: datetime,
    curve: Callable[[float], float] | None = None,
) -> datetime | None:
    """When ``available`` runs out if ``remaining_demand`` sells along the curve over the rest of the sale.

    >>> from datetime import datetime
    >>> s, e = datetime(2024, 5, 1), datetime(2024, 5, 3)   # 48 h sale, linear curve by default
    >>> project_stockout(100, 50, datetime(2024, 5, 1, 12), s, e)   # half of the 36 h left
    datetime.datetime(2024, 5, 2, 6, 0)
    >>> project_stockout(40, 50, datetime(2024, 5, 1, 12), s, e) is None
    True
    """
    if remaining_demand <= available:
        return None
    f = curve if curve is not None else (lambda t: t)
    t0 = elapsed_fraction(now, starts_at, ends_at)
    f0 = f(t0)
    if available <= 0:
        return max(now, starts_at)
    target = f0 + (available / remaining_demand) * (1.0 - f0)
    lo, hi = t0, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return starts_at + (ends_at - starts_at) * hi


@dataclass(frozen=True, slots=True)
class Assessment:
    """The rule's verdict for one (sale, sku) at one time (input of the state machine)."""

    condition: bool
    clear: bool
    severity: Severity
    probability: float
    shortfall: float
    projected_stockout_at: datetime | None
    recommended_quantity: float
    available: float
    p90: float
    reason: str
    sold: float = 0.0
    order_by: datetime | None = None
    """Projected stockout minus the lead time: the latest moment a reorder still lands before stock runs out."""
    lead_time_hours: float = 24.0


def _severity(probability: float, urgent: bool, cuts: tuple[float, float, float]) -> Severity:
    level = sum(probability >= c for c in cuts) + (1 if urgent else 0)
    return SEVERITIES[min(level, 3)]  # type: ignore[return-value]


def assess(
    forecaster: ForecastLike,
    now: datetime,
    starts_at: datetime,
    ends_at: datetime,
    on_hand: float,
    inbound: Iterable[tuple[datetime, float]] = (),
    policy: AlertPolicy | None = None,
    curve: Callable[[float], float] | None = None,
    sku: str = "",
) -> Assessment:
    """Apply the replenishment rule to a forecaster now.

    >>> from datetime import datetime
    >>> from salepulse.streams.domain.forecast import DemandForecaster, GammaPrior
    >>> fc = DemandForecaster(GammaPrior(alpha=50.0, beta=0.25), curve=lambda t: t)   # prior mean 200
    >>> fc.update(60, 0.25)
    >>> s, e = datetime(2024, 5, 1), datetime(2024, 5, 5)
    >>> a = assess(fc, datetime(2024, 5, 2), s, e, on_hand=40, curve=fc.curve, sku="MUG-1")
    >>> a.condition, a.severity, a.projected_stockout_at
    (True, 'critical', datetime.datetime(2024, 5, 2, 17, 27, 16, 363637))
    >>> a.order_by   # the stockout minus the (default) 24 h lead time
    datetime.datetime(2024, 5, 1, 17, 27, 16, 363637)
    >>> for part in a.reason.split("; "):
    ...     print(part)
    MUG-1: 100% chance demand exceeds the 40 units available (p50 224, p90 252 in total, 60 sold)
    runs out in 17h, 2d6h before the sale ends
    reorder 152 units, too late for the 1d lead time
    """
    policy = policy if policy is not None else AlertPolicy()
    t = elapsed_fraction(now, starts_at, ends_at)
    fcst = forecaster.forecast(t)
    sold = float(forecaster.units)
    available = available_stock(on_hand, inbound, ends_at)
    prob = float(forecaster.prob_exceeds(sold + available, t))
    rem_mean = fcst.mean - sold
    rem_proj = rem_mean if rem_mean > available else fcst.p90 - sold
    stockout_at = project_stockout(rem_proj, available, now, starts_at, ends_at, curve)
    deadline = ends_at - policy.lead_time
    early = stockout_at is not None and stockout_at < deadline
    condition = prob >= policy.threshold and early
    clear = prob < policy.threshold - policy.clear_margin or not early
    urgent = stockout_at is not None and stockout_at < now + policy.lead_time
    severity = _severity(prob, urgent, policy.severity_cuts)
    recommended = max(math.ceil(fcst.p90 - sold - available), 0)
    shortfall = max(fcst.p50 - sold - available, 0.0)
    order_by = None if stockout_at is None else stockout_at - policy.lead_time
    # Durations, not clock times: the rule runs on stream time, which is the wall clock only live (a replay of
    # 2019 or a 60x simulation would print misleading dates); receivers add the clock they trust.
    if stockout_at is not None:
        when = f"runs out in {_human(stockout_at - now)}, {_human(ends_at - stockout_at)} before the sale ends"
    else:
        when = "no stockout projected"
    lead = _human(policy.lead_time)
    if order_by is None:
        order = f"reorder {recommended} units"
    elif order_by > now:
        order = f"reorder {recommended} units within {_human(order_by - now)} (lead time {lead})"
    else:
        order = f"reorder {recommended} units, too late for the {lead} lead time"
    reason = (
        f"{sku + ': ' if sku else ''}{prob:.0%} chance demand exceeds the {available:.0f} units available "
        f"(p50 {fcst.p50:.0f}, p90 {fcst.p90:.0f} in total, {sold:.0f} sold); {when}; {order}"
    )
    return Assessment(
        condition=condition,
        clear=clear,
        severity=severity,
        probability=prob,
        shortfall=shortfall,
        projected_stockout_at=stockout_at,
        recommended_quantity=float(recommended),
        available=available,
        p90=float(fcst.p90),
        reason=reason,
        sold=sold,
        order_by=order_by,
        lead_time_hours=policy.lead_time.total_seconds() / 3600.0,
    )


def _human(td: timedelta) -> str:
    """'3d10h', '1d', '5h', '1h28m', '40min'.

    >>> _human(timedelta(hours=24)), _human(timedelta(minutes=88)), _human(timedelta(hours=82))
    ('1d', '1h28m', '3d10h')
    """
    secs = max(int(td.total_seconds()), 0)
    days, rem = divmod(secs, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes:02d}m" if minutes and hours < 10 else f"{hours}h"
    return f"{minutes}min"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert event (plain dataclass; ``as_dict()`` for Avro/JSON)."""

    alert_id: str
    sale_id: str
    sku: str
    status: Status
    severity: Severity
    probability: float
    shortfall: float
    projected_stockout_at: datetime | None
    recommended_quantity: float
    available: float
    p90: float
    reason: str
    units_sold: float = 0.0
    order_by: datetime | None = None
    lead_time_hours: float = 24.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _State:
    sequence: int = 0
    active: bool = False
    severity: str = "low"
    # What the last raised alert said, so that the resolution can say what changed.
    available: float = 0.0
    p90: float = 0.0
    probability: float = 0.0


def resolution(before: _State, now: Assessment) -> str:
    """What changed between the last alert and the verdict that clears it, in one short phrase.

    >>> from datetime import datetime
    >>> now = Assessment(False, True, "low", 0.05, 0.0, None, 0.0, 1100.0, 240.0, "r")
    >>> resolution(_State(1, True, "high", 60.0, 250.0, 0.97), now)
    'available 60 → 1100 units, p90 250 → 240; 97% → 5% chance of running short; no stockout projected'
    """
    parts = []
    if round(now.available) != round(before.available):
        parts.append(f"available {before.available:.0f} → {now.available:.0f} units")
    if round(now.p90) != round(before.p90):
        parts.append(f"p90 {before.p90:.0f} → {now.p90:.0f}")
    change = ", ".join(parts) or f"available {now.available:.0f} units, p90 {now.p90:.0f}"
    if now.projected_stockout_at is None:
        when = "no stockout projected"
    else:
        when = "stockout no longer before the reorder deadline"
    return f"{change}; {before.probability:.0%} → {now.probability:.0%} chance of running short; {when}"


class AlertStateMachine:
    """Hysteresis per (sale, sku): open -> (no repeat) -> escalated on higher severity -> resolved.

    >>> from datetime import datetime
    >>> def verdict(cond, clear, sev):
    ...     return Assessment(cond, clear, sev, 0.8, 10.0, datetime(2024, 5, 2), 30.0, 40.0, 120.0, "why")
    >>> sm = AlertStateMachine()
    >>> sm.update("s1", "A", verdict(True, False, "medium")).alert_id
    's1:A:1'
    >>> sm.update("s1", "A", verdict(True, False, "medium")) is None   # same condition: no repeat
    True
    >>> a = sm.update("s1", "A", verdict(True, False, "critical"))
    >>> a.alert_id, a.status
    ('s1:A:2', 'escalated')
    >>> sm.update("s1", "A", verdict(False, False, "low")) is None   # inside the hysteresis band
    True
    >>> r = sm.update("s1", "A", verdict(False, True, "low"))
    >>> r.alert_id, r.status
    ('s1:A:2:resolved', 'resolved')
    """

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], _State] = {}

    def state(self, sale_id: str, sku: str) -> tuple[int, bool, str]:
        """(sequence, active, severity) of a (sale, sku)."""
        s = self._states.get((sale_id, sku), _State())
        return s.sequence, s.active, s.severity

    def update(self, sale_id: str, sku: str, a: Assessment) -> Alert | None:
        """Feed one assessment; returns the alert to publish, or None."""
        key = (sale_id, sku)
        s = self._states.get(key)
        if s is None:
            s = self._states[key] = _State()
        status: Status
        before = _State(s.sequence, s.active, s.severity, s.available, s.p90, s.probability)
        if not s.active:
            if not a.condition:
                return None
            s.sequence += 1
            s.active = True
            s.severity = a.severity
            status = "open"
        elif a.condition and SEVERITIES.index(a.severity) > SEVERITIES.index(s.severity):
            s.sequence += 1
            s.severity = a.severity
            status = "escalated"
        elif a.clear and not a.condition:
            s.active = False
            status = "resolved"
        else:
            return None
        if status != "resolved":
            s.available, s.p90, s.probability = a.available, a.p90, a.probability
        return Alert(
            # A resolution is its own message: receivers de-duplicating by alert_id must not drop it as a repeat.
            alert_id=f"{sale_id}:{sku}:{s.sequence}" + (":resolved" if status == "resolved" else ""),
            sale_id=sale_id,
            sku=sku,
            status=status,
            severity=a.severity if status != "resolved" else s.severity,  # type: ignore[arg-type]
            probability=a.probability,
            shortfall=a.shortfall,
            projected_stockout_at=a.projected_stockout_at,
            recommended_quantity=a.recommended_quantity,
            available=a.available,
            p90=a.p90,
            reason=a.reason if status != "resolved" else f"resolved: {resolution(before, a)}",
            units_sold=a.sold,
            order_by=a.order_by,
            lead_time_hours=a.lead_time_hours,
        )

    def forget(self, sale_id: str, sku: str) -> None:
        """Drop the state of a finished sale."""
        self._states.pop((sale_id, sku), None)

    def to_dict(self) -> dict[str, list[Any]]:
        """Serializable state (e.g. for a Faust table); ``from_dict`` restores it."""
        return {f"{k[0]}\x1f{k[1]}": [s.sequence, s.active, s.severity, s.available, s.p90, s.probability]
                for k, s in self._states.items()}

    @classmethod
    def from_dict(cls, data: dict[str, list[Any]]) -> AlertStateMachine:
        sm = cls()
        for key, (seq, active, sev, *last) in data.items():  # states written before ``last`` have three items
            sale_id, sku = key.split("\x1f", 1)
            sm._states[(sale_id, sku)] = _State(int(seq), bool(active), str(sev), *(float(x) for x in last[:3]))
        return sm
