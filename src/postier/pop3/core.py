"""POP3 protocol core, sans-IO: bytes in, events and replies out (the shape of h11).

Implements the server side of:

* RFC 1939 — POP3: AUTHORIZATION / TRANSACTION / UPDATE states, USER, PASS, STAT, LIST,
  RETR, DELE, NOOP, RSET, QUIT, TOP, UIDL; multi-line responses with byte-stuffing (§3).
  APOP is not offered (it needs clear-text passwords on the server).
* RFC 2449 — CAPA and the capabilities TOP, UIDL, USER, SASL, RESP-CODES, PIPELINING,
  EXPIRE, IMPLEMENTATION; response codes [IN-USE] (§8.1.2).
* RFC 3206 — the [AUTH] and [SYS/TEMP] response codes (AUTH-RESP-CODE).
* RFC 2595 §4 — STLS.
* RFC 5034 — AUTH with an optional initial response; SASL exchanges framed as ``+ base64``.

The core owns the maildrop *snapshot* given to it at login (sizes, UIDs, deletion marks),
so STAT, LIST, UIDL, DELE, RSET, NOOP and CAPA are answered here without any I/O.  Only
what needs the outside world becomes an event: a login (:class:`PasswordLogin`,
:class:`SaslStart` / :class:`SaslResponse`), a message's bytes (:class:`Retrieve`),
:class:`StartTls` and :class:`Quit` (the UPDATE state).  The adapter answers each one with
a decision method (``login_succeeded``, ``send_message``, ``update_done`` ...).

Usage (see ``pop3/server.py``)::

    conn = Pop3Connection(tls_active=False, tls_available=True, plaintext_auth_allowed=False)
    write(conn.data_to_send())                    # the greeting
    while not isinstance(event := conn.next_event(), ConnectionClosed):
        write(conn.data_to_send())                # replies the core produced itself
        match event:
            case NeedData(): conn.receive_data(await read())
            case Retrieve(): for chunk in conn.send_message(await store.read(...)): write(chunk)
            ...

Peer mistakes never raise: they give ``-ERR`` replies and the session goes on, until
:data:`MAX_ERRORS` bad commands or :data:`MAX_FAILED_LOGINS` failed logins close it.
Misusing the core (a decision nobody asked for) raises :class:`CoreMisuse`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from postier.auth.sasl import (
    Cancelled,
    Malformed,
    decode_client_data,
    decode_initial_response,
    encode_server_data,
)

# ---------------------------------------------------------------- limits

# RFC 2449 §4: a client's command line is at most 255 octets with CRLF.  We accept more:
# PASS carries the password and users pick long ones; 1 KiB still bounds the buffer.
MAX_COMMAND_LINE_BYTES = 1024
# RFC 5034 §4: SASL responses are not bound by the 255-octet command limit.  The largest
# decoded client message auth/sasl accepts is 4 KiB, i.e. ~5.5 KiB in base64.
MAX_SASL_LINE_BYTES = 8192
MAX_ERRORS = 10  # bad commands in one session before we hang up
MAX_FAILED_LOGINS = 3  # per connection; the Authenticator's limiter counts per address
MAX_NUMBER_DIGITS = 10  # message numbers and TOP line counts (RFC 1939 §3: numbers are decimal)
RETR_CHUNK_BYTES = 64 * 1024  # RETR/TOP are sent in slices of this size

IMPLEMENTATION = "postier"


# ---------------------------------------------------------------- states


class State(enum.Enum):
    AUTHORIZATION = "AUTHORIZATION"  # RFC 1939 §4
    TRANSACTION = "TRANSACTION"  # RFC 1939 §5
    UPDATE = "UPDATE"  # RFC 1939 §6
    CLOSED = "CLOSED"


# The state table: which commands each state accepts (RFC 1939 §4-§7, RFC 2449 §5,
# RFC 2595 §4, RFC 5034 §4).  A known command outside its states is "not allowed now".
ALLOWED: dict[State, frozenset[bytes]] = {
    State.AUTHORIZATION: frozenset({b"USER", b"PASS", b"AUTH", b"CAPA", b"STLS", b"QUIT"}),
    State.TRANSACTION: frozenset(
        {b"STAT", b"LIST", b"RETR", b"DELE", b"NOOP", b"RSET", b"TOP", b"UIDL", b"CAPA", b"QUIT"}
    ),
    State.UPDATE: frozenset(),
    State.CLOSED: frozenset(),
}
KNOWN_COMMANDS: frozenset[bytes] = frozenset().union(*ALLOWED.values()) | {b"APOP"}


# ---------------------------------------------------------------- maildrop


@dataclass(frozen=True, slots=True)
class MaildropMessage:
    uid: int
    size_bytes: int  # exactly what RETR sends, before byte-stuffing


@dataclass(frozen=True, slots=True)
class Maildrop:
    """The snapshot of INBOX taken at login; message number n is ``messages[n - 1]``."""

    uidvalidity: int
    messages: tuple[MaildropMessage, ...]


def unique_id(uidvalidity: int, uid: int) -> str:
    """The UIDL value: stable for as long as the IMAP identity (UIDVALIDITY, UID) is.

    RFC 1939 §7: 1 to 70 characters in 0x21-0x7E; 16 hex digits for 32-bit values."""
    return f"{uidvalidity:08x}{uid:08x}"


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class NeedData:
    """Feed more bytes with :meth:`Pop3Connection.receive_data` (``b""`` for EOF)."""


@dataclass(frozen=True, slots=True)
class Paused:
    """A decision on the last event is still owed; nothing more is read until then."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """Write what ``data_to_send()`` holds, then close.  Nothing is deleted unless an
    earlier :class:`Quit` was answered with ``update_done``."""

    reason: str


@dataclass(frozen=True, slots=True)
class PasswordLogin:
    """USER + PASS (RFC 1939 §7).  Answer ``login_succeeded`` or ``login_failed``."""

    user: str
    password: str


@dataclass(frozen=True, slots=True)
class SaslStart:
    """AUTH (RFC 5034 §4).  ``mechanism`` is upper-case and one of those advertised.

    Send challenges with ``sasl_challenge`` (each is followed by a :class:`SaslResponse`
    event) and finish with ``login_succeeded`` or ``login_failed``."""

    mechanism: str
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """The client's answer to a challenge, decoded (``*`` → Cancelled, bad base64 → Malformed)."""

    data: bytes | Cancelled | Malformed


