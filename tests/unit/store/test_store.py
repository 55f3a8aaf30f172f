"""The store through its public interface (runs against every backend fixture)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from postier.errors import QuotaExceeded, UserError
from postier.store import bus as ev
from postier.store.sqlite import SqliteStore
from postier.store.sqlite.indexer import open_index
from postier.store.sqlite.store import FTS_TEXT_MAX_CHARS
from postier.store.types import Account, FlagMode, ModSeq, NewMessage, Uid
from tests.conftest import own_indexer

MSG = (
    b"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: Hello there\r\n"
    b"Message-ID: <1@example.net>\r\nDate: Fri, 27 Nov 2026 08:00:00 +0000\r\n\r\n"
    b"The quick brown fox jumps over the lazy dog.\r\n"
)


def msg(n: int) -> bytes:
    return MSG.replace(b"Hello there", b"Hello %d" % n).replace(b"<1@", b"<%d@" % n)


async def add(store: SqliteStore, account: Account, raw: bytes, mailbox: str = "INBOX",
              flags: frozenset[str] = frozenset()) -> Uid:
    box = await store.get_mailbox(account.id, mailbox)
    assert box is not None
    body = await store.prepare_body(raw)
    (appended,) = await store.append([NewMessage(box.id, body, flags=flags)])
    return appended.uid


async def test_domains_are_unique_and_listed(store: SqliteStore) -> None:
    await store.add_domain("Example.ORG")
    with pytest.raises(UserError):
        await store.add_domain("example.org")
    assert [d.name for d in await store.list_domains()] == ["example.org"]
    assert await store.get_domain("EXAMPLE.org") is not None


async def test_account_needs_hosted_domain(store: SqliteStore) -> None:
    with pytest.raises(UserError, match="not hosted"):
        await store.create_account("x@nowhere.test", "h", None)


async def test_new_account_gets_default_mailboxes(store: SqliteStore, account: Account) -> None:
    boxes = {b.name: b for b in await store.list_mailboxes(account.id)}
    assert set(boxes) == {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive"}
    assert boxes["Sent"].special_use == "\\Sent"
    assert boxes["INBOX"].special_use is None
    validities = [b.uidvalidity for b in boxes.values()]
    assert len(set(validities)) == len(validities)


async def test_domain_with_accounts_cannot_be_removed(store: SqliteStore, account: Account) -> None:
    with pytest.raises(UserError, match="still has"):
        await store.remove_domain("example.org")
    await store.delete_account("alice@example.org")
    await store.remove_domain("example.org")
    assert await store.list_domains() == []


async def test_append_assigns_increasing_uids_and_modseqs(store: SqliteStore, account: Account) -> None:
    u1 = await add(store, account, msg(1))
    u2 = await add(store, account, msg(2), flags=frozenset({"\\Seen", "$label"}))
    assert (u1, u2) == (1, 2)
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None and box.uidnext == 3 and box.highestmodseq == 3
    infos = await store.list_messages(box.id)
    assert [i.uid for i in infos] == [1, 2]
    assert infos[1].flags == {"\\Seen", "$label"}
    assert infos[0].size == len(msg(1))
    status = await store.mailbox_status(box.id)
    assert (status.messages, status.unseen, status.size) == (2, 1, len(msg(1)) + len(msg(2)))


async def test_message_bytes_are_kept_exactly(store: SqliteStore, account: Account) -> None:
    raw = b"Subject: \xff\xfe broken\nno crlf here\r\n\r\n\x00binary\rstuff"
    uid = await add(store, account, raw)
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    assert await store.read_message(box.id, uid) == raw


async def test_fetch_meta_has_parsed_metadata(store: SqliteStore, account: Account) -> None:
    uid = await add(store, account, msg(7))
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    (meta,) = await store.fetch_meta(box.id, [uid])
    assert b'"Hello 7"' in meta.envelope
    assert meta.bodystructure.startswith(b'("TEXT" "PLAIN"') or meta.bodystructure.upper().startswith(b'("TEXT" "PLAIN"')
    assert meta.info.uid == uid and meta.prefix == b""


async def test_flags_modseq_and_unchangedsince(store: SqliteStore, account: Account) -> None:
    u1 = await add(store, account, msg(1))
    u2 = await add(store, account, msg(2))
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    result = await store.store_flags(box.id, [u1], FlagMode.ADD, frozenset({"\\Flagged", "work"}))
    assert result.updated[0].flags == {"\\Flagged", "work"}
    modseq = result.updated[0].modseq
    assert modseq > 3
    # RFC 7162: a message modified after UNCHANGEDSINCE fails; the other succeeds.
    result = await store.store_flags(
        box.id, [u1, u2], FlagMode.REMOVE, frozenset({"work"}), unchanged_since=ModSeq(modseq - 1)
    )
    assert result.failed == (u1,)
    result = await store.store_flags(box.id, [u1], FlagMode.REPLACE, frozenset({"\\Seen"}))
    assert result.updated[0].flags == {"\\Seen"}
    changes = await store.changes_since(box.id, ModSeq(modseq))
    assert [c.uid for c in changes.changed] == [u1]


async def test_expunge_only_deleted_and_reports_vanished(store: SqliteStore, account: Account) -> None:
    uids = [await add(store, account, msg(i)) for i in range(4)]
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    before = (await store.get_mailbox_by_id(box.id))
    assert before is not None
    await store.store_flags(box.id, uids[1:3], FlagMode.ADD, frozenset({"\\Deleted"}))
    assert await store.expunge(box.id, [uids[2]]) == [uids[2]]
    assert await store.expunge(box.id) == [uids[1]]
    assert [i.uid for i in await store.list_messages(box.id)] == [uids[0], uids[3]]
    changes = await store.changes_since(box.id, before.highestmodseq)
    assert set(changes.vanished) == {uids[1], uids[2]}
    acct = await store.get_account_by_id(account.id)
    assert acct is not None and acct.used_bytes == len(msg(0)) + len(msg(3))


async def test_copy_and_move_share_the_body(store: SqliteStore, account: Account) -> None:
    uid = await add(store, account, msg(1), flags=frozenset({"\\Seen"}))
    inbox = await store.get_mailbox(account.id, "INBOX")
    archive = await store.get_mailbox(account.id, "Archive")
    assert inbox and archive
    copied = await store.copy(inbox.id, [uid], archive.id)
    assert copied.dest_uids == (1,) and copied.uidvalidity == archive.uidvalidity
    moved = await store.copy(inbox.id, [uid], archive.id, move=True)
    assert moved.dest_uids == (2,)
    assert await store.list_messages(inbox.id) == []
    infos = await store.list_messages(archive.id)
    assert {i.body_id for i in infos} == {infos[0].body_id}  # one body, two messages
    assert infos[1].flags == {"\\Seen"}
    assert await store.read_message(archive.id, Uid(2)) == msg(1)


async def test_rename_moves_children_and_inbox_rename_empties_inbox(
    store: SqliteStore, account: Account
) -> None:
    work = await store.create_mailbox(account.id, "Work")
    await store.create_mailbox(account.id, "Work/2026")
    renamed = await store.rename_mailbox(work.id, "Job")
    assert renamed.uidvalidity == work.uidvalidity
    names = {b.name for b in await store.list_mailboxes(account.id)}
    assert {"Job", "Job/2026"} <= names and "Work" not in names
    await add(store, account, msg(1))
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    old_inbox = await store.rename_mailbox(inbox.id, "Old")
    assert old_inbox.name == "Old"
    assert len(await store.list_messages(old_inbox.id)) == 1
    assert await store.list_messages(inbox.id) == []
    with pytest.raises(UserError):
        await store.rename_mailbox(old_inbox.id, "Job")


async def test_invalid_mailbox_names_refused(store: SqliteStore, account: Account) -> None:
    for bad in ["", "a//b", "/lead", "trail/", "x*y", "x%y", "a\r\nb"]:
        with pytest.raises(UserError):
            await store.create_mailbox(account.id, bad)


async def test_delete_mailbox_frees_quota_and_inbox_is_kept(store: SqliteStore, account: Account) -> None:
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    with pytest.raises(UserError):
        await store.delete_mailbox(inbox.id)
    await add(store, account, msg(1), mailbox="Junk")
    junk = await store.get_mailbox(account.id, "Junk")
    assert junk is not None
    await store.delete_mailbox(junk.id)
    acct = await store.get_account_by_id(account.id)
    assert acct is not None and acct.used_bytes == 0
    assert await store.get_mailbox(account.id, "Junk") is None


async def test_quota_refuses_what_does_not_fit(store: SqliteStore, account: Account) -> None:
    await store.set_quota(account.address, len(msg(1)) + 10)
    await add(store, account, msg(1))
    with pytest.raises(QuotaExceeded):
        await add(store, account, msg(2))


async def test_search_text_uses_the_index(store: SqliteStore, account: Account) -> None:
    await add(store, account, msg(1))
    await add(store, account, MSG.replace(b"fox", b"cat").replace(b"Hello there", b"Other"))
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    assert await store.search_text(box.id, "body", "brown FOX") == [1]
    assert await store.search_text(box.id, "text", "lazy") == [1, 2]
    assert await store.search_text(box.id, "subject", "hello") == [1]
    assert await store.search_text(box.id, "from", "bob@example") == [1, 2]
    assert await store.search_text(box.id, "subject", "1") == [1]  # short needle path
    assert await store.search_text(box.id, "body", "ca") == [2]


async def test_bus_publishes_after_commit(store: SqliteStore, account: Account) -> None:
    sub = store.bus.subscribe(account.id)
    uid = await add(store, account, msg(1))
    event = await asyncio.wait_for(sub.get(), 0.1)  # within 100 ms of the commit
    assert isinstance(event, ev.MessageAdded) and event.uid == uid
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    await store.store_flags(box.id, [uid], FlagMode.ADD, frozenset({"\\Deleted"}))
    assert isinstance(await asyncio.wait_for(sub.get(), 0.1), ev.FlagsChanged)
    await store.expunge(box.id)
    gone = await asyncio.wait_for(sub.get(), 0.1)
    assert isinstance(gone, ev.Expunged) and gone.uids == (uid,)
    sub.close()


async def test_concurrent_appends_share_group_commits(store: SqliteStore, account: Account) -> None:
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    bodies = [await store.prepare_body(msg(i)) for i in range(50)]
    batches_before = store.writer.batches
    results = await asyncio.gather(*(store.append([NewMessage(box.id, b)]) for b in bodies))
    assert sorted(r[0].uid for r in results) == list(range(1, 51))
    assert store.writer.batches - batches_before < 50


async def test_failed_job_does_not_roll_back_its_batch_neighbours(store: SqliteStore, account: Account) -> None:
    await store.set_quota(account.address, len(msg(1)) * 3)
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    bodies = [await store.prepare_body(msg(i)) for i in range(5)]
    results = await asyncio.gather(
        *(store.append([NewMessage(box.id, b)]) for b in bodies), return_exceptions=True
    )
    assert sum(isinstance(r, QuotaExceeded) for r in results) == 2
    assert len(await store.list_messages(box.id)) == 3


def plain(subject: str, body: str, extra: str = "") -> bytes:
    return (f"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
            f"{extra}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n").encode()


async def test_search_candidates_are_verified_against_the_stored_text(
    store: SqliteStore, account: Account
) -> None:
    """The index only says which trigrams a field holds; the substring is checked."""
    await add(store, account, plain("one", "abcd xbcde and the fox"))  # every trigram of
    await add(store, account, plain("two", "say abcde, twice"))  # 'abcde', not in a row
    await add(store, account, plain("ÉCOLE Straße", "Grüße aus Köln, ΟΔΟΣ"))
    await add(store, account, plain("four", "nothing here",
                                    "X-Tracking: zanzibar-Quartz-42\r\n"))
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    search = store.search_text
    assert await search(box.id, "body", "abcde") == [2]  # 1 is the false candidate
    assert await search(box.id, "text", "abcde") == [2]
    assert await search(box.id, "body", "XBC") == [1]  # one trigram: answered by the index
    assert await search(box.id, "body", "d xbc") == [1]  # across a word boundary
    assert await search(box.id, "body", "E, TW") == [2]
    assert await search(box.id, "subject", "école") == [3]  # case folding, non-ASCII
    assert await search(box.id, "subject", "STRASSE") == []
    assert await search(box.id, "subject", "STRAßE") == [3]
    assert await search(box.id, "body", "GRÜSSE") == []
    assert await search(box.id, "body", "grüße AUS kö") == [3]
    assert await search(box.id, "body", "οδος") == [3]
    assert await search(box.id, "body", "ö") == [3]  # 1-2 characters: no index
    assert await search(box.id, "body", "X") == [1]
    assert await search(box.id, "body", "e,") == [2]
    assert await search(box.id, "subject", "ÉC") == [3]
    # Only in a header that has no column of its own.
    assert await search(box.id, "headers", "ZANZIBAR-quartz") == [4]
    assert await search(box.id, "text", "zanzibar-quartz") == [4]
    assert await search(box.id, "body", "zanzibar-quartz") == []
    assert await search(box.id, "subject", "zanzibar") == []
    assert await search(box.id, "from", "BOB <bob@") == [1, 2, 3, 4]
    # A needle with a quote and a long one (more trigrams than a query names).
    assert await search(box.id, "body", 'fox"') == []
    long_needle = "abcd xbcde and the fox"
    assert await search(box.id, "body", long_needle.upper()) == [1]
    assert await search(box.id, "body", long_needle + " " + long_needle) == []


@pytest.mark.parametrize("size", [100, 200_000], ids=["inline", "file"])
async def test_garbage_collection_removes_unreferenced_bodies(
    store: SqliteStore, account: Account, size: int
) -> None:
    raw = msg(1) + b"padding " * (size // 8)
    uid = await add(store, account, raw)
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    sha = store.blobs.digest(raw)
    in_file = size > 100_000
    assert store.blobs.exists(sha) == in_file
    await store.store_flags(box.id, [uid], FlagMode.ADD, frozenset({"\\Deleted"}))
    await store.expunge(box.id)
    assert store.blobs.exists(sha) == in_file  # removed later, by the collector
    assert await store.collect_garbage() == 1
    assert not store.blobs.exists(sha)
    assert await store.search_text(box.id, "body", "brown fox") == []
    # The same content delivered again is stored again, and can be read.
    uid = await add(store, account, raw)
    assert store.blobs.exists(sha) == in_file
    assert await store.read_message(box.id, uid) == raw
    assert await store.search_text(box.id, "body", "brown fox") == [uid]


async def test_large_body_is_a_file_and_reads_back(store: SqliteStore, account: Account) -> None:
    raw = msg(1) + b"x" * 300_000
    uid = await add(store, account, raw)
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    assert store.blobs.exists(store.blobs.digest(raw))
    assert await store.read_message(box.id, uid) == raw


async def test_uidvalidity_never_repeats_after_delete_and_recreate(store: SqliteStore, account: Account) -> None:
    seen = set()
    for _ in range(3):
        box = await store.create_mailbox(account.id, "Tmp")
        assert box.uidvalidity not in seen
        seen.add(box.uidvalidity)
        await store.delete_mailbox(box.id)


async def test_state_survives_reopen(store: SqliteStore, account: Account) -> None:
    uid = await add(store, account, msg(1))
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    await store.close()
    reopened = await SqliteStore.open(store.data_dir)
    try:
        again = await reopened.get_mailbox(account.id, "INBOX")
        assert again == (await reopened.get_mailbox_by_id(box.id))
        assert again is not None and again.uidvalidity == box.uidvalidity and again.uidnext == uid + 1
        assert await reopened.read_message(box.id, uid) == msg(1)
    finally:
        await reopened.close()
        store.writer = reopened.writer  # the fixture closes again: harmless on closed objects
        store.readers = reopened.readers


async def test_huge_and_many_line_messages_are_stored_exactly(store: SqliteStore, account: Account) -> None:
    import base64
    import os

    attachment = base64.encodebytes(os.urandom(37 * 1024 * 1024)).replace(b"\n", b"\r\n")  # ~50 MB
    big = (
        b"Subject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
        b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=data.bin\r\n\r\n" + attachment + b"--XX--\r\n"
    )
    lines = b"Subject: lines\r\n\r\n" + b"x\r\n" * 1_000_000
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    for raw in (big, lines):
        uid = await add(store, account, raw)
        assert await store.read_message(box.id, uid) == raw
    metas = await store.fetch_meta(box.id, [Uid(1), Uid(2)])
    assert b'"APPLICATION" "OCTET-STREAM"' in metas[0].bodystructure.upper()
    assert b" 1000000" in metas[1].bodystructure  # line count of the text part


async def test_expunge_named_uids_whatever_their_flags(store: SqliteStore, account: Account) -> None:
    uids = [await add(store, account, msg(i)) for i in range(3)]
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    assert await store.expunge(box.id, [uids[0], uids[2]]) == []  # not \Deleted: kept
    assert await store.expunge(box.id, [uids[0], uids[2]], only_deleted=False) == [uids[0], uids[2]]
    assert [i.uid for i in await store.list_messages(box.id)] == [uids[1]]


async def test_text_beyond_the_indexed_part_is_still_found(
    store: SqliteStore, account: Account
) -> None:
    """The index holds the first FTS_TEXT_MAX_CHARS of a body's text; SEARCH reads a body
    with more in full, so a needle far into a giant text is found (exact results)."""
    filler = "lorem ipsum dolor sit amet " * (FTS_TEXT_MAX_CHARS // 27 + 500)
    big = plain("big", filler + "the zanzibar quokka at the end")  # past the cut, in a file
    await add(store, account, big)
    await add(store, account, plain("small", "a small zanzibar note"))
    await add(store, account, plain("other", "lorem ipsum"))
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    assert await store.search_text(box.id, "body", "zanzibar quokka") == [1]  # maybe not indexed yet
    assert await asyncio.to_thread(own_indexer(store).wait_idle)
    flags = await store._read(  # the indexer marks the cut with the body (it extracts the text)
        lambda c: c.execute("SELECT indexed, fulltext_cut FROM bodies ORDER BY id").fetchall()
    )
    assert flags == [(1, 1), (1, 0), (1, 0)]
    search = store.search_text
    assert await search(box.id, "body", "zanzibar quokka") == [1]
    assert await search(box.id, "body", "ZANZIBAR") == [1, 2]
    assert await search(box.id, "text", "quokka") == [1]
    assert await search(box.id, "body", "quo") == [1]  # one trigram: index + the cut body
    assert await search(box.id, "body", "lorem ipsum") == [1, 3]  # in the indexed part too
    assert await search(box.id, "subject", "quokka") == []
    assert await search(box.id, "body", "nowhere at all") == []


async def test_an_unreadable_body_file_does_not_stop_indexing(
    store: SqliteStore, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body whose file cannot be read is left unindexed (logged); the others are
    indexed, and the indexer thread lives on."""
    import shutil

    import postier.store.sqlite.indexer as indexer

    monkeypatch.setattr(indexer, "MAX_PENDING", 0)  # both left to one catch-up batch
    await add(store, account, plain("big", "wombat " * 20_000))  # > 64 KiB: in a file
    await add(store, account, plain("small", "a quokka"))
    (sha,) = await store._read(
        lambda c: c.execute("SELECT sha256 FROM bodies WHERE data IS NULL").fetchone()
    )
    path = store.blobs.path(sha)
    shutil.move(path, path.with_suffix(".aside"))
    path.mkdir()  # reading it now fails with IsADirectoryError, not FileNotFoundError
    monkeypatch.setattr(indexer, "IDLE_S", 0.05)
    own_indexer(store).delete(0)  # wake the thread; its next idle moment runs the catch-up
    for _ in range(100):
        marks = await store._read(
            lambda c: c.execute("SELECT data IS NULL, indexed FROM bodies ORDER BY id").fetchall()
        )
        if marks == [(1, 0), (0, 1)]:
            break
        await asyncio.sleep(0.05)
    assert marks == [(1, 0), (0, 1)]
    assert own_indexer(store)._thread.is_alive()


