"""The outbound queue against remote MX servers on loopback (127.0.0.2 …): an accepting
one, one that temp-fails, one that rejects one recipient of three, one that drops the
connection mid-DATA.  What arrives is checked byte for byte; the clock is injected."""

from __future__ import annotations

import email
import email.policy
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller

from postier.queue import Dsn, QueueRunner, QueueSettings
from postier.store.sqlite import SqliteStore
from postier.store.sqlite.queue import RcptStatus, SqliteQueue
from postier.store.types import QueuedRecipient

from .test_queue_support import RawMx, Recorder, free_port, resolver, start_aiosmtpd

HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
MESSAGE = (
    b"From: Alice <alice@example.org>\r\nTo: bob@accept.test\r\nSubject: hi\r\n"
    b"Message-ID: <q1@example.org>\r\n\r\nHello.\r\n.leading dot\r\n..two\r\nend\r\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = time.time() + 1

    def __call__(self) -> float:
        return self.now


@dataclass
class Bounces:
    dsns: list[Dsn] = field(default_factory=list)

    async def __call__(self, dsn: Dsn) -> None:
        self.dsns.append(dsn)


@dataclass
class World:
    store: SqliteStore
    runner: QueueRunner
    queue: SqliteQueue
    clock: Clock
    bounces: Bounces
    accept: Recorder
    tempfail: Recorder
    reject: Recorder
    raw: RawMx

    async def enqueue(self, rcpts: list[str], sender: str = "alice@example.org",
                      data: bytes = MESSAGE, notify: str = "", ret: str = "") -> int:
        body = await self.store.prepare_body(data)
        return await self.store.enqueue(sender, [QueuedRecipient(r, notify) for r in rcpts],
                                        body, "", ret)


@pytest.fixture
async def world(store: SqliteStore) -> AsyncIterator[World]:
    port = free_port(HOSTS)
    accept, tempfail, reject = Recorder(), Recorder(tempfail=True), Recorder(
        reject={"b2@reject.test"})
    controllers = [start_aiosmtpd(h, port, rec) for h, rec in
                   zip(HOSTS[:3], (accept, tempfail, reject), strict=True)]
    raw = RawMx(HOSTS[3], port, drop_in_data=40)
    await raw.start()
    res = resolver({"accept.test": HOSTS[0], "tempfail.test": HOSTS[1],
                    "reject.test": HOSTS[2], "raw.test": HOSTS[3]},
                   lambda r: r.add("nomail.test", "MX", (0, ".")))
    clock, bounces = Clock(), Bounces()
    settings = QueueSettings(hostname="mail.example.org", port=port, connect_timeout_s=5,
                             command_timeout_s=10, data_timeout_s=10, delay_warning_after_s=0,
                             stop_grace_s=2)
    runner = QueueRunner(store, settings, res, deliver_bounce=bounces, clock=clock)
    try:
        yield World(store, runner, SqliteQueue(store), clock, bounces, accept, tempfail,
                    reject, raw)
    finally:
        await runner.stop()
        await raw.stop()
        for c in controllers:
            c.stop()


def parse(raw: bytes) -> email.message.EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, email.message.EmailMessage)
    return msg

def groups_of(part: Message) -> list[Message]:
    """The field groups of a message/delivery-status part (or the message of a
    message/rfc822 part), as the stdlib parses them."""
    payload = part.get_payload()
    assert isinstance(payload, list)
    return [m for m in payload if isinstance(m, Message)]



async def test_accepting_server_gets_message_byte_for_byte(world: World) -> None:
    qid = await world.enqueue(["bob@accept.test", "carol@accept.test"])
    assert await world.runner.run_once() == 1
    assert len(world.accept.messages) == 1  # one transaction carries both recipients
    got = world.accept.messages[0]
    assert got.sender == "alice@example.org"
    assert sorted(got.rcpts) == ["bob@accept.test", "carol@accept.test"]
    assert got.data == MESSAGE
    assert await world.queue.get(qid) is None  # finished and deleted
    assert world.bounces.dsns == []


async def test_body_collected_when_entry_finishes(world: World) -> None:
    await world.enqueue(["bob@accept.test"])
    await world.runner.run_once()
    count = await world.store.readers.run(
        lambda c: c.execute("SELECT count(*) FROM bodies").fetchone()[0])
    assert count == 0


async def test_tempfail_is_retried_after_backoff(world: World) -> None:
    qid = await world.enqueue(["dave@tempfail.test"])
    await world.runner.run_once()
    entry = await world.queue.get(qid)
    assert entry is not None and entry.attempts == 1
    assert entry.next_attempt == int(world.clock.now) + 300  # first back-off step: 5 m
    assert entry.recipients[0].status is RcptStatus.PENDING
    assert "451 4.3.0" in entry.recipients[0].last_error
    assert world.bounces.dsns == []
    # Not due yet: nothing happens.
    world.clock.now += 299
    assert await world.runner.run_once() == 0
    world.tempfail.tempfail = False
    world.clock.now += 1
    assert await world.runner.run_once() == 1
    assert [m.data for m in world.tempfail.messages] == [MESSAGE]
    assert await world.queue.get(qid) is None


