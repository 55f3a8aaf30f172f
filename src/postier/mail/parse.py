"""Parse a message once, at delivery: ``parse_message(raw) -> ParsedMessage``.

Fills everything FETCH/SEARCH/SORT/THREAD need (RFC 9051 §6.4.4, §6.4.5, §7.5.2;
RFC 5256 for the message-ID fields), best-effort: it never raises, a malformed message
falls back to a plain text/plain structure and is still stored as received.

Also:

- ``encode_parts``/``decode_parts``: a compact JSON form of the ``MimePart`` tree for the
  store.
- ``find_part``: IMAP section numbering (RFC 9051 §6.4.5): part 1 of a non-multipart is
  its body; the parts of an encapsulated message/rfc822 are numbered from its root.
- Body text for SEARCH BODY/TEXT: text/plain and text/html parts, transfer-decoded
  (RFC 2045 §6.7 quoted-printable, §6.8 base64), charset-decoded with replacement, HTML
  tags stripped, capped at ``MAX_TEXT_CHARS``.
"""

from __future__ import annotations

import binascii
import html
import json
import re
from collections.abc import Callable, Iterator

from postier import compiled
from postier.mail.headers import (
    Fields,
    addresses_display,
    decode_charset,
    decode_header_value,
    first_field,
    first_values,
    parse_addresses,
    parse_date,
    parse_fields,
    parse_msg_ids,
    parse_params_value,
)
from postier.mail.imapfmt import ADDRESS_FIELDS, body_structures, envelope
from postier.mail.mime import DEFAULT_PARAMS, count_lines, header_end, scan_with_fields
from postier.mail.parsed import MimePart, ParsedMessage

MAX_TEXT_CHARS = 1024 * 1024  # searchable body text kept per message (1 MiB of text)
MAX_PART_DECODE_BYTES = 4 * 1024 * 1024  # raw bytes of one part decoded for the text index
MAX_HEADERS_TEXT_CHARS = 256 * 1024  # decoded header text kept for SEARCH TEXT

_EMPTY_ENVELOPE = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def parse_message(
    raw: bytes, text_limit: int = MAX_TEXT_CHARS, texts: bool = True
) -> ParsedMessage:
    """Parse ``raw`` (the message exactly as stored).  Never raises.

    ``text_limit``: characters of body text to extract (``text``), at most MAX_TEXT_CHARS.
    ``texts=False`` leaves ``text`` and ``headers_text`` empty: delivery stores the
    structure, and the indexer extracts the texts later from it (extract_texts)."""
    try:
        return _parse(raw, min(text_limit, MAX_TEXT_CHARS), texts)
    except Exception:  # best-effort by design: a message is always stored as received
        return _fallback(raw)


def extract_texts(raw: bytes, root: MimePart, text_limit: int = MAX_TEXT_CHARS) -> tuple[str, str]:
    """(text, headers_text) as parse_message gives them, from a tree it made (stored as
    encode_parts): the searchable texts without parsing the message again."""
    fields = parse_fields(raw, root.header_start, root.body_start)
    return _body_text(raw, root, min(text_limit, MAX_TEXT_CHARS)), _headers_text(fields)


def _parse(raw: bytes, text_limit: int = MAX_TEXT_CHARS, texts: bool = True) -> ParsedMessage:
    root, cache = scan_with_fields(raw)
    fields = cache.get((root.header_start, root.body_start))
    if fields is None:
        fields = parse_fields(raw, root.header_start, root.body_start)
    header = first_values(fields)

    parsed_addresses = {}
    for name in ADDRESS_FIELDS:
        value = header.get(name)
        parsed_addresses[name] = parse_addresses(value) if value else []

    def addrs(name: bytes) -> str:
        return addresses_display(parsed_addresses[name])

    def text_of(name: bytes) -> str:
        value = header.get(name)
        return decode_header_value(value) if value else ""

    message_ids = parse_msg_ids(header.get(b"message-id"))
    in_reply_to = parse_msg_ids(header.get(b"in-reply-to"))
    body, bodystructure = body_structures(raw, root, cache)
    return ParsedMessage(
        envelope=envelope(header, parsed_addresses),
        body=body,
        bodystructure=bodystructure,
        root=root,
        subject=text_of(b"subject"),
        from_=addrs(b"from"),
        to=addrs(b"to"),
        cc=addrs(b"cc"),
        bcc=addrs(b"bcc"),
        sender=addrs(b"sender"),
        reply_to=addrs(b"reply-to"),
        date=parse_date(header.get(b"date")),
        message_id=message_ids[0] if message_ids else text_of(b"message-id"),
        in_reply_to=in_reply_to[0] if in_reply_to else "",
        references=parse_msg_ids(header.get(b"references")),
        has_attachment=_has_attachment(raw, root, cache),
        text=_body_text(raw, root, text_limit) if texts else "",
        headers_text=_headers_text(fields) if texts else "",
    )


