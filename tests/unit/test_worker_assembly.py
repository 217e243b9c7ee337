"""The worker is assembled by build_worker from Settings: nothing at import, agents and tables by role, every
router mounted. No broker is needed to build one (only to start it)."""

from __future__ import annotations

import importlib

import pytest

from salepulse.streams.platform.config import Settings


def test_importing_the_worker_builds_nothing() -> None:
    worker_module = importlib.import_module("salepulse.streams.runtime.worker")
    importlib.import_module("salepulse.streams.runtime.api")
    assert "app" not in vars(worker_module), "a Faust app was built at import"


@pytest.mark.parametrize(("role", "agents", "tables"), [
    ("all", {"sale_state", "member_preferences"}, {"sale-state", "alert-state", "member-prefs"}),
    ("velocity", {"sale_state"}, {"sale-state", "alert-state"}),
    ("preferences", {"member_preferences"}, {"member-prefs"}),
])
def test_agents_and_tables_follow_the_role(role: str, agents: set[str], tables: set[str]) -> None:
    from salepulse.streams.runtime.worker import build_worker

    worker = build_worker(Settings(worker_role=role, app_id=f"assembly-{role}"))
    assert {agent.name.rsplit(".", 1)[-1] for agent in worker.app.agents.values()} == agents
    assert set(worker.app.tables.keys()) == tables
    assert worker.app.conf.id == Settings(worker_role=role, app_id=f"assembly-{role}").worker_group
    paths = {endpoint.path for endpoint in worker.extensions["endpoints"]}
    assert {"/sales", "/members/{member_id}/sales", "/events", "/openapi.json", "/docs", "/health"} <= paths


def test_two_workers_share_nothing() -> None:
    from salepulse.streams.runtime.worker import build_worker

    one, two = build_worker(Settings(app_id="a1")), build_worker(Settings(app_id="a2"))
    assert one.app is not two.app and one.board is not two.board and one.metrics is not two.metrics
    one.metrics.events_processed.inc(3, kind="order")
    assert two.metrics.events_processed.total() == 0


def test_member_requests_route_to_the_partition_the_ingest_puts_the_members_signals_on() -> None:
    """Faust forwards ``/members/{id}`` to the owner of murmur2(the table's key bytes); the ingest sends a member's
    signals to ``member_partition``. Were the two to differ, a second preferences worker would answer members
    learned elsewhere as cold (the table's default JSON keys did exactly that for 3 members in 4)."""
    from aiokafka.partitioner import DefaultPartitioner

    from salepulse.streams.io.ingest import member_partition
    from salepulse.streams.runtime.worker import build_worker

    settings = Settings(worker_role="preferences", app_id="assembly-routing")
    table = build_worker(settings).member_prefs
    assert table is not None
    partitions = list(range(settings.partitions))
    for member_id in ["m1", "member-42", "ümlaut", "0" * 200, *(f"m{i}" for i in range(500))]:
        key = table.changelog_topic.prepare_key(member_id, None)[0]  # what Faust's router hashes
        assert DefaultPartitioner()(key, partitions, partitions) == member_partition(member_id, settings.partitions)
