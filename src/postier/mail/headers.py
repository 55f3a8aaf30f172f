"""Header field parsing: fields, unfolding, encoded words, addresses, dates, message IDs.

Standards implemented here (best-effort, never raising on any input):

- RFC 5322 §2.2 header fields, §2.2.3 unfolding, §3.4 address-list (with groups, §3.4 and
  obsolete routes of §4.4), §3.6.4 msg-id lists.
- RFC 2047 §2, §5, §6.2 encoded words (``=?charset?B|Q?text?=``), including RFC 2231 §5
  ``charset*language`` and adjacent-word joining.
- RFC 6532 §3.2: raw UTF-8 in header fields is accepted (falls back to windows-1252).
- RFC 2045 §5.1 parameters with RFC 2231 §3, §4 continuations and charsets.

Wire data stays ``bytes`` here; only the ``decode_*`` helpers produce ``str``.

Hot paths avoid ``bytes in bytes``: CPython first tries to read the operand as an
integer, raising and clearing a TypeError, which costs several times the search itself on
a header-sized value.  A single byte is tested as an int (``0x0A in value``), a longer
needle with ``find``.
"""

from __future__ import annotations

import binascii
import codecs
import re
from dataclasses import dataclass
from datetime import UTC, date
from email.utils import parsedate_to_datetime
from urllib.parse import unquote_to_bytes

# Header bytes parsed into fields; the rest of a longer header is not indexed.  Postfix's
# header_size_limit defaults to 100 KiB, so real mail stays well below this (limit).
MAX_HEADER_PARSE_BYTES = 256 * 1024
# Bytes of one address header parsed (about 2000 typical addresses); a hostile 1 MB To:
# would otherwise cost seconds of CPU at delivery (limit).
MAX_ADDRESS_HEADER_BYTES = 64 * 1024
_WSP = b" \t"

Fields = list[tuple[bytes, bytes]]  # parse_fields result: (lower-case name, value)


def parse_fields(raw: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, bytes]]:
    """Split a header section into ``(lower-case name, unfolded value)`` pairs.

    RFC 5322 §2.2.3: unfolding removes each CRLF (or bare LF) that is followed by WSP.
    Values have surrounding whitespace removed.  Lines that are neither a field nor a
    continuation (garbage, an mbox "From " line) are skipped.
    """
    if end is None:
        end = len(raw)
    end = min(end, start + MAX_HEADER_PARSE_BYTES)
    if end <= start:
        return []
    fields: list[tuple[bytes, bytes]] = []
    name = b""
    parts: list[bytes] = []
    for line in raw[start:end].split(b"\n"):
        if line.endswith(b"\r"):
            line = line[:-1]
        if line[:1] in (b" ", b"\t"):
            if parts:
                parts.append(line)
            continue
        if parts:
            fields.append((name, b"".join(parts).strip()))
            parts = []
        if not line:
            continue
        colon = line.find(b":")
        if colon <= 0:
            continue
        fname = line[:colon].strip()
        if not fname or 0x20 in fname:  # SPACE
            continue  # "From sender date" mbox line or garbage
        name = fname.lower()
        parts = [line[colon + 1 :]]
    if parts:
        fields.append((name, b"".join(parts).strip()))
    return fields


