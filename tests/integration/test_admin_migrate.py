"""postier migrate against a second postier instance's IMAP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postier.admin.migrate import ImapSource, migrate_account
from postier.admin.transfer import TransferError
from postier.imap.server import ImapServer
from postier.store.sqlite import SqliteStore
from postier.store.types import Account, FlagMode, Uid
from tests.conftest import TEST_PASSWORD, cheap_hash
from tests.integration.test_imap_support import port_of, start_server
from tests.unit.admin.helpers import add_messages, inbox, make_message

BIG = 100 * 1024


@pytest.fixture
async def source(store: SqliteStore, account: Account) -> AsyncIterator[ImapServer]:
    """The old server: alice with mail in INBOX and nested folders."""
    mb = await inbox(store, account)
    await add_messages(store, mb, [make_message(1)], internal_date=1_500_000_000)
    await add_messages(store, mb, [make_message(2, BIG)],
                       flags=frozenset({"\\Seen", "$Work"}), internal_date=1_500_000_100)
    await store.store_flags(mb, [Uid(1)], FlagMode.ADD, frozenset({"\\Answered"}))
    sub = await store.create_mailbox(account.id, "Projects/Grüße")
    await add_messages(store, sub.id, [make_message(3), make_message(3)],
                       flags=frozenset({"\\Flagged"}), internal_date=1_400_000_000)
    srv = await start_server(store)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "target")
    await s.add_domain("example.org")
    await s.create_account("alice@example.org", cheap_hash("other"), None)
    try:
        yield s
    finally:
        await s.close()


async def _contents(store: SqliteStore, address: str) -> dict[str, list[tuple[object, ...]]]:
    account = await store.get_account(address)
    assert account is not None
    out: dict[str, list[tuple[object, ...]]] = {}
    for mb in await store.list_mailboxes(account.id):
        rows: list[tuple[object, ...]] = []
        for info in await store.list_messages(mb.id):
            rows.append((sorted(info.flags), info.internal_date,
                         await store.read_message(mb.id, info.uid)))
        if rows:
            out[mb.name] = rows
    return out


async def test_migrate_copies_folders_flags_dates_and_resumes(
    source: ImapServer, store: SqliteStore, target: SqliteStore
) -> None:
    src = ImapSource.from_url(f"imap+plain://alice%40example.org@127.0.0.1:{port_of(source)}",
                              TEST_PASSWORD)
    calls: list[tuple[int, int, str]] = []
    summary = await migrate_account(target, "alice@example.org", src,
                                    lambda n, t, w: calls.append((n, t, w)))
    assert summary.messages == 4 and not summary.problems
    assert calls and calls[-1][0] == calls[-1][1]
    assert await _contents(target, "alice@example.org") == await _contents(
        store, "alice@example.org")

    # Interrupted or not, a second run (with one new message at the source) copies only it.
    alice = await store.get_account("alice@example.org")
    assert alice is not None
    await add_messages(store, await inbox(store, alice), [make_message(9)],
                       internal_date=1_600_000_000)
    again = await migrate_account(target, "alice@example.org", src)
    assert (again.messages, again.duplicates) == (1, 4)
    assert await _contents(target, "alice@example.org") == await _contents(
        store, "alice@example.org")


async def test_migrate_wrong_password_is_a_clear_error(
    source: ImapServer, target: SqliteStore
) -> None:
    src = ImapSource.from_url(f"imap+plain://alice%40example.org@127.0.0.1:{port_of(source)}",
                              "wrong")
    with pytest.raises(TransferError, match="cannot log in"):
        await migrate_account(target, "alice@example.org", src)


def test_source_urls() -> None:
    s = ImapSource.from_url("imaps://bob%40old.example@mail.old.example", "pw")
    assert (s.host, s.port, s.user, s.security) == ("mail.old.example", 993, "bob@old.example",
                                                   "implicit")
    assert ImapSource.from_url("imap://bob@h:1143", "pw").security == "starttls"
    with pytest.raises(TransferError):
        ImapSource.from_url("http://h", "pw")
