"""IMAP server: the asyncio adapter around the parser (:mod:`postier.imap.parser`) and the
session state (:mod:`postier.imap.session`).

Read → feed the parser → run the command against the store → write.  Listeners:

* ``listen`` — port-143 style, clear text with STARTTLS (RFC 9051 §6.2.1); passwords are
  refused before TLS (LOGINDISABLED, RFC 9051 §6.2.3) unless the peer is on loopback and
  ``allow_plaintext_auth_on_loopback`` is set.
* ``tls_listen`` — port-993 style, implicit TLS (RFC 8314 §3.3).

Changes made by other sessions arrive on the store's bus; they mark the selected mailbox
dirty and are reported (EXISTS / EXPUNGE / FETCH FLAGS) after a command, at NOOP and during
IDLE — EXPUNGE never after FETCH, STORE or SEARCH (RFC 9051 §7.5.1).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import collections
import contextlib
import datetime
import socket
import ssl
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from postier.auth.authenticator import Authenticator, Failed, Ok, Refused
from postier.auth.sasl import Cancelled, Malformed, decode_client_data
from postier.errors import QuotaExceeded, TemporaryError, UserError
from postier.imap import commands as c
from postier.imap import fetch as fetchmod
from postier.imap import search as searchmod
from postier.imap.parser import (
    Command,
    CommandParser,
    ContinuationNeeded,
    LimitExceeded,
    Limits,
    Line,
    NeedData,
    ParseError,
    error_response,
)
from postier.imap.recent import RecentWatermarks
from postier.imap.session import (
    ENABLEABLE,
    MAX_BAD_COMMANDS,
    ListOptions,
    MailboxView,
    State,
    allowed,
    auth_allowed,
    capabilities,
    capability_line,
    fetch_flags_line,
    list_responses,
    search_responses,
    select_responses,
)
from postier.imap.wire import (
    compress_uids,
    continuation,
    flag_list,
    paren_list,
    quoted,
    response_code,
    tagged,
    untagged,
    untagged_status,
)
from postier.imap.wire import mailbox as wire_mailbox
from postier.log import ConnectionLogger, format_peer, get_logger
from postier.net.addresses import ListenAddress, is_loopback
from postier.net.closing import close_handler_writer
from postier.net.listeners import Listeners
from postier.net.tls import describe_tls
from postier.store import bus as ev
from postier.store.interface import Store
from postier.store.types import (
    HIERARCHY_SEPARATOR,
    AccountId,
    FlagMode,
    Mailbox,
    MailboxId,
    MessageInfo,
    MessageMeta,
    ModSeq,
    NewMessage,
    Uid,
)

log = get_logger("imap")
READ_BYTES = 64 * 1024
SEP = HIERARCHY_SEPARATOR
SASL_MECHANISMS = ("PLAIN", "LOGIN", "SCRAM-SHA-256")
IDLE_REPORT_S = 0.05  # coalesce bursts of bus events during IDLE (well under RFC's "soon")


@dataclass(frozen=True, slots=True)
class ImapSettings:
    listen: tuple[ListenAddress, ...] = ()
    tls_listen: tuple[ListenAddress, ...] = ()
    reuse_port: bool = False  # several worker processes share the listening ports
    max_line_bytes: int = 65_536
    max_literal_bytes: int = 52_428_800
    # RFC 9051 §5.4: an inactivity autologout timer MUST be at least 30 minutes.
    idle_timeout_s: float = 1800.0
    allow_plaintext_auth_on_loopback: bool = True
    tls_handshake_timeout_s: float = 30.0
    hostname: str = "postier"
    max_commands_per_s: float = 500.0
    """Past this rate a connection is slowed down (each command waits its turn), so one
    client cannot monopolise the store; 0 disables.  Far above any real client."""
    max_connections: int = 1000
    """Open IMAP connections of this server (process), from ``[server] max_connections``;
    one more is greeted with ``* BYE [UNAVAILABLE]`` and closed (RFC 9051 §7.1.5)."""
    max_connections_per_ip: int = 20
    """The same per client IP (``[server] max_connections_per_ip``), so one host cannot take
    them all; Unix-socket peers (no IP) count only against ``max_connections``."""


class _Closed(Exception):
    """The peer went away or must be disconnected."""


class _No(Exception):
    """A command failed: tagged NO (RFC 9051 §7.1.2) with an optional response code."""

    def __init__(self, text: str, code: bytes | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class _Bad(_No):
    """A command the client should not have sent: tagged BAD (RFC 9051 §7.1.3)."""


_SETTABLE_SYSTEM_FLAGS = frozenset({"\\seen", "\\answered", "\\flagged", "\\deleted", "\\draft"})


def _check_system_flags(flags: Iterable[str]) -> None:
    """RFC 9051 §2.3.2: system flags are the five defined ones (\\Recent may not be
    set by a client in rev1 and is ignored); an unknown flag-extension is refused with BAD
    rather than silently dropped."""
    for flag in flags:
        lowered = flag.lower()
        if flag.startswith("\\") and lowered not in _SETTABLE_SYSTEM_FLAGS and lowered != "\\recent":
            raise _Bad(f"invalid system flag {flag}")


class ImapServer:
    """Listeners and sessions.  ``await start()`` binds; ``await stop()`` closes everything."""

    def __init__(
        self,
        store: Store,
        authenticator: Authenticator,
        settings: ImapSettings,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if settings.tls_listen and tls_context is None:
            raise ValueError("imap: tls_listen needs a TLS context")
        self.store = store
        self.authenticator = authenticator
        self.settings = settings
        self.tls_context = tls_context
        self._listeners = Listeners("postier.imap")
        self._sessions: set[asyncio.Task[None]] = set()
        self._connections: set[Connection] = set()
        self._per_ip: collections.Counter[str] = collections.Counter()
        self._stopping = False
        self.recent = RecentWatermarks()  # \Recent of IMAP4rev1 sessions, per process

    async def start(self) -> None:
        try:
            await self._listeners.start(
                self._handle, self.settings.listen, self.settings.tls_listen, self.tls_context,
                reuse_port=self.settings.reuse_port,
            )
        except BaseException:
            await self.stop()
            raise

    @property
    def bound(self) -> list[tuple[str, int, bool]]:
        """``(host, port, implicit_tls)`` of every TCP socket."""
        return self._listeners.bound

    async def stop(self, timeout_s: float = 5.0) -> None:
        self._stopping = True
        await self._listeners.close()
        # RFC 9051 §7.1.5: BYE, then close; each session ends on the end of its input.
        for conn in list(self._connections):
            conn.shut_down("server shutting down")
        tasks = list(self._sessions)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=timeout_s)

    async def _handle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        implicit_tls: bool,
        listener: str,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        peername = writer.get_extra_info("peername")
        sock = writer.get_extra_info("socket")
        local = sock is not None and sock.family == socket.AF_UNIX
        ip = str(peername[0]) if isinstance(peername, tuple) else ""
        clog = ConnectionLogger("imap", peer=format_peer(peername))
        refusal = self._refusal(ip)
        if refusal is not None:
            # RFC 9051 §7.1.5: a BYE greeting refuses the connection.
            clog.info("refused: %s", refusal)
            self._sessions.discard(task)
            with contextlib.suppress(Exception):
                writer.write(untagged_status("BYE", refusal, code=response_code("UNAVAILABLE")))
                await asyncio.wait_for(writer.drain(), 5.0)
            await close_handler_writer(writer, lambda: self._stopping)
            return
        if ip:
            self._per_ip[ip] += 1
        clog.info("connected to %s%s", listener, " (TLS)" if implicit_tls else "")
        session = Connection(self, reader, writer, clog, ip, implicit_tls, local or is_loopback(ip))
        self._connections.add(session)
        error: BaseException | None = None
        try:
            await session.run()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except (_Closed, ConnectionError):
            pass
        except Exception as exc:
            error = exc
            clog.exception("session failed")
        finally:
            session.close()
            await close_handler_writer(writer, lambda: self._stopping)
            self._sessions.discard(task)
            self._connections.discard(session)
            if ip:
                self._per_ip[ip] -= 1
                if self._per_ip[ip] <= 0:
                    del self._per_ip[ip]
            clog.connection_lost(error)

    def _refusal(self, ip: str) -> str | None:
        """Why a new connection from *ip* is refused (None: it is not)."""
        if self._stopping:
            return "server shutting down"
        if len(self._connections) >= self.settings.max_connections:
            return "too many connections"
        if ip and self._per_ip[ip] >= self.settings.max_connections_per_ip:
            return "too many connections from your address"
        return None


def _utc_epoch(value: datetime.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


class Connection:
    """One IMAP connection."""

    def __init__(
        self,
        server: ImapServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        clog: ConnectionLogger,
        ip: str,
        implicit_tls: bool,
        loopback: bool,
    ) -> None:
        self.server = server
        self.store = server.store
        self.settings = server.settings
        self.reader = reader
        self.writer = writer
        self.log = clog
        self.ip = ip
        self.loopback = loopback
        self.tls_active = implicit_tls
        self.state = State.NOT_AUTHENTICATED
        self.parser = CommandParser(
            Limits(max_line_bytes=self.settings.max_line_bytes,
                   max_literal_bytes=self.settings.max_literal_bytes)
        )
        self.account_id: AccountId | None = None
        self.address = ""
        self.view: MailboxView | None = None
        self.subscription: ev.Subscription | None = None
        self.dirty = False
        self.overflowed = False
        self.rev2 = False
        self.utf8 = False
        self.qresync = False
        self.saved_uids: list[int] = []  # SEARCHRES (RFC 5182)
        self.condstore = False  # RFC 7162 §3.1: MODSEQ in FETCH responses once enabled
        self.bad_count = 0
        self._tokens = self.settings.max_commands_per_s
        self._last_command = time.monotonic()
        self._inflate: zlib._Decompress | None = None  # COMPRESS=DEFLATE (RFC 4978)
        self._deflate: zlib._Compress | None = None
        self._out: list[bytes] = []
        self._pending_read: asyncio.Task[bytes] | None = None

    # ------------------------------------------------------------ state helpers

    @property
    def auth_ok(self) -> bool:
        return auth_allowed(
            tls_active=self.tls_active,
            loopback=self.loopback,
            allow_plaintext_on_loopback=self.settings.allow_plaintext_auth_on_loopback,
        )

    def caps(self) -> tuple[str, ...]:
        return capabilities(
            state=self.state,
            tls_active=self.tls_active,
            tls_available=self.server.tls_context is not None,
            auth_ok=self.auth_ok,
            append_limit=self.settings.max_literal_bytes,
        )

    def mbox(self, name: str) -> bytes:
        return wire_mailbox(name, utf8=self.rev2 or self.utf8)

    def send(self, data: bytes) -> None:
        self._out.append(data)

    async def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            if self._deflate is not None:
                data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
            self.writer.write(data)
            try:
                await asyncio.wait_for(self.writer.drain(), self.settings.idle_timeout_s)
            except TimeoutError:
                raise _Closed() from None

    async def read(self) -> bytes:
        """The next bytes from the client (inflated under COMPRESS=DEFLATE)."""
        while True:
            pending = self._inflate is not None and bool(self._inflate.unconsumed_tail)
            data = b"" if pending else await self._read_raw()
            if self._inflate is None:
                return data
            try:
                # Bounded per call, so a compression bomb cannot take all memory at once.
                data = self._inflate.decompress(self._inflate.unconsumed_tail + data, READ_BYTES * 16)
            except zlib.error:
                self.send(untagged_status("BYE", "invalid compressed data"))
                raise _Closed() from None
            if data:
                return data

    async def _read_raw(self) -> bytes:
        if self._pending_read is not None:
            task, self._pending_read = self._pending_read, None
            data = await task
        else:
            try:
                data = await asyncio.wait_for(
                    self.reader.read(READ_BYTES), self.settings.idle_timeout_s
                )
            except TimeoutError:
                self.send(untagged_status("BYE", "autologout: idle for too long"))
                await self.flush()
                raise _Closed() from None
        if not data:
            raise _Closed()
        return data

    def shut_down(self, reason: str) -> None:
        """Server stopping: untagged BYE, then close the transport (no await needed)."""
        data = b"".join(self._out) + untagged_status("BYE", reason)
        self._out.clear()
        if self._deflate is not None:
            data = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        with contextlib.suppress(Exception):
            self.writer.write(data)
            self.writer.close()

    def close(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None
        if self._pending_read is not None:
            self._pending_read.cancel()

    # ------------------------------------------------------------ main loop

    async def run(self) -> None:
        self.send(
            untagged_status(
                "OK", f"{self.settings.hostname} IMAP ready",
                code=response_code("CAPABILITY", " ".join(self.caps())),
            )
        )
        await self.flush()
        parser = self.parser
        while self.state is not State.LOGOUT:
            event = parser.next_event()
            match event:
                case NeedData():
                    if parser.closed:
                        return
                    parser.receive_data(await self.read())
                case ContinuationNeeded(tag=tag, command=name):
                    if name == "APPEND" and self.state is State.NOT_AUTHENTICATED:
                        parser.reject_literal()
                        self.send(tagged(tag, "BAD", "APPEND needs authentication"))
                    else:
                        self.send(continuation("Ready"))
                case ParseError() | LimitExceeded():
                    self.send(error_response(event))
                    if isinstance(event, LimitExceeded) and event.fatal:
                        await self.flush()
                        return
                    self.bad_count += 1
                case Command(tag=tag, command=command):
                    await self._pace()
                    if await self.dispatch(tag, command):
                        self.bad_count = 0
                    else:
                        self.bad_count += 1
                case Line():
                    pass  # only in expect_line mode, consumed by AUTHENTICATE / IDLE
            if self.bad_count >= MAX_BAD_COMMANDS:
                self.send(untagged_status("BYE", "too many invalid commands"))
                self.log.info("closing: %d invalid commands in a row", self.bad_count)
                await self.flush()
                return
            await self.flush()

    async def _pace(self) -> None:
        """Token bucket of ``max_commands_per_s`` (burst of one second's worth)."""
        rate = self.settings.max_commands_per_s
        if rate <= 0:
            return
        now = time.monotonic()
        self._tokens = min(rate, self._tokens + (now - self._last_command) * rate)
        self._last_command = now
        if self._tokens < 1:
            await self.flush()
            await asyncio.sleep((1 - self._tokens) / rate)
            self._tokens = 1
            self._last_command = time.monotonic()
        self._tokens -= 1

    async def dispatch(self, tag: str, command: c.ImapCommand) -> bool:
        """Run one command; False when it was answered with BAD."""
        if isinstance(command, c.Unknown):
            self.send(tagged(tag, "BAD", f"unknown command {command.name}"))
            return False
        if not allowed(command, self.state):
            self.send(tagged(tag, "BAD", f"command not allowed in state {self.state.value}"))
            return False
        handler = getattr(self, "cmd_" + type(command).__name__.lower(), None)
        if handler is None:
            self.send(tagged(tag, "BAD", "command not supported"))
            return False
        try:
            text = await handler(tag, command)
        except _Bad as exc:
            self.send(tagged(tag, "BAD", exc.text, code=exc.code))
            return False
        except _No as exc:
            self.send(tagged(tag, "NO", exc.text, code=exc.code))
        except UserError as exc:
            self.send(tagged(tag, "NO", str(exc)))
        except TemporaryError as exc:
            self.send(tagged(tag, "NO", str(exc), code=response_code("UNAVAILABLE")))
        except (_Closed, asyncio.CancelledError, ConnectionError):
            raise
        except Exception:
            self.log.exception("command %s failed", type(command).__name__)
            self.send(tagged(tag, "NO", "internal error", code=response_code("SERVERBUG")))
        else:
            if text is not None:
                self.send(text)
        return True

    # ------------------------------------------------------------ change reporting

    def _drain_bus(self) -> None:
        sub = self.subscription
        if sub is None:
            return
        while (event := sub.get_nowait()) is not None:
            self._note(event)

    def _note(self, event: ev.Event) -> None:
        view = self.view
        if view is None:
            return
        if isinstance(event, ev.Overflow) or (
            isinstance(event, ev.MessageAdded | ev.FlagsChanged | ev.Expunged)
            and event.mailbox_id == view.mailbox_id
        ):
            self.dirty = True

    async def report_changes(self, *, allow_expunge: bool) -> None:
        """Untagged EXISTS / EXPUNGE / FETCH for changes since the last report."""
        self._drain_bus()
        view = self.view
        if view is None or not (self.dirty or (allow_expunge and view.ghosts)):
            return
        self.dirty = False
        mid = MailboxId(view.mailbox_id)
        top = view.max_uid()
        if self.overflowed:
            # Lost bus events: compare the whole listing (rare; the bus said so).
            self.overflowed = False
            listing = await self.store.list_messages(mid)
            lines = view.sync(listing, allow_expunge=allow_expunge, modseq=self.condstore)
            view.highestmodseq = max((int(i.modseq) for i in listing), default=view.highestmodseq)
        else:
            changes = await self.store.changes_since(mid, ModSeq(view.highestmodseq))
            lines = view.apply(
                changes.changed, changes.vanished, int(changes.highestmodseq),
                allow_expunge=allow_expunge, modseq=self.condstore,
            )
        for line in lines:
            self.send(line)
        if view.max_uid() > top and not self.rev2:
            # RFC 3501 §7.3.2: RECENT goes with EXISTS; this session is the first told
            # about the new messages unless another one claimed them already.
            self._claim_recent(view, view.uids[bisect.bisect_right(view.uids, top):])
            self.send(untagged(b"%d" % len(view.recent), b"RECENT"))

    def _claim_recent(self, view: MailboxView, uids: Sequence[int]) -> None:
        """RFC 3501 §2.3.2: mark the *uids* above the mailbox's watermark \\Recent here;
        a read-write session takes them (EXAMINE must not, RFC 3501 §6.3.2)."""
        if not uids:
            return
        marks = self.server.recent
        if view.readonly:
            previous = marks.peek(view.mailbox_id, view.uidvalidity)
        else:
            previous = marks.claim(view.mailbox_id, view.uidvalidity, max(uids))
        view.mark_recent(u for u in uids if u > previous)

    # ------------------------------------------------------------ any state

    async def cmd_capability(self, tag: str, cmd: c.Capability) -> bytes:
        self.send(capability_line(self.caps()))
        return tagged(tag, "OK", "CAPABILITY completed")

    async def cmd_noop(self, tag: str, cmd: c.Noop) -> bytes:
        await self.report_changes(allow_expunge=True)
        return tagged(tag, "OK", "NOOP completed")

    async def cmd_check(self, tag: str, cmd: c.Check) -> bytes:
        await self.report_changes(allow_expunge=True)
        return tagged(tag, "OK", "CHECK completed")

    async def cmd_logout(self, tag: str, cmd: c.Logout) -> bytes:
        self.send(untagged_status("BYE", "logging out"))
        self.state = State.LOGOUT
        return tagged(tag, "OK", "LOGOUT completed")

    async def cmd_id(self, tag: str, cmd: c.Id) -> bytes:
        self.send(untagged(b"ID", paren_list([quoted("name"), quoted("postier")])))
        return tagged(tag, "OK", "ID completed")

    # ------------------------------------------------------------ not authenticated

    async def cmd_starttls(self, tag: str, cmd: c.StartTLS) -> None:
        ctx = self.server.tls_context
        if ctx is None or self.tls_active:
            raise _Bad("STARTTLS not available")
        # RFC 9051 §6.2.1 / CVE-2011-0411: anything pipelined after STARTTLS is dropped.
        # Cleared before the OK goes out: after it, the buffer holds the ClientHello.
        if self.parser.buffered_bytes:
            self.log.warning("discarding %d octets pipelined after STARTTLS", self.parser.buffered_bytes)
            self.parser.clear_buffer()
        buffered = getattr(self.reader, "_buffer", None)
        if isinstance(buffered, bytearray) and buffered:
            self.log.warning("discarding %d octets pipelined after STARTTLS", len(buffered))
            buffered.clear()
        self.send(tagged(tag, "OK", "begin TLS negotiation now"))
        self.writer.write(b"".join(self._out))  # no await between this and start_tls
        self._out.clear()
        await self.writer.start_tls(ctx, ssl_handshake_timeout=self.settings.tls_handshake_timeout_s)
        self.tls_active = True
        self.log.info("STARTTLS: %s", describe_tls(self.writer.get_extra_info("ssl_object")))
        return None

    async def cmd_login(self, tag: str, cmd: c.Login) -> bytes:
        if not self.auth_ok:
            raise _No("LOGIN disabled before STARTTLS", response_code("PRIVACYREQUIRED"))
        user = cmd.user.decode("utf-8", "replace")
        result = await self.server.authenticator.check_password(
            user, cmd.password.decode("utf-8", "replace"), self.ip
        )
        return await self._login_result(tag, result, user)

    async def cmd_authenticate(self, tag: str, cmd: c.Authenticate) -> bytes:
        if not self.auth_ok:
            raise _No("authentication disabled before STARTTLS", response_code("PRIVACYREQUIRED"))
        mech = cmd.mechanism.upper()
        if mech not in SASL_MECHANISMS:
            raise _No(f"mechanism {mech} not supported")
        outcome = await self.server.authenticator.authenticate(
            mech, cmd.initial_response, self.ip, self._exchange
        )
        if isinstance(outcome, Cancelled):
            raise _Bad("authentication cancelled")
        if isinstance(outcome, Malformed):
            raise _Bad("malformed authentication data")
        return await self._login_result(tag, outcome, f"AUTHENTICATE {mech}")

    async def _exchange(self, challenge: bytes) -> bytes | Cancelled | Malformed:
        """SASL challenge out (``+ base64``), one client line in (RFC 9051 §6.2.2)."""
        self.send(continuation(base64.b64encode(challenge)))
        await self.flush()
        self.parser.expect_line()
        while True:
            event = self.parser.next_event()
            if isinstance(event, NeedData):
                self.parser.receive_data(await self.read())
                continue
            if isinstance(event, Line):
                return decode_client_data(event.data)
            return Malformed("unexpected input during authentication")

    async def _login_result(self, tag: str, result: Ok | Failed | Refused, who: str) -> bytes:
        match result:
            case Ok(account_id=account_id, address=address, final_data=final_data):
                # RFC 9051 §6.2.2: additional data with success goes in a continuation; the
                # client answers with an empty line.
                if final_data is not None and await self._exchange(final_data) != b"":
                    raise _No("authentication failed", response_code("AUTHENTICATIONFAILED"))
                self.account_id = AccountId(account_id)
                self.address = address
                self.state = State.AUTHENTICATED
                self.subscription = self.store.bus.subscribe(self.account_id)
                self.log.info("login as %s", address)
                return tagged(
                    tag, "OK", "logged in",
                    code=response_code("CAPABILITY", " ".join(self.caps())),
                )
            case Failed(delay_s=delay_s):
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                raise _No("authentication failed", response_code("AUTHENTICATIONFAILED"))
            case Refused():
                raise _No("too many failures, try later", response_code("UNAVAILABLE"))
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------ authenticated

    async def cmd_enable(self, tag: str, cmd: c.Enable) -> bytes:
        done: list[bytes] = []
        for cap in cmd.capabilities:
            if cap not in ENABLEABLE:
                continue
            if cap == "IMAP4REV2" and not self.rev2:
                self.rev2 = True
                self.parser.utf8 = True  # RFC 9051 §5.1: UTF-8 mailbox names
                if self.view is not None:
                    self.view.forget_recent()
                done.append(b"IMAP4rev2")
            elif cap == "UTF8=ACCEPT" and not self.utf8:
                self.utf8 = True  # RFC 6855 §3
                self.parser.utf8 = True
                done.append(b"UTF8=ACCEPT")
            elif cap == "QRESYNC" and not self.qresync:
                self.qresync = self.condstore = True  # RFC 7162 §3.2.3: implies CONDSTORE
                if self.view is not None:
                    self.view.vanished = True
                done.append(b"QRESYNC")
            elif cap == "CONDSTORE" and not self.condstore:
                self.condstore = True
                done.append(b"CONDSTORE")
        self.send(untagged(b"ENABLED", *done) if done else b"* ENABLED\r\n")
        return tagged(tag, "OK", "ENABLE completed")

    async def _mailbox(self, name: str, *, trycreate: bool = False) -> Mailbox:
        assert self.account_id is not None
        found = await self.store.get_mailbox(self.account_id, name)
        if found is None:
            raise _No("no such mailbox", response_code("TRYCREATE" if trycreate else "NONEXISTENT"))
        return found

    async def cmd_select(self, tag: str, cmd: c.Select | c.Examine) -> bytes:
        readonly = isinstance(cmd, c.Examine)
        if cmd.condstore:
            self.condstore = True  # RFC 7162 §3.1.8: SELECT (CONDSTORE) enables it
        if cmd.qresync is not None and not self.qresync:
            raise _Bad("QRESYNC parameter without ENABLE QRESYNC")  # RFC 7162 §3.2.5
        if self.view is not None:
            self.view = None
            self.state = State.AUTHENTICATED
            self.send(untagged_status("OK", "previous mailbox closed", code=response_code("CLOSED")))
        # Events queued so far are older than what is read next; later ones stay queued and
        # are replayed from the mailbox's HIGHESTMODSEQ read here (before the listing).
        self._drain_bus()
        self.dirty = False
        mb = await self._mailbox(cmd.mailbox)
        listing = await self.store.list_messages(mb.id)
        view = MailboxView.open(int(mb.id), mb.name, readonly, mb.uidvalidity, listing)
        self.saved_uids = []
        view.vanished = self.qresync
        # Read before the listing, so every later change is after it (and replaying one
        # that the listing already holds is harmless: nothing differs).
        view.highestmodseq = int(mb.highestmodseq)
        if not self.rev2:
            self._claim_recent(view, view.uids)
        for line in select_responses(view, mb, rev2=self.rev2, utf8=self.rev2 or self.utf8):
            self.send(line)
        self.view = view
        self.state = State.SELECTED
        if cmd.qresync is not None and cmd.qresync.uidvalidity == mb.uidvalidity:
            await self._resync(view, cmd.qresync)
        code = response_code("READ-ONLY" if readonly else "READ-WRITE")
        return tagged(tag, "OK", "EXAMINE completed" if readonly else "SELECT completed", code=code)

    cmd_examine = cmd_select

    async def _resync(self, view: MailboxView, q: c.QResync) -> None:
        """RFC 7162 §3.2.5.1: VANISHED (EARLIER) and FETCH for what changed since *q*."""
        changes = await self.store.changes_since(MailboxId(view.mailbox_id), ModSeq(q.modseq))
        top = max(view.max_uid(), max((int(u) for u in changes.vanished), default=0))
        known = q.known_uids
        vanished = [
            int(u) for u in changes.vanished
            if known is None or known.contains(int(u), top)
        ]
        if vanished:
            self.send(untagged(b"VANISHED", b"(EARLIER)", compress_uids(vanished)))
        for info in changes.changed:
            seq = view.seq_of(int(info.uid))
            if seq is not None:
                self.send(fetch_flags_line(seq, int(info.uid), info.flags, int(info.modseq)))


    async def cmd_create(self, tag: str, cmd: c.Create) -> bytes:
        assert self.account_id is not None
        name = cmd.mailbox.rstrip(SEP)
        if not name or name.upper() == "INBOX":
            raise _No("cannot create that mailbox", response_code("ALREADYEXISTS"))
        if await self.store.get_mailbox(self.account_id, name) is not None:
            raise _No("mailbox exists", response_code("ALREADYEXISTS"))
        # RFC 9051 §6.3.4: create the superior hierarchy as needed.
        parts = name.split(SEP)
        for i in range(1, len(parts)):
            parent = SEP.join(parts[:i])
            if parent and await self.store.get_mailbox(self.account_id, parent) is None:
                await self.store.create_mailbox(self.account_id, parent)
        special = cmd.special_use[0] if cmd.special_use else None
        await self.store.create_mailbox(self.account_id, name, special)
        return tagged(tag, "OK", "CREATE completed")

    async def cmd_delete(self, tag: str, cmd: c.Delete) -> bytes:
        if cmd.mailbox.upper() == "INBOX":
            raise _No("INBOX cannot be deleted", response_code("CANNOT"))
        mb = await self._mailbox(cmd.mailbox)
        if self.view is not None and self.view.mailbox_id == mb.id:
            self.view = None
            self.state = State.AUTHENTICATED
        await self.store.delete_mailbox(mb.id)
        return tagged(tag, "OK", "DELETE completed")

    async def cmd_rename(self, tag: str, cmd: c.Rename) -> bytes:
        assert self.account_id is not None
        mb = await self._mailbox(cmd.mailbox)
        new = cmd.new_name.rstrip(SEP)
        if await self.store.get_mailbox(self.account_id, new) is not None:
            raise _No("target exists", response_code("ALREADYEXISTS"))
        if mb.name == "INBOX":
            # RFC 9051 §6.3.6: renaming INBOX moves its messages to the new mailbox.
            target = await self.store.create_mailbox(self.account_id, new)
            uids = [i.uid for i in await self.store.list_messages(mb.id)]
            if uids:
                await self.store.copy(mb.id, uids, target.id, move=True)
            return tagged(tag, "OK", "RENAME completed")
        children = [
            m for m in await self.store.list_mailboxes(self.account_id)
            if m.name.startswith(mb.name + SEP)
        ]
        await self.store.rename_mailbox(mb.id, new)
        for child in children:
            if await self.store.get_mailbox_by_id(child.id) is not None:
                current = await self.store.get_mailbox_by_id(child.id)
                if current is not None and current.name.startswith(mb.name + SEP):
                    await self.store.rename_mailbox(child.id, new + current.name[len(mb.name):])
        return tagged(tag, "OK", "RENAME completed")

    async def cmd_subscribe(self, tag: str, cmd: c.Subscribe) -> bytes:
        assert self.account_id is not None
        mb = await self._mailbox(cmd.mailbox)
        await self.store.set_subscribed(self.account_id, mb.name, True)
        return tagged(tag, "OK", "SUBSCRIBE completed")

    async def cmd_unsubscribe(self, tag: str, cmd: c.Unsubscribe) -> bytes:
        assert self.account_id is not None
        mb = await self.store.get_mailbox(self.account_id, cmd.mailbox)
        if mb is not None:
            await self.store.set_subscribed(self.account_id, mb.name, False)
        return tagged(tag, "OK", "UNSUBSCRIBE completed")

    async def cmd_namespace(self, tag: str, cmd: c.Namespace) -> bytes:
        self.send(untagged(b"NAMESPACE", b'(("" ' + quoted(SEP) + b"))", b"NIL", b"NIL"))
        return tagged(tag, "OK", "NAMESPACE completed")

    async def _list(
        self,
        reference: str,
        patterns: Sequence[str],
        *,
        lsub: bool,
        subscribed_only: bool,
        show_subscribed: bool,
        special_only: bool = False,
        recursive: bool = False,
        extended: bool = False,
        status_items: tuple[c.StatusItem, ...] = (),
    ) -> None:
        assert self.account_id is not None
        boxes = await self.store.list_mailboxes(self.account_id) if patterns != ("",) else []
        options = ListOptions(
            lsub=lsub, subscribed_only=subscribed_only, show_subscribed=show_subscribed,
            special_only=special_only, recursive=recursive, extended=extended,
            nonexistent=self.rev2 or extended, utf8=self.rev2 or self.utf8,
        )
        for line, mb in list_responses(boxes, reference, patterns, options):
            self.send(line)
            if status_items and mb is not None:
                self.send(await self._status_line(mb, status_items))

    async def cmd_list(self, tag: str, cmd: c.List) -> bytes:
        await self._list(
            cmd.reference,
            cmd.patterns,
            lsub=False,
            subscribed_only=c.ListSelect.SUBSCRIBED in cmd.select,
            show_subscribed=c.ListReturn.SUBSCRIBED in cmd.returns or c.ListSelect.SUBSCRIBED in cmd.select,
            special_only=c.ListSelect.SPECIAL_USE in cmd.select,
            recursive=c.ListSelect.RECURSIVEMATCH in cmd.select,
            extended=cmd.extended,
            status_items=cmd.status_items,
        )
        return tagged(tag, "OK", "LIST completed")

    async def cmd_lsub(self, tag: str, cmd: c.Lsub) -> bytes:
        await self._list(cmd.reference, (cmd.pattern,), lsub=True, subscribed_only=True, show_subscribed=False)
        return tagged(tag, "OK", "LSUB completed")

    async def _status_line(self, mb: Mailbox, items: Sequence[c.StatusItem]) -> bytes:
        st = await self.store.mailbox_status(mb.id)
        values = {
            c.StatusItem.MESSAGES: st.messages,
            c.StatusItem.UIDNEXT: int(st.mailbox.uidnext),
            c.StatusItem.UIDVALIDITY: st.mailbox.uidvalidity,
            c.StatusItem.UNSEEN: st.unseen,
            c.StatusItem.DELETED: st.deleted,
            c.StatusItem.SIZE: st.size,
            c.StatusItem.RECENT: await self._recent_count(mb) if c.StatusItem.RECENT in items else 0,
            c.StatusItem.HIGHESTMODSEQ: int(st.mailbox.highestmodseq),
            c.StatusItem.APPENDLIMIT: self.settings.max_literal_bytes,
        }
        out: list[bytes] = []
        for item in items:
            if item in values:
                out += [item.value.encode("ascii"), b"%d" % values[item]]
        return untagged(b"STATUS", self.mbox(mb.name), paren_list(out))

    async def _recent_count(self, mb: Mailbox) -> int:
        """STATUS RECENT (RFC 3501 §6.3.10): what the next SELECT would see as recent."""
        above = self.server.recent.peek(int(mb.id), mb.uidvalidity)
        if int(mb.uidnext) <= above + 1:
            return 0
        return sum(1 for i in await self.store.list_messages(mb.id) if int(i.uid) > above)

    async def cmd_status(self, tag: str, cmd: c.Status) -> bytes:
        mb = await self._mailbox(cmd.mailbox)
        self.send(await self._status_line(mb, cmd.items))
        return tagged(tag, "OK", "STATUS completed")

    async def cmd_append(self, tag: str, cmd: c.Append) -> bytes:
        mb = await self._mailbox(cmd.mailbox, trycreate=True)
        news: list[NewMessage] = []
        for msg in cmd.messages:
            if not msg.data:
                raise _No("empty message")
            body = await self.store.prepare_body(msg.data)
            _check_system_flags(msg.flags)
            flags = frozenset(f for f in msg.flags if f.lower() != "\\recent")
            news.append(NewMessage(mb.id, body, flags=flags, internal_date=_utc_epoch(msg.internal_date)))
        try:
            appended = await self.store.append(news)
        except QuotaExceeded as exc:
            raise _No(str(exc), response_code("OVERQUOTA")) from None  # RFC 9208 §4.3
        await self.report_changes(allow_expunge=True)
        uids = compress_uids(int(a.uid) for a in appended)
        code = response_code("APPENDUID", b"%d %s" % (appended[0].uidvalidity, uids))
        return tagged(tag, "OK", "APPEND completed", code=code)

    async def cmd_idle(self, tag: str, cmd: c.Idle) -> bytes:
        """RFC 2177: report changes as they happen until DONE."""
        await self.report_changes(allow_expunge=True)
        self.send(continuation("idling"))
        await self.flush()
        self.parser.expect_line()
        sub = self.subscription
        while True:
            event = self.parser.next_event()
            if isinstance(event, Line):
                if event.data.strip().upper() == b"DONE":
                    return tagged(tag, "OK", "IDLE terminated")
                raise _Bad("expected DONE")
            if not isinstance(event, NeedData):
                raise _Bad("expected DONE")
            if self._pending_read is None:
                self._pending_read = asyncio.ensure_future(self.reader.read(READ_BYTES))
            waiters: set[asyncio.Future[Any]] = {self._pending_read}
            bus_wait: asyncio.Task[ev.Event] | None = None
            if sub is not None:
                bus_wait = asyncio.ensure_future(sub.get())
                waiters.add(bus_wait)
            done, _ = await asyncio.wait(
                waiters, timeout=self.settings.idle_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if bus_wait is not None and bus_wait not in done:
                bus_wait.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await bus_wait
            if not done:
                self.send(untagged_status("BYE", "autologout: idle for too long"))
                await self.flush()
                raise _Closed()
            if bus_wait is not None and bus_wait in done:
                self._note(bus_wait.result())
                await asyncio.sleep(IDLE_REPORT_S)
                await self.report_changes(allow_expunge=True)
                await self.flush()
            if self._pending_read in done:
                self.parser.receive_data(await self.read())

    async def cmd_compress(self, tag: str, cmd: c.Compress) -> None:
        """RFC 4978: raw DEFLATE (RFC 1951) both ways after the OK."""
        if self._deflate is not None:
            raise _No("compression already active", response_code("COMPRESSIONACTIVE"))
        if cmd.mechanism != "DEFLATE":
            raise _Bad("only DEFLATE is supported")
        # Input pipelined before the OK would be read in the wrong layer: drop it.
        if self.parser.buffered_bytes:
            self.parser.clear_buffer()
        buffered = getattr(self.reader, "_buffer", None)
        if isinstance(buffered, bytearray) and buffered:
            buffered.clear()
        self.send(tagged(tag, "OK", "DEFLATE active"))
        await self.flush()
        self._inflate = zlib.decompressobj(-15)
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        return None

    # ------------------------------------------------------------ QUOTA (RFC 9208)

    async def _quota_line(self) -> bytes:
        assert self.account_id is not None
        account = await self.store.get_account_by_id(self.account_id)
        resources: list[bytes] = []
        if account is not None and account.quota_bytes > 0:
            # RFC 9208 §5.1: STORAGE is in units of 1024 octets.
            used_kib = (account.used_bytes + 1023) // 1024
            resources = [b"STORAGE", b"%d" % used_kib, b"%d" % (account.quota_bytes // 1024)]
        return untagged(b"QUOTA", b'""', paren_list(resources))

    async def cmd_getquotaroot(self, tag: str, cmd: c.GetQuotaRoot) -> bytes:
        mb = await self._mailbox(cmd.mailbox)
        self.send(untagged(b"QUOTAROOT", self.mbox(mb.name), b'""'))
        self.send(await self._quota_line())
        return tagged(tag, "OK", "GETQUOTAROOT completed")

    async def cmd_getquota(self, tag: str, cmd: c.GetQuota) -> bytes:
        if cmd.root != "":
            raise _No("no such quota root", response_code("NONEXISTENT"))
        self.send(await self._quota_line())
        return tagged(tag, "OK", "GETQUOTA completed")

    async def cmd_setquota(self, tag: str, cmd: c.SetQuota) -> bytes:
        raise _No("quotas are set by the administrator", response_code("NOPERM"))

    # ------------------------------------------------------------ selected

    def _view(self) -> MailboxView:
        assert self.view is not None
        return self.view

    def _writable(self) -> MailboxView:
        view = self._view()
        if view.readonly:
            raise _No("mailbox is read-only", response_code("READ-ONLY"))
        return view

    def _resolve(self, seqset: c.SequenceSet, uid: bool) -> list[tuple[int, int]]:
        view = self._view()
        if seqset.saved:
            # RFC 5182 §2.1: "$" is the saved result (UIDs kept, so expunges drop out).
            return [(s, u) for u in self.saved_uids if (s := view.seq_of(u)) is not None]
        pairs = view.resolve(seqset, uid=uid)
        if pairs is None:
            raise _Bad("invalid message sequence number")
        return pairs

    def _deselect(self) -> None:
        self.view = None
        self.state = State.AUTHENTICATED
        self.dirty = False

    async def cmd_close(self, tag: str, cmd: c.Close) -> bytes:
        view = self._view()
        if not view.readonly:
            await self.store.expunge(MailboxId(view.mailbox_id))  # silently (RFC 9051 §6.4.1)
        self._deselect()
        return tagged(tag, "OK", "CLOSE completed")

    async def cmd_unselect(self, tag: str, cmd: c.Unselect) -> bytes:
        self._deselect()
        return tagged(tag, "OK", "UNSELECT completed")

    async def cmd_expunge(self, tag: str, cmd: c.Expunge) -> bytes:
        view = self._writable()
        gone = await self.store.expunge(MailboxId(view.mailbox_id))
        for line in view.remove(int(u) for u in gone):
            self.send(line)
        await self.report_changes(allow_expunge=True)
        return tagged(tag, "OK", "EXPUNGE completed")

    async def cmd_uidexpunge(self, tag: str, cmd: c.UidExpunge) -> bytes:
        view = self._writable()
        uids = [Uid(u) for _, u in view.live(self._resolve(cmd.seqset, True))]
        gone = await self.store.expunge(MailboxId(view.mailbox_id), uids) if uids else []
        for line in view.remove(int(u) for u in gone):
            self.send(line)
        await self.report_changes(allow_expunge=True)
        return tagged(tag, "OK", "UID EXPUNGE completed")

    async def cmd_fetch(self, tag: str, cmd: c.Fetch) -> bytes:
        view = self._view()
        await self.report_changes(allow_expunge=cmd.uid)
        requested = self._resolve(cmd.seqset, cmd.uid)
        pairs = view.live(requested)
        expunge_issued = len(pairs) < len(requested)
        if cmd.vanished:
            # RFC 7162 §3.2.6: UID FETCH ... (CHANGEDSINCE m VANISHED) needs QRESYNC.
            if not (self.qresync and cmd.uid and cmd.changedsince is not None):
                raise _Bad("VANISHED needs QRESYNC, UID FETCH and CHANGEDSINCE")
            changes = await self.store.changes_since(MailboxId(view.mailbox_id), ModSeq(cmd.changedsince))
            top = max(view.max_uid(), max((int(u) for u in changes.vanished), default=0))
            gone = [int(u) for u in changes.vanished if cmd.seqset.contains(int(u), top)]
            if gone:
                self.send(untagged(b"VANISHED", b"(EARLIER)", compress_uids(gone)))
        if cmd.changedsince is not None:
            # RFC 7162 §3.1.4.1: only messages whose MODSEQ is higher; enables CONDSTORE.
            self.condstore = True
            pairs = [(s, u) for s, u in pairs if int(view.infos[u].modseq) > cmd.changedsince]
        if c.FetchAttr.MODSEQ in cmd.items:
            self.condstore = True  # RFC 7162 §3.1: FETCH MODSEQ is a CONDSTORE-enabling command
        need = fetchmod.needs(cmd.items)
        mid = MailboxId(view.mailbox_id)
        seen_set: set[int] = set()
        if need.sets_seen and not view.readonly:
            unseen = [Uid(u) for _, u in pairs if "\\Seen" not in view.infos[u].flags]
            if unseen:
                result = await self.store.store_flags(mid, unseen, FlagMode.ADD, frozenset({"\\Seen"}))
                for upd in result.updated:
                    old = view.infos.get(int(upd.uid))
                    if old is not None:
                        view.update(_with_flags(old, upd.flags, int(upd.modseq)))
                        seen_set.add(int(upd.uid))
        for start in range(0, len(pairs), 200):
            chunk = pairs[start : start + 200]
            metas = {}
            if need.meta:
                metas = {int(m.info.uid): m for m in await self.store.fetch_meta(mid, [Uid(u) for _, u in chunk])}
            for seq, uid in chunk:
                info = view.infos.get(uid)
                if info is None:
                    continue
                data = fetchmod.MessageData(info, metas.get(uid))
                if need.meta and data.meta is None:
                    continue  # expunged meanwhile
                if need.raw:
                    data.raw = await self.store.read_message(mid, Uid(uid))
                    if data.raw is None:
                        continue
                self.send(
                    fetchmod.render(
                        seq, data, cmd.items, uid=cmd.uid, add_flags=uid in seen_set,
                        modseq=self.condstore,
                    )
                )
            await self.flush()
        await self.report_changes(allow_expunge=cmd.uid)
        if expunge_issued:
            # RFC 9051 §7.1: some were expunged by another session (not reported yet).
            raise _No("some messages were expunged meanwhile", response_code("EXPUNGEISSUED"))
        return tagged(tag, "OK", "UID FETCH completed" if cmd.uid else "FETCH completed")

    async def cmd_store(self, tag: str, cmd: c.Store) -> bytes:
        view = self._writable()
        await self.report_changes(allow_expunge=cmd.uid)
        requested = self._resolve(cmd.seqset, cmd.uid)
        pairs = view.live(requested)
        expunge_issued = len(pairs) < len(requested)
        mode = {c.StoreMode.ADD: FlagMode.ADD, c.StoreMode.REMOVE: FlagMode.REMOVE,
                c.StoreMode.REPLACE: FlagMode.REPLACE}[cmd.mode]
        _check_system_flags(cmd.flags)
        flags = frozenset(f for f in cmd.flags if f.lower() != "\\recent")
        uids = [Uid(u) for _, u in pairs]
        result = await self.store.store_flags(
            MailboxId(view.mailbox_id), uids, mode, flags,
            None if cmd.unchangedsince is None else ModSeq(cmd.unchangedsince),
        ) if uids else None
        updated = {int(u.uid): u for u in result.updated} if result else {}
        for seq, uid in pairs:
            old = view.infos.get(uid)
            if old is None:
                continue
            upd = updated.get(uid)
            if upd is not None:
                view.update(_with_flags(old, upd.flags, int(upd.modseq)))
            if not cmd.silent and (upd is not None or cmd.unchangedsince is None):
                info = view.infos[uid]
                items = [b"FLAGS", flag_list(sorted(info.flags))]
                if cmd.uid:
                    items += [b"UID", b"%d" % uid]
                if cmd.unchangedsince is not None or self.condstore:
                    items += [b"MODSEQ", b"(%d)" % info.modseq]
                self.send(untagged(b"%d" % seq, b"FETCH", paren_list(items)))
        await self.report_changes(allow_expunge=cmd.uid)
        code = None
        if result is not None and result.failed:
            # RFC 7162 §3.1.3: MODIFIED lists UIDs for UID STORE, sequence numbers for STORE.
            failed = {int(u) for u in result.failed}
            numbers = [u if cmd.uid else s for s, u in pairs if u in failed]
            code = response_code("MODIFIED", compress_uids(numbers))
        if expunge_issued:
            raise _No("some messages were expunged meanwhile", response_code("EXPUNGEISSUED"))
        return tagged(tag, "OK", "STORE completed", code=code)

    async def _copy(self, tag: str, cmd: c.Copy | c.Move, move: bool) -> bytes:
        view = self._writable() if move else self._view()
        await self.report_changes(allow_expunge=cmd.uid or move)
        pairs = view.live(self._resolve(cmd.seqset, cmd.uid))
        dest = await self._mailbox(cmd.mailbox, trycreate=True)
        name = "MOVE" if move else "COPY"
        if not pairs:
            return tagged(tag, "OK", f"{name} completed (nothing to do)")
        result = await self.store.copy(
            MailboxId(view.mailbox_id), [Uid(u) for _, u in pairs], dest.id, move=move
        )
        code = response_code(
            "COPYUID",
            b"%d %s %s" % (
                result.uidvalidity,
                b",".join(b"%d" % u for u in result.source_uids),
                b",".join(b"%d" % u for u in result.dest_uids),
            ),
        )
        if move:
            # RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs.
            self.send(untagged_status("OK", "moved", code=code))
            for line in view.remove(int(u) for u in result.source_uids):
                self.send(line)
            await self.report_changes(allow_expunge=True)
            return tagged(tag, "OK", "MOVE completed")
        await self.report_changes(allow_expunge=cmd.uid)
        return tagged(tag, "OK", "COPY completed", code=code)

    async def cmd_copy(self, tag: str, cmd: c.Copy) -> bytes:
        return await self._copy(tag, cmd, False)

    async def cmd_move(self, tag: str, cmd: c.Move) -> bytes:
        return await self._copy(tag, cmd, True)

    async def _search(self, criteria: c.SearchKey) -> list[tuple[int, MessageInfo]]:
        """The messages matching *criteria*: ``[(seq, info)]`` ascending."""
        view = self._view()
        mid = MailboxId(view.mailbox_id)
        hits: dict[searchmod.TextQuery, frozenset[int]] = {}
        for field, needle in searchmod.text_queries(criteria):
            hits[(field, needle)] = frozenset(int(u) for u in await self.store.search_text(mid, field, needle))
        sent: dict[int, datetime.date] = {}
        saved: dict[int, datetime.date] = {}
        want_sent, want_saved = searchmod.uses_sent_date(criteria), searchmod.uses_save_date(criteria)
        if want_sent or want_saved:
            live = [Uid(u) for u in view.uids if u not in view.ghosts]
            for meta in await self._metas(live):
                day = searchmod.envelope_date(meta.envelope) if want_sent else None
                if day is not None:
                    sent[int(meta.info.uid)] = day
                if want_saved:
                    saved[int(meta.info.uid)] = fetchmod.utc_date(meta.save_date)
        ctx = searchmod.Context(
            max_seq=view.exists, max_uid=view.max_uid(), now_s=int(time.time()), text_hits=hits,
            sent_dates=sent, save_dates=saved, saved=frozenset(self.saved_uids),
        )
        messages = [(seq, view.infos[u]) for seq, u in enumerate(view.uids, 1) if u not in view.ghosts]
        return [(seq, info) for seq, info in messages if searchmod.matches(criteria, seq, info, ctx)]

    async def _metas(self, uids: Sequence[Uid]) -> list[MessageMeta]:
        out: list[MessageMeta] = []
        mid = MailboxId(self._view().mailbox_id)
        for start in range(0, len(uids), 500):
            out += await self.store.fetch_meta(mid, uids[start : start + 500])
        return out

    async def _sort_fields(self, found: list[tuple[int, MessageInfo]]) -> dict[int, searchmod.SortFields]:
        metas = await self._metas([info.uid for _, info in found])
        return {int(m.info.uid): searchmod.sort_fields(m.envelope) for m in metas}

    async def cmd_sort(self, tag: str, cmd: c.Sort) -> bytes:
        """RFC 5256 §3 (SORT=DISPLAY, RFC 5957)."""
        await self.report_changes(allow_expunge=cmd.uid)
        found = await self._search(cmd.search)
        ordered = searchmod.sort_messages(cmd.criteria, found, await self._sort_fields(found))
        numbers = [u if cmd.uid else s for s, u in ordered]
        self.send(untagged(b"SORT", *[b"%d" % n for n in numbers]) if numbers else b"* SORT\r\n")
        await self.report_changes(allow_expunge=cmd.uid)
        return tagged(tag, "OK", "SORT completed")

    async def cmd_thread(self, tag: str, cmd: c.Thread) -> bytes:
        """RFC 5256 §4."""
        if cmd.algorithm not in ("ORDEREDSUBJECT", "REFERENCES"):
            raise _Bad(f"unknown threading algorithm {cmd.algorithm}")
        await self.report_changes(allow_expunge=cmd.uid)
        found = await self._search(cmd.search)
        fields = await self._sort_fields(found)
        if cmd.algorithm == "ORDEREDSUBJECT":
            roots = searchmod.thread_orderedsubject(found, fields, cmd.uid)
        else:
            # RFC 5256 §4 needs References:, which MessageMeta does not carry (the store
            # keeps it as bodies.refs): read each message's header.
            mid = MailboxId(self._view().mailbox_id)
            inputs: list[searchmod.ThreadInput] = []
            for seq, info in found:
                raw = await self.store.read_message(mid, info.uid)
                if raw is None:
                    continue  # expunged meanwhile
                end = raw.find(b"\r\n\r\n")
                header = raw if end < 0 else raw[: end + 2]
                inputs.append(searchmod.thread_input(seq, info, fields.get(int(info.uid)), header, uid=cmd.uid))
            roots = searchmod.thread_references(inputs)
        threads = searchmod.render_threads(roots)
        self.send(b"* THREAD " + threads + b"\r\n" if threads else b"* THREAD\r\n")
        await self.report_changes(allow_expunge=cmd.uid)
        return tagged(tag, "OK", "THREAD completed")

    async def cmd_search(self, tag: str, cmd: c.Search) -> bytes:
        await self.report_changes(allow_expunge=cmd.uid)
        found = [(seq, int(info.uid)) for seq, info in await self._search(cmd.criteria)]
        numbers = [u if cmd.uid else s for s, u in found]
        # RFC 7162 §3.1.5: a search with MODSEQ reports the highest MODSEQ of the results.
        modseq_key = searchmod.uses_modseq(cmd.criteria)
        if modseq_key:
            self.condstore = True  # RFC 7162 §3.1: SEARCH MODSEQ enables CONDSTORE
        view = self._view()
        highest = max((int(view.infos[u].modseq) for _, u in found), default=0)
        if cmd.returns is not None and c.SearchReturn.SAVE in cmd.returns:
            self.saved_uids = [u for _, u in found]  # RFC 5182 §2.1
        for line in search_responses(
            tag, numbers, cmd.returns, uid=cmd.uid, esearch=self.rev2,
            modseq=highest if modseq_key else None,
        ):
            self.send(line)
        await self.report_changes(allow_expunge=cmd.uid)
        return tagged(tag, "OK", "SEARCH completed")


def _with_flags(info: MessageInfo, flags: frozenset[str], modseq: int) -> MessageInfo:

    from postier.store.types import ModSeq

    return info._replace(flags=flags, modseq=ModSeq(modseq))