def first_field(fields: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of the first field called ``name`` (lower case), or None."""
    for key, value in fields:
        if key == name:
            return value
    return None


def first_values(fields: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """``first_field`` of every name at once: lower-case name → value of its first field.

    For callers that look up many names in one header (a scan of the list per name).
    """
    return dict(reversed(fields))  # later pairs overwrite: the first field of a name wins


_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def unfold(value: bytes) -> bytes:
    """RFC 5322 §2.2.3: remove the line breaks of folded whitespace."""
    if 0x0A not in value:  # no LF, nothing folded (the usual case): no regex pass
        return value.strip(b" \t\r\n")
    return _FOLD.sub(b"", value).strip(b" \t\r\n")


# ---------------------------------------------------------------------------------------
# charsets and RFC 2047 encoded words


# Python codecs that are no mail charset and can yield lone surrogates or always fail.
_NOT_MAIL_CHARSETS = frozenset(  # codecs.lookup() names
    ("unicode-escape", "raw-unicode-escape", "undefined", "idna", "punycode")
)


def decode_charset(data: bytes, charset: str) -> str:
    """Decode ``data`` in ``charset``; unknown or non-text codecs fall back to UTF-8.

    Never raises: errors are replaced (U+FFFD); the result never holds lone surrogates,
    so it can always be encoded as UTF-8 (JSON, SQLite).
    """
    cs = charset.strip().strip('"').lower()
    if cs in ("", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "default", "utf8"):
        cs = "utf-8"
    elif cs in ("ks_c_5601-1987", "ks_c_5601", "euc-kr", "ksc5601"):
        cs = "cp949"  # the de facto superset used by Microsoft mailers
    elif cs in ("gb2312", "gbk", "x-gbk"):
        cs = "gb18030"
    elif cs in ("iso-8859-1", "latin1", "latin-1"):
        cs = "cp1252"  # WHATWG: labels for ISO-8859-1 mean windows-1252
    try:
        name = codecs.lookup(cs).name
        if name in _NOT_MAIL_CHARSETS:
            name = "utf-8"
        text = data.decode(name, "replace")
    except Exception:  # LookupError, non-text codec, codecs refusing "replace"
        return data.decode("utf-8", "replace")
    if name == "utf-7":  # its decoder lets lone surrogates through: not encodable text
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def decode_8bit(data: bytes) -> str:
    """RFC 6532 §3.2: raw header bytes are UTF-8; other 8-bit is read as windows-1252."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")


_NOT_BASE64 = bytes(  # bytes.translate deletion set: all but the base64 alphabet
    sorted(
        set(range(256)) - set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    )
)


def _decode_word_payload(kind: bytes, text: bytes) -> bytes:
    if kind in (b"b", b"B"):
        text = text.translate(None, _NOT_BASE64)  # "=" padding too: re-padded below
        text += b"=" * (-len(text) % 4)
        if len(text) % 4 == 0:
            return binascii.a2b_base64(text)
        return binascii.a2b_base64(text[: len(text) - len(text) % 4])
    return binascii.a2b_qp(text, header=True)  # RFC 2047 §4.2: "_" is SPACE


def decode_words(value: bytes) -> str:
    """Decode a header value with RFC 2047 encoded words to text.

    RFC 2047 §6.2: linear whitespace between two adjacent encoded words is ignored.
    Adjacent words in the same charset are joined before decoding, so multi-byte
    characters split across words survive.  Never raises.
    """
    if value.find(b"=?") < 0:  # not ``in``: see the module docstring
        return decode_8bit(value)
    segments: list[tuple[str | None, bytes]] = []  # (charset or None for raw, data)
    pos = 0
    for match in _ENCODED_WORD.finditer(value):
        raw = value[pos : match.start()]
        if raw:
            segments.append((None, raw))
        charset = match.group(1).decode("ascii", "replace").split("*", 1)[0]  # RFC 2231 §5
        try:
            payload = _decode_word_payload(match.group(2), match.group(3))
        except (binascii.Error, ValueError):
            segments.append((None, match.group(0)))
        else:
            segments.append((charset.lower(), payload))
        pos = match.end()
    if pos < len(value):
        segments.append((None, value[pos:]))
    out: list[str] = []
    pending_cs: str | None = None
    pending = b""
    for i, (cs, data) in enumerate(segments):
        if cs is None:
            between = (
                0 < i < len(segments) - 1
                and segments[i - 1][0] is not None
                and segments[i + 1][0] is not None
                and not data.strip(b" \t\r\n")
            )
            if between:
                continue
            if pending_cs is not None:
                out.append(decode_charset(pending, pending_cs))
                pending_cs, pending = None, b""
            out.append(decode_8bit(data))
        elif cs == pending_cs:
            pending += data
        else:
            if pending_cs is not None:
                out.append(decode_charset(pending, pending_cs))
            pending_cs, pending = cs, data
    if pending_cs is not None:
        out.append(decode_charset(pending, pending_cs))
    return "".join(out)


def decode_header_value(value: bytes) -> str:
    """Unfold and decode a header value for display and SEARCH (whitespace collapsed)."""
    if value.find(b"=?") < 0:
        # No encoded word (the usual value): unfolding only removes line breaks before
        # whitespace, which the collapsing removes anyway.
        return " ".join(decode_8bit(value).split())
    return " ".join(decode_words(unfold(value)).split())


