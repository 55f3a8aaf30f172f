"""Schema migrations from an empty database and from every earlier version."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from postier.store.sqlite.schema import LATEST, MIGRATIONS, current_version, migrate
from postier.store.sqlite.store import SqliteStore
from postier.store.types import NewMessage, Uid
from tests.conftest import own_indexer


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


async def test_index_of_an_older_database_is_rebuilt_on_open(tmp_path: Path) -> None:
    """Migration 6 moves the index out of postier.db into index.db: every body is marked
    unindexed, SEARCH reads them whole until the indexer thread has caught up."""
    data = tmp_path / "data"
    store = await SqliteStore.open(data)
    try:
        await store.add_domain("example.org")
        account = await store.create_account("alice@example.org", "x", None)
        box = await store.get_mailbox(account.id, "INBOX")
        assert box is not None
        raws = [b"Subject: note %d\r\n\r\nThe Quick brown fox %d\r\n" % (n, n) for n in range(3)]
        raws.append(b"Subject: big\r\n\r\n" + b"Needle in a file. " * 20_000)
        bodies = [await store.prepare_body(raw) for raw in raws]
        await store.append([NewMessage(box.id, b) for b in bodies])
        await store.expunge(box.id, [Uid(1)], only_deleted=False)  # an orphan
    finally:
        await store.close()
    # Back to schema 5, as an older postier left it: the index inside postier.db.
    (data / "index.db").unlink()
    conn = sqlite3.connect(data / "postier.db", isolation_level=None)
    for statement in ("DROP INDEX bodies_cut", "DROP INDEX bodies_unindexed",
                      "ALTER TABLE bodies DROP COLUMN fulltext_cut",
                      "ALTER TABLE bodies DROP COLUMN indexed",
                      "CREATE VIRTUAL TABLE body_fts USING fts5(subject, from_, to_, cc, bcc,"
                      " headers, text, content='', tokenize='trigram')",
                      "DELETE FROM schema_version WHERE version >= 6"):
        conn.execute(statement)
    conn.close()
    store = await SqliteStore.open(data)
    try:
        assert await store.search_text(box.id, "body", "QUICK BROWN") == [Uid(2), Uid(3)]
        assert await store.search_text(box.id, "body", "fox 2") == [Uid(3)]
        assert await store.search_text(box.id, "body", "needle in a FILE") == [Uid(4)]
        assert await store.search_text(box.id, "subject", "big") == [Uid(4)]
        assert await asyncio.to_thread(own_indexer(store).wait_idle)
        marks = await store._read(
            lambda c: c.execute("SELECT id, indexed, fulltext_cut FROM bodies ORDER BY id").fetchall()
        )
        assert marks == [(2, 1, 0), (3, 1, 0), (4, 1, 1)]  # caught up; 4 marked by its size
        assert await store.search_text(box.id, "body", "QUICK BROWN") == [Uid(2), Uid(3)]
        assert await store.search_text(box.id, "body", "needle in a FILE") == [Uid(4)]
        assert await store.collect_garbage() == 1  # the orphan
    finally:
        await store.close()
    conn = sqlite3.connect(data / "postier.db", isolation_level=None)
    assert conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'body_fts%'").fetchall() == []
    conn.close()
    conn = sqlite3.connect(data / "index.db", isolation_level=None)
    conn.execute("INSERT INTO body_fts (body_fts) VALUES ('integrity-check')")
    assert conn.execute("SELECT id FROM body_text ORDER BY id").fetchall() == [
        (2,), (3,), (4,)]
    conn.close()
