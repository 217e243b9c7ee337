"""The bodies of the ranking bench's clients (:mod:`salepulse.streams.tools.ranking_client`), each run in a process of
its own by :func:`~salepulse.streams.tools.bench_clients.run_in_process`: not in the bench process, whose background
thread generates the event load and would hold their GIL."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from salepulse.streams.tools.ranking_client import ranking_paths


def ask_rankings(base_url: str, tag: str, rps: float, seconds: float, concurrency: int) -> dict[str, Any]:
    """The client of :func:`~salepulse.streams.tools.ranking_client.ranking_load`: requests issued on schedule by
    ``concurrency`` threads sharing one connection pool; failed requests (an HTTP error or a status other than 200)
    are counted, by kind."""
    from concurrent.futures import ThreadPoolExecutor

    from salepulse.consumers.io.publish import Pacer
    from salepulse.streams.tools.bench import percentiles

    sales_ms: list[float] = []
    products_ms: list[float] = []
    failures: dict[str, int] = {}
    counting = threading.Lock()

    def one(client: httpx.Client, i: int) -> None:
        path, params = ranking_paths(tag, i)
        started = time.perf_counter()
        try:
            status = str(client.get(path, params=params).status_code)
        except httpx.HTTPError as exc:
            status = type(exc).__name__
        (products_ms if i % 2 else sales_ms).append((time.perf_counter() - started) * 1000)
        if status != "200":
            with counting:
                failures[status] = failures.get(status, 0) + 1

    pacer = Pacer(rate=rps)
    with httpx.Client(base_url=base_url, timeout=10,
                      limits=httpx.Limits(max_connections=concurrency)) as client, \
            ThreadPoolExecutor(concurrency, thread_name_prefix="ranking-load") as pool:
        began = time.monotonic()
        deadline = began + seconds
        i = 0
        while time.monotonic() < deadline:
            pacer.wait()
            pool.submit(one, client, i)
            i += 1
        pool.shutdown(wait=True)
        elapsed = time.monotonic() - began
    return {"requested_rps": rps, "achieved_rps": round((len(sales_ms) + len(products_ms)) / elapsed, 1),
            "concurrency": concurrency, "errors": sum(failures.values()), "failures": failures,
            "sales_ms": percentiles(sales_ms), "products_5000_ms": percentiles(products_ms)}


def reflects(base_url: str, tag: str, probes: int, start: int) -> dict[str, Any]:
    """The body of :func:`~salepulse.streams.tools.ranking_client.ranking_reflects`, in its own process."""
    from salepulse.consumers.io.publish import Publisher
    from salepulse.streams.platform.config import Settings
    from salepulse.streams.tools.bench import probe_ranking_reflects

    with httpx.Client(base_url=base_url, timeout=10) as client:
        publisher = Publisher(Settings.from_env(), **{"linger.ms": 0})
        try:
            return probe_ranking_reflects(publisher, client, tag, probes, start=start)
        finally:
            publisher.flush(10)