# ---------------------------------------------------------------------------------------
# RFC 2045 §5.1 parameters with RFC 2231


def _split_params(text: bytes) -> tuple[bytes, list[tuple[bytes, bytes, bool]]]:
    """Split ``value; name=token; name="quoted"`` into the value and raw parameters.

    Returns the leading value and ``(lower-case name, value, was_quoted)`` triples.
    Tolerates missing quotes, stray semicolons and RFC 822 comments.
    """
    if 0x28 in text:  # "("
        text = _strip_comments(text)
    n = len(text)
    semi = text.find(b";")
    head = text if semi < 0 else text[:semi]
    params: list[tuple[bytes, bytes, bool]] = []
    pos = n if semi < 0 else semi + 1
    while pos < n:
        while pos < n and text[pos] in b" \t\r\n;":
            pos += 1
        if pos >= n:
            break
        eq = text.find(b"=", pos)
        semi = text.find(b";", pos)
        if eq < 0 or (0 <= semi < eq):
            pos = n if semi < 0 else semi + 1  # "; garbage;" without "="
            continue
        name = text[pos:eq].strip().lower()
        pos = eq + 1
        while pos < n and text[pos] in b" \t\r\n":
            pos += 1
        if pos < n and text[pos] == 0x22:  # quoted-string, RFC 5322 §3.2.4
            pos += 1
            buf = bytearray()
            while pos < n and text[pos] != 0x22:
                if text[pos] == 0x5C and pos + 1 < n:
                    pos += 1
                buf.append(text[pos])
                pos += 1
            pos += 1
            params.append((name, bytes(buf), True))
            semi = text.find(b";", pos)
            pos = n if semi < 0 else semi + 1
        else:
            semi = text.find(b";", pos)
            stop = n if semi < 0 else semi
            params.append((name, text[pos:stop].strip(), False))
            pos = stop + 1
        if len(params) > 1000:
            break  # limit: hostile parameter lists
    return head.strip(), params


def _strip_comments(text: bytes) -> bytes:
    """Remove RFC 5322 §3.2.2 comments (nested) outside quoted strings."""
    out = bytearray()
    depth = 0
    quoted = False
    escaped = False
    for c in text:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(c)
            continue
        if c == 0x5C:
            escaped = True
            if depth == 0:
                out.append(c)
        elif depth == 0 and c == 0x22:
            quoted = not quoted
            out.append(c)
        elif not quoted and c == 0x28:
            depth += 1
        elif depth and c == 0x29:
            depth -= 1
            if depth == 0:
                out.append(0x20)
        elif depth == 0:
            out.append(c)
    return bytes(out)


_CONTINUATION = re.compile(r"(.+)\*(\d{1,3})")  # RFC 2231 §3 "name*N"


def parse_params_value(value: bytes) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """Parse a Content-Type/Disposition value into its leading token and decoded params.

    RFC 2231 §3: ``name*0``, ``name*1``… are joined in order; §4: ``name*`` (or
    ``name*0*``) values are ``charset'language'%XX`` encoded.  Plain values may also hold
    RFC 2047 encoded words (a common violation, decoded).  Names are lower case; the
    first occurrence of a name wins.
    """
    head, raw_params = _split_params(value)
    simple: dict[str, tuple[bytes, bool]] = {}
    continued: dict[str, dict[int, tuple[bytes, bool]]] = {}
    order: list[str] = []
    for rname, rvalue, _quoted in raw_params:
        try:
            name = rname.decode("ascii")
        except UnicodeDecodeError:
            continue
        if not name:
            continue
        extended = name.endswith("*")
        base = name[:-1] if extended else name
        m = _CONTINUATION.fullmatch(base) if "*" in base else None
        if m:
            pname = m.group(1)
            if pname not in order:
                order.append(pname)
            continued.setdefault(pname, {}).setdefault(int(m.group(2)), (rvalue, extended))
        else:
            if base not in order:
                order.append(base)
            # an extended "name*" beats a plain "name" (RFC 2231 §4 fallback practice)
            if base not in simple or (extended and not simple[base][1]):
                simple[base] = (rvalue, extended)
    result: list[tuple[str, str]] = []
    for pname in order:
        if pname in continued:
            segs = continued[pname]
            charset = ""
            data = bytearray()
            for idx, k in enumerate(sorted(segs)):
                if k != idx:
                    break  # RFC 2231 §3: stop at the first missing segment
                seg, ext = segs[k]
                if ext:
                    if idx == 0:
                        charset, seg = _split_2231_charset(seg)
                    data += unquote_to_bytes(seg)
                else:
                    data += seg
            if charset:
                result.append((pname, decode_charset(bytes(data), charset)))
            else:
                result.append((pname, decode_words(bytes(data))))
        elif pname in simple:
            rvalue, ext = simple[pname]
            if ext:
                charset, seg = _split_2231_charset(rvalue)
                result.append((pname, decode_charset(unquote_to_bytes(seg), charset or "utf-8")))
            else:
                result.append((pname, decode_words(rvalue)))
    return head, tuple(result)


