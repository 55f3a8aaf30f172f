"""Events carried between processes: encoding, garbage, and the socket end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path

from postier.auth.limiter import LoginAttempt
from postier.store import bus as ev
from postier.store import relay
from postier.store.types import AccountId, MailboxId, ModSeq, Uid

EVENTS: list[ev.Event] = [
    ev.MessageAdded(AccountId(1), MailboxId(2), Uid(3), ModSeq(4)),
    ev.FlagsChanged(AccountId(1), MailboxId(2), (Uid(3), Uid(5)), ModSeq(6)),
    ev.Expunged(AccountId(1), MailboxId(2), (Uid(3),), ModSeq(7)),
    ev.MailboxCreated(AccountId(1), MailboxId(9), "Work"),
    ev.MailboxRenamed(AccountId(1), MailboxId(9), "Work", "Job"),
    ev.MailboxDeleted(AccountId(1), MailboxId(9), "Job"),
]


def test_every_event_round_trips() -> None:
    for event in EVENTS:
        assert relay.decode(relay.encode(event)) == event


def test_garbage_is_ignored() -> None:
    for line in [b"", b"{", b"[]", b'{"type": "Overflow", "account_id": 1}',
                 b'{"type": "MessageAdded", "account_id": 1}', b'{"type": "Nope"}', b"\xff\xfe",
                 b'{"type": "LoginAttempt", "remote_ip": 1, "account": "", "ok": false}',
                 b'{"type": "LoginAttempt", "remote_ip": "192.0.2.1", "account": "", "ok": 0}']:
        assert relay.decode(line) is None


async def test_login_outcomes_go_to_the_limiter_not_the_bus(tmp_path: Path) -> None:
    """Between workers the relay also carries login outcomes (one failed-login count for
    every worker); they reach ``on_login``, never a mailbox subscriber."""
    attempts = [LoginAttempt("192.0.2.1", "bob@example.org", False),
                LoginAttempt("2001:db8::1", "", False), LoginAttempt("192.0.2.1", "bob@example.org", True)]
    for attempt in attempts:
        assert relay.decode(relay.encode(attempt)) == attempt
    bus = ev.ChangeBus()
    server = relay.EventRelay(bus, tmp_path)
    got: list[LoginAttempt] = []
    server.on_login = got.append
    await server.start()
    sub = bus.subscribe(AccountId(1))
    try:
        forwarder = relay.PeerForwarder(tmp_path, worker=1, workers=2)  # to worker 0
        forwarder.start()
        try:
            for attempt in attempts:
                forwarder(attempt)
            forwarder(EVENTS[0])
            assert await asyncio.wait_for(sub.get(), 2) == EVENTS[0]  # sent after them
        finally:
            await forwarder.stop()
        assert got == attempts
    finally:
        sub.close()
        await server.stop()


async def test_socket_carries_events_into_the_bus(tmp_path: Path) -> None:
    bus = ev.ChangeBus()
    server = relay.EventRelay(bus, tmp_path)
    await server.start()
    sub = bus.subscribe(AccountId(1))
    try:
        assert (tmp_path / relay.SOCKET_NAME).stat().st_mode & 0o777 == 0o600
        sent = await asyncio.to_thread(relay.forward, tmp_path, EVENTS)
        assert sent
        got = [await asyncio.wait_for(sub.get(), 2) for _ in EVENTS]
        assert got == EVENTS
    finally:
        sub.close()
        await server.stop()
    assert not relay.forward(tmp_path, EVENTS)  # no server: nothing sent, no error


async def test_workers_forward_their_own_events_and_not_relayed_ones(tmp_path: Path) -> None:
    buses = [ev.ChangeBus(), ev.ChangeBus()]
    relays = [relay.EventRelay(bus, tmp_path, worker=i) for i, bus in enumerate(buses)]
    forwarders = [relay.PeerForwarder(tmp_path, i, 2) for i in range(2)]
    for r in relays:
        await r.start()
    for bus, fwd in zip(buses, forwarders, strict=True):
        bus.taps.append(fwd)
        fwd.start()
    subs = [bus.subscribe(AccountId(1)) for bus in buses]
    try:
        buses[0].publish(EVENTS[0])  # a change made by worker 0
        assert await asyncio.wait_for(subs[0].get(), 2) == EVENTS[0]
        assert await asyncio.wait_for(subs[1].get(), 2) == EVENTS[0]
        buses[1].publish(EVENTS[1])
        assert await asyncio.wait_for(subs[0].get(), 2) == EVENTS[1]
        assert await asyncio.wait_for(subs[1].get(), 2) == EVENTS[1]
        await asyncio.sleep(0.2)
        assert subs[0].pending() == 0 and subs[1].pending() == 0  # no echo back and forth
    finally:
        for sub in subs:
            sub.close()
        for fwd in forwarders:
            await fwd.stop()
        for r in relays:
            await r.stop()
