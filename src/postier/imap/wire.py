"""IMAP wire encoding: the byte forms of strings, mailbox names and responses.

- Strings (RFC 9051 §4.3): atom, quoted string, literal (``{n}``) and literal8 (``~{n}``,
  RFC 3516), ``nstring``/``astring`` choices.
- Mailbox names (RFC 3501 §5.1.3): modified UTF-7 for IMAP4rev1 clients; raw UTF-8 once the
  client has enabled UTF8=ACCEPT (RFC 6855 §3) or IMAP4rev2 (RFC 9051 §5.1).
- Responses (RFC 9051 §7.1): tagged/untagged status responses with response codes,
  continuation requests, flag lists, and compressed sequence sets (``1:3,5``).

Nothing here does I/O; every function returns ``bytes`` ready to be written.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Final

CRLF: Final = b"\r\n"

# RFC 9051 §9: atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards /
#                               quoted-specials / resp-specials
ATOM_SPECIALS: Final = frozenset(b'(){ %*"\\]') | frozenset(range(0x20)) | {0x7F}
ATOM_CHARS: Final = frozenset(range(0x01, 0x80)) - ATOM_SPECIALS
ASTRING_CHARS: Final = ATOM_CHARS | {ord("]")}
# Characters that may appear in a quoted string without forcing a literal.
_QUOTABLE: Final = frozenset(range(0x01, 0x100)) - {0x0A, 0x0D}

MAX_QUOTED_BYTES: Final = 1024  # longer strings are sent as literals (readability only)


# --------------------------------------------------------------------------- strings


def _as_bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def quoted(value: bytes | str) -> bytes:
    """``"..."`` with ``\\`` and ``"`` escaped (RFC 9051 §4.3).

    Raises :class:`ValueError` for CR, LF or NUL, which need a literal.
    """
    data = _as_bytes(value)
    if any(b not in _QUOTABLE for b in data):
        raise ValueError("CR, LF and NUL cannot be quoted; use a literal")
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(value: bytes | str, *, binary: bool = False) -> bytes:
    """A synchronising literal ``{n}CRLF<data>``; ``~{n}`` (literal8) when *binary*.

    Server responses always use the synchronising form (RFC 7888 §3 applies to clients).
    """
    data = _as_bytes(value)
    return b"%s{%d}\r\n%s" % (b"~" if binary else b"", len(data), data)


def string(value: bytes | str) -> bytes:
    """A quoted string when possible, a literal otherwise."""
    data = _as_bytes(value)
    if len(data) <= MAX_QUOTED_BYTES and all(b in _QUOTABLE for b in data):
        return quoted(data)
    return literal(data)


def nstring(value: bytes | str | None) -> bytes:
    """``NIL`` for ``None``, else :func:`string`."""
    return b"NIL" if value is None else string(value)


def astring(value: bytes | str) -> bytes:
    """An atom when the value is a non-empty run of ASTRING-CHARs (and not ``NIL``),
    else a quoted string or literal."""
    data = _as_bytes(value)
    if data and data.upper() != b"NIL" and all(b in ASTRING_CHARS for b in data):
        return data
    return string(data)


def is_atom(value: bytes) -> bool:
    return bool(value) and all(b in ATOM_CHARS for b in value)


# --------------------------------------------------------------------------- modified UTF-7


def _b64_modified(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=").replace(b"/", b",")


def encode_mutf7(name: str) -> bytes:
    """Modified UTF-7 (RFC 3501 §5.1.3): printable ASCII as itself, ``&`` as ``&-``,
    everything else as UTF-16BE in modified base64 between ``&`` and ``-``."""
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            out.extend(b"&" + _b64_modified("".join(pending).encode("utf-16-be")) + b"-")
            pending.clear()

    for ch in name:
        code = ord(ch)
        if 0x20 <= code <= 0x7E:
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return bytes(out)


_B64_MODIFIED_CHARS: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"
)


def decode_mutf7(data: bytes) -> str:
    """Decode modified UTF-7; :class:`ValueError` if *data* is not valid.

    RFC 3501 §5.1.3: only printable US-ASCII outside shifts, every shift closed by ``-``,
    no printable US-ASCII encoded inside a shift.
    """
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == 0x26:  # "&"
            end = data.find(b"-", i + 1)
            if end < 0:
                raise ValueError("unterminated modified UTF-7 shift")
            chunk = data[i + 1 : end]
            if not chunk:
                out.append("&")
            else:
                if any(c not in _B64_MODIFIED_CHARS for c in chunk):
                    raise ValueError("invalid modified base64")
                if len(chunk) % 4 == 1:
                    raise ValueError("truncated modified base64")
                padded = chunk.replace(b",", b"/") + b"=" * (-len(chunk) % 4)
                try:
                    raw = base64.b64decode(padded, validate=True)
                except binascii.Error as exc:
                    raise ValueError("invalid modified base64") from exc
                if len(raw) % 2:
                    raise ValueError("odd UTF-16 length in modified UTF-7")
                # Trailing bits must be zero, so that the encoding is unique.
                if _b64_modified(raw) != chunk:
                    raise ValueError("non-canonical modified base64")
                try:
                    text = raw.decode("utf-16-be")
                except UnicodeDecodeError as exc:
                    raise ValueError("invalid UTF-16 in modified UTF-7") from exc
                if any(0x20 <= ord(c) <= 0x7E for c in text):
                    raise ValueError("printable ASCII encoded in modified UTF-7")
                out.append(text)
            i = end + 1
        elif 0x20 <= b <= 0x7E:
            j = data.find(b"&", i)
            j = n if j < 0 else j
            segment = data[i:j]
            if any(not 0x20 <= c <= 0x7E for c in segment):
                raise ValueError("8-bit or control character in modified UTF-7 name")
            out.append(segment.decode("ascii"))
            i = j
        else:
            raise ValueError("8-bit or control character in modified UTF-7 name")
    return "".join(out)


def mailbox(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name as an astring: UTF-8 if *utf8* (RFC 6855), else modified UTF-7."""
    return astring(name.encode("utf-8") if utf8 else encode_mutf7(name))