def _split_2231_charset(seg: bytes) -> tuple[str, bytes]:
    parts = seg.split(b"'", 2)
    if len(parts) == 3:
        return parts[0].decode("ascii", "replace"), parts[2]
    return "", seg


# ---------------------------------------------------------------------------------------
# RFC 5322 §3.4 addresses


@dataclass(frozen=True, slots=True, init=False)
class Address:
    """An IMAP address structure (RFC 9051 §7.5.2, "(name adl mailbox host)").

    Values are raw header bytes (encoded words left encoded, quoted strings unquoted).
    A group start has only ``mailbox`` (the group name); a group end has all None.
    """

    name: bytes | None
    adl: bytes | None
    mailbox: bytes | None
    host: bytes | None
    group: bool = False  # True for a group start or end marker

    def __init__(
        self, name: bytes | None, adl: bytes | None, mailbox: bytes | None, host: bytes | None,
        group: bool = False,
    ) -> None:
        # not the decorator's: compiled.py, "Frozen dataclasses"
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "adl", adl)
        object.__setattr__(self, "mailbox", mailbox)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "group", group)

    def display(self) -> str:
        """``Name <mailbox@host>`` with the name RFC 2047-decoded (for SEARCH/SORT)."""
        mailbox = decode_8bit(self.mailbox or b"")
        addr = f"{mailbox}@{decode_8bit(self.host)}" if self.host else mailbox
        if self.name:
            name = " ".join(decode_words(self.name).split())
            return f"{name} <{addr}>" if addr else name
        return addr


_Token = tuple[str, bytes]  # kind: "atom" "qs" "comment" "special" "angle"
_SPECIALS = b"<>@,;:"


_TOKEN_RE = re.compile(
    rb'[ \t\r\n]+|"((?:[^"\\]|\\.)*)"?|(\()|([<>@,;:])|\)|[^ \t\r\n"()<>@,;:]+', re.DOTALL
)
_QUOTED_PAIR = re.compile(rb"\\(.)|[\r\n]", re.DOTALL)


def _comment_end(value: bytes, pos: int) -> int:
    """End of the (nested) comment opening at ``pos`` (RFC 5322 §3.2.2)."""
    depth = 0
    n = len(value)
    while pos < n:
        ch = value[pos]
        if ch == 0x5C:
            pos += 2
            continue
        if ch == 0x28:
            depth += 1
        elif ch == 0x29:
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    return n


def _tokenize(value: bytes) -> list[_Token]:
    """RFC 5322 §3.2 lexical tokens: atoms, quoted strings, comments, specials."""
    toks: list[_Token] = []
    pos = 0
    n = len(value)
    while pos < n:
        m = _TOKEN_RE.match(value, pos)
        if m is None:  # cannot happen: every byte starts some alternative
            break
        if m.group(2):  # comment, may nest
            stop = _comment_end(value, pos)
            inner = value[pos + 1 : stop - 1 if value[stop - 1 : stop] == b")" else stop]
            toks.append(("comment", _QUOTED_PAIR.sub(_unquote_pair, inner).strip()))
            pos = stop
            continue
        text = m.group(0)
        if m.group(1) is not None or text[:1] == b'"':
            toks.append(("qs", _QUOTED_PAIR.sub(_unquote_pair, m.group(1) or b"")))
        elif m.group(3):
            toks.append(("special", text))
        elif text[:1] not in (b" ", b"\t", b"\r", b"\n", b")"):
            toks.append(("atom", text))
        pos = m.end()
    return toks


def _unquote_pair(m: re.Match[bytes]) -> bytes:
    return m.group(1) or b""


