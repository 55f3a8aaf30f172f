"""An independent BODYSTRUCTURE reference built on the stdlib ``email`` package.

Used to check postier's BODYSTRUCTURE (``postier.mail.imapfmt.body_structure``) of every
corpus message field by field; nothing here imports postier's MIME code.

Definitions (RFC 9051 §7.5.2 and §9 ``body``):

- The tree comes from ``email.message_from_bytes`` with ``policy=compat32``.  Bytes are
  carried through as ``ascii``/``surrogateescape`` text, so ``str.encode("ascii",
  "surrogateescape")`` gives back the octets exactly as transmitted.
- size (body-fld-octets): octets of the body as transmitted (still transfer-encoded).  The
  feedparser drops the line ending before a boundary from the part's payload (RFC 2046
  §5.1.1: that CRLF belongs to the delimiter), which is exactly the IMAP definition.
- lines (body-fld-lines, text/* and message/rfc822): LF-terminated lines, plus a final
  line without a line ending.
- message/rfc822 (and message/global): the feedparser would parse the encapsulated message
  into a ``Message`` and its octets could only be regenerated (lossily); ``_Opaque``
  makes the parser keep such bodies as text, which is then parsed again on its own for the
  nested ENVELOPE and BODYSTRUCTURE.
- Content-Type: RFC 2045 §5.2 — absent (or without a ``/``) means text/plain with
  ``charset=us-ascii``; multipart/digest children default to message/rfc822.
- Parameters: RFC 2231 continuations/charsets decoded by ``email.utils``; values that are
  not ASCII are sent as ``NAME*`` ``utf-8''%XX`` (the form postier documents).
- Header values (id, description, md5, location, ENVELOPE strings): unfolded (RFC 5322
  §2.2.3: CRLF before WSP removed), RFC 2047 words left encoded.

``structure(raw)`` returns the body as a nested Python tree shaped like the wire form
(lists for parenthesised lists, ``bytes`` for strings, ``int`` for numbers, ``None`` for
NIL); ``parse_wire`` turns a wire string into the same shape; ``fields`` flattens a tree
into ``{"1.2 size": 394, ...}`` for a field-by-field comparison.
"""

from __future__ import annotations

import email
import email.utils
from email.message import Message
from email.policy import compat32
from typing import Any
from urllib.parse import quote_from_bytes

Tree = bytes | int | None | list["Tree"]

_MESSAGE_TYPES = ("message/rfc822", "message/global")


class _Opaque(Message):
    """A ``Message`` whose message/* bodies the feedparser leaves unparsed (raw text).

    The feedparser recurses into message/rfc822 (and splits message/delivery-status into
    header blocks) by looking at ``get_content_type``; the reference reads the real type
    with ``Message.get_content_type``.
    """

    def get_content_type(self) -> str:
        ctype = super().get_content_type()
        if ctype.startswith("message/"):
            return "x-opaque/" + ctype.partition("/")[2]
        return ctype


def _octets(text: str) -> bytes:
    return text.encode("ascii", "surrogateescape")


def _unfold(value: str) -> bytes:
    """RFC 5322 §2.2.3 unfolding of a raw compat32 header value."""
    return _octets(value.replace("\r\n", "").replace("\n", "")).strip(b" \t")


def _raw(msg: Message, name: str) -> bytes | None:
    """The first ``name`` field's value as sent, unfolded (``get`` would mangle 8-bit)."""
    for key, value in msg.raw_items():
        if key.lower() == name:
            return _unfold(str(value))
    return None


def _header(msg: Message, name: str) -> bytes | None:
    return _raw(msg, name)


def _latin1(octets: bytes, name: str = "content-type") -> Message:
    """A one-field ``Message`` over ``octets`` mapped 1:1 to text (no 8-bit mangling)."""
    tmp = Message()
    tmp[name] = octets.decode("latin-1")
    return tmp


def _lines(body: bytes) -> int:
    if not body:
        return 0
    return body.count(b"\n") + (0 if body.endswith(b"\n") else 1)


def _param_value(raw_value: str | tuple[str | None, str | None, str]) -> str:
    """A parameter value as text (from a ``_latin1`` field, so chars are octets).

    RFC 2231 ``charset'lang'%XX`` values are decoded from their charset with U+FFFD for
    invalid octets (``email.utils.collapse_rfc2231_value``'s rule); other 8-bit values
    as UTF-8 (RFC 6532), also with replacement.
    """
    if isinstance(raw_value, tuple):
        charset, _, text = raw_value
        try:
            return text.encode("latin-1").decode(charset or "us-ascii", "replace")
        except LookupError:
            return text.encode("latin-1").decode("us-ascii", "replace")
    return raw_value.encode("latin-1").decode("utf-8", "replace")


