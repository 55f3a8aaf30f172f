"""Moving an account's mail in and out: the part shared by Maildir, mbox and IMAP migration.

A source (a Maildir tree, a folder of mbox files, a remote IMAP account) is read as a
stream of :class:`SourceMessage` and :class:`Problem` values; :class:`AccountImporter`
appends the messages with their flags and internal dates, in batches (one transaction
each), into mailboxes it creates as needed.

**Idempotence.** A message is identified by the sha256 of its bytes.  Before importing
into a mailbox, the importer counts how many messages with each hash the mailbox already
holds; the k-th copy of a hash in the source is skipped when the mailbox already has at
least k.  Importing a source twice — or resuming an interrupted import — therefore adds
nothing the second time, while a source that really holds the same message twice keeps
both copies.  Messages delivered by SMTP carry a per-recipient prefix (Return-Path,
Delivered-To); their whole-message hash is computed only for messages whose size matches
an incoming one, so importing into a large mailbox does not read all its bodies.

**Nothing dropped silently.** Every entry that cannot be imported is a :class:`Problem`
in the summary, with where it came from and why.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from postier.errors import UserError
from postier.store.interface import Store
from postier.store.types import Account, MailboxId, NewMessage, PreparedBody, Uid

Progress = Callable[[int, int, str], None]
"""progress(done, total, what); total is 0 when not known in advance."""

IMPORT_BATCH: Final = 200  # messages per append transaction
IMPORT_BATCH_BYTES: Final = 32 * 1024 * 1024


def no_progress(done: int, total: int, what: str) -> None:
    pass


class TransferError(UserError):
    """An import or export cannot start (unknown account, unusable source or target)."""


@dataclass(frozen=True, slots=True)
class SourceMessage:
    folder: str  # postier mailbox name, "/"-separated: "INBOX", "Archive/2024"
    raw: bytes
    flags: frozenset[str]
    internal_date: int | None  # epoch seconds; None: unknown (now)
    origin: str  # where it came from, for reports: a path, "file.mbox:#12", "imap:Sent/7"


@dataclass(frozen=True, slots=True)
class Problem:
    origin: str
    reason: str
    skipped: bool = True  # False: imported anyway, with a caveat (a flag or date lost)

    def __str__(self) -> str:
        return f"{self.origin}: {self.reason}{'' if self.skipped else ' (imported anyway)'}"


@dataclass(slots=True)
class TransferSummary:
    folders: int = 0
    messages: int = 0  # imported or exported
    duplicates: int = 0  # already present, not imported again
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def skipped(self) -> int:
        return sum(1 for p in self.problems if p.skipped)

    def describe(self, verb: str = "imported") -> str:
        mb = self.bytes / 1e6
        parts = [
            f"{verb} {self.messages} messages ({mb:.1f} MB) in {self.folders} folders",
            f"{self.duplicates} already present" if self.duplicates else "",
            f"{self.skipped} skipped" if self.skipped else "",
            f"{len(self.problems) - self.skipped} with warnings"
            if len(self.problems) > self.skipped else "",
        ]
        head = ", ".join(p for p in parts if p) + f" in {self.seconds:.1f} s"
        if not self.problems:
            return head
        shown = "\n  ".join(str(p) for p in self.problems[:50])
        more = f"\n  … and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        return f"{head}\n  {shown}{more}"


async def get_account(store: Store, address: str) -> Account:
    account = await store.get_account(address.strip().lower())
    if account is None:
        raise TransferError(f"no account {address}; create it first with `postier user add`")
    return account


class _Existing:
    """How many copies of each whole-message hash a mailbox already holds."""

    def __init__(self, store: Store, mailbox_id: MailboxId) -> None:
        self.store = store
        self.mailbox_id = mailbox_id
        self.counts: Counter[str] = Counter()
        self.by_size: dict[int, list[Uid]] = {}  # prefixed messages, hashed on demand

    async def load(self) -> None:
        rows = await _message_hashes(self.store, self.mailbox_id)
        for uid, size, sha in rows:
            if sha is not None:
                self.counts[sha] += 1
            else:
                self.by_size.setdefault(size, []).append(uid)

    async def count(self, sha: str, size: int) -> int:
        for uid in self.by_size.pop(size, []):
            raw = await self.store.read_message(self.mailbox_id, uid)
            if raw is not None:
                self.counts[hashlib.sha256(raw).hexdigest()] += 1
        return self.counts[sha]


async def _message_hashes(store: Store, mailbox_id: MailboxId) -> list[tuple[Uid, int, str | None]]:
    """(uid, size, sha256 of the whole message or None if it has a prefix) per message.

    The Store interface has no "hashes of a mailbox" read; on SQLite this reads the body
    hashes through the store's reader pool (the one place admin/ runs SQL), elsewhere it
    falls back to hashing every message.
    """
    readers = getattr(store, "readers", None)
    if readers is not None:
        def fn(c: sqlite3.Connection) -> list[tuple[Uid, int, str | None]]:
            return [
                (Uid(uid), int(size), None if plen else str(sha))
                for uid, size, plen, sha in c.execute(
                    "SELECT m.uid, m.size, length(m.prefix), b.sha256 FROM messages m"
                    " JOIN bodies b ON b.id = m.body_id WHERE m.mailbox_id = ?",
                    (mailbox_id,),
                )
            ]

        result: list[tuple[Uid, int, str | None]] = await readers.run(fn)
        return result
    return [(info.uid, info.size, None) for info in await store.list_messages(mailbox_id)]


class AccountImporter:
    """Appends source messages into an account's mailboxes, skipping what is there."""

    def __init__(self, store: Store, account: Account, progress: Progress = no_progress,
                 total: int = 0) -> None:
        self.store = store
        self.account = account
        self.progress = progress
        self.total = total
        self.summary = TransferSummary()
        self._mailboxes: dict[str, MailboxId | None] = {}
        self._existing: dict[MailboxId, _Existing] = {}
        self._seen: dict[MailboxId, Counter[str]] = {}
        self._batch: list[NewMessage] = []
        self._batch_bytes = 0
        self._done = 0
        self._started = time.monotonic()

    async def run(self, source: AsyncIterable[SourceMessage | Problem]
                  | Iterable[SourceMessage | Problem]) -> TransferSummary:
        if isinstance(source, AsyncIterable):
            async for item in source:
                await self.add(item)
        else:
            for item in source:
                await self.add(item)
        return await self.finish()

    async def add(self, item: SourceMessage | Problem) -> None:
        self._done += 1
        if isinstance(item, Problem):
            self.summary.problems.append(item)
        else:
            await self._add_message(item)
        if self._done % 100 == 0:
            self.progress(self._done, self.total, "messages")

    async def _add_message(self, msg: SourceMessage) -> None:
        mailbox_id = await self._mailbox(msg.folder, msg.origin)
        if mailbox_id is None:
            return
        sha = hashlib.sha256(msg.raw).hexdigest()
        seen = self._seen[mailbox_id]
        seen[sha] += 1
        if seen[sha] <= await self._existing[mailbox_id].count(sha, len(msg.raw)):
            self.summary.duplicates += 1
            return
        body: PreparedBody = await self.store.prepare_body(msg.raw)
        self._batch.append(
            NewMessage(mailbox_id, body, flags=msg.flags, internal_date=msg.internal_date)
        )
        self._batch_bytes += len(msg.raw)
        if len(self._batch) >= IMPORT_BATCH or self._batch_bytes >= IMPORT_BATCH_BYTES:
            await self._flush()

    async def _mailbox(self, folder: str, origin: str) -> MailboxId | None:
        if folder in self._mailboxes:
            mailbox_id = self._mailboxes[folder]
            if mailbox_id is None:
                self.summary.problems.append(Problem(origin, f"folder {folder!r} unusable"))
            return mailbox_id
        mb = await self.store.get_mailbox(self.account.id, folder)
        if mb is None:
            try:
                mb = await self.store.create_mailbox(self.account.id, folder)
            except UserError as exc:
                self._mailboxes[folder] = None
                self.summary.problems.append(Problem(origin, f"folder {folder!r}: {exc}"))
                return None
        self.summary.folders += 1
        existing = _Existing(self.store, mb.id)
        await existing.load()
        self._existing[mb.id] = existing
        self._seen[mb.id] = Counter()
        self._mailboxes[folder] = mb.id
        return mb.id

    async def _flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        # An administrator's import is not refused halfway by the account's quota; the
        # used size is still accounted, so deliveries see the quota afterwards.
        await self.store.append(batch, check_quota=False)
        self.summary.messages += len(batch)
        self.summary.bytes += sum(m.body.size for m in batch)

    async def finish(self) -> TransferSummary:
        await self._flush()
        self.progress(self._done, self.total or self._done, "messages")
        self.summary.seconds = time.monotonic() - self._started
        return self.summary