def _phrase(toks: list[_Token]) -> bytes | None:
    words = [v for k, v in toks if k in ("atom", "qs") or (k == "special" and v == b"@")]
    text = b" ".join(w for w in words if w)
    return text or None


def _addr_spec(toks: list[_Token]) -> tuple[bytes | None, bytes | None, bytes | None]:
    """``[route ":"] local "@" domain`` → (adl, mailbox, host)."""
    adl: bytes | None = None
    colon = max((i for i, t in enumerate(toks) if t == ("special", b":")), default=-1)
    if colon >= 0:
        adl = b"".join(v for k, v in toks[:colon] if k != "comment") or None
        toks = toks[colon + 1 :]
    toks = [t for t in toks if t[0] != "comment"]
    at = max((i for i, t in enumerate(toks) if t == ("special", b"@")), default=-1)
    if at < 0:
        local = b"".join(v for _k, v in toks if v not in (b",", b";"))
        return adl, local or None, None
    local = b"".join(v for _k, v in toks[:at])
    host = b"".join(v for k, v in toks[at + 1 :] if k != "special")
    return adl, local or None, host or None


def _mailbox(toks: list[_Token]) -> Address | None:
    if not toks:
        return None
    angle = next((i for i, t in enumerate(toks) if t[0] == "angle"), -1)
    if angle >= 0:
        name = _phrase(toks[:angle])
        if name is None:
            name = next((v for k, v in toks if k == "comment" and v), None)
        inner = _tokenize(toks[angle][1])
        adl, mailbox, host = _addr_spec(inner)
        if mailbox is None and host is None and name is None:
            return None
        return Address(name, adl, mailbox, host)
    comment = next((v for k, v in toks if k == "comment" and v), None)
    _adl, mailbox, host = _addr_spec(toks)
    if mailbox is None and host is None:
        return None
    return Address(comment, None, mailbox, host)


# One mailbox of the common shapes: ``local@host`` or ``phrase <local@host>`` where the
# phrase holds atoms, spaces and quoted strings without quoted-pairs; then "," or the end.
# Linear: the alternatives of each repetition start with distinct characters.
_ADDR_ATOM = rb'[^ \t\r\n"()<>@,;:\\]+'
_SIMPLE_MAILBOX = re.compile(
    rb"[ \t]*(" + _ADDR_ATOM + rb")@(" + _ADDR_ATOM + rb")[ \t]*(?:,|\Z)"
    rb'|((?:[^"()<>@,;:\\\r\n]|"[^"\\\r\n]*")*)<(' + _ADDR_ATOM + rb")@(" + _ADDR_ATOM + rb")>"
    rb"[ \t]*(?:,|\Z)"
)
_PHRASE_WORD = re.compile(rb'"([^"]*)"|([^ \t"]+)')


def _simple_addresses(value: bytes) -> list[Address] | None:
    """``parse_addresses`` of a list of plain mailboxes, or None for anything else.

    Gives what the tokenizer path gives for these shapes (no comments, groups, routes,
    quoted-pairs or line breaks): the phrase's atoms and quoted strings joined by one
    space, the quotes removed.
    """
    out: list[Address] = []
    pos = 0
    n = len(value)
    while pos < n:
        m = _SIMPLE_MAILBOX.match(value, pos)
        if m is None:
            return None
        if m.group(1) is not None:
            out.append(Address(None, None, m.group(1), m.group(2)))
        else:
            words = [q or a for q, a in _PHRASE_WORD.findall(m.group(3))]
            name = b" ".join(w for w in words if w) or None
            out.append(Address(name, None, m.group(4), m.group(5)))
        pos = m.end()
    return out


def parse_addresses(value: bytes) -> list[Address]:
    """Parse an RFC 5322 §3.4 address-list, groups included, robust to garbage.

    A group becomes a start marker (name in ``mailbox``), its members, and an end marker
    (RFC 9051 §7.5.2 group syntax).  Unparseable pieces are dropped, never raised.
    """
    if len(value) <= MAX_ADDRESS_HEADER_BYTES:
        simple = _simple_addresses(value)  # the usual header: no tokenizer needed
        if simple is not None:
            return simple
    return _parse_address_list(value)


