"""The asyncio adapter around the sans-IO SMTP core: listeners, TLS, limits, policy, delivery.

One :class:`SmtpServer` serves every SMTP-family listener of the process:

* ``Mode.MTA`` (port 25): mail for hosted domains only — unknown users 550 5.1.1 at RCPT,
  other domains 554 5.7.1 (never an open relay; RFC 5321 §3.6.1, §7.1).
* ``Mode.SUBMISSION`` (587 with STARTTLS, 465 with implicit TLS; RFC 6409, RFC 8314):
  AUTH required before MAIL, AUTH only over TLS unless allowed on loopback (RFC 4954 §4),
  MAIL FROM and From: limited to the user's own addresses (RFC 6409 §6.1), Message-ID and
  Date added when missing (RFC 6409 §8.3), remote recipients kept in the durable queue.
* ``Mode.LMTP`` (RFC 2033; TCP and Unix sockets): one reply per recipient after DATA.

Durability (docs/architecture.md, "Durable before OK"): the 250 after DATA/BDAT LAST is sent
only when every accepted recipient's copy is stored (or queued).  When one recipient fails
after DATA (over quota, storage trouble) the whole transaction gets a 4xx, never a
half-delivery acknowledged as a whole (quotas are checked for every recipient before the
first copy is written).

STARTTLS (RFC 3207) discards everything buffered before the handshake, in the core and in
this adapter's receive buffer (CVE-2011-0411 class).  A Received: field (RFC 5321 §4.4,
RFC 3848 protocol names, TLS version and cipher as a comment) is added to every message.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import os
import secrets
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from pathlib import Path
from typing import cast

from postier.auth.authenticator import Authenticator, Failed, Ok, Refused
from postier.auth.sasl import Cancelled, Malformed
from postier.delivery import (
    Delivery,
    RecipientResult,
    Status,
    canonical,
    split_address,
)
from postier.log import ConnectionLogger, format_peer
from postier.mailauth.inbound import Action, InboundChecker, strip_forged_results
from postier.net.addresses import ListenAddress, is_loopback
from postier.net.closing import close_transport
from postier.net.tls import describe_tls
from postier.smtp.core import (
    C250_MESSAGE_ACCEPTED,
    C421_SHUTTING_DOWN,
    C421_TOO_MANY_CONNECTIONS,
    C451_LOCAL_ERROR,
    C452_INSUFFICIENT_STORAGE,
    C452_MAILBOX_FULL,
    C454_AUTH_TEMPORARY,
    C501_AUTH_CANCELLED,
    C501_BAD_BASE64,
    C535_AUTH_FAILED,
    C550_MAILBOX_UNKNOWN,
    C553_SENDER_NOT_OWNED,
    C554_RELAY_DENIED,
    Auth,
    AuthResponse,
    Closed,
    CoreSettings,
    Ehlo,
    Helo,
    MailFrom,
    Message,
    Mode,
    NeedData,
    Paused,
    ProtocolError,
    Quit,
    RcptTo,
    Reply,
    ServerConnection,
    StartTls,
)
from postier.store.interface import Store
from postier.store.types import PreparedBody, QueuedRecipient

__all__ = ["Mode", "SmtpServer", "SmtpSettings"]

C550_DOMAIN_NOT_LOCAL = Reply(550, "5.1.2", "Domain not hosted here")  # RFC 3463 X.1.2 (LMTP)
C550_NO_FROM = Reply(550, "5.6.0", "Message has no From: header field")  # RFC 5322 §3.6
C553_FROM_NOT_OWNED = Reply(553, "5.7.1", "From: header address not owned by authenticated user")
# RFC 7489 §10.3: a DMARC rejection says why, with 5.7.1.
C550_DMARC_REJECT = Reply(550, "5.7.1", "Rejected by the DMARC policy of the From: domain")
READ_CHUNK_BYTES = 256 * 1024  # pause reading above this much unconsumed input
TLS_HANDSHAKE_TIMEOUT_S = 30.0
MAX_HEADER_SCAN_BYTES = 256 * 1024  # how far into a message From:/Date:/Message-ID: are sought


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """What the SMTP server needs from the configuration (app.py fills it from config.smtp)."""

    hostname: str = "localhost"
    max_message_bytes: int = 52_428_800
    max_recipients: int = 100  # RFC 5321 §4.5.3.1.8
    max_line_bytes: int = 1000  # RFC 5321 §4.5.3.1.4
    max_errors: int = 10
    command_timeout_s: float = 300.0  # RFC 5321 §4.5.3.2.7
    data_timeout_s: float = 600.0  # RFC 5321 §4.5.3.2.6
    bare_lf: str = "reject"  # port 25: "reject" | "normalize"; submission always normalises
    require_tls_for_auth: bool = True
    allow_plaintext_auth_on_loopback: bool = True
    sender_must_match: bool = True
    max_connections_per_ip: int = 20
    max_connections: int = 1000
    # RFC 4954 over TLS; SCRAM-SHA-256 (RFC 7677) for accounts with stored SCRAM credentials.
    auth_mechanisms: tuple[str, ...] = ("SCRAM-SHA-256", "PLAIN", "LOGIN")
    stop_grace_s: float = 10.0  # how long stop() lets transactions in progress finish
    # Messages being received are held in memory: all sessions together hold at most this
    # much (one message alone may always reach max_message_bytes); past it the message
    # whose data arrives is read to its end and refused with 452 4.3.1 (try again later).
    max_buffered_bytes: int = 512 * 1024 * 1024
    reuse_port: bool = False  # several worker processes share the listening ports


# ---------------------------------------------------------------- transport


class _Stream(asyncio.Protocol):
    """A minimal byte stream over an asyncio transport that can be upgraded to TLS.

    Unlike asyncio.StreamReader it lets the adapter drop buffered plaintext before the
    TLS handshake (RFC 3207 §4.2, CVE-2011-0411), and it costs one buffer per connection."""

    def __init__(self, server: SmtpServer, mode: Mode, implicit_tls: bool) -> None:
        self.server = server
        self.mode = mode
        self.implicit_tls = implicit_tls
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._stop = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._reading_paused = False
        self.task: asyncio.Task[None] | None = None
        # The read deadline (loop time): one timer, moved lazily (see arm).
        self._deadline = math.inf
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False
        self._tls_of: asyncio.BaseTransport | None = None  # the transport _tls_text is of
        self._tls_text = ""

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not derive from
        # asyncio.Transport, though they have its methods.
        if self.transport is not None:  # the TLS transport replacing the plain one
            self.transport = cast(asyncio.Transport, transport)
            return
        self.transport = cast(asyncio.Transport, transport)
        self.task = asyncio.get_running_loop().create_task(self.server._serve(self))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > READ_CHUNK_BYTES and self.transport and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._stop_timer()
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None or self._drain.done():
            self._drain = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    # adapter side
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def arm(self, timeout: float) -> None:
        """Let the next write and read wait ``timeout`` seconds at most in all (they raise
        TimeoutError after), until disarm().

        One timer per connection, moved lazily: arming again only stores the new deadline,
        and the timer, when it fires, re-schedules itself if the deadline moved on.  An
        ``asyncio.timeout`` per read made and cancelled a timer every time (2–3 reads per
        message)."""
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + timeout
        if self._timer is not None and self._timer.when() > self._deadline:
            self._timer.cancel()  # an earlier deadline than the one scheduled
            self._timer = None
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._check_deadline)

    def disarm(self) -> None:
        self._deadline = math.inf

    def _check_deadline(self) -> None:
        self._timer = None
        if self._deadline == math.inf:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._check_deadline)
            return
        self._expired = True
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def read(self) -> bytes | None:
        """Received bytes; b"" at end of stream; None when the server is stopping.
        Raises TimeoutError past the armed deadline."""
        while not self._buffer and not self._eof and not self._stop and not self._expired:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._stop:
            return None
        if self._expired and not self._buffer:
            raise TimeoutError
        data = bytes(self._buffer)
        self._buffer.clear()
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    def request_stop(self) -> None:
        self._stop = True
        self._wake()

    async def write(self, data: bytes) -> None:
        """Send ``data``; wait while the peer does not read (TimeoutError past an armed
        deadline)."""
        if not data or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        if self._drain is not None and not self._drain.done():
            await self._drain
        if self._expired:
            raise TimeoutError

    def write_nowait(self, data: bytes) -> None:
        """Queue ``data`` without waiting for the peer to read (last words before close)."""
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def discard_buffered(self) -> None:
        self._buffer.clear()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._buffer.clear()  # RFC 3207 §4.2 / CVE-2011-0411: no plaintext survives
        transport = await loop.start_tls(
            self.transport, self, context, server_side=True,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S,
        )
        if transport is None:
            raise ConnectionResetError("TLS handshake failed")
        self.transport = transport

    @property
    def peer_ip(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        if isinstance(peer, tuple) and peer:
            return str(peer[0])
        return ""

    @property
    def tls_description(self) -> str:
        """"TLSv1.3 TLS_AES_256_GCM_SHA384" or "": looked up once per transport (STARTTLS
        brings a new one), as it goes into every message's Received: field."""
        transport = self.transport
        if transport is None:
            return ""
        if transport is not self._tls_of:
            obj = transport.get_extra_info("ssl_object")
            self._tls_text = describe_tls(obj) if isinstance(obj, ssl.SSLObject | ssl.SSLSocket) else ""
            self._tls_of = transport
        return self._tls_text

    def close(self) -> None:
        """Close once what is written has been sent, or cut off a peer that does not
        read it (net/closing.py)."""
        if self.transport is not None:
            close_transport(self.transport)


