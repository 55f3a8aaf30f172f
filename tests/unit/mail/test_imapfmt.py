"""IMAP wire forms of ENVELOPE, BODY and BODYSTRUCTURE (RFC 9051 §7.5.2, §9)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postier.mail.headers import first_values, parse_fields
from postier.mail.imapfmt import (
    _NOT_QUOTABLE,
    MAX_QUOTED_BYTES,
    body_structure,
    envelope,
    nstring,
    quote_or_literal,
)
from postier.mail.mime import scan
from postier.mail.parse import parse_message


def test_quote_or_literal() -> None:
    assert quote_or_literal(b"abc") == b'"abc"'
    assert quote_or_literal(b'a"b\\c') == b'"a\\"b\\\\c"'
    assert quote_or_literal(b"") == b'""'
    assert quote_or_literal(b"a\r\nb") == b"{4}\r\na\r\nb"
    assert quote_or_literal(b"caf\xc3\xa9") == b"{5}\r\ncaf\xc3\xa9"
    assert quote_or_literal(b"\x00") == b"{1}\r\n\x00"
    assert quote_or_literal(b"x" * 2000).startswith(b"{2000}\r\n")
    assert nstring(None) == b"NIL"
    assert nstring(b"x") == b'"x"'


@given(
    st.binary(max_size=20)
    | st.text(alphabet='ab \\"\t\r\n\x00\x7f\x80é', max_size=20).map(str.encode)
    | st.integers(MAX_QUOTED_BYTES - 2, MAX_QUOTED_BYTES + 2).map(lambda n: b"x" * n)
)
def test_quote_or_literal_definition(data: bytes) -> None:
    """Quoted, escaped, when short and free of CR, LF, NUL and 8-bit; else a literal."""
    if len(data) <= MAX_QUOTED_BYTES and not _NOT_QUOTABLE.intersection(data):
        escaped = data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        assert quote_or_literal(data) == b'"' + escaped + b'"'
    else:
        assert quote_or_literal(data) == b"{%d}\r\n" % len(data) + data


def _rfc9051_message() -> bytes:
    """A message reproducing the RFC 9051 §7.5.2 BODYSTRUCTURE and ENVELOPE examples."""
    part1 = b"\r\n".join([b"p" * 48] * 22 + [b"q" * 52])  # 1152 octets, 23 lines
    part2 = b"\r\n".join([b"A" * 60] * 72 + [b"B" * 90])  # 4554 octets, 73 lines
    assert len(part1) == 1152 and len(part2) == 4554
    return (
        b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
        b"From: Terry Gray <gray@cac.washington.edu>\r\n"
        b"Subject: IMAP4rev2 WG mtg summary and minutes\r\n"
        b"To: imap@cac.washington.edu\r\n"
        b"cc: minutes@CNRI.Reston.VA.US,\r\n"
        b"    John Klensin <KLENSIN@MIT.EDU>\r\n"
        b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: MULTIPART/MIXED; BOUNDARY="x"\r\n'
        b"\r\n"
        b"--x\r\n"
        b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
        b"\r\n" + part1 + b"\r\n"
        b"--x\r\n"
        b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\r\n"
        b"Content-ID: <960723163407.20117h@cac.washington.edu>\r\n"
        b"Content-Description: Compiler diff\r\n"
        b"Content-Transfer-Encoding: BASE64\r\n"
        b"\r\n" + part2 + b"\r\n"
        b"--x--\r\n"
    )


def test_rfc9051_body_example() -> None:
    # RFC 9051 §7.5.2, BODYSTRUCTURE example (non-extensible form, as printed there)
    parsed = parse_message(_rfc9051_message())
    assert parsed.body == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) '
        b'"MIXED")'
    )


def test_rfc9051_bodystructure_with_extension_data() -> None:
    parsed = parse_message(_rfc9051_message())
    assert parsed.bodystructure == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23 NIL NIL NIL NIL)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73 '
        b'NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "x") NIL NIL NIL)'
    )


def test_rfc9051_envelope_example() -> None:
    # RFC 9051 §7.5.2, ENVELOPE example; sender and reply-to default to from
    parsed = parse_message(_rfc9051_message())
    assert parsed.envelope == (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev2 WG mtg summary and minutes" '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'(("Terry Gray" NIL "gray" "cac.washington.edu")) '
        b'((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
        b'NIL NIL "<B27397-0100000@cac.washington.edu>")'
    )


def test_envelope_groups_raw_8bit_and_encoded_words() -> None:
    raw = (
        b"Subject: =?utf-8?Q?caf=C3=A9?= \xc3\xa9\r\n"
        b"From: =?utf-8?Q?J=C3=B6rg?= <j@x.de>\r\n"
        b"Sender:\r\n"
        b"To: undisclosed-recipients:;\r\n"
        b"Cc: Team: a@x.org;, nohost\r\n"
        b"In-Reply-To: <a@b>\r\n"
        b"\r\n"
    )
    env = envelope(first_values(parse_fields(raw)))
    assert env == (
        b"(NIL {24}\r\n=?utf-8?Q?caf=C3=A9?= \xc3\xa9 "
        b'(("=?utf-8?Q?J=C3=B6rg?=" NIL "j" "x.de")) '
        b'(("=?utf-8?Q?J=C3=B6rg?=" NIL "j" "x.de")) '
        b'(("=?utf-8?Q?J=C3=B6rg?=" NIL "j" "x.de")) '
        b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) '
        b'((NIL NIL "Team" NIL)(NIL NIL "a" "x.org")(NIL NIL NIL NIL)'
        b'(NIL NIL "nohost" "MISSING_DOMAIN")) '
        b'NIL "<a@b>" NIL)'
    )


def test_envelope_of_empty_header() -> None:
    assert envelope({}) == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def test_bodystructure_message_rfc822_disposition_language_location() -> None:
    inner = b"Subject: hi\r\nFrom: a@b.c\r\n\r\ninner\r\n"
    raw = (
        b"Content-Type: multipart/mixed; boundary=m\r\n"
        b"Content-Language: en, fr\r\n"
        b"\r\n"
        b"--m\r\n"
        b"Content-Type: message/rfc822\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''%C3%A9.eml\r\n"
        b"Content-Language: de\r\n"
        b"Content-Location: http://x/y\r\n"
        b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
        b"\r\n" + inner + b"--m--\r\n"
    )
    root = scan(raw)
    assert body_structure(raw, root) == (
        b'(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 33 '
        b'(NIL "hi" ((NIL NIL "a" "b.c")) ((NIL NIL "a" "b.c")) ((NIL NIL "a" "b.c")) '
        b"NIL NIL NIL NIL NIL) "
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 1 NIL NIL NIL NIL) 4 '
        b'"Q2hlY2sgSW50ZWdyaXR5IQ==" ("ATTACHMENT" ("FILENAME*" "utf-8\'\'%C3%A9.eml")) '
        b'"de" "http://x/y") "MIXED" ("BOUNDARY" "m") NIL ("en" "fr") NIL)'
    )
    assert body_structure(raw, root, extensible=False) == (
        b'(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 33 '
        b'(NIL "hi" ((NIL NIL "a" "b.c")) ((NIL NIL "a" "b.c")) ((NIL NIL "a" "b.c")) '
        b"NIL NIL NIL NIL NIL) "
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 5 1) 4) "MIXED")'
    )


def test_bodystructure_basic_part_has_no_lines() -> None:
    raw = b'Content-Type: image/png; name="a b.png"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBO\r\n'
    assert body_structure(raw, scan(raw)) == (
        b'("IMAGE" "PNG" ("NAME" "a b.png") NIL NIL "BASE64" 6 NIL NIL NIL NIL)'
    )


def test_message_part_without_encapsulated_tree_keeps_msg_shape() -> None:
    from postier.mail.parsed import MimePart

    part = MimePart(0, 0, 0, "message/rfc822")
    assert body_structure(b"", part, extensible=False) == (
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0) 0)'
    )
