"""The outbound queue's operations on SQLite: claim, per-recipient results, back-off, CLI.

Rows are written by the SMTP server through ``SqliteStore.enqueue``; this module owns
everything after that.  Every write goes through the store's writer thread (group
commit, synchronous=FULL), so a recipient marked delivered stays delivered after a
crash and is never sent again.

Recipient states (``queue_rcpt.status``):

- ``pending``   — still to deliver;
- ``warned``    — still to deliver, a delay DSN has been sent (RFC 3464 Action: delayed);
- ``delivered`` — accepted by the remote; a "relayed" DSN is still owed to the sender;
- ``failed``    — permanently failed; a failure DSN is still owed to the sender;
- ``sent``      — accepted by the remote, nothing more owed;
- ``bounced``   — permanently failed, DSN sent (or none wanted: NOTIFY=NEVER, sender <>).

An entry is finished when every recipient is ``sent`` or ``bounced``; it is then deleted
and its body collected like a deleted message's.  DSNs are delivered *before* the state
moves from ``failed``/``delivered`` to ``bounced``/``sent``: a crash in between sends a
DSN twice rather than never (RFC 5321 §6.1 prefers duplicates to loss).
"""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from postier.store.sqlite.store import SqliteStore, _collect_bodies
from postier.store.sqlite.writer import Tx
from postier.store.types import BodyId


class RcptStatus(enum.Enum):
    PENDING = "pending"
    WARNED = "warned"
    DELIVERED = "delivered"
    FAILED = "failed"
    SENT = "sent"
    BOUNCED = "bounced"

    @property
    def to_deliver(self) -> bool:
        return self in (RcptStatus.PENDING, RcptStatus.WARNED)

    @property
    def dsn_owed(self) -> bool:
        return self in (RcptStatus.DELIVERED, RcptStatus.FAILED)

    @property
    def final(self) -> bool:
        return self in (RcptStatus.SENT, RcptStatus.BOUNCED)


_TO_DELIVER = ("pending", "warned")
_NOT_FINAL = ("pending", "warned", "delivered", "failed")


@dataclass(frozen=True, slots=True)
class OutRecipient:
    address: str
    notify: str  # RFC 3461 NOTIFY as given ("" = default FAILURE,DELAY), comma-separated
    orcpt: str  # RFC 3461 ORCPT "type;address", "" = none
    status: RcptStatus
    last_error: str

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


@dataclass(frozen=True, slots=True)
class OutEntry:
    id: int
    sender: str
    body_id: BodyId
    size: int
    created: int
    envid: str
    ret: str
    next_attempt: int
    attempts: int
    last_error: str
    recipients: tuple[OutRecipient, ...]

    def to_deliver(self) -> list[OutRecipient]:
        return [r for r in self.recipients if r.status.to_deliver]


@dataclass(frozen=True, slots=True)
class RcptUpdate:
    """A new state for one recipient of an entry, with the reason shown by `queue show`."""

    address: str
    status: RcptStatus
    error: str = ""


_ENTRY_COLS = (
    "id, sender, body_id, size, created, envid, ret, next_attempt, attempts, last_error"
)


def _entries(conn: sqlite3.Connection, rows: Iterable[Sequence[Any]]) -> list[OutEntry]:
    out: list[OutEntry] = []
    for row in rows:
        rcpts = tuple(
            OutRecipient(r[0], r[1], r[2], RcptStatus(r[3]), r[4])
            for r in conn.execute(
                "SELECT address, notify, orcpt, status, last_error FROM queue_rcpt"
                " WHERE queue_id = ? ORDER BY address",
                (row[0],),
            )
        )
        out.append(
            OutEntry(
                int(row[0]), str(row[1]), BodyId(int(row[2])),
                int(row[3]), int(row[4]), str(row[5]), str(row[6]),
                int(row[7]), int(row[8]), str(row[9]), rcpts,
            )
        )
    return out


def _delete_entry(tx: Tx, queue_id: int) -> bool:
    row = tx.execute("SELECT body_id FROM queue WHERE id = ?", (queue_id,)).fetchone()
    if row is None:
        return False
    tx.execute("DELETE FROM queue_rcpt WHERE queue_id = ?", (queue_id,))
    tx.execute("DELETE FROM queue WHERE id = ?", (queue_id,))
    _collect_bodies(tx, {int(row[0])})
    return True


