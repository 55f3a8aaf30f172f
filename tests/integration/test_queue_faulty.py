"""Deliberately faulty receivers (issue 6): one that speaks no TLS, one that offers an
expired certificate, one that closes the connection during the greeting.  Everything on
127.0.0.0/8."""

from __future__ import annotations

import asyncio
import datetime
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller

from postier.mailauth.dns import FakeResolver
from postier.queue import QueueRunner, QueueSettings
from postier.store.sqlite import SqliteStore
from postier.store.sqlite.queue import RcptStatus, SqliteQueue
from postier.store.types import QueuedRecipient

from .test_queue_support import Recorder, free_port, resolver

MESSAGE = (
    b"From: Alice <alice@example.org>\r\nTo: t@faulty.test\r\nSubject: hi\r\n"
    b"Message-ID: <f1@example.org>\r\n\r\nHello.\r\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = time.time() + 1

    def __call__(self) -> float:
        return self.now


class TlsRecorder(Recorder):
    """Records whether each message came over TLS."""

    def __init__(self) -> None:
        super().__init__()
        self.tls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.tls.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


def expired_server_context(ca: trustme.CA, name: str) -> ssl.SSLContext:
    """A server context whose certificate (for ``name``, by ``ca``) expired yesterday."""
    now = datetime.datetime.now(datetime.UTC)
    cert = ca.issue_cert(name, not_before=now - datetime.timedelta(days=30),
                         not_after=now - datetime.timedelta(days=1))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


async def enqueue(store: SqliteStore, rcpt: str, data: bytes = MESSAGE) -> int:
    body = await store.prepare_body(data)
    return await store.enqueue("alice@example.org", [QueuedRecipient(rcpt)], body)


class GreetingCloser:
    """A remote that closes during the greeting: ``partial`` writes the first line of a
    multi-line 220 and then closes; otherwise it closes without a word."""

    def __init__(self, host: str, port: int, partial: bool) -> None:
        self.host, self.port, self.partial = host, port, partial
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._session, self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _session(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.partial:
            w.write(b"220-faulty.test ESMTP but\r\n")
            await w.drain()
        w.close()


@pytest.fixture
async def controllers() -> AsyncIterator[list[Controller]]:
    started: list[Controller] = []
    yield started
    for c in started:
        c.stop()


async def test_receiver_without_tls_gets_plain_text(store: SqliteStore,
                                                    controllers: list[Controller]) -> None:
    port = free_port(["127.0.0.7"])
    rec = TlsRecorder()
    c = Controller(rec, hostname="127.0.0.7", port=port, ready_timeout=5.0)  # no tls_context
    c.start()
    controllers.append(c)
    runner = QueueRunner(store, QueueSettings(port=port, connect_timeout_s=5),
                         resolver({"faulty.test": "127.0.0.7"}), clock=Clock())
    await enqueue(store, "t@faulty.test")
    await runner.run_once()
    assert rec.tls == [False]  # opportunistic TLS: no STARTTLS offered → plain text
    assert [m.data for m in rec.messages] == [MESSAGE]
    assert await SqliteQueue(store).list() == []


async def test_expired_certificate_opportunistic_still_delivered(
        store: SqliteStore, controllers: list[Controller]) -> None:
    ca = trustme.CA()
    port = free_port(["127.0.0.8"])
    rec = TlsRecorder()
    c = Controller(rec, hostname="127.0.0.8", port=port,
                   tls_context=expired_server_context(ca, "mx.faulty.test"),
                   require_starttls=True, ready_timeout=5.0)
    c.start()
    controllers.append(c)
    runner = QueueRunner(store, QueueSettings(port=port, connect_timeout_s=5),
                         resolver({"faulty.test": "127.0.0.8"}), clock=Clock())
    await enqueue(store, "t@faulty.test")
    await runner.run_once()
    assert rec.tls == [True]  # encrypted, unverified (RFC 7435)
    assert [m.data for m in rec.messages] == [MESSAGE]
    assert await SqliteQueue(store).list() == []


@pytest.mark.parametrize("partial", [False, True], ids=["silent", "half-greeting"])
async def test_close_during_greeting_is_deferred(store: SqliteStore, partial: bool) -> None:
    port = free_port(["127.0.0.9"])
    closer = GreetingCloser("127.0.0.9", port, partial)
    await closer.start()
    try:
        clock = Clock()
        runner = QueueRunner(store, QueueSettings(port=port, connect_timeout_s=5,
                                                  command_timeout_s=5),
                             resolver({"faulty.test": "127.0.0.9"}), clock=clock)
        qid = await enqueue(store, "t@faulty.test")
        await runner.run_once()
        entry = await SqliteQueue(store).get(qid)
        assert entry is not None and entry.attempts == 1
        [r] = entry.recipients
        assert r.status is RcptStatus.PENDING
        assert r.last_error.startswith("4.4.2") and "connection lost" in r.last_error
        assert entry.next_attempt == int(clock.now) + 300
        assert closer.connections == 1  # no plain-text retry: TLS was not the problem
    finally:
        await closer.stop()


async def test_close_during_greeting_falls_back_to_next_mx(
        store: SqliteStore, controllers: list[Controller]) -> None:
    port = free_port(["127.0.0.9", "127.0.0.10"])
    closer = GreetingCloser("127.0.0.9", port, partial=False)
    await closer.start()
    rec = TlsRecorder()
    c = Controller(rec, hostname="127.0.0.10", port=port, ready_timeout=5.0)
    c.start()
    controllers.append(c)
    try:
        def zone(r: FakeResolver) -> None:
            r.add("faulty.test", "MX", (10, "mx1.faulty.test"))
            r.add("faulty.test", "MX", (20, "mx2.faulty.test"))
            r.add("mx1.faulty.test", "A", "127.0.0.9")
            r.add("mx2.faulty.test", "A", "127.0.0.10")

        res = resolver({}, zone)
        runner = QueueRunner(store, QueueSettings(port=port, connect_timeout_s=5,
                                                  command_timeout_s=5), res, clock=Clock())
        await enqueue(store, "t@faulty.test")
        await runner.run_once()
        assert closer.connections == 1
        assert [m.data for m in rec.messages] == [MESSAGE]
        assert await SqliteQueue(store).list() == []
    finally:
        await closer.stop()


class SevenBitRecorder(TlsRecorder):
    """Does not offer 8BITMIME (RFC 6152); records the MAIL FROM parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_options: list[list[str]] = []

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [r for r in responses if "8BITMIME" not in r]

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        self.mail_options.append(list(mail_options))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"


EIGHT_BIT = (
    "From: Alice <alice@example.org>\r\nTo: t@faulty.test\r\nSubject: 8bit\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße, ça va? Ærlig talt.\r\n.dot line\r\n"
).encode()


async def test_eight_bit_to_seven_bit_server_is_converted(
        store: SqliteStore, controllers: list[Controller]) -> None:
    import email
    import email.policy

    port = free_port(["127.0.0.13"])
    rec = SevenBitRecorder()
    c = Controller(rec, hostname="127.0.0.13", port=port, ready_timeout=5.0)
    c.start()
    controllers.append(c)
    signed: list[bytes] = []

    async def signer(sender: str, message: bytes) -> bytes:
        signed.append(message)
        return b"DKIM-Signature: v=1; d=example.org; b=fake\r\n"

    runner = QueueRunner(store, QueueSettings(port=port, connect_timeout_s=5),
                         resolver({"faulty.test": "127.0.0.13"}), signer=signer,
                         clock=Clock())
    await enqueue(store, "t@faulty.test", EIGHT_BIT)
    await runner.run_once()
    [got] = rec.messages
    assert got.data.isascii()
    assert got.data.startswith(b"DKIM-Signature: v=1; d=example.org; b=fake\r\n")
    assert signed[-1] == got.data.split(b"\r\n", 1)[1]  # signed after conversion
    msg = email.message_from_bytes(got.data, policy=email.policy.default)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg.get_content() == "Grüße, ça va? Ærlig talt.\r\n.dot line\r\n"
    assert not any("BODY" in o for o in rec.mail_options[0])  # no BODY=8BITMIME
    assert await SqliteQueue(store).list() == []


async def test_unconvertible_eight_bit_bounces_5_6_3(store: SqliteStore,
                                                     controllers: list[Controller]) -> None:
    from postier.queue import Dsn

    port = free_port(["127.0.0.13"])
    rec = SevenBitRecorder()
    c = Controller(rec, hostname="127.0.0.13", port=port, ready_timeout=5.0)
    c.start()
    controllers.append(c)
    dsns: list[Dsn] = []

    async def bounce(dsn: Dsn) -> None:
        dsns.append(dsn)

    runner = QueueRunner(store, QueueSettings(port=port, connect_timeout_s=5),
                         resolver({"faulty.test": "127.0.0.13"}), deliver_bounce=bounce,
                         clock=Clock())
    data = EIGHT_BIT.replace(b"Subject: 8bit", "Subject: Grüße".encode())  # UTF-8 header
    await enqueue(store, "t@faulty.test", data)
    await runner.run_once()
    assert rec.messages == []
    [dsn] = dsns
    assert b"Status: 5.6.3" in dsn.message
    assert await SqliteQueue(store).list() == []
