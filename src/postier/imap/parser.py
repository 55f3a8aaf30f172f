"""Incremental, sans-IO parser of IMAP client commands.

Bytes in (:meth:`CommandParser.receive_data`), events out (:meth:`CommandParser.next_event`).
No sockets, no asyncio.  Two layers:

1. *Framing* (a small state machine, table :data:`_FRAMING`): splits the byte stream into
   commands made of lines and literals (RFC 9051 §4.3).  A line ending in ``{n}`` announces
   a synchronising literal: the parser returns :class:`ContinuationNeeded` and the session
   must send ``+ Ready`` before the client sends it (RFC 9051 §7.6).  ``{n+}`` is a
   non-synchronising literal (LITERAL+ / LITERAL-, RFC 7888); with LITERAL- only literals of
   at most 4096 bytes may be non-synchronising (RFC 7888 §4).  ``~{n}`` is a literal8
   (BINARY, RFC 3516 §4.4).  Literals accumulate in one ``bytearray`` and leave it as one
   slice, so a 50 MB APPEND costs no quadratic copying whatever the packet sizes.
2. *Grammar*: a recursive-descent parser of the complete command (RFC 9051 §9 formal
   syntax, RFC 3501 §9 for IMAP4rev1 leftovers) into :mod:`postier.imap.commands` values.

Errors are values: :class:`ParseError` (render as tagged BAD, or untagged BAD without a
tag) and :class:`LimitExceeded` (``fatal`` ones mean the connection must be closed, the
stream can no longer be framed).  After a non-fatal error the parser resynchronises at the
next command line.

Line mode: after AUTHENTICATE (SASL continuation lines, RFC 9051 §6.2.2) or IDLE (the
``DONE`` line, RFC 2177 §3) the session calls :meth:`CommandParser.expect_line`; the next
line is returned as :class:`Line`.

STARTTLS / COMPRESS: bytes the client pipelined after these commands must not be
interpreted in the new layer (RFC 9051 §6.2.1, the STARTTLS command-injection class of
CVE-2011-0411); :attr:`CommandParser.buffered_bytes` tells the session there were some and
:meth:`CommandParser.clear_buffer` drops them.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import datetime
import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from postier.imap import commands as c
from postier.imap.wire import ASTRING_CHARS, ATOM_CHARS, decode_mutf7, tagged, untagged_status

# --------------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class Limits:
    """Parser limits (ARCHITECTURE principle 8: every limit named and enforced here)."""

    max_line_bytes: int = 65536
    """One command line, literals excluded.  RFC 7162 §4 asks servers to accept lines of
    at least 8192 octets; 64 KiB leaves room for long UID sets."""
    max_literal_bytes: int = 50 * 1024 * 1024
    """One APPEND message literal (the advertised APPENDLIMIT, RFC 7889)."""
    max_append_bytes: int = 200 * 1024 * 1024
    """All message literals of one (MULTI)APPEND together."""
    max_command_bytes: int = 1024 * 1024
    """A whole command except APPEND message literals (lines + other literals)."""
    max_nesting: int = 20
    """Parenthesis depth (search programs, header lists)."""
    max_list_items: int = 10000
    """Items in one parenthesised list, sequence-set ranges, search keys, APPEND messages."""


class LiteralMode(enum.Enum):
    """Which non-synchronising literals the server advertised (RFC 7888)."""

    SYNC_ONLY = "sync-only"  # neither LITERAL+ nor LITERAL-
    PLUS = "LITERAL+"
    MINUS = "LITERAL-"


LITERAL_MINUS_MAX: Final = 4096  # RFC 7888 §4

# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class NeedData:
    """Feed more bytes with :meth:`CommandParser.receive_data`."""


@dataclass(frozen=True, slots=True)
class Command:
    tag: str
    command: c.ImapCommand


@dataclass(frozen=True, slots=True)
class ContinuationNeeded:
    """Send ``+ Ready`` (or refuse with :meth:`CommandParser.reject_literal`).

    *command* is the upper-cased command name (``"APPEND"``, ``"LOGIN"``, ``"UID"``...) so
    the session can refuse early, e.g. an APPEND before authentication or over quota.
    """

    tag: str
    literal_size: int
    command: str = ""


@dataclass(frozen=True, slots=True)
class ParseError:
    """The command is invalid: ``tag BAD message`` (or ``* BAD`` when *tag* is None).

    *status* is ``"NO"`` in the one case the RFC wants NO for a command we cannot run as
    given: an unsupported search charset (``[BADCHARSET]``, RFC 9051 §6.4.4).
    """

    tag: str | None
    message: str
    status: str = "BAD"


@dataclass(frozen=True, slots=True)
class LimitExceeded:
    """A limit was hit.  ``fatal``: the stream cannot be resynchronised, close the
    connection (after an untagged ``BYE``).  *message* may start with a response code
    (``[TOOBIG]``); *status* is the tagged status to answer with when not fatal."""

    tag: str | None
    message: str
    fatal: bool
    status: str = "BAD"


@dataclass(frozen=True, slots=True)
class Line:
    """A raw line (without CRLF) read in :meth:`CommandParser.expect_line` mode."""

    data: bytes


Event = NeedData | Command | ContinuationNeeded | ParseError | LimitExceeded | Line


def error_response(event: ParseError | LimitExceeded) -> bytes:
    """The reply owed for an error event (the one place errors become bytes).

    Fatal limits get an untagged BYE (RFC 9051 §7.1.5), then the adapter closes; errors
    without a tag get an untagged BAD (RFC 9051 §7.1.3).
    """
    if isinstance(event, LimitExceeded) and event.fatal:
        return untagged_status("BYE", event.message)
    if event.tag is None:
        return untagged_status("BAD", event.message)
    return tagged(event.tag, event.status, event.message)


# --------------------------------------------------------------------------- framing


class _State(enum.Enum):
    LINE = "line"  # reading a command line
    LITERAL = "literal"  # reading literal octets into the command
    SKIP_LITERAL = "skip-literal"  # reading literal octets of a refused command
    RAW_LINE = "raw-line"  # expect_line(): one line returned as Line
    CLOSED = "closed"  # after a fatal error: input ignored


# Which operations are legal in each state (h11-style table instead of if-chains).
_FRAMING: Final[dict[_State, frozenset[str]]] = {
    _State.LINE: frozenset({"receive", "expect_line"}),
    _State.LITERAL: frozenset({"receive", "reject_literal"}),
    _State.SKIP_LITERAL: frozenset({"receive"}),
    _State.RAW_LINE: frozenset({"receive", "expect_line"}),
    _State.CLOSED: frozenset({"receive"}),
}

_LITERAL_TAIL: Final = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\Z")
_TAIL_WINDOW: Final = 48
_TAG: Final = re.compile(rb"[\x21-\x7e]+")
_TAG_CHARS: Final = ASTRING_CHARS - {ord("+")}
_COMMAND_NAME: Final = re.compile(rb"[^ ]+ ([A-Za-z0-9.-]+)")


class ParserMisuse(Exception):
    """The session called the parser out of order (a bug of ours, not of the peer)."""


class CommandParser:
    """Incremental IMAP command parser; see the module docstring for the protocol."""

    def __init__(
        self, limits: Limits | None = None, literal_mode: LiteralMode = LiteralMode.PLUS
    ) -> None:
        self.limits = limits or Limits()
        self.literal_mode = literal_mode
        self.utf8 = False
        """Mailbox names are UTF-8, not modified UTF-7 (UTF8=ACCEPT enabled, RFC 6855 §3,
        or IMAP4rev2 enabled, RFC 9051 §5.1)."""
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for LF in the buffer
        self._state = _State.LINE
        self._parts: list[bytes] = []  # alternating line, literal, line, ...
        self._tag: str | None = None
        self._is_append = False
        self._command_name = ""
        self._command_bytes = 0
        self._append_bytes = 0
        self._literal_size = 0
        self._skip_remaining = 0
        self._discard_line = False  # dropping an over-long line up to its LF
        self._discard_command = False  # dropping the rest of a refused command

    # -- public API --------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the connection (``b""`` is allowed and ignored)."""
        if self._state is _State.CLOSED:
            return
        self._buf += data

    def expect_line(self) -> None:
        """Return the next line as :class:`Line` (SASL exchange, IDLE's DONE)."""
        self._check("expect_line")
        if self._parts:
            raise ParserMisuse("expect_line() in the middle of a command")
        self._state = _State.RAW_LINE

    def reject_literal(self) -> None:
        """Refuse the literal announced by :class:`ContinuationNeeded` (the session
        answered with a tagged NO/BAD instead of ``+``); the client will not send it."""
        self._check("reject_literal")
        self._reset_command()

    @property
    def closed(self) -> bool:
        """A fatal error happened: the connection must be closed."""
        return self._state is _State.CLOSED

    @property
    def waiting_literal_bytes(self) -> int:
        """Octets still expected for the literal being read (0 when not in a literal)."""
        if self._state is _State.LITERAL:
            return max(self._literal_size - len(self._buf), 0)
        if self._state is _State.SKIP_LITERAL:
            return self._skip_remaining
        return 0

    @property
    def buffered_bytes(self) -> int:
        """Octets received but not yet consumed (non-zero after STARTTLS → drop them)."""
        return len(self._buf)

    def clear_buffer(self) -> None:
        """Drop unconsumed input (after STARTTLS or COMPRESS, RFC 9051 §6.2.1)."""
        self._buf.clear()
        self._scan = 0

    def next_event(self) -> Event:
        """The next event; :class:`NeedData` when the buffer holds no complete one."""
        while True:
            state = self._state
            if state is _State.CLOSED:
                self._buf.clear()
                return NeedData()
            if state is _State.LITERAL:
                event = self._read_literal()
            elif state is _State.SKIP_LITERAL:
                event = self._skip_literal()
            else:
                event = self._read_line()
            if event is not None:
                return event

    # -- framing -----------------------------------------------------------------------

    def _check(self, operation: str) -> None:
        if operation not in _FRAMING[self._state]:
            raise ParserMisuse(f"{operation}() not allowed in state {self._state.value}")

    def _reset_command(self) -> None:
        self._parts = []
        self._tag = None
        self._is_append = False
        self._command_name = ""
        self._command_bytes = 0
        self._append_bytes = 0
        self._discard_command = False
        self._state = _State.LINE

    def _fatal(self, message: str) -> LimitExceeded:
        tag = self._tag
        self._reset_command()
        self._state = _State.CLOSED
        self._buf.clear()
        return LimitExceeded(tag, message, fatal=True)

    def _read_literal(self) -> Event | None:
        size = self._literal_size
        if len(self._buf) < size:
            return NeedData()
        with memoryview(self._buf) as view:
            data = bytes(view[:size])  # one copy, however large the literal
        del self._buf[:size]  # O(1) for a bytearray prefix in CPython
        self._scan = 0
        self._parts.append(data)
        self._state = _State.LINE
        return None

    def _skip_literal(self) -> Event | None:
        take = min(self._skip_remaining, len(self._buf))
        del self._buf[:take]
        self._scan = 0
        self._skip_remaining -= take
        if self._skip_remaining:
            return NeedData()
        self._state = _State.LINE
        return None

    def _read_line(self) -> Event | None:
        buf = self._buf
        lf = buf.find(b"\n", self._scan)
        if lf < 0:
            if self._discard_line:
                # Keep only the tail, enough to see a literal announcement at the end.
                if len(buf) > _TAIL_WINDOW:
                    del buf[:-_TAIL_WINDOW]
                self._scan = len(buf)
                return NeedData()
            pending = len(buf) - (1 if buf.endswith(b"\r") else 0)  # a CR awaiting its LF
            if pending > self.limits.max_line_bytes:
                return self._line_too_long()
            self._scan = len(buf)
            return NeedData()
        end = lf - 1 if lf > 0 and buf[lf - 1] == 0x0D else lf
        if self._discard_line:
            # The buffer always keeps the last _TAIL_WINDOW octets of the line.
            line = bytes(buf[max(0, end - _TAIL_WINDOW) : end])
        else:
            if end > self.limits.max_line_bytes:
                return self._line_too_long()
            line = bytes(buf[:end])
        del buf[: lf + 1]
        self._scan = 0
        if self._state is _State.RAW_LINE:
            self._state = _State.LINE
            return Line(line)
        if self._discard_line:
            self._discard_line = False
            self._discard_command = True
            return self._after_discarded_line(line)
        if self._discard_command:
            return self._after_discarded_line(line)
        return self._command_line(line)

    def _line_too_long(self) -> Event | None:
        if self._state is _State.RAW_LINE:
            self._state = _State.LINE
        if self._discard_command:  # already refused: no second error for one command
            self._discard_line = True
            return None
        if not self._parts:
            # Only a tag already followed by a space counts: the same answer whether the
            # line arrived whole or in pieces.
            prefix = bytes(self._buf[: min(64, self.limits.max_line_bytes + 1)])
            self._tag = _extract_tag(prefix) if b" " in prefix else None
        self._discard_line = True
        tag = self._tag
        return LimitExceeded(tag, "line too long", fatal=False)

    def _after_discarded_line(self, line: bytes) -> Event | None:
        """A line of a refused command: skip any non-synchronising literal it announces."""
        m = _LITERAL_TAIL.search(line[-_TAIL_WINDOW:])
        if m is None or not m.group(3):
            # End of the command (a synchronising literal is never sent: no "+").
            self._reset_command()
            return None
        size = _literal_size(m.group(2))
        if size > self.limits.max_literal_bytes:
            return self._fatal("[TOOBIG] non-synchronizing literal too large")
        self._skip_remaining = size
        self._state = _State.SKIP_LITERAL
        return None

    def _command_line(self, line: bytes) -> Event | None:
        limits = self.limits
        if not self._parts:
            if not line.strip():
                return None  # tolerate empty lines between commands
            self._tag = _extract_tag(line)
            name = _COMMAND_NAME.match(line)
            self._command_name = name.group(1).decode("ascii").upper() if name else ""
            self._is_append = self._command_name == "APPEND"
        self._command_bytes += len(line)
        self._parts.append(line)
        if self._command_bytes > limits.max_command_bytes:
            tag = self._tag
            self._parts = []
            self._discard_command = True
            event = self._after_discarded_line(line)
            if isinstance(event, LimitExceeded):  # fatal: literal too large to skip
                return event
            return LimitExceeded(tag, "command too long", fatal=False)
        m = _LITERAL_TAIL.search(line[-_TAIL_WINDOW:])
        if m is None:
            parts = self._parts
            tag = self._tag
            self._reset_command()
            return _parse_command(parts, tag, limits, self.utf8)
        size = _literal_size(m.group(2))
        nonsync = bool(m.group(3))
        tag_text = self._tag
        # Which limit applies to this literal.
        if self._is_append:
            too_big = (
                size > limits.max_literal_bytes
                or self._append_bytes + size > limits.max_append_bytes
            )
            self._append_bytes += size
        else:
            too_big = self._command_bytes + size > limits.max_command_bytes
            self._command_bytes += size
        if len(self._parts) // 2 >= limits.max_list_items:
            too_big = True
        status = "NO" if self._is_append else "BAD"
        if nonsync:
            if size > limits.max_literal_bytes:
                # RFC 7888 §4: the client is already sending it; reading that much only
                # to discard it is not worth it: the connection must be closed.
                return self._fatal("[TOOBIG] non-synchronizing literal too large")
            error: ParseError | LimitExceeded | None = None
            if too_big:
                error = LimitExceeded(tag_text, "[TOOBIG] literal too large", False, status)
            elif (refusal := self._nonsync_refusal(size)) is not None:
                error = ParseError(tag_text, refusal)
            if error is not None:
                # RFC 7888 §4 (a): read and discard the literal, refuse the command.
                self._discard_command = True
                self._parts = []
                self._skip_remaining = size
                self._state = _State.SKIP_LITERAL
                return error
            self._literal_size = size
            self._state = _State.LITERAL
            return None
        if too_big:
            # The client waits for "+": refusing now costs nothing (RFC 9051 §7.1.4).
            self._reset_command()
            return LimitExceeded(tag_text, "[TOOBIG] literal too large", False, status)
        if tag_text is None:
            # A command without a valid tag cannot be continued: refuse the literal.
            self._reset_command()
            return ParseError(None, "invalid tag")
        self._literal_size = size
        self._state = _State.LITERAL
        return ContinuationNeeded(tag_text, size, self._command_name)

    def _nonsync_refusal(self, size: int) -> str | None:
        if self.literal_mode is LiteralMode.SYNC_ONLY:
            return "non-synchronizing literals are not supported"
        if self.literal_mode is LiteralMode.MINUS and size > LITERAL_MINUS_MAX:
            return "[TOOBIG] non-synchronizing literal larger than 4096 octets (LITERAL-)"
        return None