def _fallback(raw: bytes) -> ParsedMessage:
    """The minimal structure: the whole message as one text/plain entity."""
    try:
        body_start = header_end(raw, 0, len(raw))
        lines = count_lines(raw, body_start, len(raw))
    except Exception:
        body_start, lines = len(raw), 0
    root = MimePart(0, body_start, len(raw), "text/plain", DEFAULT_PARAMS, "7bit", lines)
    size = len(raw) - body_start
    body = b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" %d %d)' % (size, lines)
    bodystructure = body[:-1] + b" NIL NIL NIL NIL)"
    return ParsedMessage(_EMPTY_ENVELOPE, body, bodystructure, root)


# ---------------------------------------------------------------------------------------
# derived fields


def _leaves(part: MimePart) -> Iterator[MimePart]:
    """Leaf entities in order; encapsulated messages are walked into."""
    stack = [part]
    while stack:
        p = stack.pop()
        if p.children:
            stack.extend(reversed(p.children))
        elif p.message is not None:
            stack.append(p.message)
        else:
            yield p


def _disposition(
    raw: bytes, part: MimePart, cache: dict[tuple[int, int], Fields]
) -> tuple[str, tuple[tuple[str, str], ...]]:
    fields = cache.get((part.header_start, part.body_start))
    if fields is None:
        fields = parse_fields(raw, part.header_start, part.body_start)
    value = first_field(fields, b"content-disposition")
    if not value:
        return "", ()
    head, params = parse_params_value(value)
    return head.decode("ascii", "replace").strip().lower(), params


def _has_attachment(raw: bytes, root: MimePart, cache: dict[tuple[int, int], Fields]) -> bool:
    """An attachment: disposition "attachment", or a named non-text leaf (Dovecot-like)."""
    for part in _walk(root):
        if part.children:
            continue
        kind, dparams = _disposition(raw, part, cache)
        if kind == "attachment":
            return True
        if part.content_type in ("message/rfc822", "message/global"):
            return True
        main = part.content_type.split("/", 1)[0]
        named = dict(dparams).get("filename") or part.param("name")
        if main not in ("text", "multipart", "message") and (named or kind != "inline"):
            return True
    return False


def _walk(part: MimePart) -> Iterator[MimePart]:
    yield part
    for child in part.children:
        yield from _walk(child)
    if part.message is not None:
        yield from _walk(part.message)


_NOT_BASE64 = bytes(
    sorted(
        set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    )
)


def decode_body(raw: bytes, part: MimePart, limit: int = MAX_PART_DECODE_BYTES) -> bytes:
    """The body of ``part`` with its Content-Transfer-Encoding undone (RFC 2045 §6)."""
    data = raw[part.body_start : min(part.body_end, part.body_start + limit)]
    try:
        if part.encoding == "base64":  # RFC 2045 §6.8: ignore characters outside the alphabet
            data = data.translate(None, _NOT_BASE64)  # "=" padding goes too: re-pad below
            rest = len(data) % 4
            if rest == 1:  # a lone sextet carries no whole octet
                data = data[:-1]
            elif rest:
                data += b"=" * (4 - rest)
            return binascii.a2b_base64(data)
        if part.encoding == "quoted-printable":  # RFC 2045 §6.7
            return binascii.a2b_qp(data)
    except (binascii.Error, ValueError):
        pass
    return data