def _param_list(params: list[tuple[str, Any]]) -> Tree:
    """RFC 9051 §9 body-fld-param; non-ASCII values as ``NAME*`` ``utf-8''%XX``."""
    out: list[Tree] = []
    for name, raw_value in params:
        if not name.strip():
            continue  # "; ;" or a trailing ";": no parameter (RFC 2045 §5.1 grammar)
        value = _param_value(raw_value)
        key = name.strip().upper().encode("latin-1")
        if value.isascii():
            out += [key, value.encode("ascii")]
        else:
            out += [key + b"*", b"utf-8''" + quote_from_bytes(value.encode(), safe="").encode()]
    return out or None


def _params(msg: Message, header: str) -> list[tuple[str, Any]]:
    raw = _raw(msg, header)
    if raw is None:
        return []
    got = _latin1(raw, header).get_params(header=header)
    return list(got[1:]) if got else []


def _content_type(msg: Message) -> tuple[str, list[tuple[str, Any]]]:
    """RFC 2045 §5.1/§5.2: the type and its parameters, defaults when absent/invalid."""
    value = msg.get("content-type")
    default = msg.get_default_type()
    if value is None or "/" not in str(value).split(";", 1)[0]:
        return default, ([("charset", "us-ascii")] if default == "text/plain" else [])
    return Message.get_content_type(msg), _params(msg, "content-type")


def _disposition(msg: Message) -> Tree:
    raw = _raw(msg, "content-disposition")
    if raw is None:
        return None
    got = _latin1(raw, "content-disposition").get_params(header="content-disposition")
    if not got or not got[0][0].strip():
        return None
    kind = got[0][0].strip().upper().encode("latin-1")
    return [kind, _param_list(got[1:])]


def _language(msg: Message) -> Tree:
    value = _header(msg, "content-language")
    if value is None:
        return None
    tags = [t.strip() for t in value.split(b",") if t.strip()]
    if not tags:
        return None
    return tags[0] if len(tags) == 1 else list(tags)


def _address(name: str, addr: str) -> Tree:
    mailbox, at, host = addr.rpartition("@")
    if not at:
        mailbox, host = addr, ""
    return [
        name.encode("latin-1") if name else None,
        None,
        mailbox.encode("latin-1") if mailbox else b"MISSING_MAILBOX",
        host.encode("latin-1") if host else b"MISSING_DOMAIN",
    ]


def _address_list(msg: Message, name: str) -> Tree:
    raw = _raw(msg, name)
    if not raw:
        return None
    pairs = [p for p in email.utils.getaddresses([raw.decode("latin-1")]) if p[1] or p[0]]
    return [_address(n, a) for n, a in pairs] or None


def envelope(msg: Message) -> Tree:
    """RFC 9051 §7.5.2 ENVELOPE (sender and reply-to default to from)."""
    from_ = _address_list(msg, "from")
    return [
        _header(msg, "date"),
        _header(msg, "subject"),
        from_,
        _address_list(msg, "sender") or from_,
        _address_list(msg, "reply-to") or from_,
        _address_list(msg, "to"),
        _address_list(msg, "cc"),
        _address_list(msg, "bcc"),
        _header(msg, "in-reply-to"),
        _header(msg, "message-id"),
    ]


_EMPTY: list[Tree] = [b"TEXT", b"PLAIN", [b"CHARSET", b"us-ascii"], None, None, b"7BIT", 0, 0]
_EMPTY.extend([None, None, None, None])  # md5, disposition, language, location


def _body(msg: Message) -> Tree:
    ctype, params = _content_type(msg)
    main, _, sub = ctype.partition("/")
    ext = [_disposition(msg), _language(msg), _header(msg, "content-location")]
    if main == "multipart" and not msg.get_param("boundary"):
        # RFC 2046 §5.1.1: the boundary parameter is required; without it the body cannot
        # be split and is read as RFC 2045 §5.2's default, text/plain
        ctype, params, main, sub = "text/plain", [("charset", "us-ascii")], "text", "plain"
    elif main == "multipart":
        # body-type-mpart needs 1*body: a multipart without any part (no delimiter in the
        # body, or an empty body) gets one empty text/plain part (Dovecot does the same)
        parts = msg.get_payload() if msg.is_multipart() else []
        assert isinstance(parts, list)
        children: list[Tree] = [_body(child) for child in parts if isinstance(child, Message)]
        return [*(children or [_EMPTY]), sub.upper().encode(), _param_list(params), *ext]
    payload = getattr(msg, "_payload", "")  # get_payload() would charset-decode 8-bit
    assert isinstance(payload, str)
    body = _octets(payload)
    cte = msg.get("content-transfer-encoding")
    encoding = str(cte).strip().lower() if cte is not None and str(cte).strip() else "7bit"
    out: list[Tree] = [
        main.upper().encode(),
        sub.upper().encode(),
        _param_list(params),
        _header(msg, "content-id"),
        _header(msg, "content-description"),
        encoding.upper().encode(),
        len(body),
    ]
    if ctype in _MESSAGE_TYPES:
        inner = _parse(body)
        out += [envelope(inner), _body(inner), _lines(body)]
    elif main == "text":
        out.append(_lines(body))
    return [*out, _header(msg, "content-md5"), *ext]


