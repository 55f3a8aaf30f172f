"""Online backup, verify and restore: identity survives, damage is refused before writing."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from postier.admin.backup import (
    INLINE_TABLE,
    BackupError,
    _drop_orphans,
    backup,
    list_snapshots,
    restore,
    verify,
)
from postier.store.sqlite import SqliteStore
from postier.store.sqlite.schema import LATEST
from postier.store.types import Account, FlagMode, Uid
from tests.conftest import own_indexer

from .helpers import add_messages, inbox, make_message, state

BIG = 100 * 1024  # above INLINE_BODY_MAX: stored as a body file


async def _fill(store: SqliteStore, account: Account) -> None:
    mb = await inbox(store, account)
    await add_messages(store, mb, [make_message(i) for i in range(5)], internal_date=1_600_000_000)
    await add_messages(store, mb, [make_message(100 + i, BIG) for i in range(3)])
    await store.store_flags(mb, [Uid(1), Uid(6)], FlagMode.ADD, frozenset({"\\Seen", "$Work"}))
    await store.expunge(mb, [Uid(2)], only_deleted=False)
    sent = await store.get_mailbox(account.id, "Sent")
    assert sent is not None
    await add_messages(store, sent.id, [make_message(200, BIG)], flags=frozenset({"\\Seen"}))
    await store.add_alias("info@example.org", ["alice@example.org"])


async def test_backup_while_appending_then_restore_keeps_identity(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    mb = await inbox(store, account)
    stop = asyncio.Event()
    appended = 0

    async def keep_appending() -> None:
        nonlocal appended
        while not stop.is_set():
            size = BIG if appended % 3 == 0 else 0
            await add_messages(store, mb, [make_message(1000 + appended, size)])
            appended += 1

    writer = asyncio.create_task(keep_appending())
    await asyncio.sleep(0.05)
    calls: list[tuple[int, int, str]] = []
    summary = await asyncio.to_thread(
        backup, store.data_dir, tmp_path / "bk", lambda n, t, w: calls.append((n, t, w))
    )
    stop.set()
    await writer
    assert appended > 0
    assert {w for _, _, w in calls} >= {"database", "bodies"}
    assert summary.counts.accounts == 1
    assert verify(tmp_path / "bk").ok

    # The snapshot is one consistent moment: restore it and compare with what it counted.
    restored_dir = tmp_path / "restored"
    result = restore(tmp_path / "bk", restored_dir)
    assert result.counts == summary.counts
    copy = await SqliteStore.open(restored_dir)
    try:
        got = await state(copy)
        assert await copy.alias_targets("info@example.org") == ["alice@example.org"]
        copy_account = await copy.get_account("alice@example.org")
        assert copy_account is not None
        assert copy_account.password_hash == account.password_hash
    finally:
        await copy.close()
    now = await state(store)
    # Every message in the restored copy is identical (UID, MODSEQ, flags, date, bytes) to
    # the live store's; the live store only has more (appended after the snapshot).
    for key, (uidvalidity, _uidnext, _hms, special, msgs) in got.items():
        live = now[key]
        assert live[0] == uidvalidity and live[3] == special
        live_msgs = {m[0]: m for m in live[4]}
        for m in msgs:
            assert live_msgs[m[0]] == m
    inbox_msgs = got["alice@example.org/INBOX"][4]
    assert len(inbox_msgs) == summary.counts.messages - 1  # one is in Sent


async def test_restored_store_is_identical_when_idle(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    before = await state(store)
    backup(store.data_dir, tmp_path / "bk")
    restore(tmp_path / "bk", tmp_path / "r")
    copy = await SqliteStore.open(tmp_path / "r")
    try:
        assert await state(copy) == before
        # UIDVALIDITY counter came back too: a new mailbox never reuses a value.
        new = await copy.create_mailbox(account.id, "New")
        olds = {v[0] for v in before.values()}
        assert new.uidvalidity > max(olds)
    finally:
        await copy.close()


async def test_incremental_backup_copies_only_new_bodies(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    first = backup(store.data_dir, tmp_path / "bk")
    assert first.blobs == 4 and first.blobs_copied == 4
    await add_messages(store, await inbox(store, account), [make_message(300, BIG)])
    second = backup(store.data_dir, tmp_path / "bk")
    assert second.blobs == 5 and second.blobs_copied == 1
    assert len(list_snapshots(tmp_path / "bk")) == 2
    assert second.snapshot != first.snapshot
    # The older snapshot still verifies and restores.
    assert verify(tmp_path / "bk", first.snapshot.name).ok
    restore(tmp_path / "bk", tmp_path / "r", snapshot=first.snapshot.name)


async def test_tampered_body_fails_verify_and_restore_writes_nothing(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    summary = backup(store.data_dir, tmp_path / "bk")
    blob = next(
        p for p in (tmp_path / "bk" / "blobs").rglob("*") if p.is_file() and p.stat().st_size > 64 * 1024
    )
    data = bytearray(blob.read_bytes())
    data[500] ^= 1
    blob.write_bytes(bytes(data))
    report = verify(tmp_path / "bk")
    assert not report.ok
    assert any(blob.name in e and "damaged" in e for e in report.errors)
    with pytest.raises(BackupError, match="verification"):
        restore(tmp_path / "bk", tmp_path / "r")
    assert not (tmp_path / "r").exists()
    assert summary.blobs + summary.inline == report.blobs_checked


async def test_missing_body_fails_verify(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    backup(store.data_dir, tmp_path / "bk")
    next(p for p in (tmp_path / "bk" / "blobs").rglob("*") if p.is_file()).unlink()
    report = verify(tmp_path / "bk")
    assert any("missing" in e for e in report.errors)


async def test_truncated_database_refused_before_writing(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    summary = backup(store.data_dir, tmp_path / "bk")
    db = summary.snapshot / "postier.db"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    report = verify(tmp_path / "bk")
    assert any("truncated" in e for e in report.errors)
    target = tmp_path / "r"
    target.mkdir()
    with pytest.raises(BackupError, match="verification"):
        restore(tmp_path / "bk", target)
    assert list(target.iterdir()) == []


async def test_database_modified_in_place_detected(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    summary = backup(store.data_dir, tmp_path / "bk")
    conn = sqlite3.connect(summary.snapshot / "postier.db")
    conn.execute("UPDATE messages SET sysflags = 0")
    conn.commit()
    conn.close()
    assert any("sha256" in e for e in verify(tmp_path / "bk").errors)


async def test_manifest_must_match_database_references(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    summary = backup(store.data_dir, tmp_path / "bk")
    path = summary.snapshot / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["blobs"]["sha256"] = manifest["blobs"]["sha256"][1:]
    path.write_text(json.dumps(manifest))
    assert any("references" in e for e in verify(tmp_path / "bk").errors)


async def test_restore_into_non_empty_folder_needs_force(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    backup(store.data_dir, tmp_path / "bk")
    target = tmp_path / "r"
    target.mkdir()
    (target / "postier.db").write_bytes(b"precious")
    with pytest.raises(BackupError, match="not empty"):
        restore(tmp_path / "bk", target)
    assert (target / "postier.db").read_bytes() == b"precious"
    result = restore(tmp_path / "bk", target, force=True)
    assert result.moved_aside is not None
    assert (result.moved_aside / "postier.db").read_bytes() == b"precious"
    copy = await SqliteStore.open(target)
    try:
        assert await copy.get_account("alice@example.org") is not None
    finally:
        await copy.close()


async def test_incomplete_snapshot_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "bk" / "snapshots" / ".tmp-x").mkdir(parents=True)
    with pytest.raises(BackupError, match="no complete backup"):
        restore(tmp_path / "bk", tmp_path / "r")


async def test_tls_files_are_backed_up(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    tls = store.data_dir / "tls"
    tls.mkdir()
    (tls / "key.pem").write_bytes(b"secret")
    (tls / "key.pem").chmod(0o600)
    backup(store.data_dir, tmp_path / "bk")
    restore(tmp_path / "bk", tmp_path / "r")
    assert (tmp_path / "r" / "tls" / "key.pem").read_bytes() == b"secret"
    assert (tmp_path / "r" / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600


def _tables(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table (FTS5 shadow tables included), rowids kept, sorted."""
    conn = sqlite3.connect(db)
    try:
        out: dict[str, list[tuple[object, ...]]] = {}
        for name, kind, wr in conn.execute("SELECT name, type, wr FROM pragma_table_list"
                                           " WHERE schema = 'main'"):
            if kind not in ("table", "shadow") or name.startswith("sqlite_schema"):
                continue
            cols = "*" if wr else "rowid, *"
            out[name] = sorted(conn.execute(f'SELECT {cols} FROM "{name}"').fetchall(), key=repr)
        out["pragmas"] = [tuple(conn.execute(f"PRAGMA {p}").fetchone()) for p in
                          ("user_version", "application_id", "page_size")]
        return out
    finally:
        conn.close()


