"""The change bus: every committed change to a mailbox is published here.

IMAP sessions (IDLE, NOOP), POP3 and the web subscribe per account and receive events
right after the transaction that made the change has committed.  On one node this is an
in-process fan-out of asyncio queues; across nodes (PostgreSQL, later) LISTEN/NOTIFY
feeds the same interface.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from postier.store.types import AccountId, MailboxId, ModSeq, Uid

MAX_PENDING_EVENTS = 10_000  # a subscriber this far behind is told to resynchronise


@dataclass(frozen=True, slots=True)
class MessageAdded:
    account_id: AccountId
    mailbox_id: MailboxId
    uid: Uid
    modseq: ModSeq


@dataclass(frozen=True, slots=True)
class FlagsChanged:
    account_id: AccountId
    mailbox_id: MailboxId
    uids: tuple[Uid, ...]
    modseq: ModSeq


@dataclass(frozen=True, slots=True)
class Expunged:
    account_id: AccountId
    mailbox_id: MailboxId
    uids: tuple[Uid, ...]
    modseq: ModSeq


@dataclass(frozen=True, slots=True)
class MailboxCreated:
    account_id: AccountId
    mailbox_id: MailboxId
    name: str


@dataclass(frozen=True, slots=True)
class MailboxRenamed:
    account_id: AccountId
    mailbox_id: MailboxId
    old_name: str
    new_name: str


@dataclass(frozen=True, slots=True)
class MailboxDeleted:
    account_id: AccountId
    mailbox_id: MailboxId
    name: str


@dataclass(frozen=True, slots=True)
class Overflow:
    """The subscriber fell behind and lost events; it must re-read its mailbox state."""

    account_id: AccountId


Event = (
    MessageAdded | FlagsChanged | Expunged | MailboxCreated | MailboxRenamed | MailboxDeleted | Overflow
)


class Subscription:
    """Events for one account, in commit order.  Use as an async iterator or ``get()``."""

    def __init__(self, bus: ChangeBus, account_id: AccountId) -> None:
        self._bus = bus
        self.account_id = account_id
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._overflowed = False

    def _put(self, event: Event) -> None:
        if self._overflowed:
            return
        if self._queue.qsize() >= MAX_PENDING_EVENTS:
            self._overflowed = True
            self._queue.put_nowait(Overflow(self.account_id))
            return
        self._queue.put_nowait(event)

    async def get(self) -> Event:
        event = await self._queue.get()
        if isinstance(event, Overflow):
            self._overflowed = False
        return event

    def get_nowait(self) -> Event | None:
        try:
            event = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
        if isinstance(event, Overflow):
            self._overflowed = False
        return event

    def pending(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        self._bus._unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChangeBus:
    def __init__(self) -> None:
        self._subscribers: dict[AccountId, set[Subscription]] = defaultdict(set)
        # Called with every event (e.g. to forward a CLI process's changes to the server).
        self.taps: list[Callable[[Event], None]] = []

    def subscribe(self, account_id: AccountId) -> Subscription:
        sub = Subscription(self, account_id)
        self._subscribers[account_id].add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subscribers.get(sub.account_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.account_id]

    def publish(self, event: Event, *, local: bool = True) -> None:
        """Deliver to subscribers; must be called on the event loop's thread.

        ``local=False`` for events relayed from another process: subscribers get them,
        taps (which forward this process's changes elsewhere) do not.
        """
        for sub in tuple(self._subscribers.get(event.account_id, ())):
            sub._put(event)
        if local:
            for tap in self.taps:
                tap(event)
