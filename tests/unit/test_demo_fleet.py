"""The demo's worker layout (``salepulse demo --workers N --preference-workers M``) and how its counters add up."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salepulse.streams.platform.topology import WORKER_ROLES
from salepulse.streams.tools.demo_fleet import combined_stats, fleet_partitions, plan_fleet, worker_lag


@given(first=st.integers(1024, 60_000), velocity=st.integers(1, 12), preferences=st.integers(0, 6),
       reserved=st.sets(st.integers(1024, 60_100), max_size=8))
def test_every_worker_gets_its_own_free_port_velocity_first(first: int, velocity: int, preferences: int,
                                                           reserved: set[int]) -> None:
    fleet = plan_fleet(first, velocity, preferences, reserved=reserved)
    ports = [member.port for member in fleet]
    assert len(set(ports)) == len(ports) == velocity + preferences
    assert not set(ports) & reserved
    assert ports == sorted(ports) and ports[0] >= first
    assert [m.role for m in fleet] == ["velocity"] * velocity + ["preferences"] * preferences
    assert all(m.role in WORKER_ROLES for m in fleet)
    assert len({m.name for m in fleet}) == len(fleet), "names are the children's log files"
    if first not in reserved:
        assert ports[0] == first, "the first velocity worker keeps SALEPULSE_HTTP_PORT"
    reads = [m.serving_port for m in fleet if m.serving_port]
    assert len(reads) == velocity and [m.role for m in fleet if m.serving_port] == ["velocity"] * velocity
    assert len(set(reads) | set(ports)) == len(reads) + len(ports) and not set(reads) & reserved


def test_without_workers_the_demo_keeps_its_one_worker_of_the_configured_role() -> None:
    (only,) = plan_fleet(6066, None, 0, single_role="velocity")
    assert (only.name, only.role, only.port) == ("worker", "velocity", 6066)
    assert only.env({"SALEPULSE_WORKER_ROLE": "all"})["SALEPULSE_WORKER_ROLE"] == "velocity"


@pytest.mark.parametrize(("velocity", "preferences"), [(0, 1), (-1, 0), (2, -1)])
def test_impossible_fleets_are_refused(velocity: int, preferences: int) -> None:
    with pytest.raises(ValueError, match="workers"):
        plan_fleet(6066, velocity, preferences)


@given(partitions=st.integers(1, 16), velocity=st.integers(1, 20), preferences=st.integers(0, 20))
def test_topics_get_a_partition_for_every_worker_of_a_role(partitions: int, velocity: int, preferences: int) -> None:
    needed = fleet_partitions(partitions, plan_fleet(6066, velocity, preferences))
    assert needed >= max(partitions, velocity, preferences)
    assert needed == max(partitions, velocity, preferences), "never more than the largest role needs"


def test_a_moved_partition_counts_once_in_the_lag() -> None:
    # velocity-1 handled t:0 up to 40 before it moved; velocity-2 took it over and reached 99, the end.
    stats = combined_stats([{"events_processed": 41, "processed_offsets": {"t:0": 40, "t:1": 10}},
                            {"events_processed": 60, "processed_offsets": {"t:0": 99}}])
    assert worker_lag({("t", 0): 100, ("t", 1): 20}, stats["processed_offsets"]) == 9
    assert stats["events_processed"] == 101, "sums count what a moved partition re-delivered: never drain on them"
