"""Where a ranking request's time goes (streams/platform/timings.py) and the learner's gate for the read server
(streams/runtime/reader_gate.py), issue #13."""

from __future__ import annotations

import threading
import time

from hypothesis import given
from hypothesis import strategies as st

from salepulse.streams.platform.timings import Timings, percentile
from salepulse.streams.runtime.reader_gate import ReaderGate

seconds = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@given(st.lists(st.tuples(seconds, seconds, seconds), min_size=1, max_size=300))
def test_the_slowest_requests_parts_and_rest_add_up_to_their_total(rows: list[tuple[float, float, float]]) -> None:
    timings = Timings(("wait", "work"), keep=1000)
    for wait, work, extra in rows:
        timings.record("sales", total=wait + work + extra, wait=wait, work=work)
    entry = timings.summary()["sales"]
    totals = sorted(wait + work + extra for wait, work, extra in rows)
    assert entry["n"] == len(rows)
    assert entry["total_ms"]["p50"] <= entry["total_ms"]["p99"] <= entry["total_ms"]["max"]
    assert abs(entry["total_ms"]["max"] - totals[-1] * 1000) < 1e-3
    slow = entry["slowest"]
    assert slow["n"] == sum(1 for t in totals if t >= percentile(totals, 0.99))
    means = slow["mean_ms"]
    assert abs(means["total"] - (means["wait"] + means["work"] + means["rest"])) < 0.01
    assert means["rest"] > -0.01  # the parts never exceed the total they are part of


def test_the_window_keeps_the_last_requests_per_route_and_clear_starts_over() -> None:
    timings = Timings(("work",), keep=3)
    for total in (0.5, 0.001, 0.002, 0.003):
        timings.record("products", total=total, work=total)
    timings.record("sales", total=0.004)
    summary = timings.summary()
    assert summary["products"]["n"] == 3 and summary["products"]["total_ms"]["max"] == 3.0
    assert summary["sales"]["work_ms"]["max"] == 0.0  # a part not given counts as 0
    before = timings.since
    timings.clear()
    assert timings.summary() == {} and timings.since >= before


def test_the_learner_steps_aside_until_the_reads_in_flight_are_done() -> None:
    gate = ReaderGate(yield_s=10.0)
    gate.enter()
    gate.enter()
    done = threading.Timer(0.05, lambda: (gate.leave(), gate.leave()))
    done.start()
    began = time.perf_counter()
    waited = gate.step_aside()
    assert 0.03 < waited < 5.0 and time.perf_counter() - began < 5.0  # released by the reads, not the 10 s bound
    assert gate.in_flight == 0 and gate.step_aside() == 0.0
    done.join()


def test_the_learner_waits_at_most_its_bound_and_a_zero_bound_turns_the_gate_off() -> None:
    gate = ReaderGate(yield_s=0.02)
    gate.enter()
    assert 0.015 < gate.step_aside() < 2.0
    off = ReaderGate(yield_s=0.0)
    off.enter()
    assert off.in_flight == 0 and off.step_aside() == 0.0
    off.leave()
    assert off.in_flight == 0
