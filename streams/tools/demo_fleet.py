"""The worker processes of ``salepulse demo --workers N --preference-workers M``: who runs, with which role, on
which HTTP port, and how their counters add up. Pure (no Kafka, no processes): :mod:`salepulse.streams.tools.demo`
starts what :func:`plan_fleet` lays out and drains on :func:`worker_lag`.

Ports: the workers take consecutive ports from ``SALEPULSE_HTTP_PORT`` (velocity workers first, then preferences
workers), skipping the ports of other processes (the sink's ``SALEPULSE_SINK_METRICS_PORT``), so the first
velocity worker keeps the port the single-worker demo always used. Each velocity worker then gets the next free
port for its read server (``SALEPULSE_SERVING_PORT``: ``GET /sales`` and ``GET /sales/{id}`` off its event loop,
README "Scaling out"), which is where operations' reads go.

>>> for m in plan_fleet(6066, velocity=2, preferences=1, reserved={6067}):
...     print(m.name, m.role, m.port, m.serving_port)
velocity-1 velocity 6066 6070
velocity-2 velocity 6068 6071
preferences-1 preferences 6069 0
>>> [(m.name, m.role, m.port) for m in plan_fleet(6066, velocity=None, preferences=0, single_role="all")]
[('worker', 'all', 6066)]
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FleetMember:
    """One worker process of the demo."""

    name: str
    """The child's name: its log file is ``<state dir>/<name>.log``."""
    role: str
    port: int
    serving_port: int = 0
    """Its read server's port (0: none)."""

    def url(self, host: str) -> str:
        """Where the worker answers.

        >>> FleetMember("velocity-1", "velocity", 6066).url("127.0.0.1")
        'http://127.0.0.1:6066'
        """
        return f"http://{host}:{self.port}"

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The child's environment: ``base`` with its role and HTTP ports.

        >>> FleetMember("preferences-1", "preferences", 6069).env({"A": "1"})["SALEPULSE_HTTP_PORT"]
        '6069'
        >>> FleetMember("velocity-1", "velocity", 6066, 6070).env({})["SALEPULSE_SERVING_PORT"]
        '6070'
        """
        env = {**base, "SALEPULSE_WORKER_ROLE": self.role, "SALEPULSE_HTTP_PORT": str(self.port)}
        if self.serving_port:
            env["SALEPULSE_SERVING_PORT"] = str(self.serving_port)
        return env


def plan_fleet(first_port: int, velocity: int | None, preferences: int, reserved: Collection[int] = (),
               single_role: str = "all") -> list[FleetMember]:
    """The demo's workers: ``velocity`` velocity workers and ``preferences`` preferences workers, or, when
    ``velocity`` is None (no ``--workers``), the single worker of ``single_role`` the demo always ran.

    >>> plan_fleet(6066, velocity=0, preferences=1)
    Traceback (most recent call last):
    ...
    ValueError: --workers must be at least 1 (the velocity workers ingest every event), not 0
    """
    if velocity is None:
        return [FleetMember("worker", single_role, first_port)]
    if velocity < 1:
        raise ValueError(f"--workers must be at least 1 (the velocity workers ingest every event), not {velocity}")
    if preferences < 0:
        raise ValueError(f"--preference-workers must be 0 or more, not {preferences}")
    ports = _free_ports(first_port, velocity + preferences, set(reserved))
    reads = _free_ports(ports[-1] + 1, velocity, set(reserved)) + [0] * preferences
    roles = [("velocity", i) for i in range(1, velocity + 1)] + [("preferences", i) for i in range(1, preferences + 1)]
    return [FleetMember(f"{role}-{i}", role, port, read)
            for (role, i), port, read in zip(roles, ports, reads, strict=True)]


def _free_ports(first: int, count: int, reserved: set[int]) -> list[int]:
    ports: list[int] = []
    port = first
    while len(ports) < count:
        if port not in reserved:
            ports.append(port)
        port += 1
    return ports


def fleet_partitions(partitions: int, fleet: Iterable[FleetMember]) -> int:
    """Partitions the demo's topics need: a consumer group gives each partition to one member, so a role with more
    workers than partitions leaves some idle. At least ``partitions`` (``SALEPULSE_PARTITIONS``).

    >>> fleet_partitions(4, plan_fleet(6066, 6, 2))
    6
    >>> fleet_partitions(4, plan_fleet(6066, 2, 1))
    4
    """
    by_role: dict[str, int] = {}
    for member in fleet:
        by_role[member.role] = by_role.get(member.role, 0) + 1
    return max([partitions, *by_role.values()])


def combined_stats(stats: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``/stats`` of several workers as one: counters summed, alerts summed by status, and per partition the
    highest offset any of them handled (a partition that moved was handled by both, up to different offsets).

    >>> both = combined_stats([
    ...     {"events_processed": 3, "deadletters": 1, "alerts": {"open": 1}, "processed_offsets": {"t:0": 9}},
    ...     {"events_processed": 5, "deadletters": 0, "alerts": {"open": 2, "resolved": 1},
    ...      "processed_offsets": {"t:0": 4, "t:1": 7}}])
    >>> both["events_processed"], both["deadletters"], both["alerts"], both["processed_offsets"]
    (8, 1, {'open': 3, 'resolved': 1}, {'t:0': 9, 't:1': 7})
    """
    counters: dict[str, Any] = {}
    alerts: dict[str, int] = {}
    offsets: dict[str, int] = {}
    for one in stats:
        for key, value in one.items():
            if key == "alerts":
                for status, n in value.items():
                    alerts[status] = alerts.get(status, 0) + n
            elif key == "processed_offsets":
                for source, offset in value.items():
                    offsets[source] = max(offset, offsets.get(source, -1))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                counters[key] = counters.get(key, 0) + value
    return {**counters, "alerts": alerts, "processed_offsets": offsets}


def worker_lag(ends: Mapping[tuple[str, int], int], processed: Mapping[str, int]) -> int:
    """Messages in the partitions of ``ends`` (high watermarks) that no worker has handled yet, from the offsets the
    workers report handled (``processed_offsets``, ``"topic:partition"`` → last offset). Counted from what was
    processed, not from commits, which can trail processing (README, known issues).

    >>> worker_lag({("t", 0): 10, ("t", 1): 5}, {"t:0": 9, "t:1": 2})
    2
    >>> worker_lag({("t", 0): 0}, {})
    0
    """
    return sum(max(0, end - processed.get(f"{topic}:{partition}", -1) - 1) for (topic, partition), end in ends.items())
