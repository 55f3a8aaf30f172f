"""Sans-IO SMTP/LMTP server protocol core: bytes in, events out, decisions back, bytes out.

No sockets, no asyncio, no store here (see docs/architecture.md, "Sans-IO protocol cores").
The adapter (postier.smtp.server) feeds received bytes with :meth:`ServerConnection.receive_data`,
pulls events with :meth:`ServerConnection.next_event`, answers the events that need a decision
with :meth:`ServerConnection.accept` / :meth:`ServerConnection.reject`, and writes whatever
:meth:`ServerConnection.data_to_send` returns.  Replies are buffered rather than returned, so a
pipelined batch of commands (RFC 2920 §3.1) is answered with one write; the adapter flushes
before it blocks on a read (RFC 2920 §3.1: "the server MUST NOT wait ... without flushing").

Implements:

* RFC 5321 — commands, state, reply codes, limits (§4.5.3), dot-stuffing (§4.5.2),
  source routes ignored (§3.6.1, Appendix C), ``Postmaster`` without domain (§4.1.1.3).
* RFC 2033 — LMTP: LHLO, one reply per accepted recipient after DATA/BDAT LAST.
* RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 2920 PIPELINING,
  RFC 2034/3463 enhanced status codes on every reply but the greeting and EHLO,
  RFC 3207 STARTTLS (buffered input discarded: CVE-2011-0411 class),
  RFC 3030 CHUNKING/BDAT, RFC 3461 DSN parameters (NOTIFY, ORCPT, RET, ENVID),
  RFC 4954 AUTH framing (mechanisms themselves live in postier.auth.sasl).

SMTP smuggling (CVE-2023-51764 class): only ``<CRLF>.<CRLF>`` ever ends DATA.  A message with
a bare CR or LF is refused with ``500 5.5.2`` when ``normalize_bare_lf`` is off (port 25
default); otherwise bare CR and LF are turned into CRLF before dot-unstuffing.

Text lines inside DATA have no length limit of their own, only the message's (SIZE,
``max_message_bytes``): RFC 5321 §4.5.3.1.6 caps them at 1000 octets, but real mail breaks
that and refusing it loses mail (Postfix accepts long lines: its ``line_length_limit`` cuts
them into records that are joined again on delivery; servers that refuse them, such as
OpenSMTPD and maddy, had to raise or drop their limits after reports of lost mail).  The
message is stored as received: folding a long line would break its DKIM body hash.  DATA
is scanned a received chunk at a time with C-level searches (end mark, CR/LF counts, dot
lines), with a few bytes carried across chunk edges, so the work per byte is the same for
a 10 MB line without CRLF as for 80-column text, and nothing is done per line.

Anything a peer sends yields events and replies, never an exception; calling the core out of
order (accept() with nothing pending) is our bug and raises :class:`CoreMisuse`.
"""

from __future__ import annotations

import binascii
import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from postier import compiled
from postier.auth.sasl import Cancelled, Malformed, decode_client_data, decode_initial_response

# ---------------------------------------------------------------- limits

MAX_LINE_BYTES = 1000  # RFC 5321 §4.5.3.1.4: command line incl. CRLF
MAX_PATH_BYTES = 256  # RFC 5321 §4.5.3.1.3: reverse/forward path incl. <>
MAX_ENVID_CHARS = 100  # RFC 3461 §4.4
MAX_ORCPT_BYTES = 500  # RFC 3461 §4.2
MAX_SASL_LINE_BYTES = 12_288  # RFC 4954 §4: 12288 octets for a SASL response line
MAX_ERRORS = 10  # protocol errors before 421 (Postfix smtpd_hard_error_limit=20; tighter)
MAX_RECIPIENTS = 100  # RFC 5321 §4.5.3.1.8: a server MUST accept at least 100


class CoreMisuse(Exception):
    """The adapter used the core out of order (our bug, never the peer's)."""


# ---------------------------------------------------------------- replies


@dataclass(frozen=True, slots=True, init=False)
class Reply:
    """An SMTP reply: code, RFC 3463 enhanced status code ("" for none) and text lines."""

    code: int
    enhanced: str
    text: str
    # The wire form, made at the first send and kept: the same few replies (module
    # constants) go out for every message.
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        # not the decorator's: compiled.py, "Frozen dataclasses"
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "enhanced", enhanced)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "_wire", None)

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.enhanced, text)

    def to_bytes(self) -> bytes:
        wire = self._wire
        if wire is None:
            wire = self._encode()
            object.__setattr__(self, "_wire", wire)
        return wire

    def _encode(self) -> bytes:
        lines = self.text.split("\n") or [""]
        out = []
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            prefix = f"{self.enhanced} " if self.enhanced else ""
            out.append(f"{self.code}{sep}{prefix}{_printable(line)}\r\n")
        return "".join(out).encode("utf-8")

    @property
    def is_error(self) -> bool:
        return self.code >= 400


def _printable(text: str) -> str:
    # A reply never carries CR/LF/control characters from a peer (reply injection).
    if text.isprintable():  # no character below SPACE, no DEL: nothing to replace
        return text
    return "".join(c if c >= " " and c != "\x7f" else "?" for c in text)