def _literal_size(digits: bytes) -> int:
    # Longer than number64 (RFC 9051 §9) means "too big"; never int() 10^5 digits.
    return int(digits) if len(digits) <= 19 else 1 << 64


def _extract_tag(line: bytes) -> str | None:
    m = _TAG.match(line)
    if m is None or (m.end() < len(line) and line[m.end()] != 0x20):
        return None
    tag = m.group()
    if not all(b in _TAG_CHARS for b in tag):
        return None
    return tag.decode("ascii")


# --------------------------------------------------------------------------- grammar


class _Bad(Exception):
    """Syntax error inside the grammar parser (never leaves this module)."""


class _TooMany(Exception):
    """A nesting or list limit inside the grammar parser (never leaves this module)."""


class _BadCharset(Exception):
    """Unsupported search charset (→ NO [BADCHARSET])."""


_T = TypeVar("_T")

_DIGITS: Final = frozenset(b"0123456789")
_LIST_CHARS: Final = ATOM_CHARS | frozenset(b"%*]")
_MONTHS: Final = {
    m.encode("ascii"): i + 1
    for i, m in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    )
}
_DATE_TIME: Final = re.compile(
    rb"([ 0-9]?[0-9])-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})\Z"
)
_SYSTEM_FLAGS: Final = {f.upper(): f for f in c.SYSTEM_FLAGS}
_OBJECTID_CHARS: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
)
_NUMBER64_MAX: Final = (1 << 63) - 1
_NZ_NUMBER_MAX: Final = (1 << 32) - 1
_MOD_SEQ_MAX: Final = (1 << 63) - 1


