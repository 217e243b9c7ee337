"""Per-sale answers built once per change, not once per request: what ``GET /sales``, ``GET /sales/{id}``,
``/api/dashboard`` and ``/metrics`` read (issue #12: ``GET /sales`` p99 <= 50 ms with 200 open sales under load).

Building one sale's answer costs one product view per product (a forecast, an alert lookup, the velocity); 200
sales of 30 products made every ``GET /sales`` build 6,000 of them on the worker's event loop. Here each sale's
answer (its products and its summary) is kept with the **version** it was built from, and rebuilt only when that
version moves; the rendered JSON of the whole list is kept too, and re-rendered only when a sale was rebuilt.

**When an answer is rebuilt.** The version of a sale is whatever the board says changes its answer (a counted
fact, a restored or released sale, an alert, a snapshot or alert of its owner read by the shop view, a catalogue
change, a change of owner). ``GET /sales/{id}`` rebuilds a sale whose version moved at once, so what was counted
is answered exactly. ``GET /sales`` (the whole list, also the dashboard's and ``/metrics``' shop figures) rebuilds
a changed sale at most every ``LIST_SETTLE_S`` (2 s): under load every busy sale changes between two requests,
and rebuilding them per request was most of a request's cost; the tick rebuilds every changed sale each second.

The figures that move with stream time alone (the velocity's decay, the elapsed fraction, the forecast's time)
are refreshed by :meth:`SummaryCache.refresh` on the worker's 1 s tick, a fifth of the open sales per tick, oldest
first: refreshing all 200 sales every second took about a fifth of the event loop when stream time runs fast (a
simulation), since every forecast moves with the stream minute. So under load those figures are at most ~5 s
behind (a request rebuilds an answer older than ``max_age_s``, 10 s, itself, for a worker without the tick).

Once the stream is quiet, stream time stops (it only moves with event times): after one tick (1 s) every counted
figure is exact in the list too, and after a round of the tick (~5 s) every figure.

Pure: no Kafka, no Faust; the wall clock is a parameter.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from salepulse.streams.domain.catalog import Sale

MAX_AGE_S = 10.0
"""Wall-clock seconds after which a request rebuilds an answer whose stream time moved (the tick normally refreshes
it first, within ``REFRESH_SHARE`` ticks)."""
LIST_SETTLE_S = 2.0
"""``GET /sales`` (the whole list) rebuilds a changed sale at most this often: under load every busy sale changes
between two requests, and rebuilding them per request was most of a request's cost. The tick rebuilds every
changed sale each second, so the list is normally at most a tick behind; this bound only matters when the tick
falls behind. At 0.5 s, a request arriving late in a tick rebuilt most of the 200 busy sales itself (p99 120 ms
at 5,000 events/s, two workers; 56-58 ms at 2 s). ``GET /sales/{id}`` is always exact."""
REFRESH_SHARE = 5
"""The tick refreshes at least 1/REFRESH_SHARE of the open sales whose stream time moved, oldest first."""
EAGER_MAX_PRODUCTS = 1000
"""The tick rebuilds sales up to this many products; a bigger one is rebuilt by the request that reads it. A sale of
5,000 products takes ~0.6 s to build (a forecast each) without a chance to yield: rebuilt on every tick, it stalled
the event loop 0.6 s a second, and `order → GET /sales/{id}` p50 went from 56 ms to 1.6 s in make bench."""


@dataclass(frozen=True)
class Kept:
    """``GET /sales``'s whole body as rendered on the worker's loop, for readers on any thread."""

    body: bytes
    built_s: float
    tag: Hashable
    """What must not have changed since for the body to answer (the worker's partition generation)."""


@dataclass(frozen=True)
class Entry:
    """One sale's answer and what it was built from."""

    version: Hashable
    stream_ms: int
    built_s: float
    detail: dict[str, Any]
    """``GET /sales/{id}``: the summary, ``is_open`` and ``products``."""
    summary: dict[str, Any]
    """One row of ``GET /sales``."""
    summary_json: bytes
    """The row as JSON: the list is rendered by joining them."""


def fresh(entry: Entry | None, version: Hashable, stream_ms: int, wall_s: float, max_age_s: float = MAX_AGE_S,
          settle_s: float = 0.0) -> bool:
    """Whether ``entry`` still answers: same version, and built at this stream time or less than ``max_age_s`` ago;
    or, with ``settle_s``, built less than ``settle_s`` ago whatever changed since.

    >>> e = Entry(version=(3, 1), stream_ms=1_000, built_s=10.0, detail={}, summary={}, summary_json=b"{}")
    >>> fresh(e, (3, 1), 1_000, wall_s=99.0, max_age_s=2.0)  # nothing changed, stream time stood still: exact
    True
    >>> fresh(e, (4, 1), 1_000, wall_s=10.0)   # a fact was counted since: rebuilt at once
    False
    >>> fresh(e, (3, 1), 5_000, wall_s=11.5, max_age_s=2.0), fresh(e, (3, 1), 5_000, wall_s=12.5, max_age_s=2.0)
    (True, False)
    >>> fresh(e, (4, 1), 1_000, wall_s=10.4, settle_s=0.5), fresh(e, (4, 1), 1_000, wall_s=10.6, settle_s=0.5)
    (True, False)
    >>> fresh(None, (3, 1), 1_000, wall_s=10.0)
    False
    """
    if entry is None:
        return False
    if entry.version != version:
        return wall_s - entry.built_s < settle_s
    return entry.stream_ms == stream_ms or wall_s - entry.built_s < max_age_s


def urgency(summary: dict[str, Any]) -> tuple[int, float]:
    """The order of ``GET /sales``: most open alerts first, then the fastest selling.

    >>> rows = [{"open_alerts": 0, "velocity_uph": 9.0}, {"open_alerts": 1, "velocity_uph": 1.0}]
    >>> [r["velocity_uph"] for r in sorted(rows, key=urgency)]
    [1.0, 9.0]
    """
    return -summary["open_alerts"], -summary["velocity_uph"]


class SummaryCache:
    """Answers per sale, rebuilt when their version moves; the rendered ``GET /sales`` list, re-rendered when one
    was rebuilt.

    ``build(sale)`` returns the sale's detail (summary fields, ``is_open`` and ``products``); ``version(sale_id)``
    what its answer depends on. Returned dicts are shared: callers copy before changing them.

    >>> from salepulse.streams.domain.catalog import Sale
    >>> counted = {"s": 1}
    >>> def build(sale):
    ...     return {"sale_id": sale.sale_id, "units": counted[sale.sale_id], "open_alerts": 0, "velocity_uph": 0.0,
    ...             "is_open": True, "products": []}
    >>> wall = [0.0]
    >>> cache = SummaryCache(build, version=lambda sale_id: counted[sale_id], wall_s=lambda: wall[0])
    >>> sale = Sale("s", "B", 0, 10, ())
    >>> cache.sales([sale], now_ms=5)[0]["units"], cache.builds
    (1, 1)
    >>> cache.sales([sale], now_ms=5)[0]["units"], cache.builds       # unchanged: served, not rebuilt
    (1, 1)
    >>> counted["s"] = 2                                               # a fact counted: the version moves
    >>> cache.detail(sale, now_ms=5)["units"], cache.builds            # one sale: exact at once
    (2, 2)
    >>> counted["s"] = 3
    >>> cache.sales([sale], now_ms=5)[0]["units"]                      # the list: at most LIST_SETTLE_S behind
    2
    >>> wall[0] = 2.1
    >>> cache.sales_json([sale], now_ms=5)
    b'[{"sale_id": "s", "units": 3, "open_alerts": 0, "velocity_uph": 0.0}]'
    >>> "products" in cache.detail(sale, now_ms=5), "products" in cache.sales([sale], now_ms=5)[0]
    (True, False)
    """

    def __init__(self, build: Callable[[Sale], dict[str, Any]], version: Callable[[str], Hashable],
                 max_age_s: float = MAX_AGE_S, wall_s: Callable[[], float] = time.monotonic,
                 settle_s: float = LIST_SETTLE_S) -> None:
        self._build = build
        self.settle_s = settle_s
        """How long the list (:meth:`sales`, :meth:`sales_json`) keeps a changed sale's answer: ``LIST_SETTLE_S``."""
        self._version = version
        self.max_age_s = max_age_s
        self._wall_s = wall_s
        self.entries: dict[str, Entry] = {}
        self.builds = 0
        """Answers built so far (a gauge of how much the cache saves)."""
        self._rendered: tuple[list[Entry], bytes] | None = None
        """The entries the kept JSON was rendered from, and the JSON."""
        self.kept: Kept | None = None
        """The last :meth:`publish`ed body: replaced by one reference assignment, never changed in place, so a
        reader on another thread sees the previous body or the next, never a partial one."""
        self.wanted = False
        """A reader asked for the kept body since the last :meth:`publish` (so the tick publishes again)."""

    def entry(self, sale: Sale, now_ms: int, settle_s: float = 0.0) -> Entry:
        """The sale's answer: the kept one while :func:`fresh`, else rebuilt now."""
        # The version is read before building: a change landing during the build leaves an entry with the older
        # version, which the next request rebuilds (never the other way round).
        version = self._version(sale.sale_id)
        wall = self._wall_s()
        kept = self.entries.get(sale.sale_id)
        if fresh(kept, version, now_ms, wall, self.max_age_s, settle_s):
            return kept  # type: ignore[return-value]
        detail = self._build(sale)
        summary = {k: v for k, v in detail.items() if k not in ("is_open", "products")}
        entry = self.entries[sale.sale_id] = Entry(version, now_ms, wall, detail, summary,
                                                   json.dumps(summary, default=str).encode())
        self.builds += 1
        return entry

    def detail(self, sale: Sale, now_ms: int) -> dict[str, Any]:
        return self.entry(sale, now_ms).detail

    def sales(self, open_sales: Iterable[Sale], now_ms: int) -> list[dict[str, Any]]:
        """The summaries of ``open_sales``, most urgent first."""
        return sorted((self.entry(sale, now_ms, self.settle_s).summary for sale in open_sales), key=urgency)

    def sales_json(self, open_sales: Iterable[Sale], now_ms: int, settle_s: float | None = None) -> bytes:
        """:meth:`sales` as JSON bytes, rendered again only when a sale was rebuilt or the open sales changed."""
        settle_s = self.settle_s if settle_s is None else settle_s
        entries = [self.entry(sale, now_ms, settle_s) for sale in open_sales]
        kept = self._rendered
        # The same entry objects (identity, not equality: comparing the dicts would cost what rendering costs).
        if kept is not None and len(kept[0]) == len(entries) and all(
                a is b for a, b in zip(kept[0], entries, strict=True)):
            return kept[1]
        ordered = sorted(entries, key=lambda entry: urgency(entry.summary))
        body = b"[" + b", ".join(entry.summary_json for entry in ordered) + b"]"
        self._rendered = (entries, body)
        return body

    def publish(self, head: bytes, open_sales: Iterable[Sale], now_ms: int, tag: Hashable = 0) -> bytes:
        """Render ``GET /sales``'s body (``head``, the list, ``}``) now, on the thread that owns the board, and keep
        it as :attr:`kept` for :meth:`kept_list`.

        >>> from salepulse.streams.domain.catalog import Sale
        >>> units, wall = [1], [0.0]
        >>> cache = SummaryCache(lambda sale: {"sale_id": sale.sale_id, "units": units[0], "open_alerts": 0,
        ...                                    "velocity_uph": 0.0}, version=lambda _: units[0], wall_s=lambda: wall[0])
        >>> sales = [Sale("s", "B", 0, 10, ())]
        >>> cache.kept_list(tag=0), cache.wanted                       # nothing rendered yet: ask the loop
        (None, True)
        >>> cache.publish(b'{"sales": ', sales, now_ms=5, tag=0), cache.wanted
        (b'{"sales": [{"sale_id": "s", "units": 1, "open_alerts": 0, "velocity_uph": 0.0}]}', False)
        >>> units[0] = 2                                                # counted since: served until republished
        >>> cache.kept_list(tag=0) == cache.kept.body
        True
        >>> cache.kept_list(tag=1)                                      # partitions moved since: not served
        >>> wall[0] = LIST_SETTLE_S                                     # the tick fell behind: not served
        >>> cache.kept_list(tag=0)
        """
        # Unread, the list renders the answers as kept (the tick has just rebuilt every changed one it rebuilds):
        # a sale over EAGER_MAX_PRODUCTS is then rebuilt only while someone reads the list, as before.
        settle_s = self.settle_s if self.wanted else math.inf
        self.wanted = False  # before rendering: a reader arriving meanwhile makes the next tick rebuild for it
        body = head + self.sales_json(open_sales, now_ms, settle_s) + b"}"
        self.kept = Kept(body, self._wall_s(), tag)
        return body

    def kept_list(self, tag: Hashable) -> bytes | None:
        """The kept ``GET /sales`` body, from any thread (builds nothing), while it is what the loop would answer:
        rendered under the same ``tag`` less than ``settle_s`` ago (the list's own bound, see ``LIST_SETTLE_S``);
        None: render it on the loop (:meth:`publish`)."""
        self.wanted = True
        kept = self.kept  # one read: the tick may swap it meanwhile
        if kept is None or kept.tag != tag or self._wall_s() - kept.built_s >= self.settle_s:
            return None
        return kept.body

    def kept_detail(self, sale_id: str, version: Hashable) -> dict[str, Any] | None:
        """The sale's kept detail, from any thread (builds nothing), when :meth:`detail` would answer it too: the
        same ``version`` and built less than ``max_age_s`` ago; None: ask :meth:`detail` on the loop.

        >>> from salepulse.streams.domain.catalog import Sale
        >>> wall = [0.0]
        >>> cache = SummaryCache(lambda sale: {"sale_id": sale.sale_id, "open_alerts": 0, "velocity_uph": 0.0},
        ...                      version=lambda _: 1, wall_s=lambda: wall[0])
        >>> cache.kept_detail("s", 1) is None
        True
        >>> _ = cache.detail(Sale("s", "B", 0, 10, ()), now_ms=5)
        >>> cache.kept_detail("s", 1)["sale_id"], cache.kept_detail("s", 2)
        ('s', None)
        >>> wall[0] = MAX_AGE_S
        >>> cache.kept_detail("s", 1) is None
        True
        """
        entry = self.entries.get(sale_id)
        if entry is None or entry.version != version or self._wall_s() - entry.built_s >= self.max_age_s:
            return None
        return entry.detail

    def refresh(self, open_sales: Iterable[Sale], now_ms: int, share: int = REFRESH_SHARE,
                chunk: int = 4) -> Iterator[int]:
        """The tick's work: rebuild the answers (of sales up to ``EAGER_MAX_PRODUCTS`` products) whose version moved,
        and, of those only stream time moved, the
        oldest, as many as ``1/share`` of the open sales (so each is refreshed at least every ``share`` ticks);
        forget the sales no longer open. Yields after every ``chunk`` rebuilt, so
        the caller can let other work run in between.

        >>> from salepulse.streams.domain.catalog import Sale
        >>> cache = SummaryCache(lambda sale: {"open_alerts": 0, "velocity_uph": 0.0}, version=lambda _: 0)
        >>> sales = [Sale(f"s{i}", "B", 0, 10, ()) for i in range(10)]
        >>> list(cache.refresh(sales, now_ms=1))[-1], list(cache.refresh(sales, now_ms=2))[-1]
        (10, 2)
        >>> [list(cache.refresh(sales, now_ms=3))[-1] for _ in range(5)]  # a round of 5 ticks refreshes all 10
        [2, 2, 2, 2, 2]
        """
        still_open = {sale.sale_id: sale for sale in open_sales}
        behind: list[tuple[float, str, Entry]] = []
        rebuilt = 0
        for sale in still_open.values():
            if len(sale.skus) > EAGER_MAX_PRODUCTS:
                continue
            kept = self.entries.get(sale.sale_id)
            if kept is not None and kept.version == self._version(sale.sale_id):
                if kept.stream_ms != now_ms:
                    behind.append((kept.built_s, sale.sale_id, kept))
                continue
            self.entries.pop(sale.sale_id, None)
            self.entry(sale, now_ms)
            rebuilt += 1
            if rebuilt % chunk == 0:
                yield rebuilt
        behind.sort(key=lambda item: item[0])
        for _built, sale_id, kept in behind[:-(-len(still_open) // share)]:
            if self.entries.get(sale_id) is kept:  # not rebuilt by a request meanwhile
                del self.entries[sale_id]
                self.entry(still_open[sale_id], now_ms)
                rebuilt += 1
                if rebuilt % chunk == 0:
                    yield rebuilt
        for sale_id in [s for s in self.entries if s not in still_open]:
            del self.entries[sale_id]
        yield rebuilt
