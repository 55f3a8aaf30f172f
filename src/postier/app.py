"""Builds the services from the configuration, starts the listeners, stops cleanly.

``App`` owns the store, the authenticator, delivery and every protocol listener.  Each
protocol server is a thin asyncio adapter around its sans-IO core; the app only wires them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, cast

from postier import compiled
from postier.auth.authenticator import AccountCredentials, Authenticator, AuthSettings
from postier.auth.limiter import LimiterSettings
from postier.config import Config, resolve_hostname
from postier.delivery import Delivery
from postier.eventloop import describe_loop
from postier.mail.headers import parse_addresses, parse_fields
from postier.mailauth.dkim import Algorithm, DkimKey
from postier.mailauth.dkim import sign as dkim_sign
from postier.net.tls import ensure_certificate, server_context
from postier.store.interface import Store
from postier.store.sqlite import SqliteStore
from postier.store.sqlite.indexfeed import IndexFeed, IndexFeedServer
from postier.store.sqlite.indexproc import IndexProcess

if TYPE_CHECKING:
    from postier.mailauth.inbound import InboundChecker
    from postier.queue import QueueRunner

log = logging.getLogger("postier.app")

GC_INTERVAL_S = 300.0


class StoreCredentialSource:
    """The authenticator's view of the store's accounts."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get_credentials(self, login: str) -> AccountCredentials | None:
        account = await self.store.get_account(login)
        if account is None:
            return None
        return AccountCredentials(
            account.id, account.address, account.password_hash, account.scram, account.enabled
        )


def auth_settings(config: Config) -> AuthSettings:
    a = config.auth
    return AuthSettings(
        default_domain=a.default_domain,
        cache_ttl_s=float(a.cache_ttl_s),
        limiter=LimiterSettings(
            free_failures=a.failed_login_free,
            max_failures_per_ip=a.failed_login_max_per_ip,
            max_failures_per_account=a.failed_login_max_per_account,
            window_s=float(a.failed_login_window_s),
        ),
    )


async def open_store(
    config: Config, data_dir: Path, catch_up: bool = True, index_here: bool = True
) -> SqliteStore:
    return await SqliteStore.open(
        data_dir, readers=config.store.readers, group_commit_max=config.store.group_commit_max,
        catch_up=catch_up, index_here=index_here,
    )


