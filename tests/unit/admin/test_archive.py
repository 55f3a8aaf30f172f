"""Maildir and mbox export/import: flags, internal dates and bytes round-trip; no duplicates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from postier.admin.archive import Format, detect_format, export_account, import_account
from postier.admin.maildir import folder_dirname, folder_name, parse_filename, read_keywords
from postier.admin.mbox import encode_entry, parse_from_date
from postier.admin.transfer import TransferError
from postier.store.sqlite import SqliteStore
from postier.store.types import Account, NewMessage

from .helpers import MailboxState, add_messages, inbox, make_message, state

BIG = 100 * 1024
FROM_BODY = (
    b"From: a@example.net\r\nSubject: tricky\r\n\r\nFrom the start\r\n>From quoted\r\n"
    b"\r\nFrom here on\r\n"
)


async def _fill(store: SqliteStore, account: Account) -> None:
    mb = await inbox(store, account)
    await add_messages(store, mb, [make_message(1)], internal_date=1_500_000_000)
    await add_messages(store, mb, [make_message(2, BIG)],
                       flags=frozenset({"\\Seen", "\\Flagged", "$Work"}), internal_date=1_500_000_100)
    await add_messages(store, mb, [FROM_BODY], flags=frozenset({"\\Answered", "\\Draft"}),
                       internal_date=1_500_000_200)
    # A delivered message: trace fields in the prefix.
    body = await store.prepare_body(make_message(3))
    await store.append([NewMessage(mb, body, prefix=b"Return-Path: <x@example.net>\r\n",
                                   flags=frozenset({"\\Deleted"}), internal_date=1_500_000_300)])
    sub = await store.create_mailbox(account.id, "Archive/2024 ü.x")
    await add_messages(store, sub.id, [make_message(4)], flags=frozenset({"\\Seen"}),
                       internal_date=1_400_000_000)


async def _second_account(store: SqliteStore) -> Account:
    from tests.conftest import cheap_hash

    return await store.create_account("bob@example.org", cheap_hash("pw"), None)


def _messages(st: dict[str, MailboxState], address: str) -> dict[str, list[tuple[object, ...]]]:
    """Per mailbox: (flags, date, bytes) in UID order, ignoring UIDs and MODSEQs."""
    out: dict[str, list[tuple[object, ...]]] = {}
    for key, value in st.items():
        user, _, name = key.partition("/")
        if user == address:
            msgs = value[4]
            out[name] = [(m[2], m[3], m[5]) for m in msgs]
    return out


@pytest.mark.parametrize("fmt", [Format.MAILDIR, Format.MBOX])
async def test_round_trip_keeps_flags_dates_bytes(
    store: SqliteStore, account: Account, tmp_path: Path, fmt: Format
) -> None:
    await _fill(store, account)
    dest = tmp_path / "out"
    exported = await export_account(store, account.address, dest, fmt)
    assert exported.messages == 5 and not exported.problems
    assert detect_format(dest) is fmt
    bob = await _second_account(store)
    calls: list[tuple[int, int, str]] = []
    summary = await import_account(store, bob.address, dest,
                                   lambda n, t, w: calls.append((n, t, w)))
    assert summary.messages == 5 and not summary.problems and calls
    st = await state(store)
    assert _messages(st, bob.address) == _messages(st, account.address)

    again = await import_account(store, bob.address, dest)
    assert again.messages == 0 and again.duplicates == 5
    assert _messages(await state(store), bob.address) == _messages(st, bob.address)


async def test_reimport_into_origin_account_adds_nothing(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    await _fill(store, account)
    await export_account(store, account.address, tmp_path / "out", "maildir")
    summary = await import_account(store, account.address, tmp_path / "out")
    # Even the delivered message (body + Return-Path prefix) is recognised.
    assert summary.messages == 0 and summary.duplicates == 5


async def test_duplicates_inside_the_source_are_kept_once_each(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    entry = encode_entry(make_message(7), frozenset(), 1_500_000_000)
    (tmp_path / "in.mbox").write_bytes(entry + entry)
    first = await import_account(store, account.address, tmp_path / "in.mbox")
    second = await import_account(store, account.address, tmp_path / "in.mbox")
    assert (first.messages, second.messages, second.duplicates) == (2, 0, 2)


async def test_maildir_export_layout(store: SqliteStore, account: Account, tmp_path: Path) -> None:
    await _fill(store, account)
    dest = tmp_path / "md"
    await export_account(store, account.address, dest, "maildir")
    files = sorted(p.name for p in (dest / "cur").iterdir())
    assert any(n.endswith(":2,FSa") for n in files)
    assert any(n.endswith(":2,DR") for n in files)
    assert (dest / "dovecot-keywords").read_text() == "0 $Work\n"
    big = next(p for p in (dest / "cur").iterdir() if ":2,FSa" in p.name)
    assert int(big.stat().st_mtime) == 1_500_000_100
    assert f",S={big.stat().st_size}:" in big.name
    sub = dest / folder_dirname("Archive/2024 ü.x")
    assert (sub / "maildirfolder").exists() and (sub / "cur").is_dir()
    assert sub.name == ".Archive.2024 &APw-\\2ex"


def test_maildir_folder_names_round_trip() -> None:
    for name in ("INBOX", "Sent", "A/B/C", "dots.in.name", "Grüße/日本", "back\\slash"):
        assert folder_name(folder_dirname(name)) == name
    assert folder_name(".INBOX") == "INBOX"
    assert folder_name(".Lists.postfix") == "Lists/postfix"


def test_dovecot_filenames_parsed(tmp_path: Path) -> None:
    (tmp_path / "dovecot-keywords").write_text("0 $Forwarded\n1 Work\n")
    kw = read_keywords(tmp_path)
    flags, warnings = parse_filename("1700000000.M1P2.host,S=1234,W=1260:2,FRSab", kw)
    assert flags == {"\\Flagged", "\\Answered", "\\Seen", "$Forwarded", "Work"}
    assert warnings == []
    flags, warnings = parse_filename("1700000000.M1P2.host!2,DTP", kw)
    assert flags == {"\\Draft", "\\Deleted"}
    flags, warnings = parse_filename("x:2,Sz", kw)
    assert flags == {"\\Seen"} and warnings


async def test_dovecot_maildir_imported(store: SqliteStore, account: Account, tmp_path: Path) -> None:
    root = tmp_path / "Maildir"
    for d in ("cur", "new", "tmp", ".Lists.postfix/cur", ".Lists.postfix/new"):
        (root / d).mkdir(parents=True)
    (root / "dovecot-keywords").write_text("0 Work\n")
    seen = root / "cur" / "1700000000.M1P2.host,S=10:2,Sa"
    seen.write_bytes(make_message(1).replace(b"\r\n", b"\n"))  # Dovecot stores LF
    os.utime(seen, (1_650_000_000, 1_650_000_000))
    (root / "new" / "1700000001.M2P2.host").write_bytes(make_message(2))
    (root / ".Lists.postfix" / "cur" / "1700000002.M3P2.host:2,").write_bytes(make_message(3))
    (root / "cur" / "broken").write_bytes(b"\x00\x01 binary junk")
    (root / "cur" / "empty:2,S").write_bytes(b"")
    summary = await import_account(store, account.address, root)
    assert summary.messages == 3
    assert sorted(p.reason for p in summary.problems) == [
        "does not start with a header field: not a message", "empty message"]
    mb = await inbox(store, account)
    infos = await store.list_messages(mb)
    by_date = {i.internal_date: i for i in infos}
    assert by_date[1_650_000_000].flags == {"\\Seen", "Work"}
    lists = await store.get_mailbox(account.id, "Lists/postfix")
    assert lists is not None and len(await store.list_messages(lists.id)) == 1


async def test_malformed_mbox_entries_reported_and_skipped(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    good = encode_entry(make_message(1), frozenset({"\\Seen"}), 1_500_000_000)
    text = (
        b"junk before any From_ line\n\n" + good
        + b"From someone Mon Jan  1 00:00:00 2001\n\x00\x01binary not a header\n\n"
        + b"From nobody no-date-here\nSubject: undated\nDate: Tue, 2 Jan 2001 10:00:00 +0000\n\nhi\n\n"
        + b"From empty Mon Jan  1 00:00:00 2001\n\n"
    )
    (tmp_path / "box.mbox").write_bytes(text)
    summary = await import_account(store, account.address, tmp_path / "box.mbox")
    assert summary.messages == 2
    reasons = [(p.reason, p.skipped) for p in summary.problems]
    assert ("text before the first From_ line (not an mbox entry)", True) in reasons
    assert ("entry does not start with a header field: not a message", True) in reasons
    assert ("empty message", True) in reasons
    assert ("From_ line has no readable date; used the Date: field", False) in reasons
    box = await store.get_mailbox(account.id, "box")  # a single file: folder named after it
    assert box is not None
    infos = await store.list_messages(box.id)
    assert {i.internal_date for i in infos} == {1_500_000_000, 978429600}


def test_from_line_dates() -> None:
    assert parse_from_date(b"From a@b Thu Jul 14 02:40:00 2017") == 1500000000
    assert parse_from_date(b"From a@b Thu Jul 14 04:40:00 2017 +0200") == 1500000000
    assert parse_from_date(b"From a@b Thu Jul 14 02:40 2017") == 1500000000
    assert parse_from_date(b"From a@b Thu Jul 14 02:40:00 UTC 2017") == 1500000000
    assert parse_from_date(b"From a@b yesterday") is None


def test_mboxrd_escaping() -> None:
    entry = encode_entry(FROM_BODY, frozenset(), 0)
    assert b"\n>From the start\n>>From quoted\n\n>From here on\n" in entry
    assert entry.startswith(b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n")


async def test_unknown_account_and_bad_targets(
    store: SqliteStore, account: Account, tmp_path: Path
) -> None:
    with pytest.raises(TransferError, match="no account"):
        await export_account(store, "nobody@example.org", tmp_path / "x", "mbox")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(TransferError, match="not an empty folder"):
        await export_account(store, account.address, tmp_path / "full", "maildir")
    with pytest.raises(TransferError, match="neither"):
        await import_account(store, account.address, tmp_path / "full")
