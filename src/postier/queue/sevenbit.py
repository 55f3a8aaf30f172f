"""8-bit → 7-bit conversion for servers that do not offer 8BITMIME (RFC 6152 §3).

RFC 6152 §3: an 8-bit message for a server without 8BITMIME must be converted to 7 bit
(RFC 2045 content-transfer-encodings) or returned as undeliverable.  ``to_7bit`` converts
what can be converted and leaves every other byte as it was:

- a leaf part whose body has 8-bit octets and is labelled 7bit, 8bit or not labelled at
  all is re-encoded: text/* as quoted-printable (still readable), anything else as
  base64; its Content-Transfer-Encoding field is replaced;
- multipart/* parts are walked (boundaries, preamble and epilogue kept byte for byte);
  message/rfc822 bodies are converted as messages (RFC 2046 §5.2.1: never encoded
  themselves);
- not convertible → ``None`` (the caller bounces with 5.6.3): 8-bit octets in a header
  section (RFC 6532 UTF-8 headers need SMTPUTF8, not MIME), in a preamble/epilogue, in
  a message/global or other message/* body, a "binary" part, or a multipart without a
  usable boundary.

Input is the canonical CRLF form (client.canonical).  DKIM signatures must be made over
the converted form (RFC 6376 §5.3), which the runner does: it converts first and signs
the result.
"""

from __future__ import annotations

import base64
import binascii
import re

_BOUNDARY = re.compile(rb'(?i)(?:^|;)\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))')
MAX_DEPTH = 50  # nesting of multiparts/messages we follow


def _split(part: bytes) -> tuple[bytes, bytes]:
    """(header section with its final CRLF, body) of a part or message."""
    if part.startswith(b"\r\n"):
        return b"", part[2:]
    end = part.find(b"\r\n\r\n")
    if end < 0:
        return part, b""
    return part[: end + 2], part[end + 4:]


def _fields(head: bytes) -> list[bytes]:
    """The header fields (with their continuation lines and CRLFs)."""
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _field(fields: list[bytes], name: bytes) -> bytes | None:
    for f in fields:
        key, colon, value = f.partition(b":")
        if colon and key.strip().lower() == name:
            return b" ".join(value.split())
    return None


def _content_type(fields: list[bytes], default: bytes) -> tuple[bytes, bytes]:
    """(type/subtype lowercased, parameters) of the part."""
    value = _field(fields, b"content-type")
    if value is None:
        return default, b""
    mtype, _, params = value.partition(b";")
    mtype = mtype.strip().lower()
    if b"/" not in mtype:
        return b"text/plain", b""  # RFC 2045 §5.2: unparseable → text/plain us-ascii
    return mtype, b";" + params


def _qp(body: bytes) -> bytes:
    """Quoted-printable of CRLF text, line breaks kept as line breaks (RFC 2045 §6.7)."""
    lines = body.split(b"\r\n")
    out = [binascii.b2a_qp(line, quotetabs=False, istext=False) for line in lines]
    # b2a_qp soft-breaks long lines with "=\n": make them CRLF.
    return b"\r\n".join(o.replace(b"=\n", b"=\r\n") for o in out)


def _b64(body: bytes) -> bytes:
    raw = base64.b64encode(body)
    return b"".join(raw[i:i + 76] + b"\r\n" for i in range(0, len(raw), 76))


def _convert(part: bytes, default_type: bytes, depth: int, top: bool) -> bytes | None:
    if part.isascii():
        return part
    if depth > MAX_DEPTH:
        return None
    head, body = _split(part)
    if not head.isascii():
        return None
    fields = _fields(head)
    mtype, params = _content_type(fields, default_type)
    cte = (_field(fields, b"content-transfer-encoding") or b"7bit").strip().lower()
    if mtype.startswith(b"multipart/"):
        m = _BOUNDARY.search(params)
        if m is None or cte not in (b"7bit", b"8bit"):
            return None
        new_body = _convert_multipart(body, m.group(1) or m.group(2),
                                      b"message/rfc822" if mtype == b"multipart/digest"
                                      else b"text/plain", depth)
        return None if new_body is None else _join(head, part, new_body)
    if mtype == b"message/rfc822":
        if cte not in (b"7bit", b"8bit"):
            return None
        inner = _convert(body, b"text/plain", depth + 1, top=False)
        return None if inner is None else _join(head, part, inner)
    if mtype.startswith(b"message/") or cte not in (b"7bit", b"8bit"):
        return None  # message/global, message/partial …; binary or odd labels
    if mtype.startswith(b"text/"):
        encoded, label = _qp(body), b"quoted-printable"
    else:
        encoded, label = _b64(body), b"base64"
    kept = [f for f in fields if f.partition(b":")[0].strip().lower()
            != b"content-transfer-encoding"]
    if top and _field(fields, b"mime-version") is None:
        kept.append(b"MIME-Version: 1.0\r\n")
    kept.append(b"Content-Transfer-Encoding: " + label + b"\r\n")
    return b"".join(kept) + b"\r\n" + encoded


def _join(head: bytes, original: bytes, body: bytes) -> bytes:
    separator = b"\r\n" if original.startswith(b"\r\n") or b"\r\n\r\n" in original else b""
    return head + separator + body if head else b"\r\n" + body


def _convert_multipart(body: bytes, boundary: bytes, default_type: bytes,
                       depth: int) -> bytes | None:
    delim = re.compile(rb"(?:^|\r\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r\n|$)")
    matches = list(delim.finditer(body))
    if not matches:
        return None
    if not body[: matches[0].start()].isascii():
        return None  # preamble
    out = [body[: matches[0].start()]]
    for i, m in enumerate(matches):
        out.append(m.group(0))
        if m.group(1):  # close delimiter: the rest is the epilogue
            epilogue = body[m.end():]
            if not epilogue.isascii():
                return None
            out.append(epilogue)
            return b"".join(out)
        start = m.end() + 2 if body[m.end():m.end() + 2] == b"\r\n" else m.end()
        end = matches[i + 1].start() if i + 1 < len(matches) else len(body)
        if body[m.end():m.end() + 2] == b"\r\n":
            out.append(b"\r\n")
        converted = _convert(body[start:end], default_type, depth + 1, top=False)
        if converted is None:
            return None
        out.append(converted)
    return b"".join(out)


def to_7bit(message: bytes) -> bytes | None:
    """``message`` (canonical CRLF) with every 8-bit body re-encoded, or None when that
    is not feasible.  A 7-bit message is returned unchanged."""
    if message.isascii():
        return message
    return _convert(message, b"text/plain", 0, top=True)
