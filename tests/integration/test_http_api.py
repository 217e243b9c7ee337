"""The API describes itself on the live worker: /openapi.json lists every endpoint with its models, /docs is served
from vendored files, every error is JSON (405 included), and CORS answers the origins it is given."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from salepulse.consumers.tools.harness import Pipeline
from tests.integration.test_dashboard_page import dump_dom

pytestmark = pytest.mark.integration
ORIGIN = "https://shop.example.com"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, clickhouse_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, clickhouse_dsn, tmp_path_factory.mktemp("api"),
                 extra_env={"SALEPULSE_CORS_ORIGINS": f"{ORIGIN}, https://admin.example.com",
                            "SALEPULSE_API_TOKEN": "t0ken"})
    p.start_worker()
    yield p
    p.close()


@pytest.fixture
def client(pipeline: Pipeline) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{pipeline.settings.http_port}", timeout=10) as c:
        yield c


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def test_openapi_lists_every_served_route_with_its_models(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    expected = {("get", "/sales"), ("get", "/sales/{sale_id}"), ("get", "/members/{member_id}/sales"),
                ("get", "/members/{member_id}/products"), ("post", "/events"), ("post", "/forecasts"),
                ("get", "/api/dashboard"), ("get", "/dashboard"), ("get", "/health"), ("get", "/stats"),
                ("get", "/metrics"), ("get", "/openapi.json"), ("get", "/docs"), ("get", "/sales/{sale_id}/plan"),
                ("get", "/buyers"), ("get", "/buyers/{buyer_id}")}
    listed = {(method, path) for path, ops in paths.items() for method in ops}
    assert expected <= listed, f"missing from /openapi.json: {sorted(expected - listed)}"
    for path, ops in paths.items():
        for method, op in ops.items():
            success = [code for code in op["responses"] if code.startswith("2")]
            assert len(success) == 1, f"{method} {path}: {success}"
            content = op["responses"][success[0]]["content"]
            if "application/json" in content:
                schema = _resolve(document, content["application/json"]["schema"])
                assert schema, f"{method} {path} has an empty response schema"
            for code, answer in op["responses"].items():
                if not code.startswith("2"):  # Problem, or a model that extends it (the collector's 422)
                    error = _resolve(document, answer["content"]["application/json"]["schema"])
                    assert "error" in error["required"], f"{method} {path} {code}: {error}"
    for path in ("/events", "/forecasts"):
        op = paths[path]["post"]
        assert op["security"] == [{"bearer": []}]
        body = op["requestBody"]["content"]["application/json"]["schema"]
        assert "anyOf" in body or "$ref" in body
    order = document["components"]["schemas"]["OrderIn"]
    assert {"event_id", "member_id", "lines", "type"} <= set(order["required"])
    stats = _resolve(document, paths["/stats"]["get"]["responses"]["200"]["content"]["application/json"]["schema"])
    live = client.get("/stats").json()
    assert set(stats["required"]) <= set(live), "the Stats model names fields /stats does not send"
    params = {p["name"]: p for p in paths["/members/{member_id}/products"]["get"]["parameters"]}
    assert params["member_id"]["in"] == "path" and params["sale_id"]["required"]
    assert params["k"]["schema"]["maximum"] == 5000
    refused = _resolve(document, paths["/events"]["post"]["responses"]["422"]["content"]["application/json"]["schema"])
    assert {"error", "accepted", "refused"} <= set(refused["required"])


def test_docs_page_and_its_vendored_assets(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http" not in page.text.split("<body>", 1)[1].replace("/openapi.json", ""), "the docs page loads a CDN"
    for name, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "css")):
        asset = client.get(f"/docs/static/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"], name
        assert len(asset.content) > 10_000
    missing = client.get("/docs/static/../../config.py")
    assert missing.status_code == 404 and missing.json()["error"]


def test_errors_are_json_for_every_status(client: httpx.Client) -> None:
    not_allowed = client.get("/events")
    assert not_allowed.status_code == 405
    assert not_allowed.headers["content-type"].startswith("application/json")
    assert "POST" in not_allowed.json()["error"] and "POST" in not_allowed.headers["Allow"]
    unknown = client.get("/nowhere")
    assert unknown.status_code == 404 and "/openapi.json" in unknown.json()["error"]
    assert client.post("/sales").status_code == 405
    assert client.post("/events", content=b"[]").json()["error"]  # 401 without the token, still JSON


def test_cors_preflight_and_actual_request(client: httpx.Client) -> None:
    preflight = client.options("/events", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                   "Access-Control-Request-Headers": "content-type,authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    actual = client.get("/health", headers={"Origin": ORIGIN})
    assert actual.headers.get("Access-Control-Allow-Origin") == ORIGIN
    stranger = client.options("/events", headers={"Origin": "https://evil.example.com",
                                                  "Access-Control-Request-Method": "POST"})
    assert stranger.status_code == 403 and stranger.json()["error"]
    assert "Access-Control-Allow-Origin" not in client.get("/health", headers={"Origin": "https://evil.example.com"}
                                                           ).headers



def test_docs_render_in_a_real_browser(pipeline: Pipeline, tmp_path: Path) -> None:
    """Headless Chromium loads /docs with no network beyond the worker and renders every path of the API."""
    dom = dump_dom(f"http://127.0.0.1:{pipeline.settings.http_port}/docs", tmp_path, budget_ms=8000)
    assert "swagger-ui" in dom and "opblock" in dom, "Swagger UI did not render"
    for path in ("/events", "/forecasts", "/members/{member_id}/products", "/sales/{sale_id}", "/openapi.json"):
        assert path in dom, f"/docs does not show {path}"