@dataclass(frozen=True, slots=True)
class Retrieve:
    """RETR (``top_lines is None``) or TOP.  Answer ``send_message``, ``message_gone`` or
    ``command_failed``."""

    number: int
    uid: int
    size_bytes: int
    top_lines: int | None = None


@dataclass(frozen=True, slots=True)
class StartTls:
    """STLS was accepted and ``+OK`` is in ``data_to_send()``: write it, run the TLS
    handshake, then call ``tls_started``."""


@dataclass(frozen=True, slots=True)
class Quit:
    """QUIT in TRANSACTION: the UPDATE state (RFC 1939 §6).  Remove ``deleted`` durably,
    then ``update_done``; or ``update_failed``."""

    deleted: tuple[int, ...]  # UIDs marked with DELE


Event = (
    NeedData
    | Paused
    | ConnectionClosed
    | PasswordLogin
    | SaslStart
    | SaslResponse
    | Retrieve
    | StartTls
    | Quit
)
NEED_DATA = NeedData()
PAUSED = Paused()


class LoginFailure(enum.Enum):
    """Why a login did not succeed; each has one canned reply."""

    CREDENTIALS = "credentials"
    REFUSED = "refused"  # too many failures from this address: reply and hang up
    IN_USE = "in-use"
    CANCELLED = "cancelled"
    MALFORMED = "malformed"
    TEMPORARY = "temporary"


class CoreMisuse(RuntimeError):
    """The adapter called a decision method that no pending event asked for (our bug)."""


# ---------------------------------------------------------------- canned replies