# Positive completion (RFC 5321 §4.2.2; enhanced codes from RFC 3463 §3).
C211_HELP = Reply(214, "2.0.0", "See https://www.rfc-editor.org/rfc/rfc5321")  # RFC 5321 §4.1.1.8
C221_BYE = Reply(221, "2.0.0", "Bye")  # RFC 5321 §4.1.1.10
C235_AUTH_OK = Reply(235, "2.7.0", "Authentication successful")  # RFC 4954 §6
C250_OK = Reply(250, "2.0.0", "OK")
C250_RESET = Reply(250, "2.0.0", "Reset OK")  # RFC 5321 §4.1.1.5
C250_SENDER_OK = Reply(250, "2.1.0", "Sender OK")  # RFC 3463 X.1.0
C250_RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")  # RFC 3463 X.1.5
C250_MESSAGE_ACCEPTED = Reply(250, "2.0.0", "Message accepted")
C250_CHUNK_OK = Reply(250, "2.0.0", "Chunk received")  # RFC 3030 §2
C252_CANNOT_VRFY = Reply(
    252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery"
)  # RFC 5321 §3.5.3
C220_READY_FOR_TLS = Reply(220, "2.0.0", "Ready to start TLS")  # RFC 3207 §4
C354_START_INPUT = Reply(354, "", "Start mail input; end with <CRLF>.<CRLF>")  # RFC 5321 §4.1.1.4
# Transient negative (4yz).
C421_SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, closing connection")
C421_TIMEOUT = Reply(421, "4.4.2", "Timeout, closing connection")  # RFC 5321 §4.5.3.2
C421_TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
C421_TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
C451_LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing, try again later")
C452_TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")  # RFC 5321 §4.5.3.1.10
C452_MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full, try again later")  # RFC 3463 X.2.2
# RFC 5321 §4.2.3 (452: insufficient system storage), RFC 3463 X.3.1 (mail system full)
C452_INSUFFICIENT_STORAGE = Reply(452, "4.3.1", "Insufficient system storage, try again later")
C454_TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available")  # RFC 3207 §4
C454_AUTH_TEMPORARY = Reply(454, "4.7.0", "Temporary authentication failure")  # RFC 4954 §6
# Permanent negative (5yz).
C500_UNKNOWN_COMMAND = Reply(500, "5.5.1", "Command unrecognized")  # RFC 5321 §4.2.4
C500_LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")  # RFC 5321 §4.5.3.1.4
C500_BARE_CR_LF = Reply(500, "5.5.2", "Bare CR or LF not allowed")  # RFC 5321 §2.3.8
C500_WRONG_GREETING = Reply(500, "5.5.1", "Use LHLO in LMTP, EHLO/HELO in SMTP")  # RFC 2033 §4.1
C501_SYNTAX = Reply(501, "5.5.4", "Syntax error in parameters or arguments")  # RFC 5321 §4.2.2
C501_BAD_ADDRESS = Reply(501, "5.1.3", "Bad address syntax")  # RFC 3463 X.1.3
C501_AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")  # RFC 4954 §4
C501_BAD_BASE64 = Reply(501, "5.5.2", "Invalid base64 data")  # RFC 4954 §4
C502_NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")  # RFC 5321 §4.2.4
C503_BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")  # RFC 5321 §4.1.4
C503_HELLO_FIRST = Reply(503, "5.5.1", "Send EHLO/HELO first")
C503_NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command")
C503_NEED_RCPT = Reply(503, "5.5.1", "Need RCPT command")  # RFC 5321 §3.3
C503_ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")  # RFC 4954 §4
C504_AUTH_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")  # RFC 4954 §6
C504_PARAMETER_NOT_IMPLEMENTED = Reply(504, "5.5.4", "Parameter value not implemented")
C530_AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")  # RFC 4954 §6
C535_AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")  # RFC 4954 §6
C538_ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)  # RFC 4954 §6
C550_MAILBOX_UNKNOWN = Reply(550, "5.1.1", "No such user here")  # RFC 3463 X.1.1
C552_MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")  # RFC 1870 §6
C553_NON_ASCII_ADDRESS = Reply(
    553, "5.6.7", "Non-ASCII address needs SMTPUTF8"
)  # RFC 6531 §3.7.4.1
C553_SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by authenticated user")
C554_RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")  # RFC 3463 X.7.1
C554_NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")  # RFC 5321 §3.3
C554_TRANSACTION_FAILED = Reply(554, "5.0.0", "Transaction failed")
C555_UNKNOWN_PARAMETER = Reply(
    555, "5.5.4", "MAIL FROM/RCPT TO parameters not recognized or not implemented"
)  # RFC 5321 §4.1.1.11


# ---------------------------------------------------------------- settings


class Mode(enum.Enum):
    MTA = "smtp"  # port 25: mail from other servers
    SUBMISSION = "submission"  # 587/465: our users, AUTH required
    LMTP = "lmtp"  # RFC 2033


@dataclass(frozen=True, slots=True)
class CoreSettings:
    hostname: str = "localhost"
    mode: Mode = Mode.MTA
    max_message_bytes: int = 52_428_800
    max_recipients: int = MAX_RECIPIENTS
    max_line_bytes: int = MAX_LINE_BYTES
    max_errors: int = MAX_ERRORS
    normalize_bare_lf: bool = False  # False: refuse bare CR/LF in a message (500 5.5.2)
    auth_mechanisms: tuple[str, ...] = ()  # advertised when AUTH is allowed
    require_auth: bool = False  # submission: AUTH before MAIL (RFC 6409 §4.3)


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class NeedData:
    """Feed more bytes (flush data_to_send() first)."""


@dataclass(frozen=True, slots=True)
class Paused:
    """A decision is owed: call accept() or reject() for the last event."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The session is over: flush data_to_send() and close the connection."""


NEED_DATA = NeedData()
PAUSED = Paused()
CLOSED = Closed()


@dataclass(frozen=True, slots=True)
class Helo:
    """HELO (no extensions).  accept() → 250."""

    name: str


@dataclass(frozen=True, slots=True)
class Ehlo:
    """EHLO, or LHLO in LMTP.  accept() → 250 with the extension list."""

    name: str


@dataclass(frozen=True, slots=True, init=False)
class MailFrom:
    """MAIL FROM (RFC 5321 §4.1.1.2).  ``address`` is "" for the null reverse-path."""

    address: str
    size: int | None = None  # RFC 1870
    body: str = ""  # "7BIT" | "8BITMIME" (RFC 6152)
    smtputf8: bool = False  # RFC 6531
    ret: str = ""  # "FULL" | "HDRS" (RFC 3461 §4.3)
    envid: str = ""  # RFC 3461 §4.4, xtext-decoded
    auth: str = ""  # RFC 4954 §5, xtext-decoded

    def __init__(
        self, address: str, size: int | None = None, body: str = "", smtputf8: bool = False,
        ret: str = "", envid: str = "", auth: str = "",
    ) -> None:
        # not the decorator's: compiled.py, "Frozen dataclasses"
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "smtputf8", smtputf8)
        object.__setattr__(self, "ret", ret)
        object.__setattr__(self, "envid", envid)
        object.__setattr__(self, "auth", auth)


