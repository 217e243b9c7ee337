"""Operations' reads off the event loop (issue 12): a velocity worker's read server (``SALEPULSE_SERVING_PORT``)
answers ``GET /sales`` and ``GET /sales/{id}`` exactly as its main port does, totals included, with the same
readiness (503 and ``Retry-After`` while it joins or recovers) and the same token rules."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from salepulse.consumers.tools.harness import Pipeline, WorkerProcess, wait_until
from salepulse.streams.io.lag import group_lag
from tests.integration.test_scale_out import (
    PARTITIONS,
    expected_totals,
    make_events,
    publish_catalogue,
    publish_paced,
    sale_ids,
)

pytestmark = pytest.mark.integration

READ_TOKEN, API_TOKEN = "reader", "writer"


@pytest.fixture
def pipeline(kafka_bootstrap: str, clickhouse_dsn: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, clickhouse_dsn, tmp_path / "state", partitions=PARTITIONS,
                 extra_env={"SALEPULSE_READ_TOKEN": READ_TOKEN, "SALEPULSE_API_TOKEN": API_TOKEN})
    yield p
    p.close()


def fetch(port: int, path: str, token: str | None = None) -> tuple[int, str | None, object]:
    """(status, Retry-After, JSON body)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Retry-After"), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After"), json.loads(error.read())


def watch_readiness(child: WorkerProcess, seen: dict[str, list[tuple[int, str | None, object]]]) -> bool:
    """One GET /sales on each port of ``child``, recorded; True once both answer 200."""
    answers = {}
    for name, port in (("serving", child.serving_port), ("main", child.port)):
        try:
            answers[name] = fetch(port, "/sales")
        except OSError:  # not listening yet
            continue
        seen[name].append(answers[name])
    return all(answers.get(name, (0,))[0] == 200 for name in ("serving", "main"))


def velocity_drained(pipeline: Pipeline) -> bool:
    s, t = pipeline.settings, pipeline.settings.topics
    return group_lag(s, s.groups.ingest, list(t.events)) == 0 and group_lag(s, s.groups.worker("velocity"),
                                                                          [t.facts]) == 0


def sale_totals(detail: dict) -> Counter[str]:
    return Counter({k: sum(p[k] for p in detail["products"]) for k in ("views", "carts", "orders", "units")})


def test_the_read_server_answers_sales_as_the_main_port_does(pipeline: Pipeline) -> None:
    prefix = f"rs-{uuid.uuid4().hex[:6]}-"
    sales = sale_ids(prefix)
    start_ms = int(time.time() * 1000) - 60_000
    publish_catalogue(pipeline, sales, start_ms)
    a = pipeline.spawn("velocity", "velocity-a", serving=True)
    seen: dict[str, list[tuple[int, str | None, object]]] = {"serving": [], "main": []}
    wait_until(lambda: watch_readiness(a, seen), 120, "velocity-a to answer GET /sales on both ports", every=0.05)
    b = pipeline.spawn("velocity", "velocity-b", serving=True)  # a rebalance: a recovers again meanwhile
    wait_until(lambda: watch_readiness(b, seen) and watch_readiness(a, seen), 120, "both workers ready", every=0.05)

    # Readiness as on the main port: 503 with Retry-After and a reason, never a partial list.
    refused = [answer for answer in seen["serving"] if answer[0] != 200]
    assert refused, f"the read server never answered 503 while joining: {[a[0] for a in seen['serving']][:20]}"
    for where, answers in seen.items():
        for status, retry_after, body in answers:
            assert status in (200, 503), f"{where}: {status} {body}"
            if status == 503:
                assert retry_after == "2" and body["error"].endswith("retry in a moment"), (where, retry_after, body)
    # require_ready is the one check of both ports: the read server gives the main port's reasons
    main_reasons = {body["error"] for status, _, body in seen["main"] if status == 503}
    assert main_reasons, "the main port never answered 503 while joining"

    events = make_events(prefix, sales, 240, start_ms)
    publish_paced(pipeline, events, 400.0)
    expected = expected_totals(events)
    wait_until(lambda: velocity_drained(pipeline) and velocity_drained(pipeline), 120, "the workers to drain",
               every=1.0)

    for child in (a, b):
        def same_list(child: WorkerProcess = child) -> bool:
            serving, main = fetch(child.serving_port, "/sales"), fetch(child.port, "/sales")
            listed = {s["sale_id"]: s for s in serving[2]["sales"]} if serving[0] == 200 else {}
            return serving == main and all(s in listed and listed[s]["units"] == expected[s]["units"] for s in sales)

        wait_until(same_list, 20, f"{child.name}: GET /sales equal on both ports with every sale's units exact")
        for sale in sales:
            wait_until(lambda c=child, s=sale: fetch(c.serving_port, f"/sales/{s}") == fetch(c.port, f"/sales/{s}"),
                       10, f"{child.name}: GET /sales/{sale} equal on both ports")
            status, _, detail = fetch(child.serving_port, f"/sales/{sale}")
            assert status == 200 and sale_totals(detail) == expected[sale], (child.name, sale, detail)
        # The same refusals and the same token rules (sales reads are open; a wrong token changes nothing).
        for path in ("/sales/no-such-sale", "/sales", f"/sales/{sales[0]}"):
            for token in (None, READ_TOKEN, API_TOKEN, "wrong"):
                assert fetch(child.serving_port, path, token)[0] == fetch(child.port, path, token)[0], (path, token)
        assert fetch(child.serving_port, "/sales/no-such-sale")[0] == 404
        # What the read server does not serve is refused there, not answered differently.
        assert fetch(child.serving_port, f"/sales/{sales[0]}/plan")[0] == 404
        assert fetch(child.serving_port, "/api/dashboard")[0] == 404