class OutboundSigner:
    """DKIM-signs outbound mail whose From: domain is hosted here, with its active keys."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._keys: dict[tuple[str, str], DkimKey] = {}

    async def __call__(self, envelope_sender: str, message: bytes) -> bytes:
        domain = from_domain(message)
        if not domain:
            return b""
        records = await self.store.list_dkim_keys(domain, active_only=True)
        keys: list[DkimKey] = []
        for r in records:
            key = self._keys.get((r.domain, r.selector))
            if key is None:
                key = DkimKey(r.selector, r.domain, cast(Algorithm, r.algorithm),
                              r.private_key_pem.encode())
                self._keys[(r.domain, r.selector)] = key
            keys.append(key)
        if not keys:
            return b""
        return dkim_sign(message, keys, time.time())


def from_domain(message: bytes) -> str:
    """The domain of the (first) RFC 5322 From: address, lower case; "" if none."""
    end = message.find(b"\r\n\r\n")
    for name, value in parse_fields(message, 0, end if end >= 0 else len(message)):
        if name == b"from":
            for address in parse_addresses(value):
                if address.host:
                    return address.host.decode("utf-8", "replace").lower()
            return ""
    return ""


async def prepare_data_dir(config: Config, data_dir: Path) -> None:
    """One-time set-up before several workers start: schema migrations, certificate."""
    store = await open_store(config, data_dir)
    await store.close()
    if not config.tls.cert:
        await asyncio.to_thread(ensure_certificate, data_dir, resolve_hostname(config))


@dataclass
class App:
    config: Config
    data_dir: Path
    store: SqliteStore | None = None
    authenticator: Authenticator | None = None
    delivery: Delivery | None = None
    tls: ssl.SSLContext | None = None
    hostname: str = ""
    listening: list[str] = field(default_factory=list)
    queue_runner: QueueRunner | None = None
    worker: int = 0  # this process's index among `workers` sharing the data folder
    workers: int = 1
    _stoppers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    # Run after the store is closed (its last commits may still hand bodies to the indexer).
    _after_store: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self.hostname = resolve_hostname(self.config)
        # One indexer per data folder (store/sqlite/indexfeed.py): a process of its own
        # (indexproc.py), or with indexer = "thread" a thread of worker 0.
        index_thread = self.config.store.indexer == "thread" and self.worker == 0
        self.store = await open_store(
            self.config, self.data_dir, catch_up=index_thread, index_here=index_thread
        )
        if self.config.store.indexer == "process":
            await self._index_in_process()
        elif self.workers > 1:
            await self._share_indexer()
        self.authenticator = Authenticator(StoreCredentialSource(self.store), auth_settings(self.config))
        self.delivery = Delivery(self.store, self.config.delivery.add_delivered_to)
        if self.config.tls.cert:
            cert, key = Path(self.config.tls.cert), Path(self.config.tls.key)
        else:
            cert, key = await asyncio.to_thread(ensure_certificate, self.data_dir, self.hostname)
        self.tls = server_context(cert, key, self.config.tls.min_version)
        from postier.store.relay import EventRelay, PeerForwarder

        relay = EventRelay(self.store.bus, self.data_dir, self.worker)
        await relay.start()
        self.add_service([], relay.stop)
        if self.workers > 1:
            forwarder = PeerForwarder(self.data_dir, self.worker, self.workers)
            self.store.bus.taps.append(forwarder)
            # One failed-login count for all workers: each tells the others every outcome.
            self.authenticator.on_attempt = forwarder
            relay.on_login = self.authenticator.limiter.apply
            forwarder.start()
            self.add_service([], forwarder.stop)
        for starter in _protocol_starters():
            await starter(self)
        if self.worker == 0:  # singletons: one per data folder
            self._tasks.append(asyncio.create_task(self._collect_garbage(), name="gc"))

    async def _index_in_process(self) -> None:
        """Worker 0 starts the index process; every worker feeds it."""
        assert self.store is not None
        if self.worker == 0:
            level = logging.getLevelName(logging.getLogger("postier").getEffectiveLevel())
            index_process = IndexProcess(
                self.data_dir, str(level).lower(), self.config.server.event_loop
            )
            await index_process.start()
            self._after_store.append(index_process.stop)
        self._feed_indexer()

    async def _share_indexer(self) -> None:
        """indexer = "thread" with several workers: worker 0's thread indexes for all."""
        assert self.store is not None
        if self.worker == 0:
            assert self.store.indexer is not None
            server = IndexFeedServer(self.data_dir, self.store.indexer.add, self.store.indexer.delete)
            await server.start()
            self.add_service([], server.stop)
            return
        self._feed_indexer()

    def _feed_indexer(self) -> None:
        assert self.store is not None
        feed = IndexFeed(self.data_dir)
        self.store.index_elsewhere(feed.add, feed.delete)

        async def close() -> None:
            feed.close()

        self._after_store.insert(0, close)

    @property
    def reuse_port(self) -> bool:
        """Several workers bind the same addresses (the kernel spreads connections)."""
        return self.workers > 1

    def add_service(self, listening: list[str], stop: Callable[[], Awaitable[None]]) -> None:
        """Register a started service: what it listens on (for humans) and how to stop it."""
        self.listening.extend(listening)
        self._stoppers.append(stop)

    async def _collect_garbage(self) -> None:
        assert self.store is not None
        while True:
            await asyncio.sleep(GC_INTERVAL_S)
            try:
                removed = await self.store.collect_garbage()
                if removed:
                    log.info("removed %d unreferenced message bodies", removed)
            except Exception:
                log.exception("garbage collection failed")

    async def stop(self) -> None:
        for stop in reversed(self._stoppers):
            try:
                await stop()
            except Exception:
                log.exception("stopping a listener failed")
        self._stoppers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.store is not None:
            await self.store.close()
            self.store = None
        for close in self._after_store:
            try:
                await close()
            except Exception:
                log.exception("stopping the indexer failed")
        self._after_store.clear()


Starter = Callable[[App], Awaitable[None]]


async def start_queue(app: App) -> None:
    """The outbound queue runner: delivers queued mail to other servers, sends DSNs."""
    from postier.dnsrecords import resolver_from_config
    from postier.queue import Dsn, QueueRunner, QueueSettings
    from postier.store.types import QueuedRecipient

    c = app.config.queue
    if not c.enabled or app.worker != 0:
        return
    store, delivery = app.store, app.delivery
    assert store is not None and delivery is not None

    async def deliver_bounce(dsn: Dsn) -> None:
        results = await delivery.deliver(dsn.message, "", [dsn.recipient])
        if results[0].ok:
            return
        if results[0].status.value == "not a local domain":
            body = await store.prepare_body(dsn.message)
            await store.enqueue("", [QueuedRecipient(dsn.recipient)], body)
            return
        raise RuntimeError(f"bounce to {dsn.recipient} not delivered: {results[0].detail}")

    runner = QueueRunner(
        store,
        QueueSettings(
            hostname=app.hostname,
            port=c.remote_port,
            max_connections=c.max_connections,
            max_connections_per_domain=c.max_connections_per_domain,
            max_age_s=c.max_age_days * 86400,
            delay_warning_after_s=c.delay_warning_hours * 3600,
            mta_sts=c.mta_sts,
        ),
        resolver_from_config(app.config),
        signer=OutboundSigner(store) if app.config.dkim.sign else None,
        deliver_bounce=deliver_bounce,
    )
    await runner.start()
    store.enqueue_listeners.append(runner.wake)
    app.queue_runner = runner

    async def stop() -> None:
        if runner.wake in store.enqueue_listeners:
            store.enqueue_listeners.remove(runner.wake)
        await runner.stop()

    app.add_service([f"Outbound    queue to port {c.remote_port} of remote MX hosts"], stop)