@dataclass(frozen=True, slots=True, init=False)
class RcptTo:
    """RCPT TO (RFC 5321 §4.1.1.3)."""

    address: str
    notify: tuple[str, ...] = ()  # RFC 3461 §4.1: NEVER | SUCCESS, FAILURE, DELAY
    orcpt: str = ""  # RFC 3461 §4.2: "rfc822;addr", xtext-decoded

    def __init__(
        self, address: str, notify: tuple[str, ...] = (), orcpt: str = "",
    ) -> None:
        # not the decorator's: compiled.py, "Frozen dataclasses"
        object.__setattr__(self, "address", address)
        object.__setattr__(self, "notify", notify)
        object.__setattr__(self, "orcpt", orcpt)


@dataclass(frozen=True, slots=True, init=False)
class Message:
    """A complete message (DATA ended or BDAT LAST).

    accept() → 250 (LMTP: one 250 per recipient), reject(reply), or in LMTP
    respond_per_recipient(replies).  ``data`` is dot-unstuffed, CRLF-only."""

    sender: MailFrom
    recipients: tuple[RcptTo, ...]
    data: bytes = field(repr=False)
    chunking: bool = False  # came by BDAT

    def __init__(
        self, sender: MailFrom, recipients: tuple[RcptTo, ...], data: bytes, chunking: bool = False,
    ) -> None:
        # not the decorator's: compiled.py, "Frozen dataclasses"
        object.__setattr__(self, "sender", sender)
        object.__setattr__(self, "recipients", recipients)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "chunking", chunking)


@dataclass(frozen=True, slots=True)
class StartTls:
    """STARTTLS.  accept() → 220, input buffered after the command is discarded and the
    adapter must start TLS before feeding more data; reject(reply) otherwise."""


@dataclass(frozen=True, slots=True)
class Auth:
    """AUTH (RFC 4954).  The adapter runs the mechanism: auth_challenge(data) to send a 334
    and get an AuthResponse, then accept() (235) or reject(reply)."""

    mechanism: str  # upper-case
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """The client's answer to a 334 challenge, base64-decoded (or ``*``/garbage)."""

    data: bytes | Cancelled | Malformed


