"""The collector's logic (``POST /events``, ``POST /forecasts``) and the token model; the views are thin adapters.

Pure: no Kafka, no Faust, no aiohttp. Every request is validated whole before anything is produced, and every
outcome is an :class:`Answer` (status + JSON body), never an exception that could become a 500.

Semantics (the README's "HTTP API" section says the same):

- ``POST /events``: every valid event of the request is stored; if any was refused the answer is **422**, with
  ``accepted`` (how many were stored) and ``refused`` (``index``, ``event_id`` when it is a usable string, and
  ``problems``: ``"field: reason"`` strings). All valid: **202**. Resending the whole request after fixing the bad
  ones is safe: an event's identity is ``(kind, event_id)`` (an order's ``event_id`` is its ``order_id``), never
  the arrival time, so the sink and the live totals count it once. A ``ts`` stamped by the collector (the event had
  none) is flagged on the Kafka message (header ``salepulse-ts: collector``), never part of the identity.
- ``POST /forecasts``: all valid or none applied (**422** naming each refused one), like the priors CSV loader.

>>> now = 1_764_403_200_000
>>> body = b'[{"type": "browse", "event_id": "e1", "member_id": "m1", "sale_id": "s1", "sku": "k1"},' \\
...        b' {"type": "cart", "event_id": "e2", "member_id": "m1", "sale_id": "s1", "sku": "k1",' \\
...        b'  "action": "add", "quantity": 1, "unit_price": 1e999}]'
>>> batch = collect_events(body, now)
>>> [(e.kind, e.record["event_id"], e.ts_stamped) for e in batch.events]
[('browse', 'e1', True)]
>>> batch.answer(stored=1).status, batch.answer(stored=1).body["refused"]
(422, [{'index': 1, 'event_id': 'e2', 'problems': ['unit_price: must be a finite number, got inf']}])
>>> collect_events(b'[[[[[[[[[[]]]]]]]]]]', now).answer(stored=0).status
400
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from salepulse.schemas import fast_events, requests
from salepulse.schemas import limits as L
from salepulse.schemas.json_input import InputError, load_json
from salepulse.schemas.validation import excerpt

TS_HEADER = "salepulse-ts"
"""Kafka header set to ``collector`` on an event whose ``ts`` the collector stamped (the sender gave none)."""
JSON_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/plain")
"""Content types read as JSON. ``curl -d`` sends form-urlencoded by default and ``navigator.sendBeacon`` text/plain;
refusing them would only break well-meaning callers. ``application/*+json`` is accepted too."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status and JSON body."""

    status: int
    body: dict[str, Any]


def problem(status: int, message: str, problems: list[Any] | None = None) -> Answer:
    body: dict[str, Any] = {"error": message}
    if problems is not None:
        body["problems"] = problems
    return Answer(status, body)


def content_type_problem(content_type: str | None) -> Answer | None:
    """A 415 for a body the collector does not read as JSON, else None.

    >>> content_type_problem("application/json; charset=utf-8") is None, content_type_problem(None) is None
    (True, True)
    >>> content_type_problem("multipart/form-data; boundary=x").status
    415
    >>> content_type_problem("application/json; charset=latin-1").body["error"][:40]
    'charset latin-1 is not accepted; send UT'
    """
    if not content_type:
        return None
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media not in JSON_TYPES and not (media.startswith("application/") and media.endswith("+json")):
        return problem(415, f"content type {excerpt(media)} is not accepted; send application/json (UTF-8)")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            return problem(415, f"charset {charset[:20]} is not accepted; send UTF-8 JSON")
    return None


def bearer_matches(header: str | None, tokens: Sequence[str | None]) -> bool:
    """Whether ``Authorization: Bearer <token>`` carries one of ``tokens``; any header, any bytes, never raises.

    >>> bearer_matches("Bearer s3cret", ["s3cret"]), bearer_matches("Bearer sécret", ["s3cret"])
    (True, False)
    >>> bearer_matches("Bearer \\udcff", ["s3cret"]), bearer_matches(None, ["s3cret"])
    (False, False)
    """
    if not header or not header.startswith("Bearer "):
        return False
    try:  # aiohttp hands undecodable header bytes over as surrogate escapes; compare bytes, whatever was sent
        given = header[7:].encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    matched = False
    for token in tokens:
        if token:
            matched |= hmac.compare_digest(given, token.encode("utf-8"))
    return matched


def authorize(header: str | None, tokens: Sequence[str | None], what: str) -> Answer | None:
    """401 unless a token is configured and given; None when allowed (no token configured means open).

    >>> authorize(None, [None, None], "writes") is None
    True
    >>> authorize("Bearer x", ["s3cret"], "writes").status
    401
    """
    if not any(tokens):
        return None
    if bearer_matches(header, tokens):
        return None
    return problem(401, f"{what} need 'Authorization: Bearer <token>' with a valid token")


def security_warnings(api_token: str | None, read_token: str | None, http_host: str) -> list[str]:
    """What the worker warns about at start.

    >>> security_warnings(None, None, "0.0.0.0")[0][:48]
    'SALEPULSE_API_TOKEN is not set: anyone who can r'
    >>> security_warnings("t", None, "127.0.0.1")
    []
    """
    found = []
    if not api_token:
        found.append(f"SALEPULSE_API_TOKEN is not set: anyone who can reach {http_host} can post events and "
                     "forecasts, and read every member's ranking; set it (and SALEPULSE_READ_TOKEN) in production")
    if api_token and read_token and api_token == read_token:
        found.append("SALEPULSE_READ_TOKEN equals SALEPULSE_API_TOKEN: readers can write")
    return found


class Event(NamedTuple):
    """A valid event of a request (a tuple: a batch builds thousands a second)."""

    index: int
    """Position in the request."""
    kind: str
    record: dict[str, Any]
    ts_stamped: bool

    @property
    def headers(self) -> list[tuple[str, bytes]] | None:
        return [(TS_HEADER, b"collector")] if self.ts_stamped else None


@dataclass
class EventBatch:
    """A request's events, parsed and validated whole: the good ones, each refused one, or a body-level problem."""

    events: list[Event] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    body_problem: Answer | None = None

    def answer(self, stored: int) -> Answer:
        """The answer once ``stored`` events were acknowledged by the broker."""
        if self.body_problem is not None:
            return self.body_problem
        if not self.refused:
            return Answer(202, {"accepted": stored, "refused": []})
        refused = sorted(self.refused, key=lambda item: item["index"])
        return Answer(422, {"error": f"{len(refused)} of {len(refused) + stored} events refused; the other {stored} "
                                     "were stored (resending them is safe: identity is (type, event_id))",
                            "accepted": stored, "refused": refused})


def _items(body: bytes) -> tuple[list[Any], Answer | None]:
    try:
        data = load_json(body)
    except InputError as error:
        return [], problem(400, error.problems[0])
    rows = data if isinstance(data, list) else [data]
    if not rows:
        return [], problem(400, "body: an empty list; send one JSON object or a non-empty list of them")
    if len(rows) > L.MAX_BATCH_ITEMS:
        return [], problem(413, f"{len(rows)} items in one request; send at most {L.MAX_BATCH_ITEMS}")
    return rows, None


def _id_of(row: Any, name: str) -> str | None:
    value = row.get(name) if isinstance(row, dict) else None
    ok = isinstance(value, str) and 0 < len(value) <= L.MAX_ID_LENGTH and value.isprintable()
    return value if ok else None


def collect_events(body: bytes, now_ms: int, *, window: bool = True,
                   max_age_ms: int = L.DEFAULT_MAX_EVENT_AGE_MS,
                   max_lead_ms: int = L.DEFAULT_MAX_EVENT_LEAD_MS, fast: bool = True) -> EventBatch:
    """Parse ``body`` (one JSON object or a list) and validate every event by its typed model
    (:mod:`salepulse.schemas.requests`) at ingestion time ``now_ms``.

    A batch whose every event is usable takes the fast path (:mod:`salepulse.schemas.fast_events`: the same
    records, one pass); any other goes the reference way (``fast=False`` forces it), which words each refusal.
    """
    data = fast_events.parse(body) if fast else None
    checked = None if data is None else fast_events.fast_events(data, now_ms, window=window, max_age_ms=max_age_ms,
                                                                 max_lead_ms=max_lead_ms)
    if checked is not None:
        rows, trouble = (data if isinstance(data, list) else [data]), None
        good, refused = dict(enumerate(checked)), {}
    else:
        rows, trouble = _items(body)
        good, refused = requests.check_events(rows, now_ms, window=window, max_age_ms=max_age_ms,
                                              max_lead_ms=max_lead_ms)
    batch = EventBatch(body_problem=trouble)
    seen: dict[tuple[str, str], int] = {}
    for index, row in enumerate(rows):
        checked = good.get(index)
        if checked is None:
            batch.refused.append({"index": index, "event_id": _id_of(row, "event_id"), "problems": refused[index]})
            continue
        kind, record = checked
        identity = (kind, record["event_id"])
        if identity in seen:  # the same event twice in one request: store it once, say so
            batch.refused.append({"index": index, "event_id": record["event_id"],
                                  "problems": [f"event_id: repeats item {seen[identity]} of this request"]})
            continue
        seen[identity] = index
        batch.events.append(Event(index, kind, record, ts_stamped=row.get("ts") is None))
    return batch


def collect_forecasts(body: bytes, now_ms: int) -> tuple[list[dict[str, Any]], Answer | None]:
    """Every forecast of ``body``, or the answer refusing the request (all or nothing)."""
    rows, trouble = _items(body)
    if trouble is not None:
        return [], trouble
    records, refused = requests.check_forecasts(rows, now_ms)
    if refused:
        problems = [{"index": index, "problems": found} for index, found in sorted(refused.items())]
        return [], problem(422, f"{len(refused)} of {len(rows)} forecasts are invalid; none was applied", problems)
    return records, None