async def test_second_failure_waits_longer_and_expiry_bounces(world: World) -> None:
    qid = await world.enqueue(["dave@tempfail.test"])
    await world.runner.run_once()
    world.clock.now += 300
    await world.runner.run_once()
    entry = await world.queue.get(qid)
    assert entry is not None and entry.attempts == 2
    assert entry.next_attempt == int(world.clock.now) + 600
    world.clock.now += 5 * 86400
    await world.runner.run_once()
    assert await world.queue.get(qid) is None
    [dsn] = world.bounces.dsns
    report = groups_of(list(parse(dsn.message).iter_parts())[1])[1]
    assert report["Action"] == "failed" and report["Status"] == "4.4.7"


async def test_one_of_three_rejected_gets_dsn_for_that_one_only(world: World) -> None:
    qid = await world.enqueue(["b1@reject.test", "b2@reject.test", "b3@reject.test"],
                              ret="HDRS")
    await world.runner.run_once()
    [got] = world.reject.messages
    assert sorted(got.rcpts) == ["b1@reject.test", "b3@reject.test"]
    assert got.data == MESSAGE
    [dsn] = world.bounces.dsns
    assert dsn.recipient == "alice@example.org"
    parts = list(parse(dsn.message).iter_parts())
    groups = groups_of(parts[1])
    assert len(groups) == 2  # per-message fields + one recipient
    assert groups[1]["Final-Recipient"] == "rfc822; b2@reject.test"
    assert groups[1]["Status"] == "5.1.1"
    assert groups[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user here"
    assert groups[1]["Remote-MTA"] == "dns; mx.reject.test"
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert await world.queue.get(qid) is None


async def test_no_dsn_to_null_sender_or_notify_never(world: World) -> None:
    await world.enqueue(["b2@reject.test"], sender="")
    await world.enqueue(["b2@reject.test"], notify="NEVER")
    await world.runner.run_once()
    assert world.bounces.dsns == []
    assert await world.queue.list() == []


async def test_drop_mid_data_is_retried_not_lost_not_duplicated(world: World) -> None:
    data = MESSAGE + b"x" * 5000 + b"\r\n"
    qid = await world.enqueue(["erin@raw.test"], data=data)
    await world.runner.run_once()
    assert world.raw.messages == []
    entry = await world.queue.get(qid)
    assert entry is not None and entry.recipients[0].status is RcptStatus.PENDING
    assert "connection lost" in entry.recipients[0].last_error
    world.clock.now += 300
    await world.runner.run_once()
    assert [m.data for m in world.raw.messages] == [data]
    assert await world.queue.get(qid) is None
    world.clock.now += 3600
    assert await world.runner.run_once() == 0
    assert len(world.raw.messages) == 1


async def test_pipelining_and_chunking_used_when_offered(world: World) -> None:
    world.raw.drop_in_data = 0
    await world.enqueue(["f@raw.test", "g@raw.test"])
    await world.runner.run_once()
    [got] = world.raw.messages
    assert got.data == MESSAGE
    transcript = world.raw.transcripts[0]
    assert any(line.startswith(b"BDAT ") for line in transcript)
    assert not any(line.startswith(b"DATA") for line in transcript)
    mail = next(line for line in transcript if line.startswith(b"MAIL"))
    assert b"SIZE=" in mail


async def test_null_mx_fails_at_once(world: World) -> None:
    await world.enqueue(["h@nomail.test"])
    await world.runner.run_once()
    [dsn] = world.bounces.dsns
    groups = groups_of(list(parse(dsn.message).iter_parts())[1])
    assert groups[1]["Status"] == "5.1.10"
    assert await world.queue.list() == []


async def test_one_connection_per_domain_for_many_messages(world: World) -> None:
    world.raw.drop_in_data = 0
    for i in range(5):
        await world.enqueue([f"m{i}@raw.test"])
    await world.runner.run_once()
    assert len(world.raw.messages) == 5
    assert len(world.raw.transcripts) <= world.runner.settings.max_connections_per_domain


async def test_delay_warning_once(world: World) -> None:
    runner = QueueRunner(world.store, QueueSettings(
        hostname="mail.example.org", port=world.runner.settings.port, delay_warning_after_s=200,
        connect_timeout_s=5), world.runner.resolver, deliver_bounce=world.bounces,
        clock=world.clock)
    qid = await world.enqueue(["dave@tempfail.test"])
    await runner.run_once()
    assert world.bounces.dsns == []
    world.clock.now += 300
    await runner.run_once()
    [dsn] = world.bounces.dsns
    assert "Delayed" in parse(dsn.message)["Subject"]
    entry = await world.queue.get(qid)
    assert entry is not None and entry.recipients[0].status is RcptStatus.WARNED
    world.clock.now += 600
    await runner.run_once()
    assert len(world.bounces.dsns) == 1  # warned once only


async def test_background_loop_and_stop(world: World) -> None:
    await world.runner.start()
    await world.enqueue(["bob@accept.test"])
    world.runner.wake()
    for _ in range(100):
        if world.accept.messages:
            break
        await __import__("asyncio").sleep(0.05)
    await world.runner.stop()
    assert [m.data for m in world.accept.messages] == [MESSAGE]


async def test_cli_operations(world: World) -> None:
    qid = await world.enqueue(["dave@tempfail.test"])
    other = await world.enqueue(["x@tempfail.test"])
    await world.runner.run_once()
    listed = await world.queue.list()
    assert [e.id for e in listed] == [qid, other]
    assert await world.queue.retry([qid], int(world.clock.now)) == 1
    assert (await world.queue.get(qid)).next_attempt == int(world.clock.now)  # type: ignore[union-attr]
    assert await world.queue.delete([other]) == 1
    world.tempfail.tempfail = False
    assert await world.runner.flush() == 1
    assert await world.queue.list() == []


async def test_signer_header_prepended(world: World) -> None:
    seen: list[str] = []

    async def signer(sender: str, message: bytes) -> bytes:
        seen.append(sender)
        assert message == MESSAGE
        return b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; b=fake\r\n"

    runner = QueueRunner(world.store, world.runner.settings, world.runner.resolver,
                         signer=signer, deliver_bounce=world.bounces, clock=world.clock)
    await world.enqueue(["bob@accept.test"])
    await runner.run_once()
    assert seen == ["alice@example.org"]
    assert [m.data for m in world.accept.messages] == [
        b"DKIM-Signature: v=1; a=rsa-sha256; d=example.org; b=fake\r\n" + MESSAGE
    ]


async def test_opportunistic_starttls(store: SqliteStore) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mx.tls.test").configure_cert(server_ctx)
    port = free_port(["127.0.0.6"])
    rec = Recorder()
    seen_tls: list[bool] = []

    class TlsRecorder(Recorder):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            seen_tls.append(session.ssl is not None)
            return await rec.handle_DATA(server, session, envelope)

    c = Controller(TlsRecorder(), hostname="127.0.0.6", port=port, tls_context=server_ctx,
                   require_starttls=True, ready_timeout=5.0)
    c.start()
    try:
        runner = QueueRunner(store, QueueSettings(port=port, connect_timeout_s=5),
                             resolver({"tls.test": "127.0.0.6"}), clock=Clock())
        body = await store.prepare_body(MESSAGE)
        await store.enqueue("alice@example.org", [QueuedRecipient("t@tls.test")], body)
        await runner.run_once()
        assert seen_tls == [True]  # self-signed by an unknown CA: still used (RFC 7435)
        assert [m.data for m in rec.messages] == [MESSAGE]
        assert await SqliteQueue(store).list() == []
    finally:
        c.stop()


async def test_real_dns_server_on_loopback(world: World) -> None:
    from dnslib.server import DNSLogger, DNSServer  # type: ignore[import-untyped]
    from dnslib.zoneresolver import ZoneResolver  # type: ignore[import-untyped]

    from postier.mailauth.dns import DnsPythonResolver

    zone = ("dns.test. 60 IN MX 20 backup.dns.test.\n"
            "dns.test. 60 IN MX 10 mx.dns.test.\n"
            f"mx.dns.test. 60 IN A {HOSTS[0]}\n"
            "backup.dns.test. 60 IN A 127.0.0.9\n")
    port = free_port(["127.0.0.1"])
    server = DNSServer(ZoneResolver(zone), port=port, address="127.0.0.1",
                       logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"))
    server.start_thread()
    try:
        runner = QueueRunner(world.store, world.runner.settings,
                             DnsPythonResolver(["127.0.0.1"], port=port, timeout_s=2.0),
                             deliver_bounce=world.bounces, clock=world.clock)
        await world.enqueue(["zed@dns.test"])
        await runner.run_once()
        assert [m.rcpts for m in world.accept.messages] == [["zed@dns.test"]]
        assert await world.queue.list() == []
    finally:
        server.stop()


async def test_recipient_already_delivered_is_not_sent_again(world: World) -> None:
    """After a crash between two recipients' results, only the undelivered one goes."""
    from postier.store.sqlite.queue import RcptUpdate

    qid = await world.enqueue(["a1@accept.test", "a2@accept.test"])
    await world.queue.mark(qid, [RcptUpdate("a1@accept.test", RcptStatus.SENT, "2.0.0 done")])
    await world.runner.run_once()
    assert [m.rcpts for m in world.accept.messages] == [["a2@accept.test"]]
    assert await world.queue.get(qid) is None
