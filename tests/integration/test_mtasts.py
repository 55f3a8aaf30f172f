"""MTA-STS (RFC 8461) end to end on loopback: the policy served by a tiny asyncio HTTPS
server on 127.0.0.12 (certificate from a trustme CA the test trusts), the MX an aiosmtpd
server on 127.0.0.11, names from a FakeResolver.  Nothing leaves 127.0.0.0/8."""

from __future__ import annotations

import asyncio
import datetime
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller

from postier.mailauth.dns import FakeResolver
from postier.queue import QueueRunner, QueueSettings
from postier.queue.mtasts import MtaSts
from postier.store.sqlite import SqliteStore
from postier.store.sqlite.queue import RcptStatus, SqliteQueue
from postier.store.types import QueuedRecipient

from .test_queue_support import Recorder, free_port

MX_ADDR, WEB_ADDR = "127.0.0.11", "127.0.0.12"
MESSAGE = (
    b"From: Alice <alice@example.org>\r\nTo: s@sts.test\r\nSubject: sts\r\n"
    b"Message-ID: <s1@example.org>\r\n\r\nHello over verified TLS.\r\n"
)
POLICY = "version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n"


class Clock:
    def __init__(self) -> None:
        self.now = time.time() + 1

    def __call__(self) -> float:
        return self.now


class TlsRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.tls: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.tls.append(session.ssl is not None)
        return await super().handle_DATA(server, session, envelope)


class PolicyServer:
    """Serves one canned HTTP response over TLS; counts the requests."""

    def __init__(self, ctx: ssl.SSLContext, port: int) -> None:
        self.ctx, self.port = ctx, port
        self.status = "200 OK"
        self.content_type = "text/plain"
        self.body = POLICY.format(mode="enforce", mx="mx.sts.test")
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, WEB_ADDR, self.port, ssl=self.ctx)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            self.requests.append(await r.readuntil(b"\r\n\r\n"))
            body = self.body.encode()
            w.write(f"HTTP/1.1 {self.status}\r\nContent-Type: {self.content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await w.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            w.close()


@dataclass
class World:
    store: SqliteStore
    ca: trustme.CA
    client_ctx: ssl.SSLContext
    resolver: FakeResolver
    web: PolicyServer
    smtp_port: int
    clock: Clock = field(default_factory=Clock)
    controllers: list[Controller] = field(default_factory=list)

    def mx(self, *, tls: str = "valid", name: str = "mx.sts.test") -> TlsRecorder:
        """Start the MX: tls "valid", "expired" or "none"."""
        rec = TlsRecorder()
        kwargs: dict[str, Any] = {}
        if tls != "none":
            now = datetime.datetime.now(datetime.UTC)
            cert = (self.ca.issue_cert(name) if tls == "valid" else self.ca.issue_cert(
                name, not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1)))
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(ctx)
            kwargs = {"tls_context": ctx, "require_starttls": True}
        c = Controller(rec, hostname=MX_ADDR, port=self.smtp_port, ready_timeout=5.0, **kwargs)
        c.start()
        self.controllers.append(c)
        return rec

    def runner(self, **settings: Any) -> QueueRunner:
        qs = QueueSettings(port=self.smtp_port, connect_timeout_s=5, command_timeout_s=5,
                           **settings)
        sts = MtaSts(self.resolver, self.client_ctx, port=self.web.port, timeout_s=5,
                     clock=self.clock)
        return QueueRunner(self.store, qs, self.resolver, clock=self.clock,
                           verify_tls_context=self.client_ctx, mta_sts=sts)

    async def enqueue(self) -> int:
        body = await self.store.prepare_body(MESSAGE)
        return await self.store.enqueue("alice@example.org", [QueuedRecipient("s@sts.test")],
                                        body)


@pytest.fixture
async def world(store: SqliteStore) -> AsyncIterator[World]:
    ca = trustme.CA()
    web_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mta-sts.sts.test").configure_cert(web_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    res = FakeResolver()
    res.add("sts.test", "MX", (10, "mx.sts.test"))
    res.add("mx.sts.test", "A", MX_ADDR)
    res.add("_mta-sts.sts.test", "TXT", "v=STSv1; id=20261127T0001")
    res.add("mta-sts.sts.test", "A", WEB_ADDR)
    web = PolicyServer(web_ctx, free_port([WEB_ADDR]))
    await web.start()
    w = World(store, ca, client_ctx, res, web, free_port([MX_ADDR]))
    try:
        yield w
    finally:
        for c in w.controllers:
            c.stop()
        await web.stop()


