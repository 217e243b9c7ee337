"""The paced member flush (issue #13): it writes every dirty member once and holds the loop at most ``share`` of the
time, whatever the write costs."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from salepulse.streams.domain.steps import MemberCache


class _State:
    def __init__(self, value: int) -> None:
        self.value = value

    def to_bytes(self) -> bytes:
        return str(self.value).encode()


@given(costs=st.lists(st.floats(0.0, 0.01), min_size=0, max_size=60), every=st.integers(1, 20),
       share=st.sampled_from([0.1, 0.25, 0.5, 1.0]))
def test_paced_flush_writes_each_member_once_within_its_share(costs: list[float], every: int, share: float) -> None:
    now = [0.0]
    slept: list[float] = []
    written: list[str] = []
    cost_of = {f"m{i}": cost for i, cost in enumerate(costs)}

    def write(member_id: str, _value: bytes, _token: str) -> None:
        now[0] += cost_of[member_id]
        written.append(member_id)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    cache: MemberCache[_State, str] = MemberCache(1000, lambda m: _State(0), write)
    for member_id in cost_of:
        cache.put(member_id, _State(1), "event")
    assert asyncio.run(cache.flush_yielding(every=every, share=share, clock=lambda: now[0], sleep=sleep)) == len(costs)
    assert sorted(written) == sorted(cost_of) and not cache.dirty
    writing = sum(costs)
    # the loop is given back after every chunk, and for (1 - share) / share of the time spent writing
    assert len(slept) >= len(costs) // every
    assert abs(sum(slept) - writing * (1 - share) / share) <= 1e-9 + 1e-6 * writing


def test_a_flush_past_its_deadline_stops_pacing() -> None:
    now = [0.0]
    slept: list[float] = []

    def write(_member_id: str, _value: bytes, _token: str) -> None:
        now[0] += 1.0  # each write costs a second of the fake clock

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    cache: MemberCache[_State, str] = MemberCache(100, lambda m: _State(0), write)
    for i in range(6):
        cache.put(f"m{i}", _State(1), "event")
    asyncio.run(cache.flush_yielding(every=1, share=0.5, deadline=3.0, clock=lambda: now[0], sleep=sleep))
    # paced (1 s asleep per 1 s written) until 3 s have gone, then only yielding
    assert slept == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
