"""Builds the services from the configuration, starts the listeners, stops cleanly.

``App`` owns the store, the authenticator, delivery and every protocol listener.  Each
protocol server is a thin asyncio adapter around its sans-IO core; the app only wires them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from postier.auth.authenticator import AccountCredentials, Authenticator, AuthSettings
from postier.auth.limiter import LimiterSettings
from postier.config import Config, resolve_hostname
from postier.delivery import Delivery
from postier.net.tls import ensure_certificate, server_context
from postier.store.interface import Store
from postier.store.sqlite import SqliteStore

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


async def open_store(config: Config, data_dir: Path) -> SqliteStore:
    return await SqliteStore.open(
        data_dir, readers=config.store.readers, group_commit_max=config.store.group_commit_max
    )


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
    _stoppers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        self.hostname = resolve_hostname(self.config)
        self.store = await open_store(self.config, self.data_dir)
        self.authenticator = Authenticator(StoreCredentialSource(self.store), auth_settings(self.config))
        self.delivery = Delivery(self.store, self.config.delivery.add_delivered_to)
        if self.config.tls.cert:
            cert, key = Path(self.config.tls.cert), Path(self.config.tls.key)
        else:
            cert, key = await asyncio.to_thread(ensure_certificate, self.data_dir, self.hostname)
        self.tls = server_context(cert, key, self.config.tls.min_version)
        for starter in _protocol_starters():
            await starter(self)
        self._tasks.append(asyncio.create_task(self._collect_garbage(), name="gc"))

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


Starter = Callable[[App], Awaitable[None]]


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
        ),
        app.store,
        app.delivery,
        app.authenticator,
        app.tls,
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

    return [start_smtp, start_imap, start_pop3]


async def serve(app: App, ready: Callable[[App], None] | None = None) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully."""
    loop = asyncio.get_running_loop()
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