async def test_enforce_delivers_over_verified_tls_and_caches_policy(world: World) -> None:
    rec = world.mx(tls="valid")
    runner = world.runner()
    await world.enqueue()
    await runner.run_once()
    assert rec.tls == [True]
    assert [m.data for m in rec.messages] == [MESSAGE]
    assert len(world.web.requests) == 1
    assert world.web.requests[0].startswith(b"GET /.well-known/mta-sts.txt HTTP/1.1\r\n")
    assert b"Host: mta-sts.sts.test\r\n" in world.web.requests[0]
    await world.enqueue()
    await runner.run_once()
    assert len(rec.messages) == 2
    assert len(world.web.requests) == 1  # same TXT id, policy cached for max_age
    assert await SqliteQueue(world.store).list() == []


async def test_enforce_expired_certificate_is_deferred(world: World) -> None:
    rec = world.mx(tls="expired")
    runner = world.runner()
    qid = await world.enqueue()
    await runner.run_once()
    assert rec.messages == []  # not sent, not even in plain text
    entry = await SqliteQueue(world.store).get(qid)
    assert entry is not None and entry.attempts == 1
    [r] = entry.recipients
    assert r.status is RcptStatus.PENDING  # RFC 8461 §5: a temporary failure
    assert r.last_error.startswith("4.7.5") and "certificate has expired" in r.last_error
    assert entry.next_attempt == int(world.clock.now) + 300


async def test_enforce_certificate_for_another_name_is_deferred(world: World) -> None:
    rec = world.mx(tls="valid", name="other.example")
    qid = await world.enqueue()
    await world.runner().run_once()
    assert rec.messages == []
    entry = await SqliteQueue(world.store).get(qid)
    assert entry is not None
    assert entry.recipients[0].last_error.startswith("4.7.5")
    assert "mx.sts.test" in entry.recipients[0].last_error


async def test_enforce_without_starttls_is_deferred(world: World) -> None:
    rec = world.mx(tls="none")
    qid = await world.enqueue()
    await world.runner().run_once()
    assert rec.messages == []
    entry = await SqliteQueue(world.store).get(qid)
    assert entry is not None
    assert entry.recipients[0].last_error.startswith("4.7.4")
    assert "STARTTLS" in entry.recipients[0].last_error


async def test_enforce_mx_not_in_policy_is_deferred_without_connecting(world: World) -> None:
    world.web.body = POLICY.format(mode="enforce", mx="*.elsewhere.test")
    rec = world.mx(tls="valid")
    qid = await world.enqueue()
    await world.runner().run_once()
    assert rec.messages == []
    entry = await SqliteQueue(world.store).get(qid)
    assert entry is not None
    [r] = entry.recipients
    assert r.status is RcptStatus.PENDING
    assert r.last_error.startswith("4.7.0") and "matches the policy" in r.last_error


async def test_enforce_wildcard_mx_pattern(world: World) -> None:
    world.web.body = POLICY.format(mode="enforce", mx="*.sts.test")
    rec = world.mx(tls="valid")
    await world.enqueue()
    await world.runner().run_once()
    assert rec.tls == [True] and len(rec.messages) == 1


async def test_testing_mode_delivers_despite_expired_certificate_and_logs(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.web.body = POLICY.format(mode="testing", mx="mx.sts.test")
    rec = world.mx(tls="expired")
    caplog.set_level(logging.INFO, logger="postier.queue")
    await world.enqueue()
    await world.runner().run_once()
    assert rec.tls == [True]  # opportunistic after the verified attempt failed
    assert [m.data for m in rec.messages] == [MESSAGE]
    assert any("would fail under enforce" in r.getMessage() for r in caplog.records)


async def test_policy_fetch_failure_means_no_policy(world: World) -> None:
    world.web.status = "404 Not Found"
    rec = world.mx(tls="expired")
    await world.enqueue()
    await world.runner().run_once()
    assert [m.data for m in rec.messages] == [MESSAGE]  # as though no MTA-STS (§5)


async def test_policy_with_wrong_content_type_is_ignored(world: World) -> None:
    world.web.content_type = "text/html"
    rec = world.mx(tls="expired")
    await world.enqueue()
    await world.runner().run_once()
    assert len(rec.messages) == 1


async def test_mta_sts_disabled_in_settings(world: World) -> None:
    rec = world.mx(tls="expired")
    await world.enqueue()
    await world.runner(mta_sts=False).run_once()
    assert len(rec.messages) == 1
    assert world.web.requests == []


async def test_cached_enforce_policy_survives_policy_server_outage(world: World) -> None:
    rec = world.mx(tls="expired")
    runner = world.runner()
    qid = await world.enqueue()
    await runner.run_once()  # fetches and caches the enforce policy; deferred
    await world.web.stop()
    world.resolver.add("_mta-sts.sts.test", "TXT", "v=STSv1; id=changed")  # now two TXTs
    world.clock.now += 300
    await runner.run_once()
    assert rec.messages == []  # the cached policy still applies (§5.1)
    entry = await SqliteQueue(world.store).get(qid)
    assert entry is not None and entry.attempts == 2
    assert entry.recipients[0].last_error.startswith("4.7.5")
