"""Where a ranking request's time goes (streams/platform/timings.py), issue #13: the read server's timings line."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from salepulse.streams.platform.timings import Timings, percentile

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