class SqliteQueue:
    """Queue operations for the runner and for ``postier queue …``."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store

    # the runner ---------------------------------------------------------------------

    async def claim(
        self, now: int, lease_s: int, limit: int = 1000, exclude: Iterable[int] = ()
    ) -> list[OutEntry]:
        """Take due entries (next_attempt <= now) and push their next_attempt ``lease_s``
        ahead, so that another loop (or node) does not take them while they are in flight.
        A crash leaves them due again when the lease runs out.  Entries that only owe a
        DSN are claimed too (the runner settles them without connecting anywhere)."""
        skip = sorted(set(exclude))

        def fn(tx: Tx) -> list[OutEntry]:
            rows = tx.execute(
                f"SELECT {_ENTRY_COLS} FROM queue WHERE next_attempt <= ?"
                " AND id NOT IN (SELECT value FROM json_each(?))"
                " ORDER BY next_attempt, id LIMIT ?",
                (now, "[" + ",".join(map(str, skip)) + "]", limit),
            ).fetchall()
            tx.conn.executemany(
                "UPDATE queue SET next_attempt = ? WHERE id = ?",
                [(now + lease_s, r[0]) for r in rows],
            )
            return _entries(tx.conn, rows)

        return await self.store.writer.run(fn)

    async def mark(self, queue_id: int, updates: Sequence[RcptUpdate]) -> None:
        """Record per-recipient outcomes durably (before anything else happens to them)."""

        def fn(tx: Tx) -> None:
            tx.conn.executemany(
                "UPDATE queue_rcpt SET status = ?, last_error = ? WHERE queue_id = ? AND address = ?",
                [(u.status.value, u.error, queue_id, u.address) for u in updates],
            )

        if updates:
            await self.store.writer.run(fn)

    async def reschedule(
        self, queue_id: int, next_attempt: int, last_error: str, count_attempt: bool = True
    ) -> None:
        def fn(tx: Tx) -> None:
            tx.execute(
                "UPDATE queue SET next_attempt = ?, last_error = ?, attempts = attempts + ?"
                " WHERE id = ?",
                (next_attempt, last_error, int(count_attempt), queue_id),
            )

        await self.store.writer.run(fn)

    async def finish_if_done(self, queue_id: int) -> bool:
        """Delete the entry (and collect its body) when no recipient needs anything more."""

        def fn(tx: Tx) -> bool:
            open_ = tx.execute(
                "SELECT 1 FROM queue_rcpt WHERE queue_id = ? AND status IN (?, ?, ?, ?) LIMIT 1",
                (queue_id, *_NOT_FINAL),
            ).fetchone()
            if open_ is not None:
                return False
            return _delete_entry(tx, queue_id)

        return await self.store.writer.run(fn)

    async def read_body(self, entry: OutEntry) -> bytes:
        return await self.store.read_body(entry.body_id)

    async def next_due(self) -> int | None:
        """The earliest next_attempt in the queue (None when the queue is empty)."""
        row = await self.store.readers.run(
            lambda c: c.execute("SELECT min(next_attempt) FROM queue").fetchone()
        )
        return None if row is None or row[0] is None else int(row[0])

    # the CLI --------------------------------------------------------------------------

    async def list(self) -> list[OutEntry]:
        def fn(c: sqlite3.Connection) -> list[OutEntry]:
            rows = c.execute(f"SELECT {_ENTRY_COLS} FROM queue ORDER BY id").fetchall()
            return _entries(c, rows)

        return await self.store.readers.run(fn)

    async def get(self, queue_id: int) -> OutEntry | None:
        def fn(c: sqlite3.Connection) -> list[OutEntry]:
            rows = c.execute(f"SELECT {_ENTRY_COLS} FROM queue WHERE id = ?", (queue_id,)).fetchall()
            return _entries(c, rows)

        found = await self.store.readers.run(fn)
        return found[0] if found else None

    async def delete(self, queue_ids: Sequence[int]) -> int:
        """Remove entries without any DSN (the admin's decision); returns how many."""

        def fn(tx: Tx) -> int:
            return sum(_delete_entry(tx, qid) for qid in queue_ids)

        return await self.store.writer.run(fn)

    async def retry(self, queue_ids: Sequence[int] | None, now: int) -> int:
        """Make entries due now (all of them when ``queue_ids`` is None); returns how many.
        The back-off counter is kept: a retry by hand is an extra attempt."""

        def fn(tx: Tx) -> int:
            if queue_ids is None:
                return tx.execute("UPDATE queue SET next_attempt = ?", (now,)).rowcount
            return sum(
                tx.execute("UPDATE queue SET next_attempt = ? WHERE id = ?", (now, qid)).rowcount
                for qid in queue_ids
            )

        return await self.store.writer.run(fn)
