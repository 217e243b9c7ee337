"""The request models /openapi.json publishes accept what the validation boundary (json_input) accepts, and
refuse what it refuses, on the same examples; the OpenAPI document is complete without a running worker."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from salepulse.schemas.json_input import InputError, parse_event, parse_forecast
from salepulse.streams.runtime.api import ROUTERS, models
from salepulse.streams.runtime.api.docs import openapi

EVENTS = TypeAdapter(models.EventsIn)
FORECASTS = TypeAdapter(models.ForecastsIn)
GOOD_EVENTS: list[dict[str, Any]] = [
    {"type": "browse", "event_id": "e1", "member_id": "m1", "sale_id": "s1", "sku": "k1"},
    {"type": "browse", "event_id": "e1", "member_id": "m1", "sale_id": "s1", "sku": "k1", "channel": "app",
     "ts": "2026-11-29T10:00:00Z", "session_id": "x"},
    {"type": "cart", "event_id": "e2", "member_id": "m1", "sale_id": "s1", "sku": "k1", "action": "add",
     "quantity": 1, "unit_price": 9.5, "ts": 1_795_946_400_000},
    {"type": "order", "event_id": "o1", "member_id": "m1",
     "lines": [{"sale_id": "s1", "sku": "k1", "quantity": 2, "unit_price": 10}]},
]
BAD_EVENTS: list[Any] = [
    {"type": "click", "event_id": "e1", "member_id": "m1"},
    {"type": "browse", "member_id": "m1", "sale_id": "s1", "sku": "k1"},
    {"type": "cart", "event_id": "e2", "member_id": "m1", "sale_id": "s1", "sku": "k1", "action": "keep",
     "quantity": 1, "unit_price": 9.5},
    {"type": "order", "event_id": "o1", "member_id": "m1", "lines": []},
    {"type": "order", "event_id": "o1", "member_id": "m1", "lines": [{"sku": "k"}]},
    {"type": "browse", "event_id": "e1", "member_id": "m1", "sale_id": "s1", "sku": "k1", "channel": "fax"},
    "not an object",
]


@pytest.mark.parametrize("event", GOOD_EVENTS)
def test_good_events_pass_both(event: dict[str, Any]) -> None:
    parse_event(event)
    EVENTS.validate_python(event)


@pytest.mark.parametrize("event", BAD_EVENTS)
def test_bad_events_fail_both(event: Any) -> None:
    with pytest.raises(InputError):
        parse_event(event)
    with pytest.raises(ValidationError):
        EVENTS.validate_python(event)


def test_forecasts_agree() -> None:
    good = {"sale_id": "s1", "sku": "k1", "expected_units": 40, "low": 20, "high": 60, "author": "ana"}
    parse_forecast(good)
    FORECASTS.validate_python([good, {"sale_id": "s1", "sku": "k2", "expected_units": 5.5}])
    for bad in ({"sale_id": "s1", "sku": "k1"}, {"sale_id": "s1", "sku": "k1", "expected_units": "many"}):
        with pytest.raises(InputError):
            parse_forecast(bad)
        with pytest.raises(ValidationError):
            FORECASTS.validate_python(bad)


def test_openapi_document_covers_every_declared_endpoint() -> None:
    endpoints = [endpoint for router in ROUTERS for endpoint in router.endpoints]
    document = openapi(endpoints, auth_required=True)
    for endpoint in endpoints:
        op = document["paths"][endpoint.path][endpoint.method.lower()]
        assert op["summary"] and op["responses"][str(endpoint.status)]
        assert "405" in op["responses"] and "500" in op["responses"]
        if endpoint.method == "POST":
            assert op["requestBody"]["required"] and op["security"] == [{"bearer": []}]
    schemas = document["components"]["schemas"]
    assert {"Problem", "BrowseIn", "CartIn", "OrderIn", "ForecastIn", "SaleDetail", "MemberSales"} <= set(schemas)
    refs = {value.rsplit("/", 1)[1] for value in _values(document, "$ref")}
    assert refs <= set(schemas), f"dangling references: {refs - set(schemas)}"


def _values(node: Any, key: str) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == key] + [x for v in node.values() for x in _values(v, key)]
    if isinstance(node, list):
        return [x for v in node for x in _values(v, key)]
    return []