async def test_inline_bodies_leave_the_snapshot_and_come_back(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    mb = await inbox(store, account)
    await add_messages(store, mb, [make_message(400, subject="needle haystack")])
    small = make_message(400, subject="needle haystack")
    # The indexer marks each body (indexed, fulltext_cut) in a later commit: the rows are
    # compared with the live ones below, so the snapshot is taken once every mark is in.
    assert await asyncio.to_thread(own_indexer(store).wait_idle)
    summary = backup(store.data_dir, tmp_path / "bk")
    assert summary.inline == 5 and summary.inline_copied == 5  # 4 left in INBOX + 1 new
    # The snapshot's database holds no body: each is a hash-named file in DEST/blobs.
    conn = sqlite3.connect(summary.snapshot / "postier.db")
    try:
        assert conn.execute("SELECT count(*) FROM bodies WHERE data IS NOT NULL").fetchone() == (0,)
        ids = conn.execute(f"SELECT count(*) FROM {INLINE_TABLE}").fetchone()
        assert ids == (5,)
    finally:
        conn.close()
    sha = hashlib.sha256(small).hexdigest()
    assert (tmp_path / "bk" / "blobs" / sha[:2] / sha).read_bytes() == small
    manifest = json.loads((summary.snapshot / "manifest.json").read_text())
    assert manifest["version"] == 4 and manifest["inline"]["count"] == 5
    assert sha in manifest["inline"]["sha256"] and sha not in manifest["blobs"]["sha256"]
    report = verify(tmp_path / "bk")
    assert report.ok and report.blobs_checked == 5 + 4

    before = await state(store)
    restore(tmp_path / "bk", tmp_path / "r")
    # Row for row the same database (inline data back, marker gone), except the orphans,
    # dropped, and the bodies' index marks, cleared (the index is built again).
    live = _tables(store.data_dir / "postier.db")
    back = _tables(tmp_path / "r" / "postier.db")
    assert INLINE_TABLE not in back
    assert live.pop("orphans") and back.pop("orphans") == []
    conn = sqlite3.connect(store.data_dir / "postier.db")
    try:
        marked = [r[1] for r in conn.execute("PRAGMA table_info(bodies)")].index("indexed") + 1
    finally:
        conn.close()
    assert {r[marked] for r in back["bodies"]} == {0}
    back["bodies"] = [(*r[:marked], 1, *r[marked + 1:]) for r in back["bodies"]]
    live["bodies"] = [(*r[:marked], 1, *r[marked + 1:]) for r in live["bodies"]]
    assert back == live
    copy = await SqliteStore.open(tmp_path / "r")
    try:
        assert await state(copy) == before  # message bytes, small and large, flags, UIDs
        new_mb = await inbox(copy, await _account(copy))
        assert await copy.search_text(new_mb, "subject", "needle") == [Uid(9)]
        assert await copy.search_text(new_mb, "body", "number 400") == [Uid(9)]
        big = await copy.read_message(new_mb, Uid(6))
        assert big is not None and len(big) > 64 * 1024
    finally:
        await copy.close()


async def _account(store: SqliteStore) -> Account:
    found = await store.get_account("alice@example.org")
    assert found is not None
    return found


async def test_second_backup_writes_only_new_inline_bodies(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    first = backup(store.data_dir, tmp_path / "bk")
    await add_messages(store, await inbox(store, account), [make_message(500)])
    second = backup(store.data_dir, tmp_path / "bk")
    assert (first.inline, first.inline_copied) == (4, 4)
    assert (second.inline, second.inline_copied) == (5, 1)
    assert second.bytes_copied < first.bytes_copied
    live = sqlite3.connect(store.data_dir / "postier.db")
    try:  # the snapshot connection's settings did not leak onto the live store
        assert live.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        live.close()
    assert verify(tmp_path / "bk", first.snapshot.name).ok
    assert verify(tmp_path / "bk", second.snapshot.name).ok


async def test_tampered_or_missing_inline_body_is_refused(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    backup(store.data_dir, tmp_path / "bk")
    small = make_message(3)  # still in INBOX
    sha = hashlib.sha256(small).hexdigest()
    path = tmp_path / "bk" / "blobs" / sha[:2] / sha
    path.write_bytes(small.replace(b"Hello", b"Jello"))
    report = verify(tmp_path / "bk")
    assert any(sha in e and "damaged" in e for e in report.errors)
    with pytest.raises(BackupError, match="verification"):
        restore(tmp_path / "bk", tmp_path / "r")
    assert not (tmp_path / "r").exists()
    path.unlink()
    assert any(sha in e and "missing" in e for e in verify(tmp_path / "bk").errors)


async def test_inline_marker_must_match_manifest(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    summary = backup(store.data_dir, tmp_path / "bk")
    path = summary.snapshot / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["inline"]["sha256"] = manifest["inline"]["sha256"][1:]
    path.write_text(json.dumps(manifest))
    assert any("inline bodies" in e for e in verify(tmp_path / "bk").errors)


async def test_format_1_snapshot_still_restores(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    """A snapshot of the earlier format: the whole database, inline bodies in it."""
    await _fill(store, account)
    before = await state(store)
    snap = tmp_path / "bk" / "snapshots" / "20250101T000000Z"
    snap.mkdir(parents=True)
    src = sqlite3.connect(store.data_dir / "postier.db")
    dst = sqlite3.connect(snap / "postier.db")
    src.backup(dst)
    dst.execute("PRAGMA journal_mode = DELETE")
    dst.close()
    files = [str(r[0]) for r in src.execute("SELECT sha256 FROM bodies WHERE data IS NULL")]
    src.close()
    for sha in files:
        target = tmp_path / "bk" / "blobs" / sha[:2] / sha
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store.data_dir / "blobs" / sha[:2] / sha, target)
    db = (snap / "postier.db").read_bytes()
    manifest = {
        "format": "postier-backup", "version": 1, "schema_version": LATEST,
        "db": {"file": "postier.db", "size": len(db), "sha256": hashlib.sha256(db).hexdigest()},
        "counts": {}, "blobs": {"count": len(files), "sha256": sorted(files)}, "tls": [],
    }
    (snap / "manifest.json").write_text(json.dumps(manifest))
    assert verify(tmp_path / "bk").ok
    restore(tmp_path / "bk", tmp_path / "r")
    copy = await SqliteStore.open(tmp_path / "r")
    try:
        assert await state(copy) == before
    finally:
        await copy.close()


_NEEDLES = [("subject", "message 3"), ("subject", "needle"), ("body", "number 10"),
            ("body", "xxxxxxxx"), ("from", "sender 4"), ("text", "Hello"), ("to", "alice"),
            ("text", "message-id"), ("body", "number 1."), ("subject", "message 10")]


async def _searches(store: SqliteStore) -> dict[str, list[Uid]]:
    acct = await _account(store)
    out = {}
    for mb in await store.list_mailboxes(acct.id):
        for field, needle in _NEEDLES:
            out[f"{mb.name}/{field}/{needle}"] = await store.search_text(mb.id, field, needle)
    return out


def _fts_health(data_dir: Path) -> tuple[int, int, int]:
    """(bodies, documents in the index by their stored values, by FTS5's averages record)."""
    conn = sqlite3.connect(data_dir / "index.db", isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS store", (str(data_dir / "postier.db"),))
        conn.execute("INSERT INTO body_fts (body_fts) VALUES ('integrity-check')")
        bodies = conn.execute("SELECT count(*) FROM store.bodies").fetchone()[0]
        docs = conn.execute("SELECT count(*) FROM body_text").fetchone()[0]
        block = conn.execute("SELECT block FROM body_fts_data WHERE id = 1").fetchone()[0]
    finally:
        conn.close()
    total = 0  # the averages record starts with the row count as an SQLite varint
    for byte in block[:9]:
        total = (total << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    return bodies, docs, total


def _marks(db: Path) -> list[int]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT indexed FROM bodies ORDER BY id")]
    finally:
        conn.close()


async def test_index_is_rebuilt_and_orphans_are_not_restored(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    """No index in a snapshot (index.db is derived data); the restored store indexes every
    body again in the background and answers SEARCH exactly meanwhile."""
    await _fill(store, account)  # the expunge leaves an inline orphan
    mb = await inbox(store, account)
    await add_messages(store, mb, [make_message(i) for i in range(7, 15)])
    await add_messages(store, mb, [make_message(600, subject="needle in a haystack")])
    await store.expunge(mb, [Uid(6), Uid(10)], only_deleted=False)  # a file and an inline
    live_db = sqlite3.connect(store.data_dir / "postier.db")
    try:
        orphans = live_db.execute("SELECT count(*), count(data) FROM orphans").fetchone()
    finally:
        live_db.close()
    assert orphans == (3, 2)
    assert await asyncio.to_thread(own_indexer(store).wait_idle)
    assert set(_marks(store.data_dir / "postier.db")) == {1}
    searches = await _searches(store)
    assert searches["INBOX/subject/needle"] and searches["INBOX/body/xxxxxxxx"]
    summary = backup(store.data_dir, tmp_path / "bk")
    assert not (summary.snapshot / "index.db").exists()
    snap = sqlite3.connect(summary.snapshot / "postier.db")
    try:
        assert snap.execute("SELECT count(*) FROM orphans").fetchone() == (0,)
        assert snap.execute("SELECT name FROM sqlite_master WHERE name LIKE 'body_fts%'").fetchall() == []
    finally:
        snap.close()
    restore(tmp_path / "bk", tmp_path / "r")
    assert not (tmp_path / "r" / "index.db").exists()
    assert set(_marks(tmp_path / "r" / "postier.db")) == {0}
    copy = await SqliteStore.open(tmp_path / "r")
    try:
        assert await _searches(copy) == searches  # exact before the index is back
        assert await asyncio.to_thread(own_indexer(copy).wait_idle)
        assert set(_marks(tmp_path / "r" / "postier.db")) == {1}
        assert await _searches(copy) == searches
        assert await copy.collect_garbage() == 0  # the orphans were not restored
        # The rebuilt index keeps working as the store changes it.
        copy_mb = await inbox(copy, await _account(copy))
        await copy.expunge(copy_mb, [Uid(1)], only_deleted=False)
        await add_messages(copy, copy_mb, [make_message(700, subject="needle again")])
        assert await copy.collect_garbage() == 1
        found = await copy.search_text(copy_mb, "subject", "needle")
        assert len(found) == 2
        assert await asyncio.to_thread(own_indexer(copy).wait_idle)
    finally:
        await copy.close()
    bodies, docs, averaged = _fts_health(tmp_path / "r")
    assert bodies == docs == averaged


def _as_format_2(live: Path, snapshot: Path) -> None:
    """Turn a snapshot of an idle store into what format 2 wrote: orphans copied (and,
    then, the index inside the database: the migration drops it now)."""
    db = snapshot / "postier.db"
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("ATTACH DATABASE ? AS live", (str(live / "postier.db"),))
        conn.execute("DELETE FROM main.orphans")
        conn.execute("INSERT INTO main.orphans SELECT * FROM live.orphans")
        conn.execute("DETACH DATABASE live")
    finally:
        conn.close()
    data = db.read_bytes()
    manifest = json.loads((snapshot / "manifest.json").read_text())
    manifest["version"] = 2
    manifest["db"].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (snapshot / "manifest.json").write_text(json.dumps(manifest))


async def test_format_2_snapshot_still_restores(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    before, searches = await state(store), await _searches(store)
    summary = backup(store.data_dir, tmp_path / "bk")
    _as_format_2(store.data_dir, summary.snapshot)
    assert verify(tmp_path / "bk").ok
    restore(tmp_path / "bk", tmp_path / "r")
    copy = await SqliteStore.open(tmp_path / "r")
    try:
        assert await state(copy) == before
        assert await _searches(copy) == searches
        assert await copy.collect_garbage() == 0  # restore drops orphans of every format
    finally:
        await copy.close()


async def test_drop_orphans_keeps_files_still_owned(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    mb = await inbox(store, account)
    big = [make_message(800 + i, BIG) for i in range(2)]
    await add_messages(store, mb, [*big, make_message(900)])
    await store.expunge(mb, [Uid(1), Uid(2), Uid(3)], only_deleted=False)
    await add_messages(store, mb, big[:1])  # the same content again: a new body row
    blobs = store.data_dir / "blobs"
    shas = [hashlib.sha256(b).hexdigest() for b in big]
    conn = sqlite3.connect(store.data_dir / "postier.db", isolation_level=None)
    try:
        assert conn.execute("SELECT count(*) FROM orphans").fetchone() == (3,)
        conn.execute("BEGIN IMMEDIATE")
        _drop_orphans(conn, blobs)
        conn.execute("COMMIT")
        assert conn.execute("SELECT count(*) FROM orphans").fetchone() == (0,)
    finally:
        conn.close()
    assert (blobs / shas[0][:2] / shas[0]).exists()  # owned by the new row
    assert not (blobs / shas[1][:2] / shas[1]).exists()
