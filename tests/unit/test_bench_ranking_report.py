"""BENCHMARKS.md renders the ranking rows from what ``ranking_load`` now returns (a client process of its own,
failures by kind) with the same-run floor beside them, and a ranking run with failed requests never reads "met"."""

from __future__ import annotations

from typing import Any

from salepulse.streams.tools.bench_report import latency_table, render_markdown


def stats(p50: float, p99: float, n: int = 100) -> dict[str, float]:
    return {"n": n, "p50": p50, "p99": p99, "max": p99}


def latency(errors: int = 0, floor: bool = True) -> dict[str, Any]:
    rank = {"requested_rps": 200, "achieved_rps": 199.0, "concurrency": 8, "errors": errors,
            "failures": {"ReadError": errors} if errors else {}, "sales_ms": stats(3.0, 8.0),
            "products_5000_ms": stats(6.0, 15.0), "client": "own process"}
    result = {"offered_events_per_s": 5000.0, "layout": "split", "event_to_clickhouse_ms": stats(800.0, 1500.0),
              "order_to_sales_view_ms": stats(100.0, 400.0), "order_to_alert_ms": stats(900.0, 1500.0),
              "event_to_ranking_ms": {**stats(150.0, 400.0, 30), "missed": 0}, "ranking_under_load": rank,
              "collector": {"request_ms": stats(10.0, 40.0), "accepted_events_per_s": 7000.0, "requests": 70,
                            "batch": 100},
              "lag_at_end": {"worker": 0, "sink": 0}, "background_events_sent": 50_000}
    if floor:
        result["ranking_floor"] = {**rank, "errors": 0, "failures": {}, "sales_ms": stats(2.0, 4.5),
                                   "products_5000_ms": stats(2.1, 5.5)}
    return result


def report(lat: dict[str, Any]) -> str:
    pipe_worker = {"events_per_s": 21_000.0, "ingest_per_s": 22_000.0, "velocity_per_s": 21_000.0,
                   "events_processed": 100_000}
    return render_markdown({
        "date": "today", "command": "make bench", "machine": "test box", "seconds": 1,
        "pure": {"preferences": {}, "presale": {"forecast_and_plan_ms": 300.0},
                 "validation": {"validation_us_per_event": 1.5}, "forecast_update_us": 0.3,
                 "forecast_update_and_quantiles_us": 16.0},
        "pipeline": {"worker": pipe_worker, "worker_all_roles": {**pipe_worker, "preferences_per_s": 15_000.0},
                     "ratio_to_baseline": 0.2, "baseline_consume_decode_per_s": 110_000.0, "events": 100_000,
                     "units": 120_000},
        "latency": lat, "latency_all": latency(), "latency_light": latency(floor=False),
        "sink": {"sink_path_rows_per_s": 270_000.0, "ratio_to_bare": 0.76, "bare_insert_rows_per_s": 360_000.0,
                 "rows": 100_000, "batch_rows": 20_000},
    })


def rows(markdown: str, start: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith(start)]


def test_the_ranking_targets_show_the_floor_and_the_verdict() -> None:
    text = report(latency())
    sales, = rows(text, "| ranking 200 sales")
    products, = rows(text, "| ranking 5,000 products")
    assert "p99 8.0 ms" in sales and "same load: p99 4.5 ms" in sales and sales.endswith("| met |")
    assert "p99 15.0 ms" in products and "same load: p99 5.5 ms" in products and products.endswith("| met |")
    details, = rows(text, "- Ranking load")
    assert "8 client threads in a process of their own" in details and "bare process" in details


def test_failed_ranking_requests_are_shown_and_miss_the_target() -> None:
    text = report(latency(errors=3))
    sales, = rows(text, "| ranking 200 sales")
    products, = rows(text, "| ranking 5,000 products")
    assert "3 failed (ReadError 3)" in sales
    assert sales.endswith("| **missed** |") and products.endswith("| **missed** |")


def test_a_run_without_a_floor_still_renders() -> None:
    text = report(latency(floor=False))
    sales, = rows(text, "| ranking 200 sales")
    assert "bare process" not in sales
    assert rows("\n".join(latency_table(latency(floor=False))), "| GET /members/{id}/sales")
