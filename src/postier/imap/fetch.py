"""FETCH responses (RFC 9051 §6.4.5, §7.5.2) from the parse-once metadata and stored bytes.

Pure functions: the server loads what :func:`needs` asks for (``MessageMeta`` for
ENVELOPE/BODYSTRUCTURE/section offsets, the full message for body sections) and
:func:`render` builds one ``* n FETCH (...)`` line.  Section offsets come from the stored
MIME tree (``MessageMeta.parts``), shifted by the trace prefix; nothing is re-parsed except
the header block of a ``HEADER.FIELDS`` section.
"""

from __future__ import annotations

import binascii
import datetime
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from postier.imap import commands as c
from postier.imap.wire import flag_list, literal
from postier.mail.parse import decode_body, decode_parts, find_part
from postier.mail.parsed import MimePart
from postier.store.types import MessageInfo, MessageMeta

_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SEEN: Final = "\\Seen"
_Adder = Callable[[bytes, bytes], None]


@dataclass(frozen=True, slots=True)
class Needs:
    meta: bool  # envelope / structure / MIME offsets
    raw: bool  # the full message bytes
    sets_seen: bool  # RFC 9051 §6.4.5: BODY[...] (not PEEK), RFC822, RFC822.TEXT, BINARY


_META_ATTRS: Final = frozenset(
    {c.FetchAttr.ENVELOPE, c.FetchAttr.BODY, c.FetchAttr.BODYSTRUCTURE, c.FetchAttr.SAVEDATE}
)
_RAW_ATTRS: Final = frozenset({c.FetchAttr.RFC822, c.FetchAttr.RFC822_HEADER, c.FetchAttr.RFC822_TEXT})


def needs(items: Sequence[c.FetchItem]) -> Needs:
    meta = raw = seen = False
    for item in items:
        if isinstance(item, c.FetchAttr):
            # RFC822 is the whole message: no MIME offsets needed.
            meta |= item in _META_ATTRS or (item in _RAW_ATTRS and item is not c.FetchAttr.RFC822)
            raw |= item in _RAW_ATTRS
            seen |= item in (c.FetchAttr.RFC822, c.FetchAttr.RFC822_TEXT)
        elif isinstance(item, c.FetchBody):
            raw = True
            meta |= bool(item.section.part) or item.section.text is not None  # BODY[]: bytes only
            seen |= not item.peek
        elif isinstance(item, c.FetchBinary):
            meta = raw = True
            seen |= not item.peek
        else:
            meta = raw = True
    return Needs(meta, raw, seen)


def internal_date(epoch_s: int) -> bytes:
    """RFC 9051 §9 date-time: ``"dd-Mon-yyyy hh:mm:ss +0000"`` (day space-padded)."""
    t = datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)
    return b'"%2d-%s-%04d %02d:%02d:%02d +0000"' % (
        t.day, _MONTHS[t.month - 1].encode(), t.year, t.hour, t.minute, t.second,
    )


