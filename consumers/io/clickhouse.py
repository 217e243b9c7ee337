"""One way to reach ClickHouse, embedded or server, and the versioned migrations of its tables.

``connect(dsn)`` returns a clickhouse-connect client for either ``chdb:///path`` (the embedded engine, in process)
or ``http(s)://user:password@host:port/database`` (a server). Everything above this module uses that client and
nothing else, so the sink, the migrations and the tests run the same code on both.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import clickhouse_connect

from salepulse.streams.platform.logs import get_logger

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "clickhouse"
STATEMENT_SEPARATOR = re.compile(r"^-- statement\s*$", re.MULTILINE)
log = get_logger(__name__)

_clients: dict[str, Any] = {}


def connect(dsn: str) -> Any:
    """A client for ``dsn``; chdb clients are shared per path because the engine allows one per process."""
    if dsn.startswith("chdb:"):
        if dsn not in _clients:
            path = dsn.removeprefix("chdb://")
            if path.startswith("/"):
                Path(path).mkdir(parents=True, exist_ok=True)
            _clients[dsn] = clickhouse_connect.get_client(dsn=dsn)
        return _clients[dsn]
    return clickhouse_connect.get_client(dsn=dsn)


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    return sorted(directory.glob("[0-9][0-9][0-9]_*.sql"))


def migrate(client: Any, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations not yet recorded in ``schema_migrations``; returns the names applied now.

    Each statement is itself idempotent (IF NOT EXISTS), so a migration interrupted half-way is simply run again.
    """
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name String, applied_at DateTime DEFAULT now()) "
        "ENGINE = ReplacingMergeTree ORDER BY name"
    )
    done = {row[0] for row in client.query("SELECT name FROM schema_migrations FINAL").result_rows}
    applied = []
    for path in migration_files(directory):
        if path.name in done:
            continue
        for statement in STATEMENT_SEPARATOR.split(path.read_text()):
            if statement.strip():
                client.command(statement)
        client.insert("schema_migrations", [[path.name]], column_names=["name"])
        applied.append(path.name)
        log.info("migration applied", name=path.name)
    return applied