async def start_pop3(app: App) -> None:
    from postier.pop3.server import Pop3Server, Pop3Settings

    c = app.config.pop3
    if not (c.listen or c.tls_listen):
        return
    assert app.store is not None and app.authenticator is not None
    server = Pop3Server(
        app.store,
        app.authenticator,
        Pop3Settings(
            listen=c.listen,
            tls_listen=c.tls_listen,
            delete_mode=c.delete_mode,
            retention_days=c.retention_days,
            idle_timeout_s=float(c.idle_timeout_s),
            allow_plaintext_auth_on_loopback=c.allow_plaintext_auth_on_loopback,
            reuse_port=app.reuse_port,
            lock_dir=app.data_dir / "locks",
        ),
        app.tls,
    )
    await server.start()
    app.add_service(
        [f"POP3        {_hostport(h, p)}{' (implicit TLS)' if tls else ' (STLS)'}"
         for h, p, tls in server.bound],
        server.stop,
    )


async def start_smtp(app: App) -> None:
    from postier.smtp.core import Mode
    from postier.smtp.server import SmtpServer, SmtpSettings

    c = app.config.smtp
    if not (c.listen or c.submission_listen or c.submissions_listen or c.lmtp_listen):
        return
    assert app.store is not None and app.delivery is not None
    server = SmtpServer(
        SmtpSettings(
            hostname=app.hostname,
            max_message_bytes=c.max_message_bytes,
            max_buffered_bytes=c.max_buffered_bytes,
            max_recipients=c.max_recipients,
            max_line_bytes=c.max_line_bytes,
            max_errors=c.max_errors,
            command_timeout_s=float(c.command_timeout_s),
            data_timeout_s=float(c.data_timeout_s),
            bare_lf=c.bare_lf,
            require_tls_for_auth=c.require_tls_for_auth,
            allow_plaintext_auth_on_loopback=c.allow_plaintext_auth_on_loopback,
            sender_must_match=c.sender_must_match,
            max_connections_per_ip=c.max_connections_per_ip,
            max_connections=app.config.server.max_connections,
            reuse_port=app.reuse_port,
        ),
        app.store,
        app.delivery,
        app.authenticator,
        app.tls,
        inbound=_inbound_checker(app),
    )
    lines: list[str] = []
    try:
        for address in c.listen:
            await server.listen_address(Mode.MTA, address)
        for address in c.submission_listen:
            await server.listen_address(Mode.SUBMISSION, address)
        for address in c.submissions_listen:
            await server.listen_address(Mode.SUBMISSION, address, implicit_tls=True)
        for address in c.lmtp_listen:
            await server.listen_address(Mode.LMTP, address)
            if address.is_unix:
                lines.append(f"LMTP        unix:{address.path}")
    except BaseException:
        await server.stop()
        raise
    labels = {Mode.MTA: "SMTP", Mode.SUBMISSION: "Submission", Mode.LMTP: "LMTP"}
    for mode, host, port, implicit in server.bound:
        note = " (implicit TLS)" if implicit else (" (STARTTLS)" if mode is not Mode.LMTP else "")
        lines.append(f"{labels[mode]:<11} {_hostport(host, port)}{note}")
    app.add_service(sorted(lines, key=_listener_order), server.stop)


def _inbound_checker(app: App) -> InboundChecker | None:
    from postier.dnsrecords import resolver_from_config
    from postier.mailauth.inbound import InboundChecker, InboundSettings

    c = app.config.smtp
    if not (c.check_spf or c.check_dkim or c.check_dmarc or c.check_arc):
        return None
    settings = InboundSettings(
        authserv_id=app.hostname,
        check_spf=c.check_spf,
        check_dkim=c.check_dkim,
        check_dmarc=c.check_dmarc,
        check_arc=c.check_arc,
        dmarc_reject=c.dmarc_reject,
        dmarc_quarantine_to_junk=c.dmarc_quarantine_to_junk,
    )
    return InboundChecker(settings, resolver_from_config(app.config))


def _listener_order(line: str) -> int:
    for i, label in enumerate(("SMTP", "Submission", "LMTP")):
        if line.startswith(label):
            return i
    return 9


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _protocol_starters() -> list[Starter]:
    """The protocol services, in start order (each adds its listeners to the app)."""
    from postier.imap.service import start_imap

    return [start_queue, start_smtp, start_imap, start_pop3]


async def serve(app: App, ready: Callable[[App], None] | None = None) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully."""
    loop = asyncio.get_running_loop()
    log.info("event loop: %s; parser and SMTP core: %s", describe_loop(loop), compiled.status())
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await app.start()
        if ready is not None:
            ready(app)
        await stopping.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await app.stop()