def utc_date(epoch_s: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(epoch_s, datetime.UTC).date()


def _split_fields(header: bytes) -> list[tuple[bytes, bytes]]:
    """A header block as ``(lower-case name, whole field with its CRLF)``, folding kept."""
    fields: list[tuple[bytes, bytes]] = []
    for line in header.splitlines(keepends=True):
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t") and fields:
            name, text = fields[-1]
            fields[-1] = (name, text + line)
            continue
        colon = line.find(b":")
        name = line[:colon].strip().lower() if colon > 0 else b""
        fields.append((name, line))
    return fields


def _header_fields(header: bytes, names: Iterable[str], exclude: bool) -> bytes:
    wanted = {n.lower().encode("ascii", "replace") for n in names}
    kept = [text for name, text in _split_fields(header) if (name in wanted) != exclude]
    return b"".join(kept) + b"\r\n"  # RFC 9051 §6.4.5: the blank line is included


def _slice(raw: bytes, offset: int, start: int, end: int) -> bytes:
    return raw[offset + start : offset + end]


def section_bytes(raw: bytes, prefix_len: int, root: MimePart, section: c.Section) -> bytes:
    """The octets of ``BODY[section]`` (RFC 9051 §6.4.5); empty for a missing part."""
    text = section.text
    if not section.part:
        if text is None:
            return raw
        header = raw[: prefix_len + root.body_start]
        if text is c.SectionText.HEADER:
            return header
        if text is c.SectionText.TEXT:
            return _slice(raw, prefix_len, root.body_start, root.body_end)
        if text is c.SectionText.MIME:
            return b""
        return _header_fields(header, section.fields, text is c.SectionText.HEADER_FIELDS_NOT)
    part = find_part(root, section.part)
    if part is None:
        return b""
    if text is None:
        return _slice(raw, prefix_len, part.body_start, part.body_end)
    if text is c.SectionText.MIME:
        if part is root:
            # RFC 9051 §6.4.5: part 1 of a non-multipart message is the message itself, so
            # its MIME header is the message header (as Dovecot and Cyrus answer), trace
            # fields included.
            return raw[: prefix_len + root.body_start]
        return _slice(raw, prefix_len, part.header_start, part.body_start)
    inner = part.message
    if inner is None:
        return b""
    header = _slice(raw, prefix_len, inner.header_start, inner.body_start)
    if text is c.SectionText.HEADER:
        return header
    if text is c.SectionText.TEXT:
        return _slice(raw, prefix_len, inner.body_start, inner.body_end)
    return _header_fields(header, section.fields, text is c.SectionText.HEADER_FIELDS_NOT)


def section_name(section: c.Section) -> bytes:
    """The section-spec echoed in the response (RFC 9051 §7.5.2 ``BODY[section]``)."""
    parts = [".".join(str(n) for n in section.part)] if section.part else []
    if section.text is not None:
        parts.append(section.text.value)
    spec = ".".join(parts)
    if section.text in (c.SectionText.HEADER_FIELDS, c.SectionText.HEADER_FIELDS_NOT):
        spec += " (" + " ".join(section.fields) + ")"
    return spec.encode("ascii", "replace")


def _partial(data: bytes, partial: c.Partial | None) -> tuple[bytes, bytes]:
    if partial is None:
        return data, b""
    return data[partial.offset : partial.offset + partial.length], b"<%d>" % partial.offset


@dataclass
class MessageData:
    """What was loaded for one message."""

    info: MessageInfo
    meta: MessageMeta | None = None
    raw: bytes | None = None
    _root: MimePart | None = None

    def root(self) -> MimePart:
        if self._root is None:
            assert self.meta is not None
            self._root = decode_parts(self.meta.parts)
        return self._root

    @property
    def prefix_len(self) -> int:
        return len(self.meta.prefix) if self.meta is not None else 0


def render(
    seq: int,
    data: MessageData,
    items: Sequence[c.FetchItem],
    *,
    uid: bool,
    add_flags: bool = False,
    modseq: bool = False,
) -> bytes:
    """One ``* seq FETCH (...)`` response.

    *uid*: UID FETCH, whose responses MUST include UID (RFC 9051 §6.4.9).  *add_flags*: this
    fetch set \\Seen, so FLAGS is included (RFC 9051 §6.4.5).  *modseq*: CONDSTORE enabled.
    """
    info = data.info
    out: list[bytes] = []
    done: set[bytes] = set()

    def add(name: bytes, value: bytes) -> None:
        if name not in done:
            done.add(name)
            out.append(name + b" " + value)

    if uid:
        add(b"UID", b"%d" % info.uid)
    for item in items:
        if isinstance(item, c.FetchAttr):
            _render_attr(item, data, add)
        elif isinstance(item, c.FetchBody):
            assert data.raw is not None
            whole = not item.section.part and item.section.text is None
            content = data.raw if whole else section_bytes(
                data.raw, data.prefix_len, data.root(), item.section
            )
            body, origin = _partial(content, item.partial)
            add(b"BODY[" + section_name(item.section) + b"]" + origin, literal(body))
        elif isinstance(item, c.FetchBinary):
            decoded = _binary(data, item.part)
            body, origin = _partial(decoded, item.partial)
            spec = ".".join(str(n) for n in item.part).encode()
            add(b"BINARY[" + spec + b"]" + origin, literal(body, binary=b"\x00" in body))
        else:
            spec = ".".join(str(n) for n in item.part).encode()
            add(b"BINARY.SIZE[" + spec + b"]", b"%d" % len(_binary(data, item.part)))
    if add_flags:
        add(b"FLAGS", flag_list(sorted(info.flags)))
    if modseq:
        add(b"MODSEQ", b"(%d)" % info.modseq)
    return b"* %d FETCH (" % seq + b" ".join(out) + b")\r\n"


def _binary(data: MessageData, part: tuple[int, ...]) -> bytes:
    assert data.raw is not None
    target = find_part(data.root(), part) if part else data.root()
    if target is None:
        return b""
    shifted = data.raw[data.prefix_len :]
    if target.encoding == "base64":
        return _decode_base64(shifted[target.body_start : target.body_end])
    return decode_body(shifted, target)


_NOT_BASE64: Final = bytes(
    sorted(set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"))
)


def _decode_base64(data: bytes) -> bytes:
    """RFC 2045 §6.8, ignoring characters outside the alphabet and re-padding.

    (mail.parse.decode_body drops the "=" padding and then the last partial quantum, so
    "aGVsbG8=" decodes to "hel"; reported, worked around here.)
    """
    clean = data.translate(None, _NOT_BASE64)
    if len(clean) % 4 == 1:
        clean = clean[:-1]
    clean += b"=" * (-len(clean) % 4)
    try:
        return binascii.a2b_base64(clean)
    except binascii.Error:
        return b""


def _render_attr(item: c.FetchAttr, data: MessageData, add: _Adder) -> None:
    info = data.info
    meta = data.meta
    match item:
        case c.FetchAttr.FLAGS:
            add(b"FLAGS", flag_list(sorted(info.flags)))
        case c.FetchAttr.UID:
            add(b"UID", b"%d" % info.uid)
        case c.FetchAttr.INTERNALDATE:
            add(b"INTERNALDATE", internal_date(info.internal_date))
        case c.FetchAttr.RFC822_SIZE:
            add(b"RFC822.SIZE", b"%d" % info.size)
        case c.FetchAttr.MODSEQ:
            add(b"MODSEQ", b"(%d)" % info.modseq)
        case c.FetchAttr.ENVELOPE:
            assert meta is not None
            add(b"ENVELOPE", meta.envelope)
        case c.FetchAttr.BODYSTRUCTURE:
            assert meta is not None
            add(b"BODYSTRUCTURE", meta.bodystructure)
        case c.FetchAttr.BODY:
            assert meta is not None
            add(b"BODY", meta.body)
        case c.FetchAttr.RFC822:
            assert data.raw is not None
            add(b"RFC822", literal(data.raw))
        case c.FetchAttr.RFC822_HEADER:
            assert data.raw is not None
            add(b"RFC822.HEADER", literal(data.raw[: data.prefix_len + data.root().body_start]))
        case c.FetchAttr.RFC822_TEXT:
            assert data.raw is not None
            root = data.root()
            add(b"RFC822.TEXT", literal(_slice(data.raw, data.prefix_len, root.body_start, root.body_end)))
        case c.FetchAttr.SAVEDATE:
            add(b"SAVEDATE", internal_date(meta.save_date) if meta is not None else b"NIL")
        case _:  # EMAILID / THREADID: not offered (OBJECTID not advertised)
            pass