class _Reader:
    """A cursor over the parts of one command: line, literal, line, literal, line."""

    def __init__(self, parts: list[bytes], limits: Limits, utf8: bool) -> None:
        self.parts = parts
        self.index = 0
        self.line = parts[0]
        self.pos = 0
        self.limits = limits
        self.utf8 = utf8
        self.depth = 0

    # -- primitives

    def peek(self) -> int | None:
        return self.line[self.pos] if self.pos < len(self.line) else None

    def at_end(self) -> bool:
        return self.pos >= len(self.line) and self.index == len(self.parts) - 1

    def end(self) -> None:
        if not self.at_end():
            raise _Bad("unexpected characters at end of command")

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise _Bad("expected a space")
        self.pos += 1

    def maybe_sp(self) -> bool:
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    def char(self, ch: bytes) -> None:
        if self.peek() != ch[0]:
            raise _Bad(f"expected {ch.decode()!r}")
        self.pos += 1

    def maybe_char(self, ch: bytes) -> bool:
        if self.peek() == ch[0]:
            self.pos += 1
            return True
        return False

    def take_while(self, allowed: frozenset[int]) -> bytes:
        start = self.pos
        line = self.line
        while self.pos < len(line) and line[self.pos] in allowed:
            self.pos += 1
        return line[start : self.pos]

    def atom(self) -> bytes:
        value = self.take_while(ATOM_CHARS)
        if not value:
            raise _Bad("expected an atom")
        return value

    def keyword(self) -> str:
        """An atom, upper-cased, for comparison with grammar keywords."""
        return self.atom().decode("ascii").upper()

    def expect_keyword(self, word: str) -> None:
        if self.keyword() != word:
            raise _Bad(f"expected {word}")

    def number(self, maximum: int = _NZ_NUMBER_MAX, nonzero: bool = False) -> int:
        digits = self.take_while(_DIGITS)
        if not digits:
            raise _Bad("expected a number")
        if len(digits) > 20:
            raise _Bad("number too large")
        value = int(digits)
        if value > maximum:
            raise _Bad("number too large")
        if nonzero and value == 0:
            raise _Bad("zero is not allowed here")
        return value

    # -- strings

    def at_literal(self) -> bool:
        """A literal ``{`` or literal8 ``~{`` starts here (``~`` alone is an atom char)."""
        line, pos = self.line, self.pos
        if pos < len(line) and line[pos] == 0x7E:
            pos += 1
        return pos < len(line) and line[pos] == 0x7B

    def _literal(self) -> bytes | None:
        """If a literal starts here, consume it and return its octets."""
        if not self.at_literal():
            return None
        m = _LITERAL_TAIL.match(self.line, self.pos)
        if m is None or self.index + 1 >= len(self.parts):
            raise _Bad("invalid literal")
        data = self.parts[self.index + 1]
        self.index += 2
        self.line = self.parts[self.index]
        self.pos = 0
        return data

    def _literal_is_binary(self) -> bool:
        return self.peek() == 0x7E

    def quoted(self) -> bytes:
        self.char(b'"')
        line = self.line
        out = bytearray()
        while True:
            if self.pos >= len(line):
                raise _Bad("unterminated quoted string")
            b = line[self.pos]
            self.pos += 1
            if b == 0x22:
                return bytes(out)
            if b == 0x5C:
                if self.pos >= len(line) or line[self.pos] not in (0x22, 0x5C):
                    raise _Bad("invalid escape in quoted string")
                out.append(line[self.pos])
                self.pos += 1
            elif b in (0x00, 0x0D, 0x0A):
                raise _Bad("invalid character in quoted string")
            else:
                out.append(b)

    def string(self) -> bytes:
        if self.peek() == 0x22:
            return self.quoted()
        data = self._literal()
        if data is None:
            raise _Bad("expected a string")
        return data

    def astring(self) -> bytes:
        b = self.peek()
        if b == 0x22:
            return self.quoted()
        data = self._literal()
        if data is not None:
            return data
        value = self.take_while(ASTRING_CHARS)
        if not value:
            raise _Bad("expected a string")
        return value

    def nstring(self) -> bytes | None:
        if self.peek() == 0x22 or self.at_literal():
            return self.string()
        self.expect_keyword("NIL")
        return None

    def ascii_astring(self) -> str:
        value = self.astring()
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise _Bad("8-bit characters not allowed here")

    # -- mailboxes

    def mailbox(self) -> str:
        return self._decode_mailbox(self.astring(), normalise_inbox=True)

    def list_mailbox(self) -> str:
        """``list-mailbox = 1*list-char / string`` (wildcards allowed)."""
        if self.peek() == 0x22 or self.at_literal():
            raw = self.string()
        else:
            raw = self.take_while(_LIST_CHARS)
            if not raw:
                raise _Bad("expected a mailbox pattern")
        return self._decode_mailbox(raw, normalise_inbox=False)

    def _decode_mailbox(self, raw: bytes, normalise_inbox: bool) -> str:
        if 0 in raw or b"\r" in raw or b"\n" in raw:
            raise _Bad("invalid character in mailbox name")
        if self.utf8:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _Bad("mailbox name is not valid UTF-8")
        else:
            try:
                name = decode_mutf7(raw)
            except ValueError:
                # RFC 9051 §5.1: IMAP4rev2 names are UTF-8; accept raw UTF-8 leniently.
                try:
                    name = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise _Bad("invalid mailbox name encoding")
                if "&" in name:
                    raise _Bad("invalid modified UTF-7 in mailbox name")
        # RFC 9051 §5.1: INBOX is case-insensitive.
        if normalise_inbox and name.upper() == "INBOX":
            return "INBOX"
        return name

    # -- lists

    def paren_list(self, item: Callable[[], _T], allow_empty: bool = False) -> list[_T]:
        self.char(b"(")
        self.enter()
        items: list[_T] = []
        if self.maybe_char(b")"):
            if not allow_empty:
                raise _Bad("empty list")
            self.leave()
            return items
        while True:
            items.append(item())
            if len(items) > self.limits.max_list_items:
                raise _TooMany("too many list items")
            if self.maybe_char(b")"):
                break
            self.sp()
        self.leave()
        return items

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.limits.max_nesting:
            raise _TooMany("parentheses nested too deeply")

    def leave(self) -> None:
        self.depth -= 1

    # -- values

    def seqset(self) -> c.SequenceSet:
        if self.maybe_char(b"$"):
            return c.SequenceSet(saved=True)
        ranges: list[c.SeqRange] = []
        while True:
            start = self.seq_number()
            end = self.seq_number() if self.maybe_char(b":") else start
            ranges.append(c.SeqRange(start, end))
            if len(ranges) > self.limits.max_list_items:
                raise _TooMany("too many ranges in sequence set")
            if not self.maybe_char(b","):
                return c.SequenceSet(tuple(ranges))

    def seq_number(self) -> int | None:
        if self.maybe_char(b"*"):
            return None
        return self.number(nonzero=True)

    def flag(self, allow_star: bool = False) -> str:
        if self.maybe_char(b"\\"):
            if allow_star and self.maybe_char(b"*"):
                return "\\*"
            name = self.atom().decode("ascii")
            return _SYSTEM_FLAGS.get("\\" + name.upper(), "\\" + name)
        return self.atom().decode("ascii")

    def flag_list(self) -> tuple[str, ...]:
        return tuple(self.paren_list(self.flag, allow_empty=True))

    def date(self) -> datetime.date:
        """``date = date-text / DQUOTE date-text DQUOTE`` (RFC 9051 §9)."""
        text = self.quoted() if self.peek() == 0x22 else self.take_while(ATOM_CHARS)
        m = re.fullmatch(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})", text)
        if m is None:
            raise _Bad("invalid date")
        month = _MONTHS.get(m.group(2).upper())
        if month is None:
            raise _Bad("invalid month")
        try:
            return datetime.date(int(m.group(3)), month, int(m.group(1)))
        except ValueError:
            raise _Bad("invalid date")

    def date_time(self) -> datetime.datetime:
        """``date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone
        DQUOTE`` (RFC 9051 §9)."""
        m = _DATE_TIME.match(self.quoted())
        if m is None:
            raise _Bad("invalid date-time")
        month = _MONTHS.get(m.group(2).upper())
        if month is None:
            raise _Bad("invalid month")
        sign = 1 if m.group(7) == b"+" else -1
        zone_min = int(m.group(8)) * 60 + int(m.group(9))
        if zone_min >= 24 * 60:
            raise _Bad("invalid time zone")
        try:
            tz = datetime.timezone(sign * datetime.timedelta(minutes=zone_min))
            return datetime.datetime(
                int(m.group(3)),
                month,
                int(m.group(1).strip()),
                int(m.group(4)),
                int(m.group(5)),
                int(m.group(6)),
                tzinfo=tz,
            )
        except ValueError:
            raise _Bad("invalid date-time")