# Notices: the core has already answered; the adapter may log them.


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer broke the protocol; ``reply`` was sent; ``reason`` is for the log."""

    reply: Reply
    reason: str


Decision = Helo | Ehlo | MailFrom | RcptTo | Message | StartTls | Auth | AuthResponse
Notice = Rset | Noop | Vrfy | Help | Quit | ProtocolError
Event = Decision | Notice | NeedData | Paused | Closed


class State(enum.Enum):
    CONNECTED = "connected"  # greeting sent, no HELO yet
    READY = "ready"  # after HELO/EHLO, no transaction
    MAIL = "mail"  # MAIL accepted
    RCPT = "rcpt"  # at least one RCPT accepted
    DATA = "data"  # reading DATA up to <CRLF>.<CRLF>
    BDAT = "bdat"  # reading a BDAT chunk's octets
    AUTH = "auth"  # waiting for a line answering a 334
    CLOSED = "closed"


# RFC 5321 §4.1.4 / §3.3: which command is allowed in which state.  HELO/EHLO, RSET, NOOP,
# VRFY, HELP, QUIT are allowed everywhere a command is read.  Tuples: membership is by
# identity there, where a set hashes each State through Enum.__hash__, a Python call.
_ALLOWED: dict[str, tuple[State, ...]] = {
    "MAIL": (State.READY,),
    "RCPT": (State.MAIL, State.RCPT),
    "DATA": (State.RCPT,),
    "STARTTLS": (State.CONNECTED, State.READY),
    "AUTH": (State.READY,),
}
_OUT_OF_ORDER: dict[str, Reply] = {
    "MAIL": C503_BAD_SEQUENCE,
    "RCPT": C503_NEED_MAIL,
    "DATA": C503_NEED_RCPT,
    "STARTTLS": C503_BAD_SEQUENCE,
    "AUTH": C503_BAD_SEQUENCE,
}

_END_OF_DATA = b"\r\n.\r\n"  # RFC 5321 §4.1.1.4
BARE = -1  # line_ends: a bare CR or LF


def python_line_ends(data: bytes, start: int, end: int, cr_open: bool) -> int:
    """How the line ends of ``data[start:end]`` read, after a CR that ended the bytes
    before them when ``cr_open``: BARE for a CR or LF not in a CR LF pair, 1 for CR LF
    pairs only but for a CR last (its LF may come first in the next chunk), 0 for CR LF
    pairs only.  The twin of ``line_ends`` in ``_textscan.c``, which runs when built."""
    if not 0 <= start <= end <= len(data):
        raise ValueError("offset out of range")
    if start == end:
        return int(cr_open)
    if cr_open:
        if data[start] != 0x0A:
            return BARE
        start += 1
    part = data[start:end]
    last_cr = part.endswith(b"\r")
    if last_cr:
        part = part[:-1]
    pairs = part.count(b"\r\n")
    if part.count(b"\r") != pairs or part.count(b"\n") != pairs:
        return BARE
    return int(last_cr)


def python_find_dot_line(data: bytes, start: int) -> int:
    """Where the next line starting with "." begins (its LF) from ``start``, or -1 (the
    twin of ``find_dot_line`` in ``_textscan.c``)."""
    if not 0 <= start <= len(data):
        raise ValueError("offset out of range")
    return data.find(b"\n.", start)


_textscan = compiled.c_module("postier._textscan")
line_ends: Callable[[bytes, int, int, bool], int] = (
    python_line_ends if _textscan is None else _textscan.line_ends
)
find_dot_line: Callable[[bytes, int], int] = (
    python_find_dot_line if _textscan is None else _textscan.find_dot_line
)


_KEYWORD_RE = re.compile(rb"[A-Za-z0-9][A-Za-z0-9-]*")
_XTEXT_RE = re.compile(rb"\+([0-9A-F]{2})")
_BAD_ADDRESS_CHARS = re.compile(r"[\x00-\x20\x7f<>()\[\]\\,;:]")


def decode_xtext(value: bytes) -> str | None:
    """RFC 3461 §4: ``+XX`` hex escapes; None when malformed."""
    if any(b < 33 or b > 126 or b == 0x3D for b in value):
        return None
    if b"+" in value and len(_XTEXT_RE.findall(value)) != value.count(b"+"):
        return None
    return _XTEXT_RE.sub(lambda m: bytes([int(m.group(1), 16)]), value).decode(
        "utf-8", "replace"
    )


def _parse_path(text: str, allow_null: bool, allow_postmaster: bool) -> str | Reply:
    """``<local@domain>`` → address; "" for ``<>``; a Reply for bad syntax."""
    if not (text.startswith("<") and text.endswith(">")):
        return C501_BAD_ADDRESS
    if len(text.encode("utf-8")) > MAX_PATH_BYTES:  # RFC 5321 §4.5.3.1.3
        return C501_BAD_ADDRESS
    inner = text[1:-1]
    if inner == "":
        return "" if allow_null else C501_BAD_ADDRESS
    if inner.startswith("@"):
        # RFC 5321 §4.1.2 / Appendix C: source routes MUST be accepted and ignored.
        _route, colon, rest = inner.partition(":")
        if not colon:
            return C501_BAD_ADDRESS
        inner = rest
    if allow_postmaster and inner.lower() == "postmaster":  # RFC 5321 §4.1.1.3
        return "postmaster"
    local, at, domain = inner.rpartition("@")
    if not at or not local or not domain or len(local.encode("utf-8")) > 64:  # §4.5.3.1.1
        return C501_BAD_ADDRESS
    if local.startswith('"') and local.endswith('"') and len(local) >= 2:
        quoted = local[1:-1]
        if any(c in "\r\n\x00" for c in quoted):
            return C501_BAD_ADDRESS
    elif _BAD_ADDRESS_CHARS.search(local) or local.startswith(".") or local.endswith("."):
        return C501_BAD_ADDRESS
    if _BAD_ADDRESS_CHARS.search(domain.strip("[]")) or ".." in domain:
        return C501_BAD_ADDRESS
    return f"{local}@{domain}"


def _split_params(raw: bytes) -> dict[str, bytes | None] | Reply:
    params: dict[str, bytes | None] = {}
    for item in raw.split():
        key, eq, value = item.partition(b"=")
        if not _KEYWORD_RE.fullmatch(key):
            return C501_SYNTAX
        name = key.decode("ascii").upper()
        if name in params:
            return C501_SYNTAX
        params[name] = value if eq else None
    return params


class ServerConnection:
    """One SMTP/LMTP server session (one TCP connection)."""

    def __init__(
        self,
        settings: CoreSettings,
        *,
        tls_available: bool = False,
        tls_active: bool = False,
        auth_without_tls: bool = False,
    ) -> None:
        self.settings = settings
        self.tls_available = tls_available
        self.tls_active = tls_active
        self.auth_without_tls = auth_without_tls
        self.authenticated = False
        self.state = State.CONNECTED
        self.errors = 0
        self._in = bytearray()
        self._out = bytearray()
        self._pending: Decision | None = None
        self._discarding_line = False
        self._esmtp = False
        self._mail: MailFrom | None = None
        self._rcpts: list[RcptTo] = []
        self._msg = bytearray()  # BDAT chunks so far
        self._msg_overflow = False  # the message is read to its end but not kept
        self._overflow_reply = C552_MESSAGE_TOO_BIG  # its answer then
        # DATA (see _read_data): message pieces, their size, the stream's last bytes,
        # whether a bare CR or LF was seen, whether the line ends so far stop after a CR
        # (its LF may come in the next chunk), and whether a line may start with "."
        self._parts: list[bytes | memoryview] = []
        self._size = 0
        self._tail = b""
        self._bare = False
        self._cr_open = False
        self._dots = False
        self._bdat_remaining = 0
        self._bdat_last = False
        self._bdat_in_transaction = False
        self._bdat_resume = State.READY

    # ------------------------------------------------------------ adapter API

    @property
    def reading_message(self) -> bool:
        """True while reading DATA or a BDAT chunk (use the DATA timeout then)."""
        return self.state in (State.DATA, State.BDAT)

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def message_bytes(self) -> int:
        """Bytes of the message being received that this connection holds (DATA, BDAT)."""
        held = len(self._msg)
        if self.state is State.DATA and not self._msg_overflow:
            held += self._size
        return held

    def refuse_message(self, reply: Reply) -> None:
        """Keep nothing more of the message being received: it is read to its end (DATA)
        or last chunk (BDAT) and then answered with ``reply`` (the adapter's memory budget)."""
        if self.message_bytes:
            self._msg_overflow = True
            self._overflow_reply = reply
            self._parts = []
            self._msg = bytearray()

    @property
    def transaction(self) -> tuple[MailFrom | None, tuple[RcptTo, ...]]:
        return self._mail, tuple(self._rcpts)

    def greeting(self) -> None:
        """Queue the 220 greeting (RFC 5321 §4.3.1; no enhanced code, RFC 2034 §3)."""
        kind = "LMTP" if self.settings.mode is Mode.LMTP else "ESMTP"
        self._send(Reply(220, "", f"{self.settings.hostname} {kind} postier ready"))

    def refuse_connection(self, reply: Reply = C421_TOO_MANY_CONNECTIONS) -> None:
        """Queue a 421 instead of the greeting and close (RFC 5321 §3.1)."""
        self._close(reply)

    def receive_data(self, data: bytes) -> None:
        if self.state is not State.CLOSED:
            self._in += data

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def timed_out(self) -> None:
        """RFC 5321 §4.5.3.2: the client was idle too long; queue 421 and close."""
        self._close(C421_TIMEOUT)

    def shutdown(self) -> None:
        """The server is stopping: queue 421 and close (RFC 5321 §3.8)."""
        self._close(C421_SHUTTING_DOWN)

    def next_event(self) -> Event:
        if self._pending is not None:
            return PAUSED
        while True:
            if self.state is State.CLOSED:
                return CLOSED
            if self.state is State.DATA:
                event = self._read_data()
            elif self.state is State.BDAT:
                event = self._read_bdat()
            else:
                event = self._read_command()
            if event is None:
                continue
            if isinstance(event, Helo | Ehlo | MailFrom | RcptTo | Message | StartTls | Auth | AuthResponse):
                self._pending = event
            return event

    def accept(self) -> None:
        """Give the positive reply the pending event calls for."""
        event = self._take_pending()
        match event:
            case Helo(name=name):
                self._reset_transaction()
                self.state = State.READY
                self._esmtp = False
                self._send(Reply(250, "", f"{self.settings.hostname} Hello {name}"))
            case Ehlo(name=name):
                self._reset_transaction()
                self.state = State.READY
                self._esmtp = True
                self._send(self._ehlo_reply(name))
            case MailFrom():
                self._mail = event
                self.state = State.MAIL
                self._send(C250_SENDER_OK)
            case RcptTo():
                self._rcpts.append(event)
                self.state = State.RCPT
                self._send(C250_RECIPIENT_OK)
            case Message():
                if self.settings.mode is Mode.LMTP:
                    for _ in event.recipients:
                        self._send(C250_MESSAGE_ACCEPTED)
                else:
                    self._send(C250_MESSAGE_ACCEPTED)
                self._reset_transaction()
            case StartTls():
                # RFC 3207 §4.2: discard any knowledge obtained from the client; anything
                # pipelined after STARTTLS came in clear text and is dropped (CVE-2011-0411).
                self._in.clear()
                self._send(C220_READY_FOR_TLS)
                self._reset_transaction()
                self.state = State.CONNECTED
                self.tls_active = True
                self._esmtp = False
            case Auth() | AuthResponse():
                self.authenticated = True
                self.state = State.READY
                self._send(C235_AUTH_OK)

    def reject(self, reply: Reply) -> None:
        """Refuse the pending event with ``reply``."""
        event = self._take_pending()
        match event:
            case Message():
                if self.settings.mode is Mode.LMTP:
                    for _ in event.recipients:
                        self._send(reply)
                else:
                    self._send(reply)
                self._reset_transaction()
                return
            case Auth() | AuthResponse():
                self.state = State.READY
            case Helo() | Ehlo() | MailFrom() | RcptTo() | StartTls():
                pass
        self._send(reply)
        if reply.code == 421:
            self._close(None)
        elif reply.code >= 500:
            self._count_error()

    def respond_per_recipient(self, replies: Sequence[Reply]) -> None:
        """LMTP (RFC 2033 §4.2): one reply per accepted recipient, in RCPT order."""
        event = self._pending
        if not isinstance(event, Message) or len(replies) != len(event.recipients):
            raise CoreMisuse("respond_per_recipient needs a pending Message and one reply each")
        self._pending = None
        for reply in replies:
            self._send(reply)
        self._reset_transaction()

    def auth_challenge(self, data: bytes) -> None:
        """Send a 334 challenge (RFC 4954 §4); the next event is an AuthResponse."""
        if not isinstance(self._pending, Auth | AuthResponse):
            raise CoreMisuse("auth_challenge without a pending AUTH")
        self._pending = None
        self.state = State.AUTH
        self._out += b"334 " + binascii.b2a_base64(data, newline=False) + b"\r\n"

    # ------------------------------------------------------------ internals

    def _take_pending(self) -> Decision:
        event = self._pending
        if event is None:
            raise CoreMisuse("no event is waiting for a decision")
        self._pending = None
        return event

    def _send(self, reply: Reply) -> None:
        self._out += reply.to_bytes()

    def _close(self, reply: Reply | None) -> None:
        if self.state is State.CLOSED:
            return
        if reply is not None:
            self._send(reply)
        self.state = State.CLOSED
        self._pending = None
        self._in.clear()
        self._msg = bytearray()
        self._parts = []

    def _count_error(self) -> None:
        self.errors += 1
        if self.errors >= self.settings.max_errors:
            self._close(C421_TOO_MANY_ERRORS)

    def _error(self, reply: Reply, reason: str) -> ProtocolError:
        self._send(reply)
        if reply.code >= 500:
            self._count_error()
        return ProtocolError(reply, reason)

    def _reset_transaction(self) -> None:
        self._mail = None
        self._rcpts = []
        self._msg = bytearray()
        self._parts = []
        self._msg_overflow = False
        self._overflow_reply = C552_MESSAGE_TOO_BIG
        self._bdat_in_transaction = False
        if self.state in (State.MAIL, State.RCPT, State.DATA, State.BDAT):
            self.state = State.READY

    def _auth_allowed(self) -> bool:
        return bool(self.settings.auth_mechanisms) and (self.tls_active or self.auth_without_tls)

    def _ehlo_reply(self, name: str) -> Reply:
        s = self.settings
        lines = [f"{s.hostname} Hello {name}", "PIPELINING", "8BITMIME", "SMTPUTF8"]
        lines += [f"SIZE {s.max_message_bytes}", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN"]
        if self.tls_available and not self.tls_active:
            lines.append("STARTTLS")
        if self._auth_allowed() and not self.authenticated:
            lines.append("AUTH " + " ".join(s.auth_mechanisms))
        lines.append("HELP")
        return Reply(250, "", "\n".join(lines))

    # ------------------------------------------------------------ commands

    def _read_line(self) -> bytes | ProtocolError | None:
        """One CRLF-terminated line without CRLF; None when more data is needed."""
        limit = self.settings.max_line_bytes
        while True:
            if self._discarding_line:
                end = self._in.find(b"\n")
                if end < 0:
                    self._in.clear()
                    return None
                del self._in[: end + 1]
                self._discarding_line = False
                # RFC 5321 §4.5.3.1.4: the line is refused and the session continues.
                return self._error(C500_LINE_TOO_LONG, "line too long")
            end = self._in.find(b"\n", 0, limit)
            if end < 0:
                if len(self._in) >= limit:
                    self._discarding_line = True
                    continue
                return None
            line = bytes(self._in[:end])
            del self._in[: end + 1]
            if not line.endswith(b"\r") or b"\r" in line[:-1]:
                # RFC 5321 §2.3.8: lines end with CRLF only.
                return self._error(C500_BARE_CR_LF, "bare CR or LF in a command line")
            return line[:-1]

    def _read_auth_line(self) -> Event:
        """The client's answer to a 334 (RFC 4954 §4); never a command."""
        end = self._in.find(b"\n", 0, MAX_SASL_LINE_BYTES)
        if end < 0:
            if len(self._in) < MAX_SASL_LINE_BYTES:
                return NEED_DATA
            self._discarding_line = True  # the rest of the line gets 500 5.5.2
            self.state = State.READY
            return AuthResponse(Malformed("line too long"))
        line = bytes(self._in[:end]).rstrip(b"\r")
        del self._in[: end + 1]
        self.state = State.READY
        return AuthResponse(decode_client_data(line))

    def _read_command(self) -> Event | None:
        if self.state is State.AUTH and not self._discarding_line:
            return self._read_auth_line()
        line = self._read_line()
        if line is None:
            return NEED_DATA
        if isinstance(line, ProtocolError):
            return line
        verb, _, rest = line.partition(b" ")
        try:
            name = verb.decode("ascii").upper()
        except UnicodeDecodeError:
            return self._error(C500_UNKNOWN_COMMAND, "non-ASCII command verb")
        if name == "MAIL" or name == "RCPT":
            # "MAIL FROM:" / "RCPT TO:" with the argument right after the colon.
            head, colon, _arg = line.partition(b":")
            parts = head.split()
            expected = [b"MAIL", b"FROM"] if name == "MAIL" else [b"RCPT", b"TO"]
            if not colon or [p.upper() for p in parts] != expected:
                return self._error(C501_SYNTAX, f"bad {name} syntax")
        handler = _HANDLERS.get(name)
        if handler is None:
            return self._error(C500_UNKNOWN_COMMAND, f"unknown command {verb[:20]!r}")
        allowed = _ALLOWED.get(name)
        if allowed is not None and self.state not in allowed:
            if self.state is State.CONNECTED and name != "STARTTLS":
                return self._error(C503_HELLO_FIRST, f"{name} before EHLO")
            return self._error(_OUT_OF_ORDER[name], f"{name} out of sequence in {self.state.value}")
        return handler(self, rest.strip(b" "))

    def _helo(self, arg: bytes, extended: bool, lmtp: bool) -> Event:
        if lmtp != (self.settings.mode is Mode.LMTP):
            return self._error(C500_WRONG_GREETING, "wrong greeting command for this mode")
        if not arg:
            return self._error(C501_SYNTAX, "HELO/EHLO without a domain")  # RFC 5321 §4.1.1.1
        name = arg.split()[0].decode("utf-8", "replace")[:255]
        return Ehlo(name) if extended else Helo(name)

    def _cmd_helo(self, arg: bytes) -> Event:
        return self._helo(arg, False, False)

    def _cmd_ehlo(self, arg: bytes) -> Event:
        return self._helo(arg, True, False)

    def _cmd_lhlo(self, arg: bytes) -> Event:
        return self._helo(arg, True, True)

    def _path_and_params(self, arg: bytes) -> tuple[str, dict[str, bytes | None]] | ProtocolError:
        arg = arg.strip(b" ")
        if arg.startswith(b"<"):
            end = arg.find(b">")
            if end < 0:
                return self._error(C501_BAD_ADDRESS, "unterminated path")
            path, raw_params = arg[: end + 1], arg[end + 1 :]
        else:
            path, _, raw_params = arg.partition(b" ")
        if raw_params and not raw_params.startswith(b" "):
            return self._error(C501_SYNTAX, "no space before parameters")
        if raw_params and not self._esmtp:
            return self._error(C555_UNKNOWN_PARAMETER, "parameters after HELO")
        try:
            path_text = path.decode("utf-8")
        except UnicodeDecodeError:
            return self._error(C501_BAD_ADDRESS, "path is not UTF-8")
        params = _split_params(raw_params)
        if isinstance(params, Reply):
            return self._error(params, "bad parameter syntax")
        return path_text, params

    def _cmd_mail(self, arg: bytes) -> Event:
        if self.settings.require_auth and not self.authenticated:
            # RFC 4954 §6 / RFC 6409 §4.3: submission requires authentication.
            return self._error(C530_AUTH_REQUIRED, "MAIL before AUTH on submission")
        parsed = self._path_and_params(arg.partition(b":")[2])
        if isinstance(parsed, ProtocolError):
            return parsed
        path_text, params = parsed
        size: int | None = None
        body = ret = envid = auth = ""
        smtputf8 = False
        for key, value in params.items():
            if key == "SIZE":  # RFC 1870 §6
                if value is None or not value.isdigit() or len(value) > 20:
                    return self._error(C501_SYNTAX, "bad SIZE")
                size = int(value)
                if size > self.settings.max_message_bytes:
                    return self._error(C552_MESSAGE_TOO_BIG, f"declared SIZE {size} too big")
            elif key == "BODY":  # RFC 6152 §3
                if value is None or value.upper() not in (b"7BIT", b"8BITMIME"):
                    return self._error(C504_PARAMETER_NOT_IMPLEMENTED, "unsupported BODY")
                body = value.decode("ascii").upper()
            elif key == "SMTPUTF8" and value is None:  # RFC 6531 §3.4
                smtputf8 = True
            elif key == "RET":  # RFC 3461 §4.3
                if value is None or value.upper() not in (b"FULL", b"HDRS"):
                    return self._error(C501_SYNTAX, "bad RET")
                ret = value.decode("ascii").upper()
            elif key == "ENVID":  # RFC 3461 §4.4
                decoded = decode_xtext(value) if value is not None else None
                if decoded is None or len(decoded) > MAX_ENVID_CHARS:
                    return self._error(C501_SYNTAX, "bad ENVID")
                envid = decoded
            elif key == "AUTH":  # RFC 4954 §5
                decoded = decode_xtext(value) if value is not None else None
                if decoded is None:
                    return self._error(C501_SYNTAX, "bad AUTH parameter")
                auth = decoded
            else:
                return self._error(C555_UNKNOWN_PARAMETER, f"unknown MAIL parameter {key[:20]}")
        if not smtputf8 and not path_text.isascii():
            return self._error(C553_NON_ASCII_ADDRESS, "non-ASCII sender without SMTPUTF8")
        address = _parse_path(path_text, allow_null=True, allow_postmaster=False)
        if isinstance(address, Reply):
            return self._error(address, "bad reverse-path")
        return MailFrom(address, size, body, smtputf8, ret, envid, auth)

    def _cmd_rcpt(self, arg: bytes) -> Event:
        parsed = self._path_and_params(arg.partition(b":")[2])
        if isinstance(parsed, ProtocolError):
            return parsed
        path_text, params = parsed
        notify: tuple[str, ...] = ()
        orcpt = ""
        for key, value in params.items():
            if key == "NOTIFY" and value is not None:  # RFC 3461 §4.1
                items = tuple(v.upper() for v in value.decode("ascii", "replace").split(","))
                valid = {"SUCCESS", "FAILURE", "DELAY"}
                if not (items == ("NEVER",) or (items and set(items) <= valid)):
                    return self._error(C501_SYNTAX, "bad NOTIFY")
                notify = items
            elif key == "ORCPT" and value is not None:  # RFC 3461 §4.2
                addr_type, semi, xtext = value.partition(b";")
                decoded = decode_xtext(xtext) if semi else None
                if not _KEYWORD_RE.fullmatch(addr_type) or decoded is None or len(value) > MAX_ORCPT_BYTES:
                    return self._error(C501_SYNTAX, "bad ORCPT")
                orcpt = f"{addr_type.decode('ascii')};{decoded}"
            else:
                return self._error(C555_UNKNOWN_PARAMETER, f"unknown RCPT parameter {key[:20]}")
        mail = self._mail
        if not path_text.isascii() and not (mail is not None and mail.smtputf8):
            return self._error(C553_NON_ASCII_ADDRESS, "non-ASCII recipient without SMTPUTF8")
        address = _parse_path(path_text, allow_null=False, allow_postmaster=True)
        if isinstance(address, Reply):
            return self._error(address, "bad forward-path")
        if len(self._rcpts) >= self.settings.max_recipients:
            # RFC 5321 §4.5.3.1.10: 452 for too many recipients (not counted as an error).
            return self._error(C452_TOO_MANY_RECIPIENTS, "too many recipients")
        return RcptTo(address, notify, orcpt)

    def _cmd_data(self, arg: bytes) -> Event | None:
        if arg:
            return self._error(C501_SYNTAX, "DATA takes no argument")
        if self._bdat_in_transaction:
            return self._error(C503_BAD_SEQUENCE, "DATA after BDAT")  # RFC 3030 §3
        self.state = State.DATA
        # The CRLF ending the DATA line starts the stream: ".\r\n" first ends an empty
        # message, a first line starting with "." is dot-stuffed.
        self._parts = []
        self._size = 0
        self._tail = b"\r\n"
        self._bare = False
        self._cr_open = False
        self._dots = False
        self._msg_overflow = False
        self._overflow_reply = C552_MESSAGE_TOO_BIG
        self._send(C354_START_INPUT)
        return None

    def _cmd_bdat(self, arg: bytes) -> Event | None:
        parts = arg.split()
        if not parts or len(parts) > 2 or not parts[0].isdigit() or len(parts[0]) > 18:
            return self._error(C501_SYNTAX, "bad BDAT arguments")
        if len(parts) == 2 and parts[1].upper() != b"LAST":
            return self._error(C501_SYNTAX, "bad BDAT arguments")
        # RFC 3030 §2: the chunk's octets are read even when the command is refused, so
        # they are never taken for commands.
        self._bdat_remaining = int(parts[0])
        self._bdat_last = len(parts) == 2
        self._bdat_resume = self.state
        if self.state is State.RCPT:
            self._bdat_in_transaction = True
        self.state = State.BDAT
        return None

    def _cmd_rset(self, arg: bytes) -> Event:
        self._reset_transaction()
        self._send(C250_RESET)
        return Rset()

    def _cmd_noop(self, arg: bytes) -> Event:
        self._send(C250_OK)
        return Noop()

    def _cmd_vrfy(self, arg: bytes) -> Event:
        self._send(C252_CANNOT_VRFY)  # RFC 5321 §3.5.3: no address harvesting
        return Vrfy(arg.decode("utf-8", "replace"))

    def _cmd_expn(self, arg: bytes) -> Event:
        return self._error(C502_NOT_IMPLEMENTED, "EXPN disabled")  # RFC 5321 §3.5.2: MAY

    def _cmd_help(self, arg: bytes) -> Event:
        self._send(C211_HELP)
        return Help()

    def _cmd_quit(self, arg: bytes) -> Event:
        self._close(C221_BYE)  # RFC 5321 §4.1.1.10
        return Quit()

    def _cmd_starttls(self, arg: bytes) -> Event:
        if arg:
            return self._error(C501_SYNTAX, "STARTTLS takes no argument")  # RFC 3207 §4
        if not self.tls_available or self.tls_active:
            return self._error(C503_BAD_SEQUENCE if self.tls_active else C454_TLS_UNAVAILABLE, "STARTTLS refused")
        return StartTls()

    def _cmd_auth(self, arg: bytes) -> Event:
        if self.authenticated:
            return self._error(C503_ALREADY_AUTHENTICATED, "AUTH twice")  # RFC 4954 §4
        parts = arg.split()
        if not parts or len(parts) > 2:
            return self._error(C501_SYNTAX, "bad AUTH arguments")
        if not self.settings.auth_mechanisms:
            return self._error(C502_NOT_IMPLEMENTED, "AUTH not offered here")
        if not self._auth_allowed():
            return self._error(C538_ENCRYPTION_REQUIRED, "AUTH before TLS")  # RFC 4954 §4
        mechanism = parts[0].decode("ascii", "replace").upper()
        if mechanism not in self.settings.auth_mechanisms:
            return self._error(C504_AUTH_MECHANISM, f"unknown mechanism {mechanism[:20]}")
        initial: bytes | None = None
        if len(parts) == 2:
            decoded = decode_initial_response(parts[1])
            if isinstance(decoded, Malformed):
                return self._error(C501_BAD_BASE64, "bad initial response")
            initial = decoded
        return Auth(mechanism, initial)

    # ------------------------------------------------------------ message data

    def _read_data(self) -> Event | None:
        """Scan for <CRLF>.<CRLF> (RFC 5321 §4.1.1.4) — the only end of DATA, ever.

        One received chunk at a time, each byte looked at by a fixed number of C-level
        scans, never per line: "<LF>." (a line starting with "." — the end mark is one),
        and its line ends (every other byte deleted: CRLF repeated unless there is a bare
        CR or LF; a CR ending one chunk meets its LF in the next).  Once a
        dot-stuffed line is seen only the end mark is searched for, and without one the
        message is not unstuffed at all.  The last 5 bytes of the stream are kept so that
        an end mark, a CRLF or a "<CRLF>." split between two chunks is seen; the message's
        pieces are joined once at the end."""
        if not self._in:
            return NEED_DATA
        tail = self._tail
        base = len(tail)
        window = tail + self._in  # bytes: the carried bytes, then the new chunk
        self._in.clear()
        if self._dots or self._msg_overflow:
            end = window.find(_END_OF_DATA)
        else:
            end = -1
            # The stream starts with the CRLF of the DATA line and 5 bytes are carried, so
            # a hit has a byte before it; a hit in the carried bytes is one whose end could
            # not be told last time (a hit told before set _dots or ended the message).
            hit = find_dot_line(window, 0)
            if hit >= 0:
                before = max(hit - 1, 0)
                if window.startswith(_END_OF_DATA, before):
                    end = before
                elif hit + 4 <= len(window):
                    self._dots = True  # a dot-stuffed line (or a bare LF before ".")
                    end = window.find(_END_OF_DATA, before)
        found = end >= 0
        stop = end + 5 if found else len(window)  # DATA through the end mark
        body_end = end + 2 - base if found else len(window) - base  # of the chunk
        if not self._msg_overflow:
            if not self._bare:
                ends = line_ends(window, base, stop, self._cr_open)
                self._bare = ends == BARE
                self._cr_open = ends == 1
            if body_end > 0:
                self._parts.append(memoryview(window)[base : base + body_end])
                self._size += body_end
            elif body_end < 0:
                self._drop_last(-body_end)  # the end mark began in the last chunk
            if self._size > self.settings.max_message_bytes:
                # Over the limit: keep scanning for the end, store nothing more.
                self._msg_overflow = True
                self._parts = []
        if not found:
            self._tail = window[-5:]
            return NEED_DATA
        self._in += memoryview(window)[stop:]  # pipelined commands after the message
        parts, self._parts = self._parts, []
        self.state = State.RCPT
        if self._msg_overflow:
            return self._overflow_error()
        raw = b"".join(parts)
        return self._finish_message(raw, chunking=False, bare=self._bare, dots=self._dots)

    def _drop_last(self, count: int) -> None:
        """Take the last ``count`` message bytes back (the start of an end mark)."""
        while count and self._parts:
            last = self._parts[-1]
            if len(last) <= count:
                self._parts.pop()
                count -= len(last)
                self._size -= len(last)
            else:
                self._parts[-1] = memoryview(last)[: len(last) - count]
                self._size -= count
                count = 0

    def _read_bdat(self) -> Event | None:
        """Consume a BDAT chunk's octets (RFC 3030 §2: always, even when refusing)."""
        if self._bdat_remaining:
            if not self._in:
                return NEED_DATA
            take = min(self._bdat_remaining, len(self._in))
            if not self._msg_overflow:
                self._msg += memoryview(self._in)[:take]
                if len(self._msg) > self.settings.max_message_bytes:
                    self._msg_overflow = True
                    self._msg = bytearray()
            del self._in[:take]
            self._bdat_remaining -= take
            if self._bdat_remaining:
                return NEED_DATA
        self.state = self._bdat_resume
        if self.state is not State.RCPT:
            self._msg = bytearray()
            reply = C503_HELLO_FIRST if self.state is State.CONNECTED else C503_NEED_RCPT
            return self._error(reply, "BDAT without a transaction")
        if not self._bdat_last:
            self._send(C250_CHUNK_OK)
            return None
        raw = bytes(self._msg)
        self._msg = bytearray()
        if self._msg_overflow:
            return self._overflow_error()
        return self._finish_message(raw, chunking=True)

    def _overflow_error(self) -> ProtocolError:
        reply = self._overflow_reply
        reason = "message too big" if reply is C552_MESSAGE_TOO_BIG else "message refused: memory"
        return self._message_error(reply, reason)

    def _message_error(self, reply: Reply, reason: str) -> ProtocolError:
        count = len(self._rcpts) if self.settings.mode is Mode.LMTP else 1
        for _ in range(count):
            self._send(reply)
        self._reset_transaction()
        return ProtocolError(reply, reason)

    def _finish_message(
        self, raw: bytes, chunking: bool, bare: bool | None = None, dots: bool = True
    ) -> Event:
        """``bare``: whether ``raw`` has a bare CR or LF (None: count here); ``dots``: False
        when no line of ``raw`` starts with "." (DATA only)."""
        if bare is None:
            bare = line_ends(raw, 0, len(raw), False) != 0  # a CR last is bare too
        if bare:
            if not self.settings.normalize_bare_lf:
                # SMTP smuggling defence (CVE-2023-51764 class); RFC 5321 §2.3.8.
                return self._message_error(C500_BARE_CR_LF, "bare CR or LF in message")
            raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
            dots = True  # a bare CR or LF before "." is a line start now
        if not chunking and dots:
            if raw.startswith(b"."):
                raw = raw[1:]
            raw = raw.replace(b"\r\n.", b"\r\n")  # RFC 5321 §4.5.2 transparency
        mail = self._mail
        assert mail is not None
        return Message(mail, tuple(self._rcpts), raw, chunking)


_HANDLERS: dict[str, Callable[[ServerConnection, bytes], Event | None]] = {
    "HELO": ServerConnection._cmd_helo,
    "EHLO": ServerConnection._cmd_ehlo,
    "LHLO": ServerConnection._cmd_lhlo,
    "MAIL": ServerConnection._cmd_mail,
    "RCPT": ServerConnection._cmd_rcpt,
    "DATA": ServerConnection._cmd_data,
    "BDAT": ServerConnection._cmd_bdat,
    "RSET": ServerConnection._cmd_rset,
    "NOOP": ServerConnection._cmd_noop,
    "VRFY": ServerConnection._cmd_vrfy,
    "EXPN": ServerConnection._cmd_expn,
    "HELP": ServerConnection._cmd_help,
    "QUIT": ServerConnection._cmd_quit,
    "STARTTLS": ServerConnection._cmd_starttls,
    "AUTH": ServerConnection._cmd_auth,
}
