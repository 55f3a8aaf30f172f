"""IMAP wire formatting of ENVELOPE, BODY and BODYSTRUCTURE (RFC 9051 §7.5.2, §9).

- ``quote_or_literal``/``nstring``: RFC 9051 §4.3 strings — a quoted string when the value
  is short 7-bit text without CR, LF or NUL, otherwise a synchronizing literal ``{n}``.
- ``envelope``: RFC 9051 §7.5.2 ENVELOPE from raw header values (unfolded per RFC 5322
  §2.2.3, encoded words left for the client, 8-bit values sent as literals: Dovecot/mox
  practice), addresses per §9 ``address`` with the group syntax.
- ``body_structure``: RFC 9051 §9 ``body`` — body-type-1part (basic, msg, text with lines)
  and body-type-mpart, with extension data (md5, disposition, language, location) when
  ``extensible`` (BODYSTRUCTURE), without it for BODY; ``body_structures`` gives both.

Type, subtype, parameter names and encodings are upper-cased as in the RFC's examples;
values are sent as they are.  RFC 2231 parameter values that decode to non-ASCII text are
re-encoded as ``name*`` = ``utf-8''%XX`` so no 8-bit reaches a client that did not ask.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote_from_bytes

from postier.mail.headers import (
    Address,
    Fields,
    first_values,
    parse_addresses,
    parse_fields,
    parse_params_value,
)
from postier.mail.mime import _is_token
from postier.mail.parsed import MimePart

MAX_QUOTED_BYTES = 1000  # longer strings go as literals (keeps lines of a reply sane)
NIL = b"NIL"
_EMPTY_ENVELOPE = b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"
_EMPTY_BODY = b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0)'
_EMPTY_BS = b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'
_NOT_QUOTABLE = frozenset(b"\r\n\x00") | frozenset(range(0x80, 0x100))
# bytes a quoted string carries as they are: printable ASCII and SPACE but the
# quoted-specials (RFC 9051 §9 QUOTED-CHAR)
_QUOTED_AS_IS = bytes(range(0x20, 0x7F)).translate(None, b'"\\')


def quote_or_literal(data: bytes) -> bytes:
    """RFC 9051 §4.3 string: ``"quoted"`` when possible, else a literal ``{n}\\r\\n...``.

    RFC 9051 §9: quoted strings carry no CR, LF or NUL (and 8-bit only with UTF8=ACCEPT),
    so such values MUST go as literals; ``\\`` and ``"`` are escaped (quoted-specials).
    """
    if len(data) <= MAX_QUOTED_BYTES:
        # The tests run in C, no per-byte set lookups.  (A single-byte ``in`` test takes
        # an int: with a bytes operand CPython first tries it as an integer, raising and
        # clearing a TypeError, several times slower on short values.)
        if not data.translate(None, _QUOTED_AS_IS):  # the usual value: nothing to escape
            return b'"' + data + b'"'
        if data.isascii() and 0x0D not in data and 0x0A not in data and 0 not in data:
            # i.e. no byte of _NOT_QUOTABLE
            return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def nstring(data: bytes | None) -> bytes:
    """RFC 9051 §9 nstring: NIL or a string."""
    return NIL if data is None else quote_or_literal(data)


def _astr(text: str) -> bytes:
    return quote_or_literal(text.encode("utf-8"))


# ---------------------------------------------------------------------------------------
# ENVELOPE


def _address(addr: Address) -> bytes:
    """RFC 9051 §9 address: "(" addr-name SP addr-adl SP addr-mailbox SP addr-host ")"."""
    if addr.group:
        # RFC 9051 §7.5.2: group start has NIL host and the group name as mailbox;
        # group end has NIL mailbox and NIL host
        return b"(NIL NIL " + nstring(addr.mailbox) + b" NIL)"
    # a NIL host would read as a group marker: Dovecot's placeholders instead
    mailbox = addr.mailbox if addr.mailbox is not None else b"MISSING_MAILBOX"
    host = addr.host if addr.host is not None else b"MISSING_DOMAIN"
    return (
        b"("
        + nstring(addr.name)
        + b" "
        + nstring(addr.adl)
        + b" "
        + quote_or_literal(mailbox)
        + b" "
        + quote_or_literal(host)
        + b")"
    )


def address_list(addrs: list[Address]) -> bytes:
    """RFC 9051 §9 env-from etc.: "(" 1*address ")" / nil."""
    if not addrs:
        return NIL
    return b"(" + b"".join(_address(a) for a in addrs) + b")"


ADDRESS_FIELDS = (b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc")


def envelope(
    header: Mapping[bytes, bytes], addresses: Mapping[bytes, list[Address]] | None = None
) -> bytes:
    """RFC 9051 §7.5.2 ENVELOPE from a parsed header, as ``headers.first_values`` gives it
    (the value of the first field of each lower-case name).

    ``addresses`` may hold the already parsed address lists by lower-case field name
    (``ADDRESS_FIELDS``), so a caller that needs them too parses each header once.
    """

    def addrs(name: bytes) -> list[Address]:
        if addresses is not None and name in addresses:
            return addresses[name]
        value = header.get(name)
        return parse_addresses(value) if value else []

    from_ = address_list(addrs(b"from"))
    # RFC 9051 §7.5.2: sender and reply-to absent or empty → from
    sender = addrs(b"sender")
    reply_to = addrs(b"reply-to")
    return b"".join(
        (
            b"(",
            nstring(header.get(b"date")),
            b" ",
            nstring(header.get(b"subject")),
            b" ",
            from_,
            b" ",
            address_list(sender) if sender else from_,
            b" ",
            address_list(reply_to) if reply_to else from_,
            b" ",
            address_list(addrs(b"to")),
            b" ",
            address_list(addrs(b"cc")),
            b" ",
            address_list(addrs(b"bcc")),
            b" ",
            nstring(header.get(b"in-reply-to")),
            b" ",
            nstring(header.get(b"message-id")),
            b")",
        )
    )


def envelope_of(
    raw: bytes, part: MimePart, fields_cache: Mapping[tuple[int, int], Fields] | None = None
) -> bytes:
    """ENVELOPE of the message whose header is ``part``'s header section."""
    return envelope(first_values(_fields(raw, part, fields_cache)))