def _printable_without(text: str, banned: str) -> str:
    """``text`` without unprintable characters and those of ``banned`` (two).  Nearly
    always there is nothing to remove: one check then, not a loop over the characters
    (every message's Received: field goes through this twice)."""
    if text.isprintable() and banned[0] not in text and banned[1] not in text:
        return text
    return "".join(c for c in text if c.isprintable() and c not in banned)


class _Gone(Exception):
    """The client went away (or the server is stopping) in the middle of an exchange."""


# ---------------------------------------------------------------- per-connection state


@dataclass
class _Session:
    stream: _Stream
    conn: ServerConnection
    log: ConnectionLogger
    mode: Mode
    peer_ip: str
    helo: str = ""
    esmtp: bool = False
    user: str = ""  # authenticated address
    remote_rcpts: set[str] = field(default_factory=set)
    held: int = 0  # message bytes counted in SmtpServer._held_bytes
    # The Received: field's first lines (SmtpServer._received) and what they were made of
    received_head: tuple[tuple[str, bool, str, bool, str], str] | None = None


# ---------------------------------------------------------------- the server


class SmtpServer:
    """Serves SMTP (25), submission (587/465) and LMTP listeners over one store.

    Usage (app.py)::

        server = SmtpServer(settings, store, delivery, authenticator, tls_context)
        await server.listen(Mode.MTA, "0.0.0.0", 25)
        await server.listen(Mode.SUBMISSION, "0.0.0.0", 587)
        await server.listen(Mode.SUBMISSION, "0.0.0.0", 465, implicit_tls=True)
        await server.listen_unix(Mode.LMTP, "/run/postier/lmtp")
        ...
        await server.stop()
    """

    def __init__(
        self,
        settings: SmtpSettings,
        store: Store,
        delivery: Delivery,
        authenticator: Authenticator | None = None,
        tls_context: ssl.SSLContext | None = None,
        inbound: InboundChecker | None = None,
    ) -> None:
        self.settings = settings
        self.inbound = inbound  # SPF/DKIM/DMARC of mail received on port 25
        self.store = store
        self.delivery = delivery
        self.authenticator = authenticator
        self.tls_context = tls_context
        self._servers: list[asyncio.Server] = []
        self._unix_paths: list[Path] = []
        self._bound: list[tuple[Mode, str, int, bool]] = []
        self._sessions: set[_Stream] = set()
        self._per_ip: Counter[str] = Counter()
        self._held_bytes = 0  # message bytes all sessions hold (max_buffered_bytes)
        self._stopping = False
        self._log = logging.getLogger("postier.smtp")
        self._header_parser = BytesHeaderParser(policy=compat32)
        self._date_second = -1
        self._received_base = secrets.token_hex(5)
        self._received_seq = 0
        self._date_text = ""

    # ------------------------------------------------------------ listeners

    async def listen(
        self, mode: Mode, host: str | None, port: int, *, implicit_tls: bool = False
    ) -> tuple[str, int]:
        """Listen on TCP (``host`` None: every address); returns the first bound (host, port).
        Port 0 picks a free port."""
        if implicit_tls and self.tls_context is None:
            raise ValueError("implicit TLS needs a TLS context")
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Stream(self, mode, implicit_tls),
            host,
            port,
            ssl=self.tls_context if implicit_tls else None,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S if implicit_tls else None,
            reuse_address=True,
            reuse_port=self.settings.reuse_port or None,
        )
        self._servers.append(server)
        for sock in server.sockets:
            name = sock.getsockname()
            self._bound.append((mode, str(name[0]), int(name[1]), implicit_tls))
        sockname = server.sockets[0].getsockname()
        self._log.info(
            "listening for %s on %s:%d%s", mode.value, sockname[0], sockname[1],
            " (implicit TLS)" if implicit_tls else "",
        )
        return str(sockname[0]), int(sockname[1])

    async def listen_address(
        self, mode: Mode, address: ListenAddress, *, implicit_tls: bool = False
    ) -> None:
        """Listen on a parsed config entry (``config.smtp.listen`` and friends)."""
        if address.is_unix:
            await self.listen_unix(mode, address.path)
        else:
            await self.listen(mode, address.bind_host, address.port, implicit_tls=implicit_tls)

    @property
    def bound(self) -> list[tuple[Mode, str, int, bool]]:
        """(mode, host, port, implicit TLS) of every TCP listener, in start order."""
        return list(self._bound)

    async def listen_unix(self, mode: Mode, path: str | Path) -> None:
        """Listen on a Unix socket (LMTP behind a local MTA); a stale socket file is replaced."""
        sock_path = Path(path)
        if sock_path.is_socket():
            sock_path.unlink()
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(lambda: _Stream(self, mode, False), str(sock_path))
        os.chmod(sock_path, 0o660)
        self._servers.append(server)
        self._unix_paths.append(sock_path)
        self._log.info("listening for %s on unix:%s", mode.value, sock_path)

    async def stop(self) -> None:
        """Stop listening; sessions waiting for input get 421 at once, a delivery in
        progress may finish (up to ``stop_grace_s``) before its connection closes."""
        self._stopping = True
        for server in self._servers:
            server.close()
        for stream in list(self._sessions):
            stream.request_stop()
        tasks = [s.task for s in self._sessions if s.task is not None]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.settings.stop_grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        for path in self._unix_paths:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self._unix_paths.clear()

    @property
    def connection_count(self) -> int:
        return len(self._sessions)

    # ------------------------------------------------------------ one connection

    def _core_settings(self, mode: Mode) -> CoreSettings:
        s = self.settings
        return CoreSettings(
            hostname=s.hostname,
            mode=mode,
            max_message_bytes=s.max_message_bytes,
            max_recipients=s.max_recipients,
            max_line_bytes=s.max_line_bytes,
            max_errors=s.max_errors,
            # ARCHITECTURE.md: port 25 refuses bare CR/LF unless set to normalise;
            # submission (and LMTP, from a trusted MTA) normalise.
            normalize_bare_lf=mode is not Mode.MTA or s.bare_lf == "normalize",
            auth_mechanisms=s.auth_mechanisms
            if mode is Mode.SUBMISSION and self.authenticator is not None
            else (),
            require_auth=mode is Mode.SUBMISSION,
        )

    async def _serve(self, stream: _Stream) -> None:
        peer_ip = stream.peer_ip
        peername = stream.transport.get_extra_info("peername") if stream.transport else None
        log = ConnectionLogger("smtp", peer=format_peer(peername) if peername else "unix")
        tls_active = stream.implicit_tls
        conn = ServerConnection(
            self._core_settings(stream.mode),
            tls_available=self.tls_context is not None and not tls_active,
            tls_active=tls_active,
            auth_without_tls=not self.settings.require_tls_for_auth
            or (self.settings.allow_plaintext_auth_on_loopback and (is_loopback(peer_ip) or not peer_ip)),
        )
        session = _Session(stream, conn, log, stream.mode, peer_ip)
        over = (
            self._stopping
            or len(self._sessions) >= self.settings.max_connections
            or (peer_ip and self._per_ip[peer_ip] >= self.settings.max_connections_per_ip)
        )
        if over:
            log.info("refused: %s", "stopping" if self._stopping else "too many connections")
            conn.refuse_connection(C421_SHUTTING_DOWN if self._stopping else C421_TOO_MANY_CONNECTIONS)
            await stream.write(conn.data_to_send())
            stream.close()
            return
        self._sessions.add(stream)
        if peer_ip:
            self._per_ip[peer_ip] += 1
        log.info("connected mode=%s%s", stream.mode.value, f" tls={stream.tls_description}" if tls_active else "")
        error: BaseException | None = None
        try:
            conn.greeting()
            await self._run(session)
        except (_Gone, ConnectionError, ssl.SSLError, TimeoutError) as exc:
            error = exc if not isinstance(exc, _Gone) else None
        except asyncio.CancelledError:
            log.info("cancelled at shutdown")
            raise
        except Exception as exc:  # a bug: log with traceback, tell the client a generic 421
            error = exc
            try:
                await stream.write(b"421 4.3.0 Internal error, closing connection\r\n")
            except Exception:
                pass
        finally:
            self._held_bytes -= session.held
            stream.close()
            self._sessions.discard(stream)
            if peer_ip:
                self._per_ip[peer_ip] -= 1
                if self._per_ip[peer_ip] <= 0:
                    del self._per_ip[peer_ip]
            log.connection_lost(error)

    def _count_held(self, session: _Session) -> None:
        """Keep the memory the messages being received hold under max_buffered_bytes."""
        held = session.conn.message_bytes
        self._held_bytes += held - session.held
        session.held = held
        if held and self._held_bytes > self.settings.max_buffered_bytes and self._held_bytes > held:
            session.log.warning(
                "message refused (452): messages being received hold %d bytes, limit %d",
                self._held_bytes, self.settings.max_buffered_bytes,
            )
            session.conn.refuse_message(C452_INSUFFICIENT_STORAGE)
            self._held_bytes -= held
            session.held = 0

    async def _read(self, session: _Session) -> bytes:
        conn, stream = session.conn, session.stream
        timeout = (
            self.settings.data_timeout_s if conn.reading_message else self.settings.command_timeout_s
        )
        stream.arm(timeout)  # also bounds a client that never reads
        try:
            await stream.write(conn.data_to_send())  # RFC 2920 §3.1: flush before blocking
            data = await stream.read()
        except TimeoutError:
            session.log.info("timeout after %g s: 421", timeout)
            conn.timed_out()
            stream.write_nowait(conn.data_to_send())
            raise _Gone from None
        finally:
            stream.disarm()
        if data is None:  # stopping
            session.log.info("server stopping: 421")
            conn.shutdown()
            stream.write_nowait(conn.data_to_send())
            raise _Gone
        if not data:
            raise _Gone
        return data

    async def _run(self, session: _Session) -> None:
        conn, log = session.conn, session.log
        while True:
            event = conn.next_event()
            match event:
                case NeedData():
                    self._count_held(session)
                    conn.receive_data(await self._read(session))
                case Closed():
                    async with asyncio.timeout(self.settings.command_timeout_s):
                        await session.stream.write(conn.data_to_send())
                    return
                case Paused():  # pragma: no cover - every decision below answers
                    raise AssertionError("core paused without a decision")
                case Helo(name=name) | Ehlo(name=name):
                    session.helo = name
                    session.esmtp = isinstance(event, Ehlo)
                    conn.accept()
                case StartTls():
                    await self._starttls(session)
                case Auth():
                    await self._auth(session, event)
                case AuthResponse():  # only inside _auth's exchange
                    conn.reject(C501_AUTH_CANCELLED)
                case MailFrom():
                    await self._mail_from(session, event)
                case RcptTo():
                    await self._rcpt_to(session, event)
                case Message():
                    await self._message(session, event)
                case ProtocolError(reply=reply, reason=reason):
                    log.info("%d %s: %s", reply.code, reply.enhanced, reason)
                case Quit():
                    log.debug("QUIT")
                case _:
                    pass

    # ------------------------------------------------------------ STARTTLS / AUTH

    async def _starttls(self, session: _Session) -> None:
        conn, stream = session.conn, session.stream
        if self.tls_context is None:  # pragma: no cover - not advertised then
            conn.reject(Reply(454, "4.7.0", "TLS not available"))
            return
        conn.accept()  # the core drops what it buffered after STARTTLS
        await stream.write(conn.data_to_send())
        # RFC 3207 §4.2 / CVE-2011-0411: drop plaintext the adapter buffered too.
        try:
            await stream.start_tls(self.tls_context)
        except (OSError, ssl.SSLError, TimeoutError) as exc:  # a client's failure, not ours
            session.log.info("STARTTLS handshake failed: %s", str(exc) or type(exc).__name__)
            raise _Gone from None
        session.helo = ""
        session.log.info("STARTTLS done: %s", stream.tls_description)

    async def _auth(self, session: _Session, event: Auth) -> None:
        conn = session.conn
        assert self.authenticator is not None

        async def exchange(challenge: bytes) -> bytes | Cancelled | Malformed:
            conn.auth_challenge(challenge)
            while True:
                ev = conn.next_event()
                if isinstance(ev, AuthResponse):
                    return ev.data
                if isinstance(ev, NeedData):
                    conn.receive_data(await self._read(session))
                elif isinstance(ev, Closed):
                    raise _Gone
                # ProtocolError notices cannot occur while a 334 is outstanding.

        try:
            result = await self.authenticator.authenticate(
                event.mechanism, event.initial_response, session.peer_ip or "unix", exchange
            )
        except _Gone:
            raise
        except Exception:
            session.log.exception("AUTH failed with an internal error")
            conn.reject(C454_AUTH_TEMPORARY)
            return
        match result:
            case Ok(address=address, final_data=final_data):
                if final_data is not None:
                    # RFC 4954 §4: additional data with success goes in a 334; the client
                    # answers with an empty line, then 235.
                    reply = await exchange(final_data)
                    if reply != b"":
                        conn.reject(C501_AUTH_CANCELLED)
                        return
                session.user = address
                conn.accept()
                session.log.info("AUTH %s ok user=%s", event.mechanism, address)
            case Failed(delay_s=delay_s, reason=reason):
                session.log.info("AUTH %s failed: %s", event.mechanism, reason)
                await asyncio.sleep(delay_s)
                conn.reject(C535_AUTH_FAILED)
            case Refused(retry_after_s=retry):
                session.log.info("AUTH refused: too many failures (retry after %.0f s)", retry)
                conn.reject(C454_AUTH_TEMPORARY)
            case Cancelled():
                conn.reject(C501_AUTH_CANCELLED)
            case Malformed():
                conn.reject(C501_BAD_BASE64)

    # ------------------------------------------------------------ envelope policy

    async def _mail_from(self, session: _Session, event: MailFrom) -> None:
        conn = session.conn
        if session.mode is Mode.SUBMISSION and self.settings.sender_must_match:
            try:
                allowed = await self._owns(session.user, event.address)
            except Exception:
                session.log.exception("checking the sender failed")
                conn.reject(C451_LOCAL_ERROR)
                return
            if not allowed:
                session.log.info("MAIL FROM <%s> refused: not owned by %s", event.address, session.user)
                conn.reject(C553_SENDER_NOT_OWNED)
                return
        session.remote_rcpts = set()
        conn.accept()

    async def _owns(self, user: str, address: str) -> bool:
        """RFC 6409 §6.1: the address is the user's own, plus-addressed, or an alias of it."""
        if not address or not user:
            return False
        wanted = canonical(address)
        if wanted == user:
            return True
        local, domain = split_address(wanted)
        base = f"{local.split('+', 1)[0]}@{domain}"
        if base == user:
            return True
        for candidate in dict.fromkeys((wanted, base)):
            if await self.store.alias_targets(candidate):  # explicit alias, not a catch-all
                try:
                    resolution = await self.delivery.resolve(candidate)
                except Exception:
                    return False
                if resolution is not None and user in resolution.local:
                    return True
        return False

    async def _postmaster_address(self) -> str:
        """RFC 5321 §4.1.1.3: "Postmaster" without a domain means ours."""
        host = self.settings.hostname.lower()
        if await self.delivery.is_local_domain(host):
            return f"postmaster@{host}"
        domains = await self.store.list_domains()
        return f"postmaster@{domains[0].name}" if domains else f"postmaster@{host}"

    async def _rcpt_to(self, session: _Session, event: RcptTo) -> None:
        conn = session.conn
        address = event.address
        try:
            if address == "postmaster":
                address = await self._postmaster_address()
            result = await self.delivery.check_recipient(address)
        except Exception:
            session.log.exception("checking recipient <%s> failed", address)
            conn.reject(C451_LOCAL_ERROR)
            return
        reply: Reply | None = None
        if result.status is Status.UNKNOWN_USER:
            reply = C550_MAILBOX_UNKNOWN  # refused now, never bounced later
        elif result.status is Status.NOT_LOCAL:
            if session.mode is Mode.SUBMISSION and session.user:
                session.remote_rcpts.add(address)
            elif session.mode is Mode.LMTP:
                reply = C550_DOMAIN_NOT_LOCAL
            else:
                reply = C554_RELAY_DENIED  # never an open relay (RFC 5321 §3.6.1)
        elif result.status is not Status.DELIVERED:
            reply = C451_LOCAL_ERROR
        if reply is not None:
            session.log.info("RCPT <%s> refused: %d %s", address, reply.code, reply.enhanced)
            conn.reject(reply)
        else:
            conn.accept()

    # ------------------------------------------------------------ the message

    def _received(self, session: _Session, event: Message) -> bytes:
        """RFC 5321 §4.4 trace field; protocol names from RFC 3848 and RFC 6531 §3.7.3."""
        tls = session.stream.tls_description
        # The lines up to the id change with the session, not the message: made again
        # only when what they show changes (EHLO again, STARTTLS, AUTH, SMTPUTF8).
        key = (session.helo, session.esmtp, session.user, event.sender.smtputf8, tls)
        if session.received_head is None or session.received_head[0] != key:
            with_ = "LMTP" if session.mode is Mode.LMTP else "ESMTP" if session.esmtp else "SMTP"
            if event.sender.smtputf8:
                with_ = "UTF8" + with_.removeprefix("E")  # UTF8SMTP, UTF8LMTP
            if tls:
                with_ += "S"
            if session.user:
                with_ += "A"
            peer = f"[{session.peer_ip}]" if session.peer_ip else "localhost"
            helo = _printable_without(session.helo, "()")[:100] or "unknown"
            session.received_head = (key, f"Received: from {helo} ({peer})\r\n"
                                     f"\tby {self.settings.hostname} (postier) with {with_}")
        self._received_seq += 1  # unique per process start, no random bytes per message
        lines = [session.received_head[1] + f" id {self._received_base}{self._received_seq:06x}"]
        if tls:
            version, _, cipher = tls.partition(" ")
            lines.append(f"\t(version={version} cipher={cipher})")
        if len(event.recipients) == 1:
            lines.append(f"\tfor <{self._display(event.recipients[0].address)}>")
        lines[-1] += ";"
        lines.append(f"\t{self._date()}")
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def _date(self) -> str:
        """RFC 5322 date-time of now, formatted once per second (it is on every message)."""
        second = int(time.time())
        if second != self._date_second:
            self._date_second = second
            self._date_text = email.utils.format_datetime(email.utils.localtime())
        return self._date_text

    @staticmethod
    def _display(address: str) -> str:
        return _printable_without(address, "<>")

    def _headers(self, data: bytes) -> tuple[list[str], bool, bool]:
        """(From: addresses, has Date:, has Message-ID:) of a message's header section."""
        end = data.find(b"\r\n\r\n", 0, MAX_HEADER_SCAN_BYTES)
        block = data[: end + 2] if end >= 0 else data[:MAX_HEADER_SCAN_BYTES]
        if data.startswith(b"\r\n"):
            block = b""
        headers = self._header_parser.parsebytes(block)
        froms = [addr for _name, addr in email.utils.getaddresses(
            [str(v) for v in headers.get_all("From", [])]
        )]
        return froms, headers.get("Date") is not None, headers.get("Message-ID") is not None

    async def _message(self, session: _Session, event: Message) -> None:
        conn, log = session.conn, session.log
        started = time.monotonic()
        prefix = self._received(session, event)
        if session.mode is Mode.SUBMISSION:
            froms, has_date, has_message_id = self._headers(event.data)
            if not froms:
                # RFC 5322 §3.6: From: is required; we do not invent one for the user.
                log.info("message refused: no From: header")
                conn.reject(C550_NO_FROM)
                return
            if self.settings.sender_must_match:
                for address in froms:
                    if not await self._owns(session.user, address):
                        log.info("From: <%s> refused: not owned by %s", address, session.user)
                        conn.reject(C553_FROM_NOT_OWNED)
                        return
            # RFC 6409 §8.3 (Date) and §8.3 (Message-ID): a submission server MAY add them.
            if not has_date:
                prefix += f"Date: {self._date()}\r\n".encode()
            if not has_message_id:
                prefix += f"Message-ID: <{secrets.token_hex(16)}@{self.settings.hostname}>\r\n".encode()
        data = event.data
        junk = False
        if session.mode is Mode.MTA and self.inbound is not None:
            data = strip_forged_results(data, self.inbound.settings.authserv_id)
            verdict = await self.inbound.check(
                session.peer_ip, session.helo, event.sender.address, data
            )
            if verdict.action is Action.REJECT:
                log.info("message refused: %s", verdict.reason)
                conn.reject(C550_DMARC_REJECT)
                return
            junk = verdict.action is Action.JUNK
            if junk:
                log.info("message goes to Junk: %s", verdict.reason)
            prefix = verdict.header + prefix
        raw = prefix + data
        sender = event.sender.address
        recipients = list(event.recipients)
        local = [r for r in recipients if r.address not in session.remote_rcpts]
        remote = list({r.address: r for r in recipients if r.address in session.remote_rcpts}.values())
        local_addresses = [await self._rcpt_address(r) for r in local]
        try:
            prepared: PreparedBody = await self.store.prepare_body(raw)
            # One job of the store's writer for every copy and the relayed recipients: a
            # full mailbox (or any failure) refuses the whole transaction, nothing half-done.
            results = await self.delivery.deliver(
                raw, sender, local_addresses, prepared=prepared, junk=junk,
                atomic=session.mode is not Mode.LMTP,
                relay=[QueuedRecipient(r.address, ",".join(r.notify), r.orcpt) for r in remote],
                envid=event.sender.envid, ret=event.sender.ret,
            )
        except Exception:
            log.exception("storing the message failed")
            conn.reject(C451_LOCAL_ERROR)
            return
        elapsed_ms = (time.monotonic() - started) * 1000
        if session.mode is Mode.LMTP:
            replies = [self._lmtp_reply(r) for r in results]
            conn.respond_per_recipient(replies)
            log.info(
                "LMTP message %d bytes from <%s>: %s (%.1f ms)", len(raw), sender,
                ", ".join(f"{r.recipient}={reply.code}" for r, reply in zip(results, replies, strict=True)),
                elapsed_ms,
            )
            return
        failed = [r for r in results if not r.ok]
        if failed:
            # Never acknowledge a half-delivery: the whole transaction gets a 4xx.
            worst = C452_MAILBOX_FULL if all(r.status is Status.OVER_QUOTA for r in failed) else C451_LOCAL_ERROR
            log.warning(
                "message refused after DATA: %s",
                ", ".join(f"{r.recipient}: {r.status.value}" for r in failed),
            )
            conn.reject(worst)
            return
        conn.accept()
        log.info(
            "message %d bytes from <%s> to %d local, %d queued (%.1f ms)",
            len(raw), sender, len(local_addresses), len(remote), elapsed_ms,
        )

    async def _rcpt_address(self, rcpt: RcptTo) -> str:
        if rcpt.address == "postmaster":
            return await self._postmaster_address()
        return rcpt.address

    @staticmethod
    def _lmtp_reply(result: RecipientResult) -> Reply:
        match result.status:
            case Status.DELIVERED | Status.FORWARDED:
                return C250_MESSAGE_ACCEPTED
            case Status.OVER_QUOTA:
                return C452_MAILBOX_FULL
            case Status.UNKNOWN_USER:
                return C550_MAILBOX_UNKNOWN
            case Status.NOT_LOCAL:
                return C550_DOMAIN_NOT_LOCAL
            case _:
                return C451_LOCAL_ERROR