# --------------------------------------------------------------------------- commands


def _parse_command(parts: list[bytes], tag: str | None, limits: Limits, utf8: bool) -> Event:
    if tag is None:
        return ParseError(None, "invalid or missing tag")
    r = _Reader(parts, limits, utf8)
    r.pos = len(tag)
    try:
        r.sp()
        name = r.keyword()
        parser = _COMMANDS.get(name)
        if parser is None:
            return Command(tag, c.Unknown(name))
        command = parser(r)
        r.end()
    except _Bad as exc:
        return ParseError(tag, str(exc))
    except _TooMany as exc:
        return LimitExceeded(tag, str(exc), fatal=False)
    except _BadCharset as exc:
        return ParseError(tag, f"[BADCHARSET (UTF-8 US-ASCII)] {exc}", status="NO")
    except RecursionError:  # pragma: no cover - max_nesting keeps depth far below this
        return LimitExceeded(tag, "command nested too deeply", fatal=False)
    return Command(tag, command)


def _no_args(cls: Callable[[], c.ImapCommand]) -> Callable[[_Reader], c.ImapCommand]:
    def parse(r: _Reader) -> c.ImapCommand:
        return cls()

    return parse


def _p_authenticate(r: _Reader) -> c.ImapCommand:
    r.sp()
    mechanism = r.atom().decode("ascii").upper()
    initial: bytes | None = None
    if r.maybe_sp():
        # RFC 4959: initial-response = base64 / "="
        raw = r.take_while(ATOM_CHARS)
        if raw == b"=":
            initial = b""
        else:
            if not raw:
                raise _Bad("empty initial response")
            try:
                initial = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                raise _Bad("invalid base64 initial response")
    return c.Authenticate(mechanism, initial)