def _fields(
    raw: bytes, part: MimePart, cache: Mapping[tuple[int, int], Fields] | None
) -> Fields:
    """``parse_fields`` of ``part``'s header, from ``cache`` (``mime.scan_with_fields``)."""
    if cache is not None:
        fields = cache.get((part.header_start, part.body_start))
        if fields is not None:
            return fields
    return parse_fields(raw, part.header_start, part.body_start)


# ---------------------------------------------------------------------------------------
# BODY / BODYSTRUCTURE


def _params(params: tuple[tuple[str, str], ...]) -> bytes:
    """RFC 9051 §9 body-fld-param: "(" string SP string *(SP string SP string) ")" / nil."""
    if not params:
        return NIL
    out: list[bytes] = []
    for name, value in params:
        if value.isascii():
            out.append(_astr(name.upper()) + b" " + _astr(value))
        else:
            # RFC 2231 §4 re-encoding keeps the reply 7-bit
            enc = b"utf-8''" + quote_from_bytes(value.encode("utf-8"), safe="").encode("ascii")
            out.append(_astr(name.upper() + "*") + b" " + quote_or_literal(enc))
    return b"(" + b" ".join(out) + b")"


def _disposition(value: bytes | None) -> bytes:
    """RFC 9051 §9 body-fld-dsp: "(" string SP body-fld-param ")" / nil."""
    if not value:
        return NIL
    head, params = parse_params_value(value)
    kind = head.strip().decode("utf-8", "replace")
    if not kind or not _is_token(kind):  # RFC 2183 §2: disposition-type is a token
        return NIL
    return b"(" + _astr(kind.upper()) + b" " + _params(params) + b")"


