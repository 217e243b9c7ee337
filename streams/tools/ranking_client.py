"""The ranking bench's clients, each run in a process of its own (:mod:`salepulse.streams.tools.bench_clients`), and
the ranking floor (issue #13, "serving off the learning path").

:func:`ranking_load` used to run its client threads in the bench process, whose background thread generates and
encodes 5,000 events/s: the latency it reported held its own wait for that process's GIL (issue #12 found the same
for GET /sales). :func:`ranking_floor` asks a bare process serving the same two answers under the same load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from salepulse.streams.tools.bench_clients import BareServer, run_in_process

CONCURRENCY = 8
"""Client threads issuing the requests on schedule: one synchronous client achieved ~59 of the 200 req/s asked
(each request waited for the previous one)."""
PROCESS = "salepulse.streams.tools.ranking_client_process"
"""Where the clients' bodies live: imported only by the processes that run them (it imports the bench)."""


def ranking_paths(tag: str, i: int) -> tuple[str, dict[str, Any]]:
    """The ``i``-th request of the load: member rankings of open sales (200+) and of the 5,000-product sale in turn.

    >>> ranking_paths("t", 0), ranking_paths("t", 31)
    (('/members/t-fan0/sales', {'k': 10}), ('/members/t-fan1/products', {'sale_id': 't-big', 'k': 20}))
    """
    member = f"{tag}-fan{i % 30}"
    if i % 2:
        return f"/members/{member}/products", {"sale_id": f"{tag}-big", "k": 20}
    return f"/members/{member}/sales", {"k": 10}


def ranking_load(base_url: str, tag: str, rps: float, seconds: float,
                 concurrency: int = CONCURRENCY) -> dict[str, Any]:
    """Requests at ``rps`` (:func:`ranking_paths`) from a client process of its own; latency of each request."""
    result = run_in_process(f"{PROCESS}:ask_rankings", base_url, tag, rps, seconds, concurrency, timeout=seconds + 120)
    return {**result, "client": "own process"}


def ranking_floor(base_url: str, tag: str, state_dir: Path, rps: float, seconds: float) -> dict[str, Any]:
    """:func:`ranking_load` against a bare process answering the worker's current two rankings (bytes fetched from
    ``base_url`` now) on the same routes: the floor this machine, under the same load, leaves any ranking reader."""
    bodies = {}
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for i, pattern in ((0, "/members/{member_id}/sales"), (1, "/members/{member_id}/products")):
            path, params = ranking_paths(tag, i)
            response = client.get(path, params=params)
            response.raise_for_status()
            bodies[pattern] = response.content
    with BareServer(bodies, ranking_paths(tag, 0)[0], state_dir) as bare:
        return ranking_load(bare.url, tag, rps, seconds)


def ranking_reflects(env: dict[str, str], base_url: str, tag: str, probes: int, start: int = 0) -> dict[str, Any]:
    """:func:`salepulse.streams.tools.bench.probe_ranking_reflects` from a process of its own (its publisher and its
    reader), on the pipeline of ``env`` (the workers' environment: bootstrap and topic names)."""
    return run_in_process(f"{PROCESS}:reflects", base_url, tag, probes, start, timeout=probes * 12 + 120, env=env)