def _p_login(r: _Reader) -> c.ImapCommand:
    r.sp()
    user = r.astring()
    r.sp()
    return c.Login(user, r.astring())


def _p_enable(r: _Reader) -> c.ImapCommand:
    caps: list[str] = []
    while r.maybe_sp():
        caps.append(r.keyword())
        if len(caps) > r.limits.max_list_items:
            raise _TooMany("too many capabilities")
    if not caps:
        raise _Bad("ENABLE needs at least one capability")
    return c.Enable(tuple(caps))


def _qresync(r: _Reader) -> c.QResync:
    """``"(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"``."""
    r.char(b"(")
    uidvalidity = r.number(nonzero=True)
    r.sp()
    modseq = r.number(_MOD_SEQ_MAX)
    known_uids = seqs = uids = None
    if r.maybe_sp():
        if r.peek() != 0x28:
            known_uids = r.seqset()
            if known_uids.saved:
                raise _Bad("$ not allowed in QRESYNC")
            if r.maybe_sp() and r.peek() != 0x28:
                raise _Bad("expected sequence match data")
        if r.peek() == 0x28:
            r.char(b"(")
            seqs = r.seqset()
            r.sp()
            uids = r.seqset()
            r.char(b")")
    r.char(b")")
    return c.QResync(uidvalidity, modseq, known_uids, seqs, uids)


def _p_select(cls: type[c.Select] | type[c.Examine]) -> Callable[[_Reader], c.ImapCommand]:
    def parse(r: _Reader) -> c.ImapCommand:
        r.sp()
        mailbox = r.mailbox()
        condstore = False
        qresync: c.QResync | None = None
        if r.maybe_sp():
            r.char(b"(")
            while True:
                param = r.keyword()
                if param == "CONDSTORE":
                    condstore = True
                elif param == "QRESYNC":
                    r.sp()
                    qresync = _qresync(r)
                else:
                    raise _Bad(f"unknown SELECT parameter {param}")
                if r.maybe_char(b")"):
                    break
                r.sp()
        return cls(mailbox, condstore, qresync)

    return parse


def _p_create(r: _Reader) -> c.ImapCommand:
    r.sp()
    mailbox = r.mailbox()
    special: tuple[str, ...] = ()
    if r.maybe_sp():
        r.char(b"(")
        r.expect_keyword("USE")  # RFC 6154 §3
        r.sp()
        special = tuple(r.paren_list(r.flag))
        r.char(b")")
    return c.Create(mailbox, special)


def _mailbox_command(cls: Callable[[str], c.ImapCommand]) -> Callable[[_Reader], c.ImapCommand]:
    def parse(r: _Reader) -> c.ImapCommand:
        r.sp()
        return cls(r.mailbox())

    return parse


def _p_rename(r: _Reader) -> c.ImapCommand:
    r.sp()
    old = r.mailbox()
    r.sp()
    return c.Rename(old, r.mailbox())


_LIST_SELECT: Final = {o.value: o for o in c.ListSelect}
_LIST_RETURN: Final = {o.value: o for o in c.ListReturn}
_STATUS_ITEMS: Final = {o.value: o for o in c.StatusItem}


def _status_items(r: _Reader) -> tuple[c.StatusItem, ...]:
    def item() -> c.StatusItem:
        name = r.keyword()
        found = _STATUS_ITEMS.get(name)
        if found is None:
            raise _Bad(f"unknown status item {name}")
        return found

    return tuple(r.paren_list(item))


def _p_list(r: _Reader) -> c.ImapCommand:
    """RFC 9051 §9 ``list``; RFC 5258 §6 ``list-select-opts`` / ``list-return-opts``."""
    r.sp()
    extended = False
    select: set[c.ListSelect] = set()
    if r.peek() == 0x28:
        extended = True

        def select_opt() -> c.ListSelect:
            name = r.keyword()
            found = _LIST_SELECT.get(name)
            if found is None:
                raise _Bad(f"unknown LIST selection option {name}")
            return found

        select = set(r.paren_list(select_opt, allow_empty=True))
        r.sp()
        # RFC 5258 §3.1: RECURSIVEMATCH needs another selection option.
        if c.ListSelect.RECURSIVEMATCH in select and select == {c.ListSelect.RECURSIVEMATCH}:
            raise _Bad("RECURSIVEMATCH needs another selection option")
    reference = r._decode_mailbox(r.astring(), normalise_inbox=False)
    r.sp()
    if r.peek() == 0x28:
        extended = True
        patterns = tuple(r.paren_list(r.list_mailbox))
    else:
        patterns = (r.list_mailbox(),)
    returns: set[c.ListReturn] = set()
    status_items: tuple[c.StatusItem, ...] = ()
    if r.maybe_sp():
        extended = True
        r.expect_keyword("RETURN")
        r.sp()

        def return_opt() -> c.ListReturn:
            nonlocal status_items
            name = r.keyword()
            found = _LIST_RETURN.get(name)
            if found is None:
                raise _Bad(f"unknown LIST return option {name}")
            if found is c.ListReturn.STATUS:
                r.sp()
                status_items = _status_items(r)
            return found

        returns = set(r.paren_list(return_opt, allow_empty=True))
    return c.List(
        reference, patterns, frozenset(select), frozenset(returns), status_items, extended
    )


def _p_lsub(r: _Reader) -> c.ImapCommand:
    r.sp()
    reference = r._decode_mailbox(r.astring(), normalise_inbox=False)
    r.sp()
    return c.Lsub(reference, r.list_mailbox())


def _p_status(r: _Reader) -> c.ImapCommand:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return c.Status(mailbox, _status_items(r))