async def test_search_is_exact_before_and_after_the_index_catches_up(
    store: SqliteStore, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bodies the indexer has not taken (queue full, a crash) stay marked unindexed:
    SEARCH reads them whole, and the catch-up pass indexes them later."""
    import postier.store.sqlite.indexer as indexer

    monkeypatch.setattr(indexer, "MAX_PENDING", 0)  # every new body left to the catch-up
    await add(store, account, plain("first", "the quick brown fox"))
    await add(store, account, plain("second", "a lazy dog"))
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    assert own_indexer(store).deferred == 2
    marks = await store._read(lambda c: c.execute("SELECT indexed FROM bodies").fetchall())
    assert marks == [(0,), (0,)]
    assert await store.search_text(box.id, "body", "QUICK brown") == [1]
    assert await store.search_text(box.id, "subject", "seco") == [2]
    assert await store.search_text(box.id, "text", "dog") == [2]
    monkeypatch.setattr(indexer, "IDLE_S", 0.05)
    own_indexer(store).delete(0)  # wake the thread; its next idle moment runs the catch-up
    for _ in range(100):
        marks = await store._read(lambda c: c.execute("SELECT indexed FROM bodies").fetchall())
        if marks == [(1,), (1,)]:
            break
        await asyncio.sleep(0.05)
    assert marks == [(1,), (1,)]
    assert await store.search_text(box.id, "body", "QUICK brown") == [1]
    assert await store.search_text(box.id, "subject", "seco") == [2]


@pytest.mark.parametrize("damage", ["deleted", "garbage"])
async def test_a_lost_or_broken_index_is_built_again(
    store: SqliteStore, account: Account, damage: str
) -> None:
    """index.db is derived data: deleted or unreadable, it is started again and every body
    is indexed again (the marks of the old one are cleared); SEARCH stays exact."""
    await add(store, account, plain("first", "the quick brown fox"))
    await add(store, account, plain("second", "a lazy dog"))
    assert await asyncio.to_thread(own_indexer(store).wait_idle)
    data_dir = store.data_dir
    await store.close()
    index = data_dir / "index.db"
    for suffix in ("-wal", "-shm"):
        (data_dir / f"index.db{suffix}").unlink(missing_ok=True)
    if damage == "deleted":
        index.unlink()
    else:
        index.write_bytes(b"this is not an SQLite database" * 100)
    again = await SqliteStore.open(data_dir)
    try:
        box = await again.get_mailbox(account.id, "INBOX")
        assert box is not None
        assert await again.search_text(box.id, "body", "QUICK brown") == [1]
        assert await asyncio.to_thread(own_indexer(again).wait_idle)
        marks = await again._read(lambda c: c.execute("SELECT indexed FROM bodies").fetchall())
        assert marks == [(1,), (1,)]
        assert own_indexer(again).indexed == 2  # both indexed again, into the new index
        assert await again.search_text(box.id, "body", "QUICK brown") == [1]
        assert await again.search_text(box.id, "text", "lazy dog") == [2]
    finally:
        await again.close()
    if damage == "garbage":
        assert list(data_dir.glob("index.db.broken-*"))


def test_index_commits_are_durable_before_their_marks(tmp_path: Path) -> None:
    """A body's mark is a durable commit in postier.db, and SEARCH trusts marked bodies to
    be in index.db: the index commit must be durable first (WAL fsync'd at each commit,
    synchronous=FULL), or a power cut could keep marks whose index entries were lost."""
    conn, _ = open_index(tmp_path / "index.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        conn.close()


async def test_short_needles_read_the_stored_text_once_indexed(
    store: SqliteStore, account: Account
) -> None:
    """One or two characters: no trigram; indexed bodies are checked against the index's
    stored text, the others parsed — the same answers either way."""
    await add(store, account, plain("Grüße", "x ö y"))
    await add(store, account, plain("two", "nothing", "X-Note: Qz\r\n"))
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    search = store.search_text
    before = [await search(box.id, f, n) for f, n in
              (("body", "Ö"), ("text", "qz"), ("headers", "Q"), ("subject", "ß"), ("body", "zz"))]
    assert await asyncio.to_thread(own_indexer(store).wait_idle)
    marks = await store._read(lambda c: c.execute("SELECT indexed FROM bodies").fetchall())
    assert marks == [(1,), (1,)]
    after = [await search(box.id, f, n) for f, n in
             (("body", "Ö"), ("text", "qz"), ("headers", "Q"), ("subject", "ß"), ("body", "zz"))]
    assert before == after == [[1], [2], [2], [1], []]


async def test_a_body_left_unindexed_is_caught_up_under_constant_load(
    store: SqliteStore, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The indexer is never idle under constant load; a body it never got (a frame another
    worker could not send, a full queue) is still indexed by a periodic catch-up step."""
    import threading

    import postier.store.sqlite.indexer as indexer

    monkeypatch.setattr(indexer, "MAX_PENDING", 0)
    await add(store, account, plain("missed", "an unusual wombat"))  # left to the catch-up
    monkeypatch.setattr(indexer, "MAX_PENDING", 5000)
    monkeypatch.setattr(indexer, "BUSY_CATCH_UP_S", 0.2)
    stop = threading.Event()

    def load() -> None:  # something to index all the time: the thread is never idle
        n = 10**6
        while not stop.is_set():
            own_indexer(store).add(n)  # ids of no body: read, found missing, skipped
            n += 1
            stop.wait(0.01)

    feeder = threading.Thread(target=load)
    feeder.start()
    try:
        for _ in range(100):
            marks = await store._read(lambda c: c.execute("SELECT indexed FROM bodies").fetchall())
            if marks == [(1,)]:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        feeder.join()
    assert marks == [(1,)]
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    assert await store.search_text(box.id, "body", "wombat") == [1]
