"""The whole shop from any worker: owned sales from this worker's own state, the others from their owners' output.

Each sale is counted by exactly one velocity worker, the owner of its partition of ``velocity.facts``; its live
state (totals, forecaster, alert state) lives there. Every owner already publishes what a reader needs, per
(sale, sku): the latest :class:`VelocitySnapshot` (compacted topic, ``version`` = facts counted so far) and its
:class:`ReplenishmentAlert` messages. :class:`ShopView` keeps the newest of each, fed by a follower thread that
reads both topics whole; :class:`ShopBoard` is the live board that answers from its own state for the sales it
owns and from the view for the others. So ``GET /sales``, ``/sales/{id}`` and the dashboard are complete on every
worker, without a request fan-out (see README, "Scaling out", for why).

Pure logic, no Kafka, no Faust: the worker hands it the ownership rule as a function.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from salepulse.streams.domain.catalog import Sale
from salepulse.streams.domain.live import LiveBoard
from salepulse.streams.domain.velocity import SkuTotals

SNAPSHOT = "VelocitySnapshot"
ALERT = "ReplenishmentAlert"


def alert_order(alert: dict[str, Any]) -> tuple[int, int]:
    """Where an alert stands among its (sale, sku)'s alerts: (sequence, 1 for a resolution, else 0).

    Sale ids and skus may contain ``:``, so the sequence is read after the known ``sale_id:sku:`` prefix.

    >>> alert_order({"alert_id": "s:1:k:3", "sale_id": "s:1", "sku": "k"})
    (3, 0)
    >>> alert_order({"alert_id": "s:1:k:3:resolved", "sale_id": "s:1", "sku": "k"})
    (3, 1)
    """
    tail = alert["alert_id"][len(f"{alert['sale_id']}:{alert['sku']}:"):]
    sequence, _, resolved = tail.partition(":")
    return int(sequence), 1 if resolved == "resolved" else 0


class ShopView:
    """The newest snapshot and alert of every (sale, sku), whichever worker published it.

    ``apply`` runs on the follower thread and the event loop reads: each update replaces one dict entry (atomic
    under the GIL), and readers copy a sale's entries in one C-level call.

    >>> view = ShopView()
    >>> snap = {"sale_id": "s", "sku": "k", "version": 5, "units": 3, "as_of": 1_000}
    >>> view.apply(SNAPSHOT, snap), view.apply(SNAPSHOT, {**snap, "version": 4, "units": 2})  # older: ignored
    (None, None)
    >>> view.snapshot("s", "k")["units"]
    3
    >>> alert = {"alert_id": "s:k:1", "sale_id": "s", "sku": "k", "status": "open"}
    >>> _ = view.apply(ALERT, alert)
    >>> view.open_alert("s", "k")["alert_id"]
    's:k:1'
    >>> _ = view.apply(ALERT, {**alert, "alert_id": "s:k:1:resolved", "status": "resolved"})
    >>> view.open_alert("s", "k") is None, view.apply("Sale", {})
    (True, 'the shop view takes VelocitySnapshot and ReplenishmentAlert records, not Sale')
    """

    def __init__(self) -> None:
        self.snapshots: dict[str, dict[str, dict[str, Any]]] = {}
        """sale_id -> sku -> the snapshot with the highest version."""
        self.alerts: dict[str, dict[str, dict[str, Any]]] = {}
        """sale_id -> sku -> the latest alert (highest sequence; a resolution after its alert)."""
        self.times: deque[int] = deque(maxlen=4096)
        """Event times of the snapshots read, for the stream clock of a worker that owns few sales (event loop)."""
        self.applied = 0
        self.versions: dict[str, int] = {}
        """sale_id -> records applied for that sale: a sale's kept answer is rebuilt when it moves."""
        self._lock = threading.Lock()

    def apply(self, name: str, record: dict[str, Any]) -> str | None:
        if name == SNAPSHOT:
            with self._lock:
                skus = self.snapshots.setdefault(record["sale_id"], {})
                kept = skus.get(record["sku"])
                # Equal versions carry equal totals (the version counts the facts); the newer copy has newer
                # forecast fields, so it wins.
                if kept is None or record["version"] >= kept["version"]:
                    skus[record["sku"]] = record
                    self._changed(record["sale_id"])
            self.times.append(int(record["as_of"]))
        elif name == ALERT:
            with self._lock:
                skus = self.alerts.setdefault(record["sale_id"], {})
                kept = skus.get(record["sku"])
                if kept is None or alert_order(record) >= alert_order(kept):
                    skus[record["sku"]] = record
                    self._changed(record["sale_id"])
        else:
            return f"the shop view takes {SNAPSHOT} and {ALERT} records, not {name}"
        self.applied += 1
        return None

    def _changed(self, sale_id: str) -> None:
        # after the record is stored: a reader that sees the new version also sees the record
        self.versions[sale_id] = self.versions.get(sale_id, 0) + 1

    def snapshot(self, sale_id: str, sku: str) -> dict[str, Any] | None:
        return self.snapshots.get(sale_id, {}).get(sku)

    def open_alert(self, sale_id: str, sku: str) -> dict[str, Any] | None:
        alert = self.alerts.get(sale_id, {}).get(sku)
        return alert if alert is not None and alert["status"] != "resolved" else None

    def open_alerts(self, sale_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The open alerts of these sales."""
        found = []
        for sale_id in sale_ids:
            for alert in list(self.alerts.get(sale_id, {}).values()):
                if alert["status"] != "resolved":
                    found.append(alert)
        return found


def remote_totals(snapshot: dict[str, Any] | None) -> SkuTotals:
    """Totals as the owner's snapshot gives them (the velocity decays from ``as_of`` like the owner's).

    >>> remote_totals({"views": 4, "carts": 2, "orders": 1, "units": 3, "revenue": 30.0, "velocity_uph": 2.0,
    ...                "as_of": 5}).units
    3
    >>> remote_totals(None).units
    0
    """
    if snapshot is None:
        return SkuTotals()
    return SkuTotals(views=snapshot["views"], carts=snapshot["carts"], orders=snapshot["orders"],
                     units=snapshot["units"], revenue=snapshot["revenue"], rate_uph=snapshot["velocity_uph"],
                     rate_ms=snapshot["as_of"], last_ms=snapshot["as_of"])


def owns_nothing(_sale_id: str) -> bool:
    """The ownership rule of a preferences-only worker: it counts no sale, so every sale's live totals are its
    owner's snapshots (README, "Scaling out").

    >>> owns_nothing("s1")
    False
    """
    return False


class ShopBoard(LiveBoard):
    """A :class:`LiveBoard` whose answers cover the whole shop: a sale ``owns`` says is ours is answered from this
    worker's state (exact, changelog-backed); any other from the :class:`ShopView` of its owner's output.

    The clock work, the alert rule and the buyer desk's outcomes still run only on the sales this worker counts:
    another worker's sale never enters ``active``, ``tracked`` or the alert state machine here.
    """

    def __init__(self, *args: Any, view: ShopView | None = None, owns: Callable[[str], bool] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.view = view or ShopView()
        self.owns: Callable[[str], bool] = owns or (lambda _sale_id: True)

    def live_totals(self, sale_id: str, sku: str) -> SkuTotals | None:
        """The live totals of one product, whoever counts it: this worker's for a sale it owns, else its owner's
        newest snapshot (None: nothing counted yet). Safe beside the follower thread: one dict read.

        >>> from salepulse.streams.domain.catalog import Catalog
        >>> board = ShopBoard(Catalog(), owns=owns_nothing)
        >>> _ = board.view.apply(SNAPSHOT, {"sale_id": "s", "sku": "k", "version": 1, "views": 0, "carts": 0,
        ...                                 "orders": 1, "units": 2, "revenue": 9.0, "velocity_uph": 4.0, "as_of": 7})
        >>> board.live_totals("s", "k").units, board.live_totals("s", "other")
        (2, None)
        """
        if self.owns(sale_id):
            return self.totals.get((sale_id, sku))
        snapshot = self.view.snapshot(sale_id, sku)
        return None if snapshot is None else remote_totals(snapshot)

    def sale_velocity(self, sale_id: str, now_ms: int) -> float:
        """Units per hour of a whole sale at ``now_ms`` (its live popularity), whoever counts it.

        The owner's snapshots of a sale are copied in one C-level call, so the follower thread adding a product
        meanwhile cannot break the sum.

        >>> from salepulse.streams.domain.catalog import Catalog
        >>> board = ShopBoard(Catalog(), owns=owns_nothing)
        >>> for sku, rate in (("a", 3.0), ("b", 1.5)):
        ...     _ = board.view.apply(SNAPSHOT, {"sale_id": "s", "sku": sku, "version": 1, "views": 0, "carts": 0,
        ...                                     "orders": 1, "units": 1, "revenue": 1.0, "velocity_uph": rate,
        ...                                     "as_of": 7})
        >>> board.sale_velocity("s", 7), board.sale_velocity("unknown", 7)
        (4.5, 0)
        """
        if self.owns(sale_id):
            return sum(self.totals[(sale_id, sku)].velocity_at(now_ms) for sku in self.active.get(sale_id, ()))
        return sum(remote_totals(s).velocity_at(now_ms) for s in list(self.view.snapshots.get(sale_id, {}).values()))

    def sale_version(self, sale_id: str) -> tuple[Any, ...]:
        """Besides this worker's own changes: its owner's snapshots and alerts read, and who owns it."""
        return *super().sale_version(sale_id), self.view.versions.get(sale_id, 0), self.owns(sale_id)

    @property
    def stream_ms(self) -> int:
        """Stream time from this worker's facts and from the snapshot times of the rest of the shop."""
        times = self.view.times
        while times:
            self.clock.observe(times.popleft())
        return self.clock.advance()

    def product_view(self, sale: Sale, sku: str) -> dict[str, Any]:
        if self.owns(sale.sale_id):
            return super().product_view(sale, sku)
        snapshot = self.view.snapshot(sale.sale_id, sku)
        # Before the owner's first snapshot, what the catalogue says is on hand (nothing is sold yet).
        stock = snapshot["stock_available"] if snapshot else self.catalog.on_hand(sale.sale_id, sku)
        return self.product_row(sale, sku, remote_totals(snapshot), snapshot or {},
                                self.view.open_alert(sale.sale_id, sku), stock)

    def shop_alerts(self) -> list[dict[str, Any]]:
        """Open alerts of the whole shop: this worker's for its sales, the owners' for the others."""
        own = [alert for (sale_id, _sku), alert in self.open_alerts.items() if self.owns(sale_id)]
        others = [sale_id for sale_id in list(self.view.alerts) if not self.owns(sale_id)
                  and self.catalog.is_open(sale_id, self.stream_ms)]
        return own + self.view.open_alerts(others)

    def sample_velocity(self, points: int = 120) -> None:
        """The sparklines: this worker's sales from its own totals, the others' from their owners' snapshots."""
        super().sample_velocity(points)
        now = self.stream_ms
        for sale in self.catalog.open_sales(now):
            if self.owns(sale.sale_id) or sale.sale_id not in self.view.snapshots:
                continue
            snaps = list(self.view.snapshots[sale.sale_id].values())
            velocity = sum(remote_totals(s).velocity_at(max(now, s["as_of"])) for s in snaps)
            history = self.velocity_history.setdefault(sale.sale_id, deque(maxlen=points))
            if not history or history[-1][0] < now:
                history.append((now, round(velocity, 3)))

    def release(self, sale_ids: Iterable[str]) -> None:
        """Sales that moved to another worker: forget their local state, so that nothing here counts, alerts or
        forecasts them, and their answers come from the view (their new owner's output) from now on."""
        released = set(sale_ids)
        keys = {key for key in self.totals if key[0] in released}
        for sale_id in released:
            keys.update((sale_id, sku) for sku in self.active.pop(sale_id, set()))
            self.velocity_history.pop(sale_id, None)
            self.changed(sale_id)
        for key in keys:
            self.totals.pop(key, None)
            self.tracked.pop(key, None)
            self.open_alerts.pop(key, None)
            self._forecast_cache.pop(key, None)
            self.alerts.forget(*key)
