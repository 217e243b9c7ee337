"""The request models /openapi.json publishes are the ones that validate requests: they accept what the collector
accepts and refuse what it refuses, the collector's 422 quotes their words, the limits they publish are those of
schemas/limits.py; and the OpenAPI document lists every endpoint with its request and response models."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from salepulse.schemas import limits as L
from salepulse.schemas import requests
from salepulse.schemas.json_input import InputError, parse_event, parse_forecast
from salepulse.streams.domain.collector import collect_events, collect_forecasts
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


NOW = 1_795_946_400_000


def _refused(body: Any) -> list[list[str]]:
    batch = collect_events(json.dumps(body).encode(), NOW)
    return [item["problems"] for item in sorted(batch.refused, key=lambda item: item["index"])]


def test_the_published_models_are_the_validating_ones() -> None:
    assert models.EventsIn is requests.EventsIn and models.ForecastsIn is requests.ForecastsIn
    bodies = {(e.method, e.path): e.body for router in ROUTERS for e in router.endpoints}
    assert bodies[("POST", "/events")] is requests.EventsIn
    assert bodies[("POST", "/forecasts")] is requests.ForecastsIn


def test_the_collector_refuses_with_the_models_words_naming_each_field() -> None:
    cart = {"type": "cart", "event_id": "c1", "member_id": "m1", "sale_id": "s1", "sku": "k1", "action": "add",
            "quantity": 1, "unit_price": 9.5, "ts": NOW}
    assert _refused([cart, {**cart, "event_id": "c2", "quantity": "2", "unit_price": True},
                     {**cart, "event_id": "c3", "action": "keep", "channel": "fax"}, {"type": "click"}, 7]) == [
        ["quantity: expected integer, got str", "unit_price: expected number, got bool"],
        ["action: must be add or remove, got 'keep'", "channel: must be web or app, got 'fax'"],
        ["type: must be one of browse, cart, order, got 'click'"],
        ["event: expected a JSON object, got int"],
    ]
    order = {"type": "order", "event_id": "o1", "member_id": "m1", "ts": NOW,
             "lines": [{"sale_id": "s1", "sku": "k1", "quantity": 1, "unit_price": 1.0}, "x"]}
    assert _refused(order) == [["lines[1]: expected an object, got str"]]
    assert _refused({**order, "lines": [order["lines"][0]] * (L.MAX_ORDER_LINES + 1)}) == [
        [f"lines: at most {L.MAX_ORDER_LINES} per order, got {L.MAX_ORDER_LINES + 1}"]]
    # after the shape, the one rule of schemas/validation.py (the Kafka ingest's and the CSV loaders' too)
    assert _refused({**cart, "quantity": L.MAX_QUANTITY + 1, "sku": "k" * (L.MAX_ID_LENGTH + 1)}) == [
        [f"sku: at most {L.MAX_ID_LENGTH} characters, got {L.MAX_ID_LENGTH + 1}",
         f"quantity: must be 1 .. {L.MAX_QUANTITY:,}, got {L.MAX_QUANTITY + 1}"]]
    _, refusal = collect_forecasts(b'[{"sale_id": "s1", "sku": "k1", "expected_units": 5}, {"sale_id": "s1"}]', NOW)
    assert refusal is not None and refusal.body["problems"] == [
        {"index": 1, "problems": ["sku: required", "expected_units: required"]}]


def test_valid_events_become_contract_records_unknown_fields_dropped() -> None:
    batch = collect_events(b'{"type": "order", "event_id": "o1", "member_id": "m1", "utm": "x", '
                           b'"lines": [{"sale_id": "s1", "sku": "k1", "quantity": 2, "unit_price": 10}]}', NOW)
    (event,) = batch.events
    assert event.kind == "order" and event.record == {
        "event_id": "o1", "member_id": "m1", "order_id": "o1", "currency": "EUR", "region": None, "channel": "web",
        "ts": NOW, "lines": [{"sale_id": "s1", "sku": "k1", "quantity": 2, "unit_price": 10.0}]}
    assert type(event.record["lines"][0]["unit_price"]) is float  # the codec's double, from a JSON integer


def test_published_limits_are_the_enforced_ones() -> None:
    document = openapi([e for router in ROUTERS for e in router.endpoints], auth_required=True)
    schemas = document["components"]["schemas"]
    cart, line, order = schemas["CartIn"]["properties"], schemas["OrderLine"]["properties"], schemas["OrderIn"]
    assert cart["event_id"]["maxLength"] == L.MAX_ID_LENGTH and cart["quantity"]["maximum"] == L.MAX_QUANTITY
    assert line["unit_price"]["maximum"] == L.MAX_PRICE
    assert order["properties"]["lines"]["maxItems"] == L.MAX_ORDER_LINES
    assert schemas["ForecastIn"]["properties"]["expected_units"]["maximum"] == L.MAX_FORECAST_UNITS
    # request bodies are documented as accepted: optional fields are not required
    assert set(order["required"]) == {"type", "event_id", "member_id", "lines"}


def test_openapi_document_covers_every_declared_endpoint() -> None:
    endpoints = [endpoint for router in ROUTERS for endpoint in router.endpoints]
    document = openapi(endpoints, auth_required=True)
    for endpoint in endpoints:
        op = document["paths"][endpoint.path][endpoint.method.lower()]
        assert op["summary"] and op["responses"][str(endpoint.status)]
        assert "405" in op["responses"] and "500" in op["responses"]
        if endpoint.method == "POST":
            assert op["requestBody"]["required"] and op["security"] == [{"bearer": []}]
            assert endpoint.body is not None and op["requestBody"]["content"]["application/json"]["schema"]
        answer = op["responses"][str(endpoint.status)]["content"]
        if endpoint.media_type == "application/json":  # every JSON answer has its model in the document
            assert endpoint.response is not None and answer["application/json"]["schema"], endpoint.path
        for status, model in endpoint.responses.items():
            assert op["responses"][str(status)]["content"]["application/json"]["schema"], (endpoint.path, model)
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