def _parse_address_list(value: bytes) -> list[Address]:
    """``parse_addresses`` of any value: RFC 5322 §3.2 tokens, then mailboxes and groups."""
    raw_toks = _tokenize(value[:MAX_ADDRESS_HEADER_BYTES])
    toks: list[_Token] = []
    i = 0
    while i < len(raw_toks):  # fold "<" ... ">" into one angle token
        tok = raw_toks[i]
        if tok == ("special", b"<"):
            j = i + 1
            while j < len(raw_toks) and raw_toks[j] != ("special", b">"):
                j += 1
            toks.append(("angle", _join_tokens(raw_toks[i + 1 : j])))
            i = j + 1
        elif tok == ("special", b">"):
            i += 1
        else:
            toks.append(tok)
            i += 1
    out: list[Address] = []
    current: list[_Token] = []
    in_group = False

    def flush() -> None:
        addr = _mailbox(current)
        if addr is not None:
            out.append(addr)
        current.clear()

    for tok in toks:
        if tok == ("special", b","):
            flush()
        elif (
            tok == ("special", b":") and not in_group and not any(k == "angle" for k, _ in current)
        ):
            name = _phrase(current) or b""
            current.clear()
            out.append(Address(None, None, name, None, group=True))
            in_group = True
        elif tok == ("special", b";") and in_group:
            flush()
            out.append(Address(None, None, None, None, group=True))
            in_group = False
        else:
            current.append(tok)
    flush()
    if in_group:
        out.append(Address(None, None, None, None, group=True))
    return out


def _join_tokens(toks: list[_Token]) -> bytes:
    out = bytearray()
    for kind, v in toks:
        if kind == "qs":
            out += b'"' + v.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        elif kind != "comment":
            out += v
    return bytes(out)


def addresses_display(addrs: list[Address]) -> str:
    """Decoded ``Name <addr>, ...`` of the mailboxes (group markers skipped)."""
    return ", ".join(a.display() for a in addrs if not a.group)


# ---------------------------------------------------------------------------------------
# RFC 5322 §3.3 dates and §3.6.4 message IDs


# RFC 5322 §3.3 date-time as mailers write it: "[Day, ]D Mon YYYY HH:MM[:SS] +ZZZZ"; the
# stdlib parser ignores anything after the zone (a "(UTC)" comment)
_DATE = re.compile(
    rb"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{1,2}) "
    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) "
    rb"(\d\d):(\d\d)(?::(\d\d))? ([+-])(\d\d)(\d\d)(?:[ \t].*)?",
    re.DOTALL,
)
_MONTHS = {m: i for i, m in enumerate(b"Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _simple_date(value: bytes) -> int | None:
    """``parse_date`` of a valid date-time in the usual form, else None (not decided)."""
    m = _DATE.fullmatch(value)
    if m is None:
        return None
    day, month, year, hour, minute, second, sign, zh, zm = m.groups()
    y, h, mi, sec = int(year), int(hour), int(minute), int(second or 0)
    offset = int(zh) * 3600 + int(zm) * 60
    if h > 23 or mi > 59 or sec > 59 or offset >= 86400 or not 1900 <= y <= 9000:
        return None
    try:
        days = date(y, _MONTHS[month], int(day)).toordinal() - _EPOCH_ORDINAL
    except ValueError:  # no such day: the general parser says so
        return None
    return days * 86400 + h * 3600 + mi * 60 + sec - (offset if sign == b"+" else -offset)


def parse_date(value: bytes | None) -> int | None:
    """RFC 5322 §3.3 date-time to UTC epoch seconds; None when absent or unparseable."""
    if not value:
        return None
    simple = _simple_date(value)  # the usual form without the stdlib's generic parser
    if simple is not None:
        return simple
    try:
        dt = parsedate_to_datetime(decode_8bit(unfold(value)))
        if dt.tzinfo is None:  # "-0000": no zone information, RFC 5322 §3.3
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp())
    except Exception:  # TypeError/ValueError/OverflowError/IndexError on garbage
        return None


_MSG_ID = re.compile(rb"<([^<>\s]*)>")


def parse_msg_ids(value: bytes | None) -> tuple[str, ...]:
    """The ``<id>`` tokens of a msg-id list (RFC 5322 §3.6.4), angle brackets kept."""
    if not value:
        return ()
    return tuple("<" + decode_8bit(i) + ">" for i in _MSG_ID.findall(unfold(value)) if i)
