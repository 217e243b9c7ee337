"""The collector's load, shared by ``python -m salepulse.streams.tools.bench_collector`` and ``make bench``'s
collector case: batches of 100 simulated events ``POST``-ed from client processes of their own, and the
``salepulse collect`` process they go to (see :mod:`salepulse.streams.tools.bench_collector` for the whole
measurement and what it prints).

Client processes, never the server's nor the caller's: each has ``concurrency`` requests in flight on kept-alive
connections. Every request is 100 events of the simulated traffic (browse, cart and order in the world's mix, about
94 / 5 / 1 %), each with a fresh ``event_id`` and ``ts`` = now, so every one is stored. Bodies are assembled from
pre-serialised templates: the clients spend their CPU on HTTP, not on JSON.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from queue import Empty
from typing import Any

from salepulse.deploy.kafka.processes import cpu_seconds

BATCH = 100
WARMUP_S = 3.0


# --- the load: templates, then client processes ------------------------------------------------------------
def templates(n_events: int = 50_000, seed: int = 23) -> list[bytes]:
    """``n_events`` simulated events as JSON object bodies without the opening brace, ``event_id`` or ``ts``
    (the client puts fresh ones in front); an order's ``order_id`` is left out (it defaults to its event_id).

    >>> found = templates(300)
    >>> len(found), found[0][:9]
    (300, b'"type":"b')
    """
    import itertools

    from salepulse.consumers.tools.simulate import world_for_rate

    out = []
    for kind, record in itertools.islice(world_for_rate(seed, 1000.0).events(), n_events):
        body = {"type": kind, **{k: v for k, v in record.items() if k not in ("event_id", "order_id", "ts")}}
        out.append(json.dumps(body, separators=(",", ":")).encode()[1:])
    return out


def body_of(pool: list[bytes], start: int, prefix: str, now_ms: int, batch: int = BATCH) -> bytes:
    """A request body: ``batch`` events of ``pool`` from ``start`` (wrapping), ids ``prefix-0`` … and ``ts`` now.

    >>> json.loads(body_of([b'"type":"browse","sku":"k"}'], 0, "r1", 1_764_403_200_000, 2))[1]
    {'event_id': 'r1-1', 'ts': 1764403200000, 'type': 'browse', 'sku': 'k'}
    """
    n = len(pool)
    head = f'{{"event_id":"{prefix}-%d","ts":{now_ms},'.encode()
    return b"[" + b",".join(head % j + pool[(start + j) % n] for j in range(batch)) + b"]"


async def _drive(url: str, pool: list[bytes], seconds: float, warmup: float, concurrency: int, batch: int,
                 tag: str, token: str | None) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    accepted, failures = [0], Counter[str]()
    started = time.perf_counter()
    measure_from, end = started + warmup, started + warmup + seconds
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    last = [measure_from]
    counter = [0]

    async def one(session: aiohttp.ClientSession) -> None:
        while (t0 := time.perf_counter()) < end:
            i = counter[0]
            counter[0] += 1
            body = body_of(pool, i * batch, f"{tag}-{i}", int(time.time() * 1000), batch)
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                failures[type(exc).__name__] += 1
                continue
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies.append((t1 - t0) * 1000)
                statuses[status] += 1
                if status == 202:
                    accepted[0] += json.loads(payload)["accepted"]
                last[0] = max(last[0], t1)

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency), timeout=timeout) as session:
        await asyncio.gather(*(one(session) for _ in range(concurrency)))
    return {"latencies_ms": latencies, "accepted": accepted[0], "statuses": dict(statuses),
            "failures": dict(failures), "window_s": last[0] - measure_from}


def _client(url: str, pool_path: str, seconds: float, warmup: float, concurrency: int, batch: int, tag: str,
            token: str | None, out: Any) -> None:
    pool = Path(pool_path).read_bytes().split(b"\n")
    out.put(asyncio.run(_drive(url, pool, seconds, warmup, concurrency, batch, tag, token)))


def drive(url: str, seconds: float, *, clients: int = 2, concurrency: int = 2, batch: int = BATCH,
          warmup: float = WARMUP_S, token: str | None = None, pool: list[bytes] | None = None,
          pool_dir: Path | None = None) -> dict[str, Any]:
    """``POST`` batches to ``url`` from ``clients`` processes of ``concurrency`` requests in flight each, for
    ``seconds`` after ``warmup``; accepted events/s, latency per request and statuses of all of them together."""
    import numpy as np

    pool = pool if pool is not None else templates()
    pool_file = Path(pool_dir or tempfile.gettempdir()) / f"collector-pool-{uuid.uuid4().hex[:6]}.jsonl"
    pool_file.write_bytes(b"\n".join(pool))
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of this process's threads
    queue = context.Queue()
    tag = uuid.uuid4().hex[:6]
    processes = [context.Process(target=_client, args=(url, str(pool_file), seconds, warmup, concurrency, batch,
                                                        f"{tag}{c}", token, queue), daemon=True)
                 for c in range(clients)]
    for process in processes:
        process.start()
    parts, deadline = [], time.monotonic() + seconds + warmup + 120
    while len(parts) < len(processes):
        try:
            parts.append(queue.get(timeout=1.0))
        except Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"collector load: client processes failed (exit codes {dead})") from None
    for process in processes:
        process.join(10)
    pool_file.unlink(missing_ok=True)
    latencies = np.asarray([x for part in parts for x in part["latencies_ms"]])
    window = max(part["window_s"] for part in parts)
    accepted = sum(part["accepted"] for part in parts)
    statuses: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for part in parts:
        statuses.update({str(k): v for k, v in part["statuses"].items()})
        failures.update(part["failures"])
    quantiles = ({"n": int(latencies.size), "p50": round(float(np.percentile(latencies, 50)), 1),
                  "p99": round(float(np.percentile(latencies, 99)), 1), "max": round(float(latencies.max()), 1)}
                 if latencies.size else {"n": 0})
    return {"batch": batch, "clients": clients, "concurrency": concurrency, "seconds": round(window, 1),
            "accepted_events_per_s": round(accepted / window, 1) if window > 0 else 0.0,
            "request_ms": quantiles, "statuses": dict(statuses), "failures": dict(failures)}


# --- the server ----------------------------------------------------------------------------------------------


def _server(pipeline: Any, kind: str) -> tuple[int, str, subprocess.Popen[bytes] | None]:
    """Start what serves ``POST /events``: (pid, base URL, the process when this function started it)."""
    if kind == "worker":
        pipeline.start_worker()
        return pipeline.worker.pid, f"http://127.0.0.1:{pipeline.settings.http_port}", None
    port, process = pipeline.start_collector()
    return process.pid, f"http://127.0.0.1:{port}", process


def collector_case(pipeline: Any, seconds: float, clients: int = 2, concurrency: int = 2) -> dict[str, Any]:
    """``make bench``'s collector case: ``salepulse collect`` on ``pipeline``'s topics, driven as
    ``bench_collector`` drives it (clients in processes of their own); the caller stops its worker first, so
    the figure is the collector's on one process, as that tool measures it."""
    pid, base, process = _server(pipeline, "collector")
    try:
        before = cpu_seconds(pid)
        result = drive(f"{base}/events", seconds, clients=clients, concurrency=concurrency,
                       token=pipeline.settings.api_token)
        result["server"] = "collector (salepulse collect)"
        result["cpu_s"] = round(cpu_seconds(pid) - before, 2)
        return result
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(30)