def _p_append(r: _Reader) -> c.ImapCommand:
    """``append = "APPEND" SP mailbox 1*append-message`` (RFC 3502 §6.3.11, RFC 3516,
    RFC 6855 §4)."""
    r.sp()
    mailbox = r.mailbox()
    messages: list[c.AppendMessage] = []
    while r.maybe_sp():
        flags: tuple[str, ...] = ()
        when: datetime.datetime | None = None
        if r.peek() == 0x28:
            flags = r.flag_list()
            if "\\Recent" in flags:
                raise _Bad("\\Recent cannot be set")
            r.sp()
        if r.peek() == 0x22:
            when = r.date_time()
            r.sp()
        # RFC 6855 §4: append-data =/ "UTF8" SP "(" literal8 ")" — a message/global
        # message (UTF-8 header fields); accepted whether or not UTF8=ACCEPT was enabled.
        utf8 = r.line[r.pos : r.pos + 6].upper() == b"UTF8 ("
        if utf8:
            r.pos += 6
            if not r._literal_is_binary():
                raise _Bad("UTF8 needs a literal8 ~{n}")
        binary = r._literal_is_binary()
        data = r._literal()
        if data is None:
            raise _Bad("APPEND needs a literal")
        if utf8:
            r.char(b")")
        messages.append(c.AppendMessage(flags, when, data, binary, utf8))
    if not messages:
        raise _Bad("APPEND needs a message")
    return c.Append(mailbox, tuple(messages))


# -- search (RFC 9051 §6.4.4)

# Keys without arguments.
_SEARCH_SIMPLE: Final[dict[str, c.SearchKey]] = {
    "ALL": c.SearchAll(),
    "ANSWERED": c.SearchFlag("\\Answered"),
    "DELETED": c.SearchFlag("\\Deleted"),
    "DRAFT": c.SearchFlag("\\Draft"),
    "FLAGGED": c.SearchFlag("\\Flagged"),
    "SEEN": c.SearchFlag("\\Seen"),
    "RECENT": c.SearchFlag("\\Recent"),
    "UNANSWERED": c.SearchFlag("\\Answered", False),
    "UNDELETED": c.SearchFlag("\\Deleted", False),
    "UNDRAFT": c.SearchFlag("\\Draft", False),
    "UNFLAGGED": c.SearchFlag("\\Flagged", False),
    "UNSEEN": c.SearchFlag("\\Seen", False),
    # RFC 3501: NEW = RECENT UNSEEN, OLD = NOT RECENT
    "NEW": c.SearchAnd((c.SearchFlag("\\Recent"), c.SearchFlag("\\Seen", False))),
    "OLD": c.SearchNot(c.SearchFlag("\\Recent")),
    "SAVEDATESUPPORTED": c.SearchSaveDateSupported(),
}
# Keys taking a string: header field names.
_SEARCH_WITH_ARGS: Final = frozenset(
    {"NOT", "OR", "HEADER", "BODY", "TEXT", "KEYWORD", "UNKEYWORD", "LARGER", "SMALLER"}
    | {"UID", "OLDER", "YOUNGER", "MODSEQ", "EMAILID", "THREADID"}
)
_SEARCH_HEADER: Final = {"BCC": "bcc", "CC": "cc", "FROM": "from", "SUBJECT": "subject", "TO": "to"}
# Keys taking a date.
_SEARCH_DATE: Final = {
    "BEFORE": (c.DateField.INTERNAL, c.DateOp.BEFORE),
    "ON": (c.DateField.INTERNAL, c.DateOp.ON),
    "SINCE": (c.DateField.INTERNAL, c.DateOp.SINCE),
    "SENTBEFORE": (c.DateField.SENT, c.DateOp.BEFORE),
    "SENTON": (c.DateField.SENT, c.DateOp.ON),
    "SENTSINCE": (c.DateField.SENT, c.DateOp.SINCE),
    "SAVEDBEFORE": (c.DateField.SAVED, c.DateOp.BEFORE),
    "SAVEDON": (c.DateField.SAVED, c.DateOp.ON),
    "SAVEDSINCE": (c.DateField.SAVED, c.DateOp.SINCE),
}


class _SearchParser:
    def __init__(self, r: _Reader, charset: str | None) -> None:
        self.r = r
        self.charset = charset or "utf-8"

    def text(self) -> str:
        raw = self.r.astring()
        try:
            return raw.decode(self.charset)
        except (UnicodeDecodeError, LookupError):
            raise _Bad(f"search string is not valid {self.charset}")

    def program(self) -> c.SearchKey:
        """``search-key *(SP search-key)`` up to the end of the command."""
        keys = [self.key()]
        while self.r.maybe_sp():
            keys.append(self.key())
            if len(keys) > self.r.limits.max_list_items:
                raise _TooMany("too many search keys")
        return keys[0] if len(keys) == 1 else c.SearchAnd(tuple(keys))

    def key(self) -> c.SearchKey:
        r = self.r
        b = r.peek()
        if b == 0x28:  # "("
            keys = r.paren_list(self.key)
            return keys[0] if len(keys) == 1 else c.SearchAnd(tuple(keys))
        if b is not None and (b in _DIGITS or b in (0x2A, 0x24)):  # digit, "*", "$"
            return c.SearchSeq(r.seqset())
        name = r.keyword()
        simple = _SEARCH_SIMPLE.get(name)
        if simple is not None:
            return simple
        header = _SEARCH_HEADER.get(name)
        if header is not None:
            r.sp()
            return c.SearchHeader(header, self.text())
        date = _SEARCH_DATE.get(name)
        if date is not None:
            r.sp()
            return c.SearchDate(date[0], date[1], r.date())
        if name not in _SEARCH_WITH_ARGS:
            raise _Bad(f"unknown search key {name}")
        r.sp()
        if name == "NOT":
            r.enter()
            key = c.SearchNot(self.key())
            r.leave()
            return key
        if name == "OR":
            r.enter()
            left = self.key()
            r.sp()
            right = self.key()
            r.leave()
            return c.SearchOr(left, right)
        if name == "HEADER":
            field = r.ascii_astring().lower()
            r.sp()
            return c.SearchHeader(field, self.text())
        if name == "BODY":
            return c.SearchBody(self.text())
        if name == "TEXT":
            return c.SearchText(self.text())
        if name in ("KEYWORD", "UNKEYWORD"):
            return c.SearchFlag(r.flag(), name == "KEYWORD")
        if name in ("LARGER", "SMALLER"):
            return c.SearchSize(name == "LARGER", r.number(_NUMBER64_MAX))
        if name == "UID":
            return c.SearchUid(r.seqset())
        if name in ("OLDER", "YOUNGER"):
            return c.SearchAge(name == "OLDER", r.number(nonzero=True))
        if name in ("EMAILID", "THREADID"):
            # RFC 8474 §6: objectid = 1*255(ALPHA / DIGIT / "_" / "-")
            value = r.take_while(_OBJECTID_CHARS)
            if not 1 <= len(value) <= 255:
                raise _Bad("invalid object id")
            return c.SearchObjectId(name, value.decode("ascii"))
        if name == "MODSEQ":
            # RFC 7162 §3.1.5: MODSEQ [SP entry-name SP entry-type-req] SP mod-sequence-valzer
            if r.peek() == 0x22:
                entry = r.quoted().decode("ascii", "replace")
                r.sp()
                kind = r.keyword().lower()
                if kind not in ("priv", "shared", "all"):
                    raise _Bad("invalid MODSEQ entry type")
                r.sp()
                return c.SearchModSeq(r.number(_MOD_SEQ_MAX), entry, kind)
            return c.SearchModSeq(r.number(_MOD_SEQ_MAX))
        raise _Bad(f"unknown search key {name}")