# --------------------------------------------------------------------------- responses


def _text(value: bytes | str) -> bytes:
    """Human-readable response text: one line, no CR/LF/NUL (RFC 9051 §9 ``text``)."""
    data = _as_bytes(value)
    return data.replace(b"\r", b" ").replace(b"\n", b" ").replace(b"\x00", b" ")


def response_code(name: str, arg: bytes | str | None = None) -> bytes:
    """``[NAME arg]`` (RFC 9051 §7.1)."""
    if arg is None:
        return b"[" + name.encode("ascii") + b"]"
    return b"[" + name.encode("ascii") + b" " + _as_bytes(arg) + b"]"


def tagged(tag: str, status: str, text: bytes | str = b"", *, code: bytes | None = None) -> bytes:
    """``tag OK|NO|BAD [CODE] text CRLF``.

    *text* may already start with a response code (``"[TRYCREATE] no such mailbox"``);
    *code* is a convenience for ``response_code(...)``.
    """
    return _status(tag.encode("ascii"), status, text, code)


def untagged_status(status: str, text: bytes | str = b"", *, code: bytes | None = None) -> bytes:
    """``* OK|NO|BAD|BYE|PREAUTH [CODE] text CRLF``."""
    return _status(b"*", status, text, code)


def _status(prefix: bytes, status: str, text: bytes | str, code: bytes | None) -> bytes:
    parts = [prefix, status.encode("ascii")]
    if code is not None:
        parts.append(code)
    body = _text(text)
    # RFC 9051 §9 resp-text: text is 1*TEXT-CHAR, so always send something.
    parts.append(body if body else (b"done" if code is None else b""))
    return b" ".join(p for p in parts if p) + CRLF


def untagged(*parts: bytes) -> bytes:
    """``* part part ... CRLF`` (parts are already encoded)."""
    return b"* " + b" ".join(parts) + CRLF


def continuation(text: bytes | str = b"Ready") -> bytes:
    """``+ text CRLF``; ``text`` may be base64 SASL data (RFC 9051 §7.6)."""
    return b"+ " + _text(text) + CRLF


def paren_list(items: Iterable[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


def flag_list(flags: Iterable[str]) -> bytes:
    """``(\\Seen $Junk)``: flags are atoms (RFC 9051 §9 ``flag-list``)."""
    return paren_list(f.encode("ascii") for f in flags)


def compress_uids(numbers: Iterable[int]) -> bytes:
    """``[1, 2, 3, 5] -> b"1:3,5"``: the shortest ascending sequence-set (empty set → ``b""``)."""
    ordered = sorted(set(numbers))
    spans: list[bytes] = []
    i = 0
    while i < len(ordered):
        start = end = ordered[i]
        while i + 1 < len(ordered) and ordered[i + 1] == end + 1:
            i += 1
            end = ordered[i]
        spans.append(b"%d" % start if start == end else b"%d:%d" % (start, end))
        i += 1
    return b",".join(spans)