_SCRIPT = re.compile(r"<(/?)(script|style)\b[^<>]*>?", re.IGNORECASE)
_TAG = re.compile(r"<[^<>]*>")
_WS = re.compile(r"\s+")
# Up to this many characters whitespace is collapsed with str.split (several times faster
# than _WS.sub, which replaces every single space); beyond it the regex keeps the memory
# bounded (split would hold one string object per word).
_SPLIT_MAX_CHARS = 256 * 1024
# ASCII whitespace other than SPACE (str.isspace: HT LF VT FF CR and the FS/GS/RS/US
# separators), all single-character ``in`` tests (memchr)
_ASCII_WS_NOT_SPACE = ("\n", "\r", "\t", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")


def _to_space_table(kept: str = "") -> bytes:
    """bytes.translate table: ASCII whitespace other than ``kept`` to SPACE."""
    others = "".join(c for c in _ASCII_WS_NOT_SPACE if c != kept)
    return bytes.maketrans(others.encode("ascii"), b" " * len(others))


# Above this the translations' extra large copies (fresh memory: page faults) cost about
# what they save over str.replace, which makes fewer copies
_TRANSLATE_MAX_CHARS = 128 * 1024
_SPACED_BUT_CR = _to_space_table("\r")
_SPACED_BUT_LF = _to_space_table("\n")
_SPACED = _to_space_table()
# "  " in a 10-100 KB text: the regex engine's literal search takes about 60 % of the time
# of ``bytes.find`` (``in``), which stumbles over every single SPACE
_DOUBLE_SPACE = re.compile(b"  ")
_SPACES = re.compile(b"  +")  # runs only, unlike _WS: single SPACEs are not replaced


_textscan = compiled.c_module("postier._textscan")
# None without the C module: collapse_whitespace then takes its Python ways
_collapse_ascii: Callable[[bytes], bytes] | None = (
    None if _textscan is None else _textscan.collapse_ascii
)


def collapse_whitespace(text: str) -> str:
    r"""Runs of whitespace to one space, stripped: ``_WS.sub(" ", text).strip()``.

    ``str.split``/``str.strip`` and the ``\s`` of a str pattern use the same whitespace
    definition (``str.isspace``), so both ways give the same result.
    """
    if _collapse_ascii is not None and text.isascii():
        return _collapse_ascii(text.encode("ascii")).decode("ascii")
    if text.isascii() and len(text) <= _TRANSLATE_MAX_CHARS:
        # Ordinary text: words separated by one SPACE or one line break (CRLF or LF).
        # ``spaced``: each whitespace character made a SPACE, CRs deleted.  The same with
        # the LFs deleted instead is equal only if every run of whitespace held as many
        # CRs as LFs; then, with no double SPACE, every run inside the text was one
        # character or CR LF (LF CR): ``spaced`` is the collapsed text.  Byte
        # translations make this twice as fast as str.replace("\r\n", " ") at 10 KB.
        data = text.encode("ascii")
        spaced = data.translate(_SPACED_BUT_CR, b"\r")
        if _DOUBLE_SPACE.search(spaced) is None and (
            0x0D not in data or spaced == data.translate(_SPACED_BUT_LF, b"\n")  # CR
        ):
            return spaced.strip().decode("ascii")
        # Runs of whitespace (paragraphs, indentation, tags stripped from HTML): every
        # whitespace character made a SPACE, then each run of SPACEs one SPACE, about
        # half the time of str.split and join
        return _SPACES.sub(b" ", data.translate(_SPACED)).strip().decode("ascii")
    elif text.isascii():
        # long text: the same test on one copy with each CRLF made a SPACE
        spaced_text = text.replace("\r\n", " ")
        if "  " not in spaced_text and not any(c in spaced_text for c in _ASCII_WS_NOT_SPACE):
            return spaced_text.strip()
    if len(text) <= _SPLIT_MAX_CHARS:
        return " ".join(text.split())
    return _WS.sub(" ", text).strip()


def html_to_text(text: str) -> str:
    """Strip tags (and script/style content) in linear time, then unescape entities."""
    out: list[str] = []
    pos = 0
    inside = False
    for m in _SCRIPT.finditer(text):
        if not inside and not m.group(1):
            out.append(text[pos : m.start()])
            inside = True
        elif inside and m.group(1):
            pos = m.end()
            inside = False
    if not inside:
        out.append(text[pos:])
    stripped = _TAG.sub(" ", "".join(out))
    return html.unescape(stripped)


def _body_text(raw: bytes, root: MimePart, limit: int = MAX_TEXT_CHARS) -> str:
    chunks: list[str] = []
    total = 0
    for part in _leaves(root):
        if part.content_type not in ("text/plain", "text/html"):
            continue
        remaining = limit - total
        # HTML shrinks when stripped; plain text only by collapsed whitespace
        factor = 8 if part.content_type == "text/html" else 2
        data = decode_body(raw, part, min(MAX_PART_DECODE_BYTES, remaining * factor * 2))
        text = decode_charset(data, part.param("charset") or "us-ascii")
        if part.content_type == "text/html":
            text = html_to_text(text[: remaining * factor])
        text = collapse_whitespace(text[: remaining * 2])
        if not text:
            continue
        chunks.append(text[: limit - total])
        total += len(chunks[-1]) + 1
        if total >= limit:
            break
    return "\n".join(chunks)[:limit]


def _headers_text(fields: list[tuple[bytes, bytes]]) -> str:
    out: list[str] = []
    total = 0
    for name, value in fields:
        line = name.decode("ascii", "replace") + ": " + decode_header_value(value)
        out.append(line)
        total += len(line) + 1
        if total >= MAX_HEADERS_TEXT_CHARS:
            break
    return "\n".join(out)[:MAX_HEADERS_TEXT_CHARS]


# ---------------------------------------------------------------------------------------
# persistence and section numbering


_Encoded = list[object]


def _to_list(part: MimePart) -> _Encoded:
    return [
        part.header_start,
        part.body_start,
        part.body_end,
        part.content_type,
        [[k, v] for k, v in part.params],
        part.encoding,
        part.lines,
        [_to_list(c) for c in part.children],
        None if part.message is None else _to_list(part.message),
    ]


def encode_parts(root: MimePart) -> bytes:
    """Serialise a ``MimePart`` tree to compact JSON (UTF-8) for the store."""
    return json.dumps(_to_list(root), ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def _from_list(item: object) -> MimePart:
    if not isinstance(item, list) or len(item) != 9:
        raise ValueError("bad encoded MIME part")
    hs, bs, be, ctype, params, enc, lines, children, message = item
    if not (
        isinstance(hs, int)
        and isinstance(bs, int)
        and isinstance(be, int)
        and isinstance(ctype, str)
        and isinstance(params, list)
        and isinstance(enc, str)
        and isinstance(lines, int)
        and isinstance(children, list)
    ):
        raise ValueError("bad encoded MIME part")
    return MimePart(
        hs,
        bs,
        be,
        ctype,
        tuple((str(k), str(v)) for k, v in params),
        enc,
        lines,
        tuple(_from_list(c) for c in children),
        None if message is None else _from_list(message),
    )


def decode_parts(data: bytes) -> MimePart:
    """Inverse of ``encode_parts``; raises ValueError on data it did not produce."""
    return _from_list(json.loads(data.decode("utf-8", "surrogatepass")))


def find_part(root: MimePart, section: tuple[int, ...]) -> MimePart | None:
    """The entity at an IMAP section number (RFC 9051 §6.4.5), or None.

    ``()`` is the message itself.  Part 1 of a non-multipart is its body (the entity
    itself); past a message/rfc822 part, numbering continues from the encapsulated
    message's root.
    """
    cur = root
    for depth, number in enumerate(section):
        if number < 1:
            return None
        if depth > 0 and cur.message is not None:
            cur = cur.message  # RFC 9051 §6.4.5: parts of the encapsulated message
        if cur.children:
            if number > len(cur.children):
                return None
            cur = cur.children[number - 1]
        elif number != 1:
            return None
    return cur
