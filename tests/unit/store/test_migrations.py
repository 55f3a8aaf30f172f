"""Schema migrations from an empty database and from every earlier version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from postier.store.sqlite.schema import LATEST, MIGRATIONS, current_version, migrate
from postier.store.sqlite.store import SqliteStore


def tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_migrate_from_empty_reaches_latest(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    assert migrate(conn) == 0
    assert current_version(conn) == LATEST
    assert {"accounts", "messages", "queue", "schema_version"} <= tables(conn)
    assert migrate(conn) == LATEST  # idempotent


@pytest.mark.parametrize("start", range(1, len(MIGRATIONS)))
def test_migrate_from_every_earlier_version_keeps_data(tmp_path: Path, start: int) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    migrate(conn, target=start)
    conn.execute("INSERT INTO domains (name, created) VALUES ('example.org', 1)")
    assert migrate(conn) == start
    assert current_version(conn) == LATEST
    assert conn.execute("SELECT name FROM domains").fetchall() == [("example.org",)]
    # Same schema as a fresh database.
    fresh = sqlite3.connect(tmp_path / "fresh", isolation_level=None)
    migrate(fresh)
    assert tables(conn) == tables(fresh)


def test_newer_database_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    migrate(conn)
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (LATEST + 1,))
    with pytest.raises(RuntimeError, match="newer"):
        migrate(conn)


async def test_store_opens_an_older_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    conn = sqlite3.connect(data / "postier.db", isolation_level=None)
    migrate(conn, target=1)
    conn.close()
    store = await SqliteStore.open(data)
    try:
        await store.add_domain("example.org")
        assert await store.list_queue() == []
    finally:
        await store.close()
