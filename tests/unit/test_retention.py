"""The retention rule of finished sales' table state (issue 12), on plain values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from salepulse.streams.domain.retention import HOUR_MS, expired_sales
from salepulse.streams.platform.config import Settings

ENDS = st.dictionaries(st.text(min_size=1, max_size=5), st.one_of(st.none(), st.integers(0, 10**13)), max_size=20)


@given(ENDS, st.integers(0, 10**13), st.floats(0, 10_000, allow_nan=False))
def test_a_sale_expires_exactly_when_it_ended_more_than_the_retention_ago(
        ends: dict[str, int | None], now_ms: int, hours: float) -> None:
    expired = set(expired_sales(ends, ends.get, now_ms, hours))
    for sale_id, end in ends.items():
        should = now_ms > 0 and end is not None and end < now_ms - hours * HOUR_MS
        assert (sale_id in expired) == should, (sale_id, end, now_ms, hours)


def test_an_open_sale_a_sale_that_just_ended_and_an_unknown_one_are_kept() -> None:
    now = 100 * HOUR_MS
    ends = {"open": now + HOUR_MS, "just ended": now - HOUR_MS, "long ago": now - 49 * HOUR_MS}
    assert expired_sales([*ends, "not in the catalogue"], ends.get, now, 48) == ["long ago"]


def test_the_retention_is_a_setting() -> None:
    assert Settings.from_env({"SALEPULSE_FINISHED_SALE_RETENTION_HOURS": "6"}).finished_sale_retention_hours == 6.0
    assert Settings().finished_sale_retention_hours == 48.0
