"""Delivery: resolution (aliases, catch-all, plus-addressing, postmaster) and storing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import postier.delivery
from postier.delivery import Delivery, Status
from postier.store.sqlite import SqliteStore
from postier.store.types import Account
from tests.conftest import cheap_hash

RAW = b"From: x@example.net\r\nSubject: hi\r\n\r\nbody\r\n"


async def inbox_messages(store: SqliteStore, address: str) -> list[bytes]:
    acct = await store.get_account(address)
    assert acct is not None
    box = await store.get_mailbox(acct.id, "INBOX")
    assert box is not None
    out = []
    for info in await store.list_messages(box.id):
        data = await store.read_message(box.id, info.uid)
        assert data is not None
        out.append(data)
    return out


async def test_delivers_with_trace_prefix(store: SqliteStore, delivery: Delivery, account: Account) -> None:
    (result,) = await delivery.deliver(RAW, "x@example.net", ["Alice@Example.org"])
    assert result.status is Status.DELIVERED
    (stored,) = await inbox_messages(store, "alice@example.org")
    assert stored == b"Return-Path: <x@example.net>\r\nDelivered-To: alice@example.org\r\n" + RAW


async def test_unknown_user_and_foreign_domain(delivery: Delivery, account: Account) -> None:
    unknown, foreign = await delivery.deliver(RAW, "", ["bob@example.org", "bob@elsewhere.test"])
    assert unknown.status is Status.UNKNOWN_USER
    assert foreign.status is Status.NOT_LOCAL


async def test_plus_addressing(store: SqliteStore, delivery: Delivery, account: Account) -> None:
    (result,) = await delivery.deliver(RAW, "", ["alice+lists@example.org"])
    assert result.ok
    assert len(await inbox_messages(store, "alice@example.org")) == 1


async def test_alias_with_several_targets_and_duplicates_eliminated(
    store: SqliteStore, delivery: Delivery, account: Account
) -> None:
    await store.create_account("bob@example.org", cheap_hash("pw"), None)
    await store.add_alias("team@example.org", ["alice@example.org", "bob@example.org"])
    results = await delivery.deliver(RAW, "", ["team@example.org", "alice@example.org"])
    assert all(r.status is Status.DELIVERED for r in results)
    assert len(await inbox_messages(store, "alice@example.org")) == 1
    assert len(await inbox_messages(store, "bob@example.org")) == 1


async def test_catch_all_and_postmaster(store: SqliteStore, delivery: Delivery, account: Account) -> None:
    (pm,) = await delivery.deliver(RAW, "", ["postmaster@example.org"])
    assert pm.status is Status.DELIVERED
    (nobody,) = await delivery.deliver(RAW, "", ["whoever@example.org"])
    assert nobody.status is Status.UNKNOWN_USER
    await store.add_alias("@example.org", ["alice@example.org"])
    (caught,) = await delivery.deliver(RAW, "", ["whoever@example.org"])
    assert caught.status is Status.DELIVERED
    assert len(await inbox_messages(store, "alice@example.org")) == 2


async def test_alias_loop_terminates(store: SqliteStore, delivery: Delivery, account: Account) -> None:
    await store.add_alias("a@example.org", ["b@example.org"])
    await store.add_alias("b@example.org", ["a@example.org", "alice@example.org"])
    (result,) = await delivery.deliver(RAW, "", ["a@example.org"])
    assert result.status is Status.DELIVERED


async def test_remote_alias_target_is_queued(store: SqliteStore, delivery: Delivery, account: Account) -> None:
    await store.add_alias("fwd@example.org", ["someone@remote.test"])
    (result,) = await delivery.deliver(RAW, "x@example.net", ["fwd@example.org"])
    assert result.status is Status.FORWARDED
    (entry,) = await store.list_queue()
    assert [r.address for r in entry.recipients] == ["someone@remote.test"]
    assert entry.sender == "x@example.net"


async def test_over_quota_is_distinct(store: SqliteStore, delivery: Delivery, account: Account) -> None:
    await store.set_quota("alice@example.org", 10)
    (result,) = await delivery.deliver(RAW, "", ["alice@example.org"])
    assert result.status is Status.OVER_QUOTA


async def test_one_body_for_many_recipients(store: SqliteStore, delivery: Delivery, account: Account) -> None:
    await store.create_account("bob@example.org", cheap_hash("pw"), None)
    await delivery.deliver(RAW, "", ["alice@example.org", "bob@example.org"])
    alice_acct, bob_acct = await store.get_account("alice@example.org"), await store.get_account("bob@example.org")
    assert alice_acct and bob_acct
    box_a, box_b = await store.get_mailbox(alice_acct.id, "INBOX"), await store.get_mailbox(bob_acct.id, "INBOX")
    assert box_a and box_b
    (info_a,), (info_b,) = await store.list_messages(box_a.id), await store.list_messages(box_b.id)
    assert info_a.body_id == info_b.body_id
    alice, bob = await inbox_messages(store, "alice@example.org"), await inbox_messages(store, "bob@example.org")
    assert alice[0].endswith(RAW) and bob[0].endswith(RAW)
    assert b"Delivered-To: bob@example.org" in bob[0]


async def test_whole_or_nothing_when_atomic(
    store: SqliteStore, delivery: Delivery, account: Account
) -> None:
    await store.create_account("bob@example.org", cheap_hash("pw"), None, quota_bytes=10)
    results = await delivery.deliver(RAW, "", ["alice@example.org", "bob@example.org"], atomic=True)
    assert [r.status for r in results] == [Status.OVER_QUOTA, Status.OVER_QUOTA]
    assert "bob@example.org" in results[0].detail  # the reason names the full mailbox
    assert await inbox_messages(store, "alice@example.org") == []
    # Not atomic (LMTP: one reply per recipient): alice's copy is stored, bob's is refused.
    alice, bob = await delivery.deliver(RAW, "", ["alice@example.org", "bob@example.org"])
    assert (alice.status, bob.status) == (Status.DELIVERED, Status.OVER_QUOTA)
    assert len(await inbox_messages(store, "alice@example.org")) == 1
    assert await inbox_messages(store, "bob@example.org") == []


async def test_atomic_failure_queues_no_forward(
    store: SqliteStore, delivery: Delivery, account: Account
) -> None:
    await store.set_quota("alice@example.org", 10)
    await store.add_alias("both@example.org", ["alice@example.org", "someone@remote.test"])
    (result,) = await delivery.deliver(RAW, "x@example.net", ["both@example.org"], atomic=True)
    assert result.status is Status.OVER_QUOTA
    assert await store.list_queue() == []


async def test_cached_resolution_follows_changes_made_elsewhere(
    store: SqliteStore, delivery: Delivery, account: Account, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Answers are cached.  A change by another process (here: another connection, as
    `postier user add` would make) is seen at once for a recipient that was refused, and
    within RECHECK_S for one that was found."""
    assert await delivery.resolve("bob@example.org") is None
    other = await SqliteStore.open(tmp_path / "data")
    try:
        await other.create_account("bob@example.org", cheap_hash("pw"), None)
        found = await delivery.resolve("bob@example.org")  # refused before: checked at once
        assert found is not None and found.local == ("bob@example.org",)
        await other.add_domain("example.com")
        assert await delivery.is_local_domain("example.com")
        await other.add_alias("bob@example.org", ["alice@example.org"])
        found = await delivery.resolve("bob@example.org")  # found before: served from cache
        assert found is not None and found.local == ("bob@example.org",)
        monkeypatch.setattr(postier.delivery, "RECHECK_S", 0.0)  # as if the window had passed
        found = await delivery.resolve("bob@example.org")
        assert found is not None and found.local == ("alice@example.org",)
        await other.remove_alias("bob@example.org")
        await other.delete_account("bob@example.org")
        assert await delivery.resolve("bob@example.org") is None
    finally:
        await other.close()


async def test_resolution_is_cached(
    store: SqliteStore, delivery: Delivery, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    for name in ("get_domain", "get_account", "alias_targets"):
        original = getattr(store, name)

        async def counting(*args: object, _name: str = name, _original: Any = original) -> Any:
            calls.append(_name)
            return await _original(*args)

        monkeypatch.setattr(store, name, counting)
    first = await delivery.resolve("alice+x@example.org")
    assert calls  # resolved from the database once
    calls.clear()
    assert await delivery.resolve("Alice+X@example.org") == first
    assert calls == []
    await store.add_alias("alice+x@example.org", ["alice@example.org"])  # bumps the generation
    await delivery.resolve("alice+x@example.org")
    assert calls
