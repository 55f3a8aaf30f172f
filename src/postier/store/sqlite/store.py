"""SqliteStore: the Store interface on SQLite (WAL, synchronous=FULL) plus body files.

Writes run on one writer thread with group commit (writer.py); reads run on a small pool
of reader connections.  Bus events are published on the event loop right after the
transaction that made the change has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from postier.errors import (
    CopyFailed,
    PostierError,
    QuotaExceeded,
    TemporaryError,
    UnknownAccount,
    UserError,
)
from postier.mail.parse import decode_parts, extract_texts, parse_message
from postier.mail.parsed import ParsedMessage
from postier.store import bus as ev
from postier.store.blobs import FileBlobStore
from postier.store.bus import ChangeBus
from postier.store.sqlite import words
from postier.store.sqlite.indexer import INDEX_DB, Indexer, prepare_index
from postier.store.sqlite.schema import migrate
from postier.store.sqlite.writer import ReaderPool, Tx, Writer, connect
from postier.store.types import (
    DEFAULT_MAILBOXES,
    FLAG_DELETED,
    FLAG_SEEN,
    HIERARCHY_SEPARATOR,
    Account,
    AccountId,
    Alias,
    Appended,
    BodyId,
    Changes,
    CopyResult,
    DkimKeyRecord,
    Domain,
    FlagMode,
    FlagUpdate,
    LocalCopy,
    Mailbox,
    MailboxId,
    MailboxStatus,
    MessageInfo,
    MessageMeta,
    ModSeq,
    NewMessage,
    PreparedBody,
    QueuedRecipient,
    QueueEntry,
    StoreResult,
    Uid,
    flags_to_mask,
    mask_to_flags,
)

T = TypeVar("T")
log = logging.getLogger("postier.store")

INLINE_PARSE_BYTES = 256 * 1024  # smaller bodies are parsed on the loop (< 1 ms)
# Bodies up to this size are stored in their database row, committed with the group
# commit's single fsync; larger ones as fsync'd files.  Measured (bench/store.py): a 10 KB
# body costs 0.43 ms as a file (file + directory fsync) against 0.04 ms as a row in a
# group commit; at 1 MB the file is cheaper (3.0 ms against 4.5 ms, written twice by WAL).
INLINE_BODY_MAX = 64 * 1024
# Write jobs touching more rows than this run on the writer's thread, not the event loop:
# about 30 ms of loop time for appends, the most expensive rows (bench/README.md, SMTP).
LARGE_JOB_ROWS = 200
FTS_FIELDS = {"subject", "from", "to", "cc", "bcc", "headers", "text", "body"}
_FTS_COLUMN = {
    "subject": "subject", "from": "from_", "to": "to_", "cc": "cc", "bcc": "bcc",
    "headers": "headers", "body": "text", "text": None,
}
_CONTENT_COLUMNS = {
    field: ", ".join(f"CAST({c} AS BLOB)" for c in cols) for field, cols in {
        "subject": ("c0",), "from": ("c1",), "to": ("c2",), "cc": ("c3",), "bcc": ("c4",),
        "headers": ("c5",), "body": ("c6",), "text": ("c5", "c6"),
    }.items()
}
_MAILBOX_COLS = "id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed"
_ACCOUNT_COLS = (
    "id, address, domain, password_hash, scram, quota_bytes, used_bytes, enabled, created"
)
_INFO_COLS = "uid, modseq, sysflags, keywords, internal_date, size, body_id"


def _now() -> int:
    return int(time.time())


def _mailbox(row: Sequence[Any]) -> Mailbox:
    return Mailbox(
        MailboxId(row[0]), AccountId(row[1]), row[2], row[3], Uid(row[4]), ModSeq(row[5]),
        row[6], bool(row[7]),
    )


def _account(row: Sequence[Any]) -> Account:
    return Account(
        AccountId(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]), row[8]
    )


def _info(row: Sequence[Any]) -> MessageInfo:
    # _make skips the NewType wrappers (identity at run time) on this hot path.
    return MessageInfo._make((row[0], row[1], mask_to_flags(row[2], row[3]), row[4], row[5], row[6]))


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2]


class SqliteStore:
    """The embedded default store.  Create with ``await SqliteStore.open(data_dir)``."""

    def __init__(
        self, data_dir: Path, readers: int = 4, group_commit_max: int = 256, catch_up: bool = True,
        loop: asyncio.AbstractEventLoop | None = None, index_here: bool = True,
    ) -> None:
        """``loop``: the event loop the writer runs its jobs on (open() passes its own).
        ``index_here``: run the indexer thread in this process; False for a process whose
        new bodies go to an indexer elsewhere (see index_elsewhere)."""
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = data_dir / "postier.db"
        self.blobs = FileBlobStore(data_dir / "blobs")
        conn = connect(self.db_path)
        try:
            migrate(conn)
        finally:
            conn.close()
        self.writer = Writer(self.db_path, group_commit_max, loop)
        blobs = self.blobs
        self.indexer: Indexer | None = None
        index_path = data_dir / INDEX_DB
        if index_here:
            self.indexer = Indexer(
                data_dir, self.db_path, self.writer,
                lambda conn, ids: index_rows(blobs, conn, ids), catch_up=catch_up,
            )
            self.writer.index = self.indexer.add
            self._index_delete: Callable[[int], None] | None = self.indexer.delete
        else:  # the schema and the marks must be right before the readers attach it
            prepare_index(index_path, self.writer).close()
            self._index_delete = None
        self.readers = ReaderPool(self.db_path, readers, attach={"idx": index_path})
        self.bus = ChangeBus()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inline: sqlite3.Connection | None = None
        self._directory_generation = 0
        self._directory_read_at = -math.inf
        # Called on the loop after a message was queued for remote delivery (wakes the runner).
        self.enqueue_listeners: list[Callable[[], None]] = []

    @classmethod
    async def open(
        cls, data_dir: Path, readers: int = 4, group_commit_max: int = 256, catch_up: bool = True,
        index_here: bool = True,
    ) -> SqliteStore:
        """``catch_up``: index bodies left unindexed (the server; short commands pass False).
        ``index_here``: False when an indexer elsewhere gets the new bodies (index_elsewhere)."""
        loop = asyncio.get_running_loop()
        store = await asyncio.to_thread(
            cls, data_dir, readers, group_commit_max, catch_up, loop, index_here
        )
        store._loop = loop
        return store

    def index_elsewhere(self, add: Callable[[int], None], delete: Callable[[int], None]) -> None:
        """Hand new bodies' ids to ``add`` and removed bodies' to ``delete`` (the
        index process or worker 0, through indexfeed.IndexFeed) instead of an indexer
        thread here.  Until this is called, a store opened with ``index_here=False``
        leaves new bodies unindexed (the indexer's catch-up pass finds them)."""
        self.writer.index = add
        self._index_delete = delete

    async def close(self) -> None:
        await asyncio.to_thread(self._close_sync)

    def _close_sync(self) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        if self.indexer is not None:
            self.indexer.close()
        self.writer.close()
        self.readers.close()

    # plumbing -------------------------------------------------------------------

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.readers.run(fn)

    def _lookup(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a point lookup by key on the loop's own connection, without a thread hop.

        An indexed single-row read in WAL mode takes ~10-20 µs, less than handing it to a
        reader thread and back (measured in bench/README.md); readers never wait for the
        writer in WAL mode.  Only for queries bounded to a few rows.
        """
        if self._inline is None:
            self._inline = connect(self.db_path, readonly=True)
        return fn(self._inline)

    async def _write(
        self, fn: Callable[[Tx], T], events: list[ev.Event] | None = None, *, large: bool = False
    ) -> T:
        """Run ``fn`` in a group-committed transaction; publish ``events`` after COMMIT.

        ``fn`` appends to ``events`` while it runs; they are published on the loop's thread
        in commit order, before the caller resumes.  ``large``: a job whose work grows with
        its input (more than LARGE_JOB_ROWS rows, a whole mailbox) runs off the event loop
        (Writer).
        """
        if events is not None:
            bus = self.bus

            def job(tx: Tx) -> T:
                result = fn(tx)
                published = list(events)
                tx.on_loop.append(lambda: _publish_all(bus, published))
                return result

            return await self.writer.run(job, large=large)
        return await self.writer.run(fn, large=large)

    # domains --------------------------------------------------------------------

    async def add_domain(self, name: str) -> Domain:
        name = name.lower().rstrip(".")
        created = _now()

        def fn(tx: Tx) -> Domain:
            try:
                tx.execute("INSERT INTO domains (name, created) VALUES (?, ?)", (name, created))
            except sqlite3.IntegrityError:
                raise UserError(f"domain {name} already exists")
            return Domain(name, created)

        return await self._write_directory(fn)

    async def remove_domain(self, name: str) -> None:
        name = name.lower()

        def fn(tx: Tx) -> None:
            (count,) = tx.execute(
                "SELECT count(*) FROM accounts WHERE domain = ?", (name,)
            ).fetchone()
            if count:
                raise UserError(f"domain {name} still has {count} account(s); remove them first")
            if tx.execute("DELETE FROM domains WHERE name = ?", (name,)).rowcount == 0:
                raise UserError(f"no such domain: {name}")
            tx.execute(
                "DELETE FROM aliases WHERE source LIKE ? ESCAPE '\\'",
                ("%@" + name.replace("%", "\\%").replace("_", "\\_"),),
            )

        await self._write_directory(fn)

    async def list_domains(self) -> list[Domain]:
        rows = await self._read(
            lambda c: c.execute("SELECT name, created FROM domains ORDER BY name").fetchall()
        )
        return [Domain(r[0], r[1]) for r in rows]

    async def get_domain(self, name: str) -> Domain | None:
        row = self._lookup(
            lambda c: c.execute(
                "SELECT name, created FROM domains WHERE name = ?", (name.lower(),)
            ).fetchone()
        )
        return Domain(row[0], row[1]) if row else None

    async def directory_generation(self, max_age_s: float = 0.0) -> int:
        """The directory counter (schema migration 5), read again when older than
        ``max_age_s`` or when this process has changed the directory since.

        Reading it costs ~30 µs right after a commit of the writer (the lookup connection's
        page cache is stale), a large part of a delivery's budget: callers that can accept
        changes made by other processes becoming visible a moment later pass a max age.
        """
        now = time.monotonic()
        if now - self._directory_read_at > max_age_s:
            row = self._lookup(
                lambda c: c.execute(
                    "SELECT value FROM meta WHERE key = 'directory_generation'"
                ).fetchone()
            )
            self._directory_generation = int(row[0]) if row else 0
            self._directory_read_at = now
        return self._directory_generation

    async def _write_directory(self, fn: Callable[[Tx], T], *, large: bool = False) -> T:
        try:
            return await self._write(fn, large=large)
        finally:
            self._directory_read_at = -math.inf  # our own change: read the counter again

    # DKIM keys ------------------------------------------------------------------

    async def add_dkim_key(self, key: DkimKeyRecord) -> None:
        def fn(tx: Tx) -> None:
            try:
                tx.execute(
                    "INSERT INTO dkim_keys (domain, selector, algorithm, private_key, created,"
                    " active) VALUES (?, ?, ?, ?, ?, ?)",
                    (key.domain, key.selector, key.algorithm, key.private_key_pem, key.created,
                     int(key.active)),
                )
            except sqlite3.IntegrityError:
                raise UserError(
                    f"domain {key.domain} is not hosted here, or selector {key.selector} exists"
                )

        await self._write(fn)

    async def list_dkim_keys(
        self, domain: str | None = None, active_only: bool = False
    ) -> list[DkimKeyRecord]:
        sql = "SELECT domain, selector, algorithm, private_key, created, active FROM dkim_keys"
        where: list[str] = []
        params: list[object] = []
        if domain is not None:
            where.append("domain = ?")
            params.append(domain.lower())
        if active_only:
            where.append("active = 1")
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY domain, created, selector"
        rows = self._lookup(lambda c: c.execute(sql, params).fetchall())
        return [DkimKeyRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    async def deactivate_dkim_keys(self, domain: str, except_selectors: Sequence[str] = ()) -> int:
        def fn(tx: Tx) -> int:
            keep = json.dumps(list(except_selectors))
            return tx.execute(
                "UPDATE dkim_keys SET active = 0 WHERE domain = ? AND active = 1"
                " AND selector NOT IN (SELECT value FROM json_each(?))",
                (domain.lower(), keep),
            ).rowcount

        return await self._write(fn)

    # accounts -------------------------------------------------------------------

    async def create_account(
        self, address: str, password_hash: str, scram: str | None, quota_bytes: int = 0
    ) -> Account:
        address = address.lower()
        domain = _domain_of(address)
        created = _now()

        def fn(tx: Tx) -> Account:
            if not tx.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone():
                raise UserError(f"domain {domain} is not hosted here; add it first")
            try:
                cur = tx.execute(
                    "INSERT INTO accounts (address, domain, password_hash, scram, quota_bytes,"
                    " created) VALUES (?, ?, ?, ?, ?, ?)",
                    (address, domain, password_hash, scram, quota_bytes, created),
                )
            except sqlite3.IntegrityError:
                raise UserError(f"account {address} already exists")
            account_id = AccountId(int(cur.lastrowid or 0))
            for name, special in DEFAULT_MAILBOXES:
                _insert_mailbox(tx, account_id, name, special)
            return Account(
                account_id, address, domain, password_hash, scram, quota_bytes, 0, True, created
            )

        return await self._write_directory(fn)

    async def delete_account(self, address: str) -> None:
        address = address.lower()

        def fn(tx: Tx) -> None:
            row = tx.execute("SELECT id FROM accounts WHERE address = ?", (address,)).fetchone()
            if row is None:
                raise UserError(f"no such account: {address}")
            bodies = [
                r[0]
                for r in tx.execute(
                    "SELECT DISTINCT body_id FROM messages WHERE mailbox_id IN"
                    " (SELECT id FROM mailboxes WHERE account_id = ?)",
                    (row[0],),
                )
            ]
            tx.execute("DELETE FROM accounts WHERE id = ?", (row[0],))
            _collect_bodies(tx, bodies)

        await self._write_directory(fn, large=True)  # every message of the account

    async def get_account(self, address: str) -> Account | None:
        row = self._lookup(
            lambda c: c.execute(
                f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE address = ?", (address.lower(),)
            ).fetchone()
        )
        return _account(row) if row else None

    async def get_account_by_id(self, account_id: AccountId) -> Account | None:
        row = self._lookup(
            lambda c: c.execute(
                f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
        )
        return _account(row) if row else None

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        def fn(c: sqlite3.Connection) -> list[Any]:
            if domain is None:
                return c.execute(f"SELECT {_ACCOUNT_COLS} FROM accounts ORDER BY address").fetchall()
            return c.execute(
                f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE domain = ? ORDER BY address",
                (domain.lower(),),
            ).fetchall()

        return [_account(r) for r in await self._read(fn)]

    async def set_password(self, address: str, password_hash: str, scram: str | None) -> None:
        def fn(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE accounts SET password_hash = ?, scram = ? WHERE address = ?",
                (password_hash, scram, address.lower()),
            )
            if cur.rowcount == 0:
                raise UserError(f"no such account: {address}")

        await self._write(fn)

    async def set_quota(self, address: str, quota_bytes: int) -> None:
        def fn(tx: Tx) -> None:
            cur = tx.execute(
                "UPDATE accounts SET quota_bytes = ? WHERE address = ?",
                (quota_bytes, address.lower()),
            )
            if cur.rowcount == 0:
                raise UserError(f"no such account: {address}")

        await self._write(fn)

    # aliases --------------------------------------------------------------------

    async def add_alias(self, source: str, targets: Sequence[str]) -> None:
        source = source.lower()
        domain = _domain_of(source)

        def fn(tx: Tx) -> None:
            if not tx.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone():
                raise UserError(f"domain {domain} is not hosted here; add it first")
            for target in targets:
                tx.execute(
                    "INSERT OR IGNORE INTO aliases (source, target) VALUES (?, ?)",
                    (source, target.lower()),
                )

        await self._write_directory(fn)

    async def remove_alias(self, source: str, target: str | None = None) -> int:
        def fn(tx: Tx) -> int:
            if target is None:
                cur = tx.execute("DELETE FROM aliases WHERE source = ?", (source.lower(),))
            else:
                cur = tx.execute(
                    "DELETE FROM aliases WHERE source = ? AND target = ?",
                    (source.lower(), target.lower()),
                )
            return cur.rowcount

        return await self._write_directory(fn)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        rows = await self._read(
            lambda c: c.execute("SELECT source, target FROM aliases ORDER BY source, target").fetchall()
        )
        aliases = [Alias(r[0], r[1]) for r in rows]
        if domain is not None:
            aliases = [a for a in aliases if _domain_of(a.source) == domain.lower()]
        return aliases

    async def alias_targets(self, source: str) -> list[str]:
        rows = self._lookup(
            lambda c: c.execute(
                "SELECT target FROM aliases WHERE source = ? ORDER BY target", (source.lower(),)
            ).fetchall()
        )
        return [r[0] for r in rows]

    # mailboxes ------------------------------------------------------------------

    async def list_mailboxes(self, account_id: AccountId) -> list[Mailbox]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE account_id = ? ORDER BY name",
                (account_id,),
            ).fetchall()
        )
        return [_mailbox(r) for r in rows]

    async def get_mailbox(self, account_id: AccountId, name: str) -> Mailbox | None:
        if name.upper() == "INBOX":
            name = "INBOX"
        row = self._lookup(
            lambda c: c.execute(
                f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE account_id = ? AND name = ?",
                (account_id, name),
            ).fetchone()
        )
        return _mailbox(row) if row else None

    async def get_mailbox_by_id(self, mailbox_id: MailboxId) -> Mailbox | None:
        row = self._lookup(
            lambda c: c.execute(
                f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
        )
        return _mailbox(row) if row else None

    async def create_mailbox(
        self, account_id: AccountId, name: str, special_use: str | None = None
    ) -> Mailbox:
        name = _check_mailbox_name(name)
        events: list[ev.Event] = []

        def fn(tx: Tx) -> Mailbox:
            if tx.execute(
                "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, name)
            ).fetchone():
                raise UserError(f"mailbox {name} already exists")
            mailbox = _insert_mailbox(tx, account_id, name, special_use)
            events.append(ev.MailboxCreated(account_id, mailbox.id, name))
            return mailbox

        return await self._write(fn, events)

    async def delete_mailbox(self, mailbox_id: MailboxId) -> None:
        events: list[ev.Event] = []

        def fn(tx: Tx) -> None:
            row = tx.execute(
                "SELECT account_id, name FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if row is None:
                raise UserError("no such mailbox")
            if row[1] == "INBOX":
                raise UserError("INBOX cannot be deleted")
            bodies = [
                r[0]
                for r in tx.execute(
                    "SELECT DISTINCT body_id FROM messages WHERE mailbox_id = ?", (mailbox_id,)
                )
            ]
            (size,) = tx.execute(
                "SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ?", (mailbox_id,)
            ).fetchone()
            tx.execute("UPDATE accounts SET used_bytes = used_bytes - ? WHERE id = ?", (size, row[0]))
            tx.execute("DELETE FROM messages WHERE mailbox_id = ?", (mailbox_id,))
            tx.execute("DELETE FROM expunged WHERE mailbox_id = ?", (mailbox_id,))
            tx.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
            _collect_bodies(tx, bodies)
            events.append(ev.MailboxDeleted(AccountId(row[0]), mailbox_id, row[1]))

        await self._write(fn, events, large=True)

    async def rename_mailbox(self, mailbox_id: MailboxId, new_name: str) -> Mailbox:
        new_name = _check_mailbox_name(new_name)
        events: list[ev.Event] = []

        def fn(tx: Tx) -> Mailbox:
            row = tx.execute(
                f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if row is None:
                raise UserError("no such mailbox")
            old = _mailbox(row)
            if tx.execute(
                "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?",
                (old.account_id, new_name),
            ).fetchone():
                raise UserError(f"mailbox {new_name} already exists")
            if old.name == "INBOX":
                # RFC 9051 §6.3.6: renaming INBOX moves its messages to a new mailbox and
                # leaves INBOX empty, with the same identity.
                new = _insert_mailbox(tx, old.account_id, new_name, None)
                _move_all(tx, old, new)
                events.append(ev.MailboxCreated(old.account_id, new.id, new_name))
                return new
            tx.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new_name, mailbox_id))
            prefix = old.name + HIERARCHY_SEPARATOR
            children = tx.execute(
                "SELECT id, name FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ?",
                (old.account_id, len(prefix), prefix),
            ).fetchall()
            for child_id, child_name in children:
                renamed = new_name + HIERARCHY_SEPARATOR + child_name[len(prefix):]
                tx.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (renamed, child_id))
                events.append(ev.MailboxRenamed(old.account_id, child_id, child_name, renamed))
            events.append(ev.MailboxRenamed(old.account_id, mailbox_id, old.name, new_name))
            return _mailbox(
                tx.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            )

        return await self._write(fn, events)

    async def set_subscribed(self, account_id: AccountId, name: str, subscribed: bool) -> None:
        def fn(tx: Tx) -> None:
            tx.execute(
                "UPDATE mailboxes SET subscribed = ? WHERE account_id = ? AND name = ?",
                (int(subscribed), account_id, name),
            )

        await self._write(fn)

    async def mailbox_status(self, mailbox_id: MailboxId) -> MailboxStatus:
        def fn(c: sqlite3.Connection) -> MailboxStatus:
            row = c.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise UserError("no such mailbox")
            counts = c.execute(
                "SELECT count(*), coalesce(sum((sysflags & ?) = 0), 0),"
                " coalesce(sum((sysflags & ?) != 0), 0), coalesce(sum(size), 0)"
                " FROM messages WHERE mailbox_id = ?",
                (FLAG_SEEN, FLAG_DELETED, mailbox_id),
            ).fetchone()
            return MailboxStatus(_mailbox(row), counts[0], counts[1], counts[2], counts[3])

        return await self._read(fn)

    # messages -------------------------------------------------------------------

    async def prepare_body(self, raw: bytes) -> PreparedBody:
        """Parse once and write the body durably (before any transaction references it)."""
        if len(raw) <= INLINE_BODY_MAX:
            parsed = parse_message(raw, texts=False)  # the indexer extracts them later
            return PreparedBody(self.blobs.digest(raw), len(raw), parsed, bytes(raw))
        # The file is hashed, written and fsync'd on one thread (all three release the GIL)
        # while the message is parsed, so the fsync waits overlap the parse instead of
        # adding to it (bench/README.md, SMTP).
        put = asyncio.ensure_future(asyncio.to_thread(self.blobs.put, raw))
        try:
            if len(raw) <= INLINE_PARSE_BYTES:
                parsed = parse_message(raw, texts=False)
            else:
                parsed = await asyncio.to_thread(parse_message, raw, texts=False)
        finally:
            sha = await put  # never left running unawaited, even when cancelled
        return PreparedBody(sha, len(raw), parsed)

    async def append(
        self, messages: Sequence[NewMessage], check_quota: bool = True
    ) -> list[Appended]:
        events: list[ev.Event] = []
        now = _now()
        blobs = self.blobs

        def fn(tx: Tx) -> list[Appended]:
            return [
                _append_one(tx, msg.mailbox_id, msg.body, msg.prefix, msg.flags,
                            msg.internal_date if msg.internal_date is not None else now,
                            now, check_quota, blobs, events)
                for msg in messages
            ]

        return await self._write(fn, events, large=len(messages) > LARGE_JOB_ROWS)

    async def deliver(
        self,
        body: PreparedBody,
        copies: Sequence[LocalCopy],
        *,
        atomic: bool,
        forward_from: str = "",
        forward: Sequence[QueuedRecipient] = (),
        envid: str = "",
        ret: str = "",
    ) -> list[Appended | PostierError]:
        """Store ``body`` once and a copy into each account's INBOX (or \\Junk), in one job.

        The accounts and their mailboxes are looked up inside the write transaction, so a
        delivery costs the event loop no lookups.  ``forward``: recipients outside our
        domains (alias targets, submission relay), queued from ``forward_from`` in the same
        transaction with ``envid`` and ``ret`` (RFC 3461).
        ``atomic``: all copies and the forward or nothing — the first failure raises
        CopyFailed (SMTP: never half-deliver).  Otherwise each copy succeeds or fails on
        its own (LMTP: one reply per recipient) and the list holds the error.
        """
        events: list[ev.Event] = []
        now = _now()
        blobs = self.blobs

        def fn(tx: Tx) -> list[Appended | PostierError]:
            results: list[Appended | PostierError] = []
            for index, copy in enumerate(copies):
                mark = len(events)
                try:
                    with contextlib.nullcontext() if atomic else tx.savepoint():
                        mailbox_id, mrow = _delivery_mailbox(tx, copy)
                        results.append(_append_one(tx, mailbox_id, body, copy.prefix,
                                                   frozenset(), now, now, True, blobs, events, mrow))
                except PostierError as exc:
                    if atomic:
                        raise CopyFailed(index, exc) from exc
                    del events[mark:]
                    results.append(exc)
            if forward:
                _enqueue_tx(tx, forward_from, forward, body, blobs, now, envid, ret)
            return results

        results = await self._write(fn, events)
        if forward:
            for listener in self.enqueue_listeners:
                listener()
        return results

    async def list_messages(self, mailbox_id: MailboxId) -> list[MessageInfo]:
        rows = await self._read(
            lambda c: c.execute(
                f"SELECT {_INFO_COLS} FROM messages WHERE mailbox_id = ? ORDER BY uid",
                (mailbox_id,),
            ).fetchall()
        )
        return [_info(r) for r in rows]

    async def fetch_meta(self, mailbox_id: MailboxId, uids: Sequence[Uid]) -> list[MessageMeta]:
        def fn(c: sqlite3.Connection) -> list[MessageMeta]:
            out: list[MessageMeta] = []
            sql = (
                "SELECT m.uid, m.modseq, m.sysflags, m.keywords, m.internal_date, m.size,"
                " m.body_id, m.prefix, b.envelope, b.body, b.bodystructure, b.parts, m.save_date"
                " FROM messages m JOIN bodies b ON b.id = m.body_id"
                " WHERE m.mailbox_id = ? AND m.uid IN (SELECT value FROM json_each(?))"
                " ORDER BY m.uid"
            )
            for start in range(0, len(uids), 5000):
                chunk = "[" + ",".join(str(int(u)) for u in uids[start:start + 5000]) + "]"
                for r in c.execute(sql, (mailbox_id, chunk)):
                    out.append(MessageMeta(_info(r), r[7], r[8], r[9], r[10], r[11], r[12]))
            return out

        return await self._read(fn)

    async def read_body(self, body_id: BodyId) -> bytes:
        row = self._lookup(
            lambda c: c.execute("SELECT sha256, data FROM bodies WHERE id = ?", (body_id,)).fetchone()
        )
        if row is None:
            raise UserError("no such message body")
        return await self._body_bytes(row[0], row[1])

    async def _body_bytes(self, sha256: str, data: bytes | None) -> bytes:
        if data is not None:
            return bytes(data)
        return await asyncio.to_thread(self.blobs.get, sha256)

    async def read_message(self, mailbox_id: MailboxId, uid: Uid) -> bytes | None:
        # A point lookup by key: on the loop's connection (a body kept in its row is at
        # most INLINE_BODY_MAX bytes); only a body file is read on a thread.  Measured
        # with bench/pop3.py: a reader-thread hop per RETR cost more than the read.
        row = self._lookup(
            lambda c: c.execute(
                "SELECT m.prefix, b.sha256, b.data FROM messages m JOIN bodies b ON b.id = m.body_id"
                " WHERE m.mailbox_id = ? AND m.uid = ?",
                (mailbox_id, uid),
            ).fetchone()
        )
        if row is None:
            return None
        body = await self._body_bytes(row[1], row[2])
        return bytes(row[0]) + body if row[0] else body

    async def store_flags(
        self,
        mailbox_id: MailboxId,
        uids: Sequence[Uid],
        mode: FlagMode,
        flags: frozenset[str],
        unchanged_since: ModSeq | None = None,
    ) -> StoreResult:
        events: list[ev.Event] = []
        want_mask, want_kw = flags_to_mask(flags)
        want_keywords = set(want_kw.split(" ")) if want_kw else set()

        def fn(tx: Tx) -> StoreResult:
            mrow = tx.execute(
                "SELECT account_id, highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if mrow is None:
                raise UserError("no such mailbox")
            account_id, modseq = mrow
            new_modseq = modseq + 1
            updated: list[FlagUpdate] = []
            failed: list[Uid] = []
            changed: list[Uid] = []
            for start in range(0, len(uids), 5000):
                chunk = "[" + ",".join(str(int(u)) for u in uids[start:start + 5000]) + "]"
                rows = tx.execute(
                    "SELECT uid, modseq, sysflags, keywords FROM messages WHERE mailbox_id = ?"
                    " AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid",
                    (mailbox_id, chunk),
                ).fetchall()
                for uid, mseq, mask, kw in rows:
                    # RFC 7162 §3.2: UNCHANGEDSINCE fails for messages modified after it.
                    if unchanged_since is not None and mseq > unchanged_since:
                        failed.append(Uid(uid))
                        continue
                    keywords = set(kw.split(" ")) if kw else set()
                    if mode is FlagMode.ADD:
                        nmask, nkw = mask | want_mask, keywords | want_keywords
                    elif mode is FlagMode.REMOVE:
                        nmask, nkw = mask & ~want_mask, keywords - want_keywords
                    else:
                        nmask, nkw = want_mask, set(want_keywords)
                    if nmask == mask and nkw == keywords:
                        updated.append(FlagUpdate(Uid(uid), ModSeq(mseq), mask_to_flags(mask, kw)))
                        continue
                    kw_text = " ".join(sorted(nkw))
                    tx.execute(
                        "UPDATE messages SET sysflags = ?, keywords = ?, modseq = ?"
                        " WHERE mailbox_id = ? AND uid = ?",
                        (nmask, kw_text, new_modseq, mailbox_id, uid),
                    )
                    changed.append(Uid(uid))
                    updated.append(FlagUpdate(Uid(uid), ModSeq(new_modseq), mask_to_flags(nmask, kw_text)))
            if changed:
                tx.execute(
                    "UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (new_modseq, mailbox_id)
                )
                events.append(
                    ev.FlagsChanged(AccountId(account_id), mailbox_id, tuple(changed), ModSeq(new_modseq))
                )
            return StoreResult(tuple(updated), tuple(failed))

        return await self._write(fn, events, large=len(uids) > LARGE_JOB_ROWS)

    async def expunge(
        self, mailbox_id: MailboxId, uids: Sequence[Uid] | None = None, *, only_deleted: bool = True
    ) -> list[Uid]:
        """Remove messages flagged \\Deleted (restricted to ``uids`` when given).

        ``only_deleted=False`` removes ``uids`` whatever their flags, in one transaction
        (POP3's UPDATE state: a crash cannot leave them half-deleted).
        """
        events: list[ev.Event] = []

        def fn(tx: Tx) -> list[Uid]:
            mrow = tx.execute(
                "SELECT account_id, highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,)
            ).fetchone()
            if mrow is None:
                raise UserError("no such mailbox")
            rows = tx.execute(
                "SELECT uid, body_id, size FROM messages WHERE mailbox_id = ?"
                " AND ((sysflags & ?) != 0 OR ?) ORDER BY uid",
                (mailbox_id, FLAG_DELETED, int(not only_deleted)),
            ).fetchall()
            if uids is not None:
                wanted = set(uids)
                rows = [r for r in rows if r[0] in wanted]
            if not rows:
                return []
            gone = _remove_messages(tx, mailbox_id, mrow[0], mrow[1] + 1, rows)
            events.append(ev.Expunged(AccountId(mrow[0]), mailbox_id, tuple(gone), ModSeq(mrow[1] + 1)))
            return gone

        return await self._write(fn, events, large=uids is None or len(uids) > LARGE_JOB_ROWS)

    async def copy(
        self, source: MailboxId, uids: Sequence[Uid], dest: MailboxId, move: bool = False
    ) -> CopyResult:
        events: list[ev.Event] = []
        now = _now()

        def fn(tx: Tx) -> CopyResult:
            src = tx.execute(
                "SELECT account_id, highestmodseq FROM mailboxes WHERE id = ?", (source,)
            ).fetchone()
            dst = tx.execute(
                "SELECT account_id, uidvalidity, uidnext, highestmodseq FROM mailboxes"
                " WHERE id = ?",
                (dest,),
            ).fetchone()
            if src is None or dst is None:
                raise UserError("no such mailbox")
            chunk = "[" + ",".join(str(int(u)) for u in uids) + "]"
            rows = tx.execute(
                "SELECT uid, sysflags, keywords, internal_date, size, body_id, prefix"
                " FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?))"
                " ORDER BY uid",
                (source, chunk),
            ).fetchall()
            if not rows:
                return CopyResult(dst[1], (), ())
            account_id, uidvalidity, uidnext, modseq = dst
            modseq += 1
            src_uids: list[Uid] = []
            dst_uids: list[Uid] = []
            total = 0
            for uid, mask, kw, idate, size, body_id, prefix in rows:
                tx.execute(
                    "INSERT INTO messages (mailbox_id, uid, modseq, sysflags, keywords,"
                    " internal_date, save_date, size, body_id, prefix)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (dest, uidnext, modseq, mask, kw, idate, now, size, body_id, prefix),
                )
                events.append(ev.MessageAdded(AccountId(account_id), dest, Uid(uidnext), ModSeq(modseq)))
                src_uids.append(Uid(uid))
                dst_uids.append(Uid(uidnext))
                uidnext += 1
                total += size
            tx.execute(
                "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
                (uidnext, modseq, dest),
            )
            tx.execute("UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?", (total, account_id))
            if move:
                gone = _remove_messages(
                    tx, source, src[0], src[1] + 1, [(r[0], r[5], r[4]) for r in rows]
                )
                events.append(ev.Expunged(AccountId(src[0]), source, tuple(gone), ModSeq(src[1] + 1)))
            return CopyResult(uidvalidity, tuple(src_uids), tuple(dst_uids))

        return await self._write(fn, events, large=len(uids) > LARGE_JOB_ROWS)

    async def changes_since(self, mailbox_id: MailboxId, modseq: ModSeq) -> Changes:
        def fn(c: sqlite3.Connection) -> Changes:
            row = c.execute("SELECT highestmodseq FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()
            if row is None:
                raise UserError("no such mailbox")
            changed = c.execute(
                f"SELECT {_INFO_COLS} FROM messages WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                (mailbox_id, modseq),
            ).fetchall()
            vanished = c.execute(
                "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                (mailbox_id, modseq),
            ).fetchall()
            return Changes(ModSeq(row[0]), tuple(_info(r) for r in changed), tuple(Uid(r[0]) for r in vanished))

        return await self._read(fn)

    async def search_text(self, mailbox_id: MailboxId, field: str, needle: str) -> list[Uid]:
        """UIDs whose ``field`` contains ``needle`` (case-insensitive substring, RFC 9051 §6.4.4).

        Fields: subject, from, to, cc, bcc, headers, body, text (headers + body).
        Needles of three characters or more (once lowercased) go through the word index:
        it names the messages that hold, for each piece of the needle, a term that could
        contain it (words.py); the index's stored, lowercased text of each candidate is
        then checked for the substring, unless the needle is a single run of term
        characters, for which the index's answer is exact (words.one_run).  Shorter
        needles are matched against the stored header fields and, for bodies, the parsed
        text.
        """
        if field not in FTS_FIELDS:
            raise ValueError(f"unknown search field {field}")
        lowered = needle.lower()
        if len(lowered) < 3:
            return await self._search_short(mailbox_id, field, needle)
        column = _FTS_COLUMN[field]
        columns_filter = "{headers text}" if column is None else column
        # Bodies the index does not hold whole, read BEFORE the index is asked: a body
        # marked indexed here was in index.db before the mark was committed, so the query
        # below sees it; one not marked yet is checked here (indexer.py).
        unindexed = await self._read(lambda c: _unindexed(c, mailbox_id, field))
        key = lowered.encode()

        def verified(c: sqlite3.Connection) -> list[Uid]:
            expression = words.match_expression(c, lowered, "idx.vocab_fts")
            if expression == words.NOTHING:
                return []
            if expression is None:  # no piece narrows: every stored text is checked
                return _stored_matches(c, mailbox_id, field, key)
            match = columns_filter + " : " + expression
            if words.one_run(lowered):  # the index's answer is the exact one
                rows = c.execute(
                    "SELECT m.uid FROM messages m WHERE m.mailbox_id = ? AND m.body_id IN"
                    " (SELECT rowid FROM idx.body_fts WHERE body_fts MATCH ?) ORDER BY m.uid",
                    (mailbox_id, match),
                ).fetchall()
                return [Uid(r[0]) for r in rows]
            return _stored_matches(c, mailbox_id, field, key, match)

        return await self._with_unindexed(unindexed, field, lowered, await self._read(verified))

    async def _with_unindexed(
        self, rows: list[tuple[Any, ...]], field: str, lowered: str, found: list[Uid]
    ) -> list[Uid]:
        """``found`` plus the messages of ``rows`` (bodies not yet in the index, or only in
        part: fulltext_cut) whose field contains the needle, read from the body itself."""
        have = set(found)
        extra: list[Uid] = []
        column = _BODY_COLUMN.get(field)
        for uid, sha, data, *fields in rows:
            if uid in have:
                continue
            if column is not None:  # a header field the bodies row keeps
                if lowered in str(fields[column]).lower():
                    extra.append(Uid(uid))
                continue
            try:
                parsed = parse_message(await self._body_bytes(sha, data))
            except FileNotFoundError:
                continue
            if lowered in _search_haystack(parsed, field).lower():
                extra.append(Uid(uid))
        return sorted(have.union(extra)) if extra else found

    async def _search_short(self, mailbox_id: MailboxId, field: str, needle: str) -> list[Uid]:
        """Needles of one or two characters: too short to narrow through the index.  Header
        fields are read from the bodies rows; texts from the index's stored, lowercased
        values (no parse per message), and bodies it lacks or holds in part whole."""
        lowered = needle.lower()
        column = _BODY_COLUMN.get(field)
        if column is not None:
            rows = await self._read(
                lambda c: c.execute(
                    f"SELECT m.uid, b.{_BODY_COLUMN_NAMES[column]} FROM messages m"
                    " JOIN bodies b ON b.id = m.body_id WHERE m.mailbox_id = ? ORDER BY m.uid",
                    (mailbox_id,),
                ).fetchall()
            )
            return [Uid(r[0]) for r in rows if lowered in r[1].lower()]
        unindexed = await self._read(lambda c: _unindexed(c, mailbox_id, field))  # first
        key = lowered.encode()
        found = await self._read(lambda c: _stored_matches(c, mailbox_id, field, key))
        return await self._with_unindexed(unindexed, field, lowered, found)

    # outbound queue -------------------------------------------------------------

    async def enqueue(
        self,
        sender: str,
        recipients: Sequence[QueuedRecipient],
        body: PreparedBody,
        envid: str = "",
        ret: str = "",
    ) -> int:
        now = _now()
        blobs = self.blobs

        def fn(tx: Tx) -> int:
            return _enqueue_tx(tx, sender, recipients, body, blobs, now, envid, ret)

        queue_id = await self._write(fn)
        for listener in self.enqueue_listeners:
            listener()
        return queue_id

    async def list_queue(self) -> list[QueueEntry]:
        def fn(c: sqlite3.Connection) -> list[QueueEntry]:
            entries: list[QueueEntry] = []
            for row in c.execute(
                "SELECT q.id, q.sender, b.sha256, q.size, q.created, q.envid, q.ret,"
                " q.next_attempt, q.attempts, q.last_error FROM queue q"
                " JOIN bodies b ON b.id = q.body_id ORDER BY q.id"
            ).fetchall():
                rcpts = tuple(
                    QueuedRecipient(r[0], r[1], r[2])
                    for r in c.execute(
                        "SELECT address, notify, orcpt FROM queue_rcpt WHERE queue_id = ?"
                        " ORDER BY address",
                        (row[0],),
                    )
                )
                entries.append(QueueEntry(row[0], row[1], rcpts, *row[2:]))
            return entries

        return await self._read(fn)

    # maintenance ------------------------------------------------------------------

    async def index_status(self) -> IndexStatus:
        """How much of the mail the full-text index holds (``postier index status``)."""
        row = await self._read(
            lambda c: c.execute(
                "SELECT count(*), coalesce(sum(indexed), 0), coalesce(sum(fulltext_cut), 0)"
                " FROM bodies"
            ).fetchone()
        )
        size = sum(
            p.stat().st_size for p in self.data_dir.glob(f"{INDEX_DB}*") if ".broken-" not in p.name
        )
        return IndexStatus(int(row[0]), int(row[1]), int(row[2]), size)

    async def collect_garbage(self, limit: int = 1000) -> int:
        """Drop index entries and files of bodies no message or queue entry references."""
        orphans = await self._read(
            lambda c: c.execute(
                "SELECT body_id, sha256, data FROM orphans LIMIT ?", (limit,)
            ).fetchall()
        )
        done = 0
        blobs = self.blobs
        for body_id, sha, data in orphans:
            in_file = data is None

            def fn(tx: Tx, body_id: int = body_id, sha: str = sha, in_file: bool = in_file) -> None:
                # The index keeps its values: FTS5 removes exactly what it inserted, and
                # nothing when the body was never indexed.
                delete = self._index_delete
                if delete is not None:
                    tx.after_commit.append(lambda: delete(body_id))
                tx.execute("DELETE FROM orphans WHERE body_id = ?", (body_id,))
                # Same content delivered again since: the new row owns the file.
                if in_file and not tx.execute(
                    "SELECT 1 FROM bodies WHERE sha256 = ?", (sha,)
                ).fetchone():
                    blobs.delete(sha)

            await self._write(fn, large=True)
            done += 1
        return done


@dataclass(frozen=True, slots=True)
class IndexStatus:
    bodies: int  # stored message bodies
    indexed: int  # of which the full-text index holds
    cut: int  # of which the index holds the first FTS_TEXT_MAX_CHARS only (SEARCH reads them)
    index_bytes: int  # index.db with its WAL


def _publish_all(bus: ChangeBus, events: list[ev.Event]) -> None:
    for event in events:
        bus.publish(event)


def _check_mailbox_name(name: str) -> str:
    if name.upper() == "INBOX":
        return "INBOX"
    parts = name.split(HIERARCHY_SEPARATOR)
    if not name or any(not p for p in parts) or any(ch in name for ch in "\r\n\0*%"):
        raise UserError(f"invalid mailbox name: {name!r}")
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return HIERARCHY_SEPARATOR.join(parts)


def _next_uidvalidity(tx: Tx) -> int:
    """RFC 9051 §2.3.1.1: UIDVALIDITY must never repeat for a name; we never reuse one."""
    row = tx.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
    value = max(_now(), (row[0] if row else 0) + 1) & 0xFFFFFFFF or 1
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('uidvalidity', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (value,),
    )
    return value


def _append_one(
    tx: Tx,
    mailbox_id: MailboxId,
    body: PreparedBody,
    prefix: bytes,
    flags: frozenset[str],
    internal_date: int,
    now: int,
    check_quota: bool,
    blobs: FileBlobStore,
    events: list[ev.Event],
    mrow: Sequence[Any] | None = None,
) -> Appended:
    """``mrow``: the mailbox's _MAILBOX_ROW columns when the caller has read them already."""
    if mrow is None:
        mrow = tx.execute(
            f"SELECT {_MAILBOX_ROW} FROM mailboxes m JOIN accounts a ON a.id = m.account_id"
            " WHERE m.id = ?",
            (mailbox_id,),
        ).fetchone()
        if mrow is None:
            raise UserError("no such mailbox")
    account_id, uidvalidity, uid, modseq, quota, used = mrow
    size = len(prefix) + body.size
    if check_quota and quota and used + size > quota:
        raise QuotaExceeded(f"mailbox full: {used + size} > quota {quota} bytes")
    body_id = _ensure_body(tx, body, blobs)
    modseq += 1
    mask, keywords = flags_to_mask(flags)
    tx.execute(
        "INSERT INTO messages (mailbox_id, uid, modseq, sysflags, keywords,"
        " internal_date, save_date, size, body_id, prefix)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (mailbox_id, uid, modseq, mask, keywords, internal_date, now, size, body_id, prefix),
    )
    tx.execute(
        "UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?",
        (uid + 1, modseq, mailbox_id),
    )
    tx.execute("UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?", (size, account_id))
    events.append(ev.MessageAdded(AccountId(account_id), mailbox_id, Uid(uid), ModSeq(modseq)))
    return Appended(mailbox_id, uidvalidity, Uid(uid), ModSeq(modseq))


# What _append_one needs of a mailbox and its account, in this order.
_MAILBOX_ROW = (
    "m.account_id, m.uidvalidity, m.uidnext, m.highestmodseq, a.quota_bytes, a.used_bytes"
)


def _delivery_mailbox(tx: Tx, copy: LocalCopy) -> tuple[MailboxId, Sequence[Any] | None]:
    """The mailbox a delivered copy goes to: \\Junk when asked and present, else INBOX;
    with its _MAILBOX_ROW when one query found it (the usual case: one statement)."""
    if not copy.junk:
        found = tx.execute(
            f"SELECT m.id, {_MAILBOX_ROW} FROM accounts a JOIN mailboxes m"
            " ON m.account_id = a.id AND m.name = 'INBOX' WHERE a.address = ?",
            (copy.account.lower(),),
        ).fetchone()
        if found is not None:
            return MailboxId(found[0]), found[1:]
    row = tx.execute("SELECT id FROM accounts WHERE address = ?", (copy.account.lower(),)).fetchone()
    if row is None:
        raise UnknownAccount(f"no such user: {copy.account}")
    account_id = AccountId(row[0])
    found = None
    if copy.junk:
        found = tx.execute(
            "SELECT id FROM mailboxes WHERE account_id = ? AND special_use = ? ORDER BY id LIMIT 1",
            (account_id, "\\Junk"),
        ).fetchone()
    if found is None:
        found = tx.execute(
            "SELECT id FROM mailboxes WHERE account_id = ? AND name = 'INBOX'", (account_id,)
        ).fetchone()
    if found is None:
        return _insert_mailbox(tx, account_id, "INBOX", None).id, None
    return MailboxId(found[0]), None


def _enqueue_tx(
    tx: Tx,
    sender: str,
    recipients: Sequence[QueuedRecipient],
    body: PreparedBody,
    blobs: FileBlobStore,
    now: int,
    envid: str,
    ret: str,
) -> int:
    body_id = _ensure_body(tx, body, blobs)
    cur = tx.execute(
        "INSERT INTO queue (sender, body_id, size, created, envid, ret, next_attempt)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (sender, body_id, body.size, now, envid, ret, now),
    )
    queue_id = int(cur.lastrowid or 0)
    for rcpt in recipients:
        tx.execute(
            "INSERT OR IGNORE INTO queue_rcpt (queue_id, address, notify, orcpt) VALUES (?, ?, ?, ?)",
            (queue_id, rcpt.address, rcpt.notify, rcpt.orcpt),
        )
    return queue_id


def _insert_mailbox(tx: Tx, account_id: AccountId, name: str, special_use: str | None) -> Mailbox:
    uidvalidity = _next_uidvalidity(tx)
    cur = tx.execute(
        "INSERT INTO mailboxes (account_id, name, uidvalidity, special_use) VALUES (?, ?, ?, ?)",
        (account_id, name, uidvalidity, special_use),
    )
    return Mailbox(
        MailboxId(int(cur.lastrowid or 0)), account_id, name, uidvalidity, Uid(1), ModSeq(1),
        special_use, True,
    )


# Trigram indexing cost ~12 ms per 256 KiB of text, parsing that much text ~6 ms more
# (bench/README.md, SMTP); the word index of session 6 costs about a quarter of that.
# The first 64 KiB of a body's text (and of its header text) are indexed, which covers
# nearly all mail whole; a body with more is marked (bodies.fulltext_cut) and SEARCH
# reads it in full (search_text), so results stay exact and the cost of a giant
# plain-text message moves from every delivery to the searches that need it.
FTS_TEXT_MAX_CHARS = 64 * 1024
# What delivery extracts: one character more tells that the index holds only a part.
INDEX_TEXT_LIMIT = FTS_TEXT_MAX_CHARS + 1


_BODY_COLUMN = {"subject": 0, "from": 1, "to": 2, "cc": 3, "bcc": 4}
_BODY_COLUMN_NAMES = ("subject", "from_", "to_", "cc", "bcc")  # in the bodies table


def _unindexed(c: sqlite3.Connection, mailbox_id: MailboxId, field: str) -> list[tuple[Any, ...]]:
    """(uid, sha256, data, subject, from, to, cc, bcc) of the mailbox's messages whose
    bodies the index lacks (not indexed yet) or holds in part (fulltext_cut, for the
    fields that are cut).  Each marked set is small: read through its partial index."""
    sql = (
        "SELECT m.uid, b.sha256, b.data, b.subject, b.from_, b.to_, b.cc, b.bcc"
        " FROM bodies b CROSS JOIN messages m ON m.body_id = b.id"
        " WHERE {} AND m.mailbox_id = ?"
    )
    rows = c.execute(sql.format("b.indexed = 0"), (mailbox_id,)).fetchall()
    if field in ("headers", "body", "text"):
        rows += c.execute(
            sql.format("b.fulltext_cut = 1 AND b.indexed = 1"), (mailbox_id,)
        ).fetchall()
    return rows


def _stored_matches(
    c: sqlite3.Connection, mailbox_id: MailboxId, field: str, key: bytes, match: str | None = None
) -> list[Uid]:
    """UIDs of the mailbox's messages whose value of ``field`` kept by the index holds
    ``key`` (lowercased, UTF-8): every message, or the candidates of the FTS5 ``match``.
    The values are read from the index's copy (body_text: c0..c6 in body_fts's column
    order) as bytes: bytes.find is faster than str decoding plus str.find."""
    sql = (
        f"SELECT m.uid, {_CONTENT_COLUMNS[field]} FROM messages m"
        " JOIN idx.body_text t ON t.id = m.body_id WHERE m.mailbox_id = ?"
    )
    params: tuple[object, ...] = (mailbox_id,)
    if match is not None:
        sql += " AND m.body_id IN (SELECT rowid FROM idx.body_fts WHERE body_fts MATCH ?)"
        params += (match,)
    rows = c.execute(sql + " ORDER BY m.uid", params)
    if field == "text":  # headers, a line break, the body: as parsed (_search_haystack)
        return [Uid(r[0]) for r in rows if key in r[1] + b"\n" + r[2]]
    return [Uid(r[0]) for r in rows if key in r[1]]


def _search_haystack(parsed: ParsedMessage, field: str) -> str:
    if field == "body":
        return parsed.text
    if field == "text":
        return parsed.headers_text + "\n" + parsed.text
    return parsed.headers_text


def index_rows(
    blobs: FileBlobStore, conn: sqlite3.Connection, body_ids: Sequence[int]
) -> list[tuple[int, tuple[str, ...], bool]]:
    """(body id, index values, fulltext_cut) of stored bodies, for the indexer: read from
    their rows (the display fields and MIME tree delivery stored) and their bytes, so the
    texts are extracted here, off the delivery path, without parsing again.  Bodies gone
    meanwhile (collected) or whose file is missing or unreadable are left out."""
    out: list[tuple[int, tuple[str, ...], bool]] = []
    rows = conn.execute(
        "SELECT id, sha256, data, parts, subject, from_, to_, cc, bcc FROM bodies"
        " WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(body_ids)),),
    ).fetchall()
    for body_id, sha, data, parts, *shown in rows:
        try:
            raw = bytes(data) if data is not None else blobs.get(sha)
        except OSError as exc:  # missing or unreadable: the others are indexed
            log.error("body %s: file %s unreadable (%s); not indexed", body_id, sha, exc)
            continue
        out.append((int(body_id), *_index_values(raw, parts, shown)))
    return out


def _index_values(raw: bytes, parts: bytes, shown: list[str]) -> tuple[tuple[str, ...], bool]:
    try:
        text, headers = extract_texts(raw, decode_parts(parts), INDEX_TEXT_LIMIT)
    except Exception:  # a tree from an older version, or a surprise: parse again
        parsed = parse_message(raw, INDEX_TEXT_LIMIT)
        text, headers = parsed.text, parsed.headers_text
    cut = len(text) > FTS_TEXT_MAX_CHARS or len(headers) > FTS_TEXT_MAX_CHARS
    values = (*(str(v or "").lower() for v in shown),
              headers[:FTS_TEXT_MAX_CHARS].lower(), text[:FTS_TEXT_MAX_CHARS].lower())
    return values, cut


def _ensure_body(tx: Tx, body: PreparedBody, blobs: FileBlobStore) -> int:
    """The body's row id; a new row when no body has this content yet.  An inline body
    is inserted at once (a known one leaves the INSERT doing nothing: one statement for
    new mail); a file body is looked up first, its file must still exist for a new row."""
    known = tx.bodies.get(body.sha256)
    if known is not None:
        return known
    body_id = _store_body(tx, body, blobs)
    tx.bodies[body.sha256] = body_id
    return body_id


def _store_body(tx: Tx, body: PreparedBody, blobs: FileBlobStore) -> int:
    if body.inline is None:
        row = tx.execute("SELECT id FROM bodies WHERE sha256 = ?", (body.sha256,)).fetchone()
        if row is not None:
            return int(row[0])
        if not blobs.exists(body.sha256):
            # Collected between prepare_body() and now: the caller must prepare it again.
            raise TemporaryError("message body vanished before commit; try again")
    parsed = body.parsed
    assert isinstance(parsed, ParsedMessage)
    from postier.mail.parse import encode_parts

    cur = tx.execute(
        "INSERT INTO bodies (sha256, size, envelope, body, bodystructure, parts, subject, from_,"
        " to_, cc, bcc, sent_date, message_id, in_reply_to, refs, has_attachment, data,"
        " fulltext_cut) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (sha256) DO NOTHING RETURNING id",
        (body.sha256, body.size, parsed.envelope, parsed.body, parsed.bodystructure,
         encode_parts(parsed.root), parsed.subject, parsed.from_, parsed.to, parsed.cc,
         parsed.bcc, parsed.date, parsed.message_id, parsed.in_reply_to,
         " ".join(parsed.references), int(parsed.has_attachment), body.inline,
         0),  # fulltext_cut: set by the indexer with the mark (index_rows)
    )
    inserted = cur.fetchone()
    if inserted is None:  # the same content is stored already (inline bodies only)
        (known,) = tx.execute("SELECT id FROM bodies WHERE sha256 = ?", (body.sha256,)).fetchone()
        return int(known)
    body_id = int(inserted[0])
    index = tx.index
    if index is not None:  # after COMMIT, to the indexer (indexer.py), which reads the row
        tx.after_commit.append(lambda: index(body_id))
    return body_id


def _remove_messages(
    tx: Tx, mailbox_id: MailboxId, account_id: int, modseq: int, rows: Sequence[Sequence[Any]]
) -> list[Uid]:
    """Delete (uid, body_id, size) rows, remember them for VANISHED, collect bodies."""
    gone = [Uid(r[0]) for r in rows]
    total = sum(r[2] for r in rows)
    tx.conn.executemany(
        "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", [(mailbox_id, u) for u in gone]
    )
    tx.conn.executemany(
        "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
        [(mailbox_id, u, modseq) for u in gone],
    )
    tx.execute("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (modseq, mailbox_id))
    tx.execute("UPDATE accounts SET used_bytes = used_bytes - ? WHERE id = ?", (total, account_id))
    _collect_bodies(tx, {r[1] for r in rows})
    return gone


def _collect_bodies(tx: Tx, body_ids: Sequence[int] | set[int]) -> None:
    """Turn bodies no longer referenced into orphans (their files go in collect_garbage)."""
    for body_id in body_ids:
        if tx.execute("SELECT 1 FROM messages WHERE body_id = ? LIMIT 1", (body_id,)).fetchone():
            continue
        if tx.execute("SELECT 1 FROM queue WHERE body_id = ? LIMIT 1", (body_id,)).fetchone():
            continue
        row = tx.execute("SELECT sha256, data FROM bodies WHERE id = ?", (body_id,)).fetchone()
        if row is None:
            continue
        tx.execute("DELETE FROM bodies WHERE id = ?", (body_id,))
        tx.execute(
            "INSERT OR IGNORE INTO orphans (body_id, sha256, data) VALUES (?, ?, ?)",
            (body_id, row[0], row[1]),
        )


def _move_all(tx: Tx, old: Mailbox, new: Mailbox) -> None:
    rows = tx.execute(
        "SELECT uid, body_id, size FROM messages WHERE mailbox_id = ? ORDER BY uid", (old.id,)
    ).fetchall()
    if not rows:
        return
    modseq = new.highestmodseq + 1
    uid = int(new.uidnext)
    for old_uid, _body, _size in rows:
        tx.execute(
            "INSERT INTO messages (mailbox_id, uid, modseq, sysflags, keywords, internal_date,"
            " save_date, size, body_id, prefix) SELECT ?, ?, ?, sysflags, keywords,"
            " internal_date, save_date, size, body_id, prefix FROM messages"
            " WHERE mailbox_id = ? AND uid = ?",
            (new.id, uid, modseq, old.id, old_uid),
        )
        uid += 1
    tx.execute("UPDATE mailboxes SET uidnext = ?, highestmodseq = ? WHERE id = ?", (uid, modseq, new.id))
    old_modseq = old.highestmodseq + 1
    tx.conn.executemany(
        "DELETE FROM messages WHERE mailbox_id = ? AND uid = ?", [(old.id, r[0]) for r in rows]
    )
    tx.conn.executemany(
        "INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)",
        [(old.id, r[0], old_modseq) for r in rows],
    )
    tx.execute("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (old_modseq, old.id))