_SEARCH_RETURN: Final = {o.value: o for o in c.SearchReturn}


def _search_returns(r: _Reader) -> frozenset[c.SearchReturn] | None:
    """``[SP "RETURN" SP "(" [search-return-opt *(SP search-return-opt)] ")"]``; leaves the
    reader after the following space."""
    start = r.pos
    if r.take_while(ATOM_CHARS).upper() != b"RETURN":
        r.pos = start
        return None
    r.sp()

    def opt() -> c.SearchReturn:
        name = r.keyword()
        found = _SEARCH_RETURN.get(name)
        if found is None:
            raise _Bad(f"unknown search return option {name}")
        return found

    options = frozenset(r.paren_list(opt, allow_empty=True))
    r.sp()
    return options or frozenset({c.SearchReturn.ALL})  # RFC 4731 §3.1: () means ALL


def _charset(r: _Reader) -> str:
    name = r.ascii_astring()
    try:
        codecs.lookup(name)
    except LookupError:
        raise _BadCharset(f"unsupported charset {name}")
    return name


def _p_search(uid: bool) -> Callable[[_Reader], c.ImapCommand]:
    def parse(r: _Reader) -> c.ImapCommand:
        r.sp()
        returns = _search_returns(r)
        charset: str | None = None
        start = r.pos
        if r.take_while(ATOM_CHARS).upper() == b"CHARSET" and r.peek() == 0x20:
            r.sp()
            charset = _charset(r)
            r.sp()
        else:
            r.pos = start
        criteria = _SearchParser(r, charset).program()
        return c.Search(criteria, charset, returns, uid)

    return parse


_SORT_KEYS: Final = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)


def _p_sort(uid: bool) -> Callable[[_Reader], c.ImapCommand]:
    """RFC 5256 §5: ``SORT SP sort-criteria SP search-criteria``; RFC 5267 RETURN."""

    def parse(r: _Reader) -> c.ImapCommand:
        r.sp()
        returns = _search_returns(r)

        def criterion() -> c.SortCriterion:
            name = r.keyword()
            reverse = False
            if name == "REVERSE":
                r.sp()
                reverse = True
                name = r.keyword()
            if name not in _SORT_KEYS:
                raise _Bad(f"unknown sort key {name}")
            return c.SortCriterion(name, reverse)

        criteria = tuple(r.paren_list(criterion))
        r.sp()
        charset = _charset(r)
        r.sp()
        search = _SearchParser(r, charset).program()
        return c.Sort(criteria, charset, search, returns, uid)

    return parse


def _p_thread(uid: bool) -> Callable[[_Reader], c.ImapCommand]:
    """RFC 5256 §5: ``THREAD SP thread-alg SP search-criteria``."""

    def parse(r: _Reader) -> c.ImapCommand:
        r.sp()
        algorithm = r.keyword()
        r.sp()
        charset = _charset(r)
        r.sp()
        search = _SearchParser(r, charset).program()
        return c.Thread(algorithm, charset, search, uid)

    return parse


# -- fetch (RFC 9051 §6.4.5)

_FETCH_SIMPLE: Final = {a.value: a for a in c.FetchAttr}
_SECTION_TEXT: Final = {t.value: t for t in c.SectionText}
_NAME_CHARS: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.")


def _section_part(r: _Reader) -> tuple[int, ...]:
    """``section-part = nz-number *("." nz-number)``, possibly empty."""
    part: list[int] = []
    while r.peek() is not None and r.peek() in _DIGITS:
        part.append(r.number(nonzero=True))
        if len(part) > r.limits.max_nesting:
            raise _TooMany("section part too deep")
        if not r.maybe_char(b"."):
            break
        if r.peek() is None or r.peek() not in _DIGITS:
            r.pos -= 1  # the dot belongs to a section-text
            break
    return tuple(part)


def _section(r: _Reader) -> c.Section:
    r.char(b"[")
    part = _section_part(r)
    text: c.SectionText | None = None
    fields: tuple[str, ...] = ()
    if part and r.peek() != 0x5D:
        r.char(b".")
    if part and r.peek() == 0x5D and r.line[r.pos - 1] == 0x2E:
        raise _Bad("invalid section")
    if r.peek() != 0x5D:  # "]"
        name = r.take_while(_NAME_CHARS).decode("ascii").upper()
        text = _SECTION_TEXT.get(name)
        if text is None:
            raise _Bad(f"invalid section {name}")
        if text is c.SectionText.MIME and not part:
            raise _Bad("MIME needs a part number")
        if text in (c.SectionText.HEADER_FIELDS, c.SectionText.HEADER_FIELDS_NOT):
            r.sp()
            fields = tuple(r.paren_list(r.ascii_astring))
    r.char(b"]")
    return c.Section(part, text, fields)


def _partial(r: _Reader) -> c.Partial | None:
    if not r.maybe_char(b"<"):
        return None
    offset = r.number(_NUMBER64_MAX)
    r.char(b".")
    length = r.number(_NUMBER64_MAX, nonzero=True)
    r.char(b">")
    return c.Partial(offset, length)


def _binary_part(r: _Reader) -> tuple[int, ...]:
    r.char(b"[")
    part = _section_part(r)
    r.char(b"]")
    return part


def _fetch_att(r: _Reader) -> c.FetchItem:
    name = r.take_while(_NAME_CHARS).decode("ascii").upper()
    if r.peek() == 0x5B:  # "["
        if name in ("BODY", "BODY.PEEK"):
            section = _section(r)
            return c.FetchBody(section, _partial(r), peek=name == "BODY.PEEK")
        if name in ("BINARY", "BINARY.PEEK"):
            part = _binary_part(r)
            return c.FetchBinary(part, _partial(r), peek=name == "BINARY.PEEK")
        if name == "BINARY.SIZE":
            return c.FetchBinarySize(_binary_part(r))
        raise _Bad(f"unexpected section after {name}")
    simple = _FETCH_SIMPLE.get(name)
    if simple is None:
        raise _Bad(f"unknown fetch item {name or r.line[r.pos : r.pos + 1]!r}")
    return simple


