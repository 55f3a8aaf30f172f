"""Shared helpers for the admin tests: fill a store, snapshot its IMAP-visible state."""

from __future__ import annotations

from postier.store.sqlite import SqliteStore
from postier.store.types import Account, MailboxId, NewMessage


def make_message(n: int, size: int = 0, subject: str = "") -> bytes:
    head = (
        f"From: Sender {n} <s{n}@example.net>\r\nTo: alice@example.org\r\n"
        f"Subject: {subject or f'message {n}'}\r\nMessage-ID: <m{n}@example.net>\r\n\r\n"
    ).encode()
    body = f"Hello number {n}.\r\n".encode()
    if size > len(head) + len(body):
        line = b"x" * 70 + b"\r\n"
        body += line * ((size - len(head) - len(body)) // len(line))
    return head + body


async def add_messages(
    store: SqliteStore,
    mailbox_id: MailboxId,
    raws: list[bytes],
    flags: frozenset[str] = frozenset(),
    internal_date: int | None = None,
) -> None:
    for raw in raws:
        body = await store.prepare_body(raw)
        await store.append([NewMessage(mailbox_id, body, flags=flags, internal_date=internal_date)])


MessageState = tuple[int, int, list[str], int, int, bytes | None]
MailboxState = tuple[int, int, int, str | None, list[MessageState]]


async def state(store: SqliteStore) -> dict[str, MailboxState]:
    """Everything an IMAP/POP3 client could notice, per account and mailbox."""
    out: dict[str, MailboxState] = {}
    for acct in await store.list_accounts():
        for mb in await store.list_mailboxes(acct.id):
            msgs: list[MessageState] = []
            for info in await store.list_messages(mb.id):
                raw = await store.read_message(mb.id, info.uid)
                msgs.append((info.uid, info.modseq, sorted(info.flags), info.internal_date,
                             info.size, raw))
            out[f"{acct.address}/{mb.name}"] = (
                mb.uidvalidity, mb.uidnext, mb.highestmodseq, mb.special_use, msgs,
            )
    return out


async def inbox(store: SqliteStore, account: Account) -> MailboxId:
    mb = await store.get_mailbox(account.id, "INBOX")
    assert mb is not None
    return mb.id
