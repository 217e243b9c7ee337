"""Fixtures shared by the integration tests: a private pipeline per test on the session's broker and ClickHouse."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from salepulse.consumers.tools.harness import Pipeline


@pytest.fixture
def pipeline(kafka_bootstrap: str, clickhouse_dsn: str, tmp_path: Path) -> Iterator[Pipeline]:
    """Its own topics, groups and port; nothing started (tests start the worker and the sink they need)."""
    p = Pipeline(kafka_bootstrap, clickhouse_dsn, tmp_path / "state")
    yield p
    p.close()