def _p_fetch(uid: bool) -> Callable[[_Reader], c.ImapCommand]:
    def parse(r: _Reader) -> c.ImapCommand:
        r.sp()
        seqset = r.seqset()
        r.sp()
        items: tuple[c.FetchItem, ...]
        if r.peek() == 0x28:
            items = tuple(r.paren_list(lambda: _fetch_att(r)))
        else:
            start = r.pos
            macro = c.FETCH_MACROS.get(r.take_while(_NAME_CHARS).decode("ascii").upper())
            if macro is not None and r.peek() in (None, 0x20):
                items = macro
            else:
                r.pos = start
                items = (_fetch_att(r),)
        changedsince: int | None = None
        vanished = False
        if r.maybe_sp():
            # RFC 7162 §3.1.4.1 / §3.2.6: fetch-modifiers
            r.char(b"(")
            while True:
                mod = r.keyword()
                if mod == "CHANGEDSINCE":
                    r.sp()
                    changedsince = r.number(_MOD_SEQ_MAX)
                elif mod == "VANISHED" and uid:
                    vanished = True
                else:
                    raise _Bad(f"unknown fetch modifier {mod}")
                if r.maybe_char(b")"):
                    break
                r.sp()
            if vanished and changedsince is None:
                # RFC 7162 §3.2.6: VANISHED without CHANGEDSINCE is a BAD
                raise _Bad("VANISHED requires CHANGEDSINCE")
        return c.Fetch(seqset, items, changedsince, vanished, uid)

    return parse


_STORE_MODES: Final = {m.value: m for m in c.StoreMode}


def _p_store(uid: bool) -> Callable[[_Reader], c.ImapCommand]:
    def parse(r: _Reader) -> c.ImapCommand:
        r.sp()
        seqset = r.seqset()
        r.sp()
        unchangedsince: int | None = None
        if r.peek() == 0x28:
            # RFC 7162 §3.1.3: store-modifiers
            r.char(b"(")
            r.expect_keyword("UNCHANGEDSINCE")
            r.sp()
            unchangedsince = r.number(_MOD_SEQ_MAX)
            r.char(b")")
            r.sp()
        prefix = b""
        if r.peek() in (0x2B, 0x2D):  # "+" / "-"
            prefix = r.line[r.pos : r.pos + 1]
            r.pos += 1
        name = r.keyword()
        silent = name.endswith(".SILENT")
        if silent:
            name = name[: -len(".SILENT")]
        mode = _STORE_MODES.get(prefix.decode("ascii") + name)
        if mode is None:
            raise _Bad("expected FLAGS, +FLAGS or -FLAGS")
        r.sp()
        if r.peek() == 0x28:
            flags = r.flag_list()
        else:
            items = [r.flag()]
            while r.maybe_sp():
                items.append(r.flag())
                if len(items) > r.limits.max_list_items:
                    raise _TooMany("too many flags")
            flags = tuple(items)
        return c.Store(seqset, mode, flags, silent, unchangedsince, uid)

    return parse


def _p_copy_move(cls: type[c.Copy] | type[c.Move], uid: bool) -> Callable[[_Reader], c.ImapCommand]:
    def parse(r: _Reader) -> c.ImapCommand:
        r.sp()
        seqset = r.seqset()
        r.sp()
        return cls(seqset, r.mailbox(), uid)

    return parse


def _p_uid_expunge(r: _Reader) -> c.ImapCommand:
    r.sp()
    seqset = r.seqset()
    return c.UidExpunge(seqset)


_UID_COMMANDS: Final[dict[str, Callable[[_Reader], c.ImapCommand]]] = {
    "COPY": _p_copy_move(c.Copy, True),
    "MOVE": _p_copy_move(c.Move, True),
    "FETCH": _p_fetch(True),
    "STORE": _p_store(True),
    "SEARCH": _p_search(True),
    "SORT": _p_sort(True),
    "THREAD": _p_thread(True),
    "EXPUNGE": _p_uid_expunge,
}


def _p_uid(r: _Reader) -> c.ImapCommand:
    r.sp()
    name = r.keyword()
    parser = _UID_COMMANDS.get(name)
    if parser is None:
        raise _Bad(f"UID {name} is not a command")
    return parser(r)


def _p_getquota(r: _Reader) -> c.ImapCommand:
    r.sp()
    return c.GetQuota(r._decode_mailbox(r.astring(), normalise_inbox=False))


def _p_setquota(r: _Reader) -> c.ImapCommand:
    """RFC 9208 §4.3.2: ``SETQUOTA quota-root SP "(" [setquota-resource *(SP ...)] ")"``."""
    r.sp()
    root = r._decode_mailbox(r.astring(), normalise_inbox=False)
    r.sp()
    r.char(b"(")
    limits: list[tuple[str, int]] = []
    if not r.maybe_char(b")"):
        while True:
            resource = r.keyword()
            r.sp()
            limits.append((resource, r.number(_NUMBER64_MAX)))
            if len(limits) > r.limits.max_list_items:
                raise _TooMany("too many quota resources")
            if r.maybe_char(b")"):
                break
            r.sp()
    return c.SetQuota(root, tuple(limits))


def _p_id(r: _Reader) -> c.ImapCommand:
    """RFC 2971 §4: ``ID SP ("(" string SP nstring *(SP string SP nstring) ")" / NIL)``."""
    r.sp()
    if r.peek() != 0x28:
        r.expect_keyword("NIL")
        return c.Id(None)

    def pair() -> tuple[str, str | None]:
        key = r.string().decode("utf-8", "replace")
        r.sp()
        value = r.nstring()
        return key, None if value is None else value.decode("utf-8", "replace")

    return c.Id(tuple(r.paren_list(pair, allow_empty=True)))


def _p_compress(r: _Reader) -> c.ImapCommand:
    r.sp()
    return c.Compress(r.keyword())


# RFC 9051 §6 and extensions: command name → argument parser.
_COMMANDS: Final[dict[str, Callable[[_Reader], c.ImapCommand]]] = {
    "CAPABILITY": _no_args(c.Capability),
    "NOOP": _no_args(c.Noop),
    "LOGOUT": _no_args(c.Logout),
    "STARTTLS": _no_args(c.StartTLS),
    "AUTHENTICATE": _p_authenticate,
    "LOGIN": _p_login,
    "ENABLE": _p_enable,
    "SELECT": _p_select(c.Select),
    "EXAMINE": _p_select(c.Examine),
    "CREATE": _p_create,
    "DELETE": _mailbox_command(c.Delete),
    "RENAME": _p_rename,
    "SUBSCRIBE": _mailbox_command(c.Subscribe),
    "UNSUBSCRIBE": _mailbox_command(c.Unsubscribe),
    "LIST": _p_list,
    "LSUB": _p_lsub,
    "NAMESPACE": _no_args(c.Namespace),
    "STATUS": _p_status,
    "APPEND": _p_append,
    "IDLE": _no_args(c.Idle),
    "CHECK": _no_args(c.Check),
    "CLOSE": _no_args(c.Close),
    "UNSELECT": _no_args(c.Unselect),
    "EXPUNGE": _no_args(c.Expunge),
    "SEARCH": _p_search(False),
    "FETCH": _p_fetch(False),
    "STORE": _p_store(False),
    "COPY": _p_copy_move(c.Copy, False),
    "MOVE": _p_copy_move(c.Move, False),
    "SORT": _p_sort(False),
    "THREAD": _p_thread(False),
    "UID": _p_uid,
    "GETQUOTA": _p_getquota,
    "GETQUOTAROOT": _mailbox_command(c.GetQuotaRoot),
    "SETQUOTA": _p_setquota,
    "ID": _p_id,
    "COMPRESS": _p_compress,
}