def _language(value: bytes | None) -> bytes:
    """RFC 9051 §9 body-fld-lang: nstring / "(" string *(SP string) ")"."""
    if value is None:
        return NIL
    tags = [t.strip() for t in value.split(b",") if t.strip()]
    tags = [t for t in tags if not t.startswith(b"(")]
    if not tags:
        return NIL
    if len(tags) == 1:
        return quote_or_literal(tags[0])
    return b"(" + b" ".join(quote_or_literal(t) for t in tags) + b")"


def _type_pair(ctype: str) -> bytes:
    main, _, sub = ctype.partition("/")
    return _astr(main.upper()) + b" " + _astr(sub.upper())


def body_structure(
    raw: bytes,
    part: MimePart,
    extensible: bool = True,
    fields_cache: Mapping[tuple[int, int], Fields] | None = None,
) -> bytes:
    """RFC 9051 §9 ``body`` of ``part`` (BODYSTRUCTURE, or BODY if not ``extensible``).

    ``fields_cache``: parsed headers by (header_start, body_start), as returned by
    ``mime.scan_with_fields``, so no header is parsed again.
    """
    return body_structures(raw, part, fields_cache)[1 if extensible else 0]


def body_structures(
    raw: bytes, part: MimePart, fields_cache: Mapping[tuple[int, int], Fields] | None = None
) -> tuple[bytes, bytes]:
    """(BODY, BODYSTRUCTURE) of ``part`` in one walk: they differ only by extension data."""
    header = first_values(_fields(raw, part, fields_cache))
    if part.children:
        pairs = [body_structures(raw, child, fields_cache) for child in part.children]
        subtype = b" " + _astr(part.content_type.partition("/")[2].upper())
        body = b"".join((b"(", *(p[0] for p in pairs), subtype, b")"))
        # RFC 9051 §9 body-ext-mpart
        bodystructure = b"".join(
            (
                b"(",
                *(p[1] for p in pairs),
                subtype,
                b" ",
                _params(part.params),
                b" ",
                _disposition(header.get(b"content-disposition")),
                b" ",
                _language(header.get(b"content-language")),
                b" ",
                nstring(header.get(b"content-location")),
                b")",
            )
        )
        return body, bodystructure
    # RFC 9051 §9 body-fields
    fixed = b"".join(
        (
            b"(",
            _type_pair(part.content_type),
            b" ",
            _params(part.params),
            b" ",
            nstring(header.get(b"content-id")),
            b" ",
            nstring(header.get(b"content-description")),
            b" ",
            _astr(part.encoding.upper()),
            b" %d" % (part.body_end - part.body_start),
        )
    )
    body_tail = bs_tail = b""
    if part.message is not None:
        # RFC 9051 §9 body-type-msg: envelope SP body SP body-fld-lines
        env = b" " + envelope_of(raw, part.message, fields_cache) + b" "
        lines = b" %d" % part.lines
        inner_body, inner_bs = body_structures(raw, part.message, fields_cache)
        body_tail = env + inner_body + lines
        bs_tail = env + inner_bs + lines
    elif part.content_type in ("message/rfc822", "message/global"):
        # a tree without the encapsulated message: keep the body-type-msg shape clients
        # expect for these types (RFC 9051 §9 media-message)
        lines = b" %d" % part.lines
        body_tail = b" " + _EMPTY_ENVELOPE + b" " + _EMPTY_BODY + lines
        bs_tail = b" " + _EMPTY_ENVELOPE + b" " + _EMPTY_BS + lines
    elif part.content_type.partition("/")[0] == "text":
        body_tail = bs_tail = b" %d" % part.lines  # RFC 9051 §9 body-type-text
    # RFC 9051 §9 body-ext-1part: md5, dsp, lang, loc
    bodystructure = b"".join(
        (
            fixed,
            bs_tail,
            b" ",
            nstring(header.get(b"content-md5")),
            b" ",
            _disposition(header.get(b"content-disposition")),
            b" ",
            _language(header.get(b"content-language")),
            b" ",
            nstring(header.get(b"content-location")),
            b")",
        )
    )
    return fixed + body_tail + b")", bodystructure