OK_GREETING = b"+OK postier POP3 server ready\r\n"
OK_BYE = b"+OK bye\r\n"
OK_STLS = b"+OK begin TLS negotiation\r\n"  # RFC 2595 §4
OK_LOGGED_IN = b"+OK logged in\r\n"
OK_USER = b"+OK send PASS\r\n"
OK_NOOP = b"+OK\r\n"
OK_CAPA = b"+OK capability list follows\r\n"
OK_TOP = b"+OK top of message follows\r\n"
ERR_UNKNOWN = b"-ERR unknown command\r\n"
ERR_TOO_LONG = b"-ERR line too long\r\n"
ERR_TOO_MANY_ERRORS = b"-ERR too many bad commands, closing connection\r\n"
ERR_NO_SUCH_MESSAGE = b"-ERR no such message\r\n"
ERR_BAD_NUMBER = b"-ERR invalid message number\r\n"
ERR_BAD_LINES = b"-ERR invalid number of lines\r\n"
ERR_SYNTAX = b"-ERR syntax error\r\n"
ERR_USER_FIRST = b"-ERR send USER first\r\n"
ERR_APOP = b"-ERR APOP is not supported, use USER/PASS or AUTH\r\n"
# RFC 2595 §2.3 / §4: no clear-text passwords on an unprotected connection.
ERR_PLAINTEXT = b"-ERR [AUTH] plaintext authentication disallowed without TLS, use STLS\r\n"
ERR_NO_MECHANISM = b"-ERR unsupported authentication mechanism\r\n"
ERR_BAD_INITIAL = b"-ERR [AUTH] invalid base64 in initial response\r\n"
ERR_STLS_ACTIVE = b"-ERR TLS is already active\r\n"
ERR_STLS_UNAVAILABLE = b"-ERR STLS is not available\r\n"
ERR_GONE = b"-ERR message was deleted by another session\r\n"
ERR_TEMPORARY = b"-ERR [SYS/TEMP] temporary failure, try again later\r\n"
# RFC 1939 §6: QUIT's -ERR when some deleted messages could not be removed.
ERR_UPDATE_FAILED = b"-ERR [SYS/TEMP] some deleted messages not removed\r\n"
LOGIN_FAILURE_REPLIES: dict[LoginFailure, bytes] = {
    LoginFailure.CREDENTIALS: b"-ERR [AUTH] authentication failed\r\n",  # RFC 3206 §4
    LoginFailure.REFUSED: b"-ERR [AUTH] too many failed logins, try again later\r\n",
    LoginFailure.IN_USE: b"-ERR [IN-USE] maildrop is locked by another POP3 session\r\n",
    LoginFailure.CANCELLED: b"-ERR [AUTH] authentication cancelled\r\n",  # RFC 5034 §4
    LoginFailure.MALFORMED: b"-ERR [AUTH] invalid authentication exchange\r\n",
    LoginFailure.TEMPORARY: b"-ERR [SYS/TEMP] temporary failure, try again later\r\n",
}
ERR_TOO_MANY_LOGINS = b"-ERR [AUTH] too many failed logins, closing connection\r\n"


class _TooLong:
    pass


_TOO_LONG = _TooLong()


# ---------------------------------------------------------------- message framing


def top_end(data: bytes, lines: int) -> int:
    """Offset just past the header, the blank line and ``lines`` body lines (RFC 1939 §7)."""
    if data.startswith(b"\r\n"):
        body = 2
    elif data.startswith(b"\n"):
        body = 1
    else:
        sep = data.find(b"\r\n\r\n")
        if sep >= 0:
            body = sep + 4
        else:
            sep = data.find(b"\n\n")
            if sep < 0:
                return len(data)  # headers only: the whole message
            body = sep + 2
    pos = body
    for _ in range(lines):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return len(data)
        pos = nl + 1
    return pos


def stuffed_chunks(
    data: bytes, end: int | None = None, chunk_bytes: int = RETR_CHUNK_BYTES
) -> Iterator[bytes]:
    """``data[:end]`` as a multi-line body: byte-stuffed, CRLF-terminated, then ``.CRLF``.

    RFC 1939 §3: a line starting with "." gets another "."; the terminator is ".CRLF".
    Works slice by slice so a large message is never copied whole."""
    end = len(data) if end is None else end
    view = memoryview(data)
    pos = 0
    while pos < end:
        stop = min(pos + chunk_bytes, end)
        piece = bytes(view[pos:stop]).replace(b"\n.", b"\n..")
        # A line start at the slice boundary is invisible to replace().
        if view[pos] == 0x2E and (pos == 0 or view[pos - 1] == 0x0A):
            piece = b"." + piece
        yield piece
        pos = stop
    if end and bytes(view[max(0, end - 2):end]) != b"\r\n":
        yield b"\r\n"
    yield b".\r\n"