def _parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, _class=_Opaque, policy=compat32)


def structure(raw: bytes) -> Tree:
    """The reference BODYSTRUCTURE of ``raw`` as a tree (see ``parse_wire``)."""
    return _body(_parse(raw))


# ---------------------------------------------------------------------------------------
# the wire form, parsed back into a tree


def parse_wire(data: bytes) -> Tree:
    """Parse one IMAP value (list, quoted string, literal, number or NIL) into a tree."""
    value, pos = _value(data, 0)
    assert pos == len(data), f"trailing data at {pos}"
    return value


def _value(data: bytes, pos: int) -> tuple[Tree, int]:
    char = data[pos : pos + 1]
    if char == b"(":
        items: list[Tree] = []
        pos += 1
        while data[pos : pos + 1] != b")":
            if data[pos : pos + 1] == b" ":
                pos += 1
                continue
            item, pos = _value(data, pos)
            items.append(item)
        return items, pos + 1
    if char == b'"':
        out = bytearray()
        pos += 1
        while data[pos : pos + 1] != b'"':
            if data[pos : pos + 1] == b"\\":
                pos += 1
            out += data[pos : pos + 1]
            pos += 1
        return bytes(out), pos + 1
    if char == b"{":
        close = data.index(b"}\r\n", pos)
        size = int(data[pos + 1 : close])
        start = close + 3
        return data[start : start + size], start + size
    if data.startswith(b"NIL", pos):
        return None, pos + 3
    end = pos
    while end < len(data) and data[end : end + 1].isdigit():
        end += 1
    assert end > pos, f"unexpected {data[pos : pos + 10]!r}"
    return int(data[pos:end]), end


# ---------------------------------------------------------------------------------------
# field-by-field view

_ENVELOPE = ("date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc")
_ENVELOPE_TAIL = ("in-reply-to", "message-id")
_EXT = ("disposition", "language", "location")


def fields(tree: Tree, section: str = "") -> dict[str, Tree]:
    """Flatten a body tree into ``{"<section> <field>": value}`` (IMAP part numbering)."""
    assert isinstance(tree, list)
    prefix = section or "TEXT"
    out: dict[str, Tree] = {}
    if tree and isinstance(tree[0], list):  # body-type-mpart
        n = 0
        while n < len(tree) and isinstance(tree[n], list):
            child = f"{section}.{n + 1}" if section else str(n + 1)
            out.update(fields(tree[n], child))
            n += 1
        rest = tree[n:]
        names: tuple[str, ...] = ("subtype", "params", *_EXT)
    else:
        names_1part = ["type", "subtype", "params", "id", "description", "encoding", "size"]
        main = tree[0].upper() if isinstance(tree[0], bytes) else b""
        subtype = tree[1].upper() if isinstance(tree[1], bytes) else b""
        if main == b"MESSAGE" and subtype in (b"RFC822", b"GLOBAL") and len(tree) > 9:
            env = tree[7]
            assert isinstance(env, list)
            for name, value in zip((*_ENVELOPE, *_ENVELOPE_TAIL), env, strict=True):
                out[f"{prefix} envelope.{name}"] = value
            out.update(fields(tree[8], f"{section}.msg" if section else "msg"))
            rest = [*tree[:7], tree[9], *tree[10:]]
            names_1part.append("lines")
        else:
            rest = list(tree)
            if main == b"TEXT":
                names_1part.append("lines")
        names = (*names_1part, "md5", *_EXT)
    assert len(rest) == len(names), f"{prefix}: {len(rest)} values for {names}"
    for name, value in zip(names, rest, strict=True):
        out[f"{prefix} {name}"] = value
    return out


def differences(reference: Tree, postier: Tree) -> dict[str, tuple[Tree, Tree]]:
    """Fields whose values differ: ``{field: (reference, postier)}``."""
    ref, got = fields(reference), fields(postier)
    return {
        key: (ref.get(key), got.get(key))
        for key in sorted(set(ref) | set(got))
        if ref.get(key, "<absent>") != got.get(key, "<absent>")
    }