def _multiline(first: bytes, lines: Sequence[bytes]) -> bytes:
    # Every line we generate ourselves starts with a letter or digit: no stuffing needed.
    return first + b"".join(line + b"\r\n" for line in lines) + b".\r\n"


# ---------------------------------------------------------------- the connection


class Pop3Connection:
    """One POP3 session, server side.  Not thread-safe; no I/O."""

    def __init__(
        self,
        *,
        tls_active: bool,
        tls_available: bool,
        plaintext_auth_allowed: bool,
        sasl_mechanisms: Sequence[str] = ("PLAIN", "LOGIN"),
        expire_days: int | None = None,
        greeting: bytes = OK_GREETING,
    ) -> None:
        self.state = State.AUTHORIZATION
        self.tls_active = tls_active
        self.tls_available = tls_available
        self.plaintext_auth_allowed = plaintext_auth_allowed
        self.sasl_mechanisms = tuple(m.upper() for m in sasl_mechanisms)
        self.expire_days = expire_days  # None: EXPIRE NEVER
        self.errors = 0
        self.failed_logins = 0
        self.discarded_after_stls = 0  # octets pipelined after STLS and thrown away
        self.maildrop: Maildrop | None = None
        self._deleted: set[int] = set()  # message numbers (1-based) marked with DELE
        self._in = bytearray()
        self._out = bytearray(greeting)
        self._eof = False
        self._discarding = False  # inside an overlong line, dropping until its LF
        self._user: str | None = None
        self._pending: Event | None = None
        self._awaiting_sasl_line = False
        self._close_reason = ""

    # ------------------------------------------------------------ I/O side

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` means the peer closed its side."""
        if not data:
            self._eof = True
        else:
            self._in += data

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def auth_permitted(self) -> bool:
        """RFC 2595 §2.3: passwords only over TLS (or where the config allows, loopback)."""
        return self.tls_active or self.plaintext_auth_allowed

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def deleted_count(self) -> int:
        return len(self._deleted)

    def next_event(self) -> Event:
        """Process buffered input until an event needs the adapter."""
        if self.state is State.CLOSED:
            return ConnectionClosed(self._close_reason)
        if self._pending is not None and not self._awaiting_sasl_line:
            return PAUSED
        while True:
            limit = MAX_SASL_LINE_BYTES if self._awaiting_sasl_line else MAX_COMMAND_LINE_BYTES
            line = self._take_line(limit)
            if line is None:
                if self._eof:
                    return self._close("peer closed the connection")
                return NEED_DATA
            if self._awaiting_sasl_line:
                self._awaiting_sasl_line = False
                if isinstance(line, _TooLong):
                    return SaslResponse(Malformed("line too long"))
                return SaslResponse(decode_client_data(line))
            if isinstance(line, _TooLong):
                self._error(ERR_TOO_LONG)
            else:
                event = self._dispatch(line)
                if event is not None:
                    if not isinstance(event, ConnectionClosed):
                        self._pending = event
                    return event
            if self.closed:  # too many errors
                return ConnectionClosed(self._close_reason)

    def _take_line(self, limit: int) -> bytes | _TooLong | None:
        buf = self._in
        nl = buf.find(b"\n")
        if nl < 0:
            if len(buf) > limit:
                self._discarding = True
                buf.clear()
            return None
        line = bytes(buf[:nl])
        del buf[: nl + 1]
        if self._discarding or nl + 1 > limit:
            self._discarding = False
            return _TOO_LONG
        return line[:-1] if line.endswith(b"\r") else line

    def _close(self, reason: str) -> ConnectionClosed:
        self.state = State.CLOSED
        self._close_reason = reason
        self._pending = None
        return ConnectionClosed(reason)

    def _error(self, reply: bytes) -> None:
        """A peer mistake: reply -ERR and go on, or hang up after MAX_ERRORS."""
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            self._out += ERR_TOO_MANY_ERRORS
            self._close("too many bad commands")
        else:
            self._out += reply

    # ------------------------------------------------------------ commands

    def _dispatch(self, line: bytes) -> Event | None:
        keyword, _, rest = line.partition(b" ")
        keyword = keyword.upper()
        if keyword not in KNOWN_COMMANDS:
            self._error(ERR_UNKNOWN)
            return None
        if keyword not in ALLOWED[self.state]:
            if keyword == b"APOP":
                self._error(ERR_APOP)
            else:
                name = keyword.decode("ascii")
                self._error(f"-ERR {name} not allowed in the {self.state.value} state\r\n".encode())
            return None
        if keyword == b"PASS":
            return self._pass(rest)  # RFC 1939 §7: the password may contain spaces
        args = rest.split(b" ") if rest else []
        return self._HANDLERS[keyword](self, args)

    def _user_cmd(self, args: list[bytes]) -> Event | None:
        if not self.auth_permitted:
            self._error(ERR_PLAINTEXT)
        elif len(args) != 1 or not args[0]:
            self._error(ERR_SYNTAX)
        else:
            self._user = args[0].decode("utf-8", "replace")
            self._out += OK_USER
        return None

    def _pass(self, rest: bytes) -> Event | None:
        if not self.auth_permitted:
            self._error(ERR_PLAINTEXT)
            return None
        if self._user is None:
            self._error(ERR_USER_FIRST)
            return None
        user, self._user = self._user, None
        return PasswordLogin(user, rest.decode("utf-8", "replace"))

    def _auth(self, args: list[bytes]) -> Event | None:
        if not args:
            # Not in RFC 5034; the RFC 1734 habit of listing mechanisms, which Outlook uses.
            if self.auth_permitted:
                names = [m.encode("ascii") for m in self.sasl_mechanisms]
                self._out += _multiline(b"+OK\r\n", names)
            else:
                self._error(ERR_PLAINTEXT)
            return None
        if len(args) > 2:
            self._error(ERR_SYNTAX)
            return None
        mechanism = args[0].decode("ascii", "replace").upper()
        if mechanism not in self.sasl_mechanisms:
            self._error(ERR_NO_MECHANISM)
            return None
        if not self.auth_permitted:
            self._error(ERR_PLAINTEXT)
            return None
        initial: bytes | None = None
        if len(args) == 2:
            decoded = decode_initial_response(args[1])  # RFC 5034 §4: "=" is empty
            if isinstance(decoded, Malformed):
                self._error(ERR_BAD_INITIAL)
                return None
            initial = decoded
        return SaslStart(mechanism, initial)

    def _capa(self, args: list[bytes]) -> Event | None:
        if args:
            self._error(ERR_SYNTAX)
            return None
        self._out += _multiline(OK_CAPA, self.capabilities())
        return None

    def capabilities(self) -> list[bytes]:
        """RFC 2449 §5-6: what CAPA lists in the current state."""
        caps = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
        expire = "NEVER" if self.expire_days is None else str(self.expire_days)
        caps.append(f"EXPIRE {expire}".encode("ascii"))
        caps.append(f"IMPLEMENTATION {IMPLEMENTATION}".encode("ascii"))
        if self.state is State.AUTHORIZATION:
            if self.auth_permitted:
                caps.append(b"USER")
                caps.append(b"SASL " + " ".join(self.sasl_mechanisms).encode("ascii"))
            if self.tls_available and not self.tls_active:
                caps.append(b"STLS")
        return caps

    def _stls(self, args: list[bytes]) -> Event | None:
        if args:
            self._error(ERR_SYNTAX)
        elif self.tls_active:
            self._error(ERR_STLS_ACTIVE)
        elif not self.tls_available:
            self._error(ERR_STLS_UNAVAILABLE)
        else:
            # RFC 2595 §4 / CVE-2011-0411 class: anything pipelined after STLS came in
            # clear text and must not be taken as if it had arrived over TLS.
            self.discarded_after_stls = len(self._in)
            self._in.clear()
            self._discarding = False
            self._out += OK_STLS
            return StartTls()
        return None

    def _quit(self, args: list[bytes]) -> Event | None:
        if self.state is State.TRANSACTION:
            # RFC 1939 §6: QUIT from TRANSACTION enters UPDATE; the adapter removes them.
            self.state = State.UPDATE
            md = self.maildrop
            assert md is not None
            return Quit(tuple(md.messages[n - 1].uid for n in sorted(self._deleted)))
        self._out += OK_BYE  # RFC 1939 §4: QUIT in AUTHORIZATION ends without UPDATE
        return self._close("QUIT")

    def _stat(self, args: list[bytes]) -> Event | None:
        if args:
            self._error(ERR_SYNTAX)
            return None
        count, size = self._totals()
        self._out += f"+OK {count} {size}\r\n".encode("ascii")  # RFC 1939 §5 drop listing
        return None

    def _totals(self) -> tuple[int, int]:
        md = self.maildrop
        assert md is not None
        live = [m for n, m in enumerate(md.messages, 1) if n not in self._deleted]
        return len(live), sum(m.size_bytes for m in live)

    def _number(self, arg: bytes) -> int | None:
        """A live message number, or None after replying -ERR (RFC 1939 §5, §7)."""
        if not arg.isdigit() or len(arg) > MAX_NUMBER_DIGITS:
            self._error(ERR_BAD_NUMBER)
            return None
        n = int(arg)
        md = self.maildrop
        assert md is not None
        if not 1 <= n <= len(md.messages):
            self._error(ERR_NO_SUCH_MESSAGE)
            return None
        if n in self._deleted:
            self._error(f"-ERR message {n} already deleted\r\n".encode("ascii"))
            return None
        return n

    def _listing(
        self, args: list[bytes], field: Callable[[int, MaildropMessage], str], what: str
    ) -> None:
        md = self.maildrop
        assert md is not None
        if len(args) > 1:
            self._error(ERR_SYNTAX)
            return
        if args:
            n = self._number(args[0])
            if n is not None:
                self._out += f"+OK {n} {field(n, md.messages[n - 1])}\r\n".encode("ascii")
            return
        lines = [
            f"{n} {field(n, m)}".encode("ascii")
            for n, m in enumerate(md.messages, 1)
            if n not in self._deleted
        ]
        count, size = self._totals()
        first = f"+OK {count} messages ({size} octets)\r\n" if what == "list" else "+OK\r\n"
        self._out += _multiline(first.encode("ascii"), lines)

    def _list(self, args: list[bytes]) -> Event | None:
        self._listing(args, lambda _n, m: str(m.size_bytes), "list")  # RFC 1939 §5 scan listing
        return None

    def _uidl(self, args: list[bytes]) -> Event | None:
        md = self.maildrop
        assert md is not None
        self._listing(args, lambda _n, m: unique_id(md.uidvalidity, m.uid), "uidl")
        return None

    def _retr(self, args: list[bytes]) -> Event | None:
        if len(args) != 1:
            self._error(ERR_SYNTAX)
            return None
        n = self._number(args[0])
        if n is None:
            return None
        assert self.maildrop is not None
        m = self.maildrop.messages[n - 1]
        return Retrieve(n, m.uid, m.size_bytes)

    def _top(self, args: list[bytes]) -> Event | None:
        if len(args) != 2:
            self._error(ERR_SYNTAX)
            return None
        n = self._number(args[0])
        if n is None:
            return None
        if not args[1].isdigit() or len(args[1]) > MAX_NUMBER_DIGITS:
            self._error(ERR_BAD_LINES)
            return None
        assert self.maildrop is not None
        m = self.maildrop.messages[n - 1]
        return Retrieve(n, m.uid, m.size_bytes, int(args[1]))

    def _dele(self, args: list[bytes]) -> Event | None:
        if len(args) != 1:
            self._error(ERR_SYNTAX)
            return None
        n = self._number(args[0])
        if n is not None:
            self._deleted.add(n)  # RFC 1939 §5: marked only; removed in UPDATE
            self._out += f"+OK message {n} deleted\r\n".encode("ascii")
        return None

    def _noop(self, args: list[bytes]) -> Event | None:
        if args:
            self._error(ERR_SYNTAX)
        else:
            self._out += OK_NOOP
        return None

    def _rset(self, args: list[bytes]) -> Event | None:
        if args:
            self._error(ERR_SYNTAX)
            return None
        self._deleted.clear()  # RFC 1939 §5: unmark every message
        count, size = self._totals()
        self._out += f"+OK maildrop has {count} messages ({size} octets)\r\n".encode("ascii")
        return None

    _HANDLERS: ClassVar[Mapping[bytes, Callable[[Pop3Connection, list[bytes]], Event | None]]] = {
        b"USER": _user_cmd,
        b"AUTH": _auth,
        b"CAPA": _capa,
        b"STLS": _stls,
        b"QUIT": _quit,
        b"STAT": _stat,
        b"LIST": _list,
        b"UIDL": _uidl,
        b"RETR": _retr,
        b"TOP": _top,
        b"DELE": _dele,
        b"NOOP": _noop,
        b"RSET": _rset,
    }

    # ------------------------------------------------------------ decisions

    def _resolve(self, *kinds: type) -> Event:
        event = self._pending
        if event is None or not isinstance(event, kinds):
            raise CoreMisuse(f"no pending {'/'.join(k.__name__ for k in kinds)}: {event!r}")
        self._pending = None
        self._awaiting_sasl_line = False
        return event

    def sasl_challenge(self, data: bytes) -> None:
        """Send ``+ base64(data)`` (RFC 5034 §4); the next event is a :class:`SaslResponse`."""
        if not isinstance(self._pending, SaslStart):
            raise CoreMisuse(f"no SASL exchange in progress: {self._pending!r}")
        self._out += b"+ " + encode_server_data(data) + b"\r\n"
        self._awaiting_sasl_line = True

    def login_succeeded(self, maildrop: Maildrop) -> None:
        """The login is good and the maildrop locked: enter TRANSACTION (RFC 1939 §4)."""
        self._resolve(PasswordLogin, SaslStart)
        self.maildrop = maildrop
        self._deleted.clear()
        self.state = State.TRANSACTION
        self._out += OK_LOGGED_IN

    def login_failed(self, failure: LoginFailure) -> None:
        """Stay in AUTHORIZATION, or hang up after too many failures / a refusal."""
        self._resolve(PasswordLogin, SaslStart)
        if failure is LoginFailure.CREDENTIALS:
            self.failed_logins += 1
        if failure is LoginFailure.MALFORMED:
            self.errors += 1
        if failure is LoginFailure.REFUSED:
            self._out += LOGIN_FAILURE_REPLIES[failure]
            self._close("login refused: too many failures from this address")
        elif self.failed_logins >= MAX_FAILED_LOGINS:
            self._out += ERR_TOO_MANY_LOGINS
            self._close("too many failed logins")
        elif self.errors >= MAX_ERRORS:
            self._out += ERR_TOO_MANY_ERRORS
            self._close("too many bad commands")
        else:
            self._out += LOGIN_FAILURE_REPLIES[failure]

    def send_message(self, data: bytes) -> Iterator[bytes]:
        """The reply to the pending RETR/TOP, in slices: write them all, in order.

        The core moves on at once; the iterator only frames ``data``."""
        event = self._resolve(Retrieve)
        assert isinstance(event, Retrieve)
        if event.top_lines is None:
            status = f"+OK {len(data)} octets\r\n".encode("ascii")
            end = len(data)
        else:
            status = OK_TOP
            end = top_end(data, event.top_lines)
        return _with_status(status, stuffed_chunks(data, end))

    def message_gone(self) -> None:
        """The message was expunged (by IMAP) since the snapshot: -ERR, session goes on."""
        self._resolve(Retrieve)
        self._out += ERR_GONE

    def command_failed(self) -> None:
        """A temporary failure reading the pending message."""
        self._resolve(Retrieve)
        self._out += ERR_TEMPORARY

    def tls_started(self) -> None:
        """The handshake after STLS succeeded: forget everything learnt in clear text."""
        self._resolve(StartTls)
        self.tls_active = True
        self._in.clear()  # RFC 2595 §4: nothing from before the handshake survives
        self._discarding = False
        self._user = None

    def update_done(self) -> None:
        """The marked messages are durably removed: +OK and close (RFC 1939 §6)."""
        self._resolve(Quit)
        self._out += OK_BYE
        self._close("QUIT")

    def update_failed(self) -> None:
        self._resolve(Quit)
        self._out += ERR_UPDATE_FAILED
        self._close("QUIT, update failed")


def _with_status(status: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    yield status
    yield from chunks
