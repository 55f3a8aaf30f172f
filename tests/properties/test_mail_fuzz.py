"""Fuzz invariant of the message parser: any bytes parse, offsets stay in bounds."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postier.mail.parse import decode_parts, encode_parts, find_part, parse_message
from postier.mail.parsed import MimePart


def _check(part: MimePart, lo: int, hi: int) -> None:
    assert lo <= part.header_start <= part.body_start <= part.body_end <= hi
    previous = part.body_start
    for child in part.children:
        _check(child, part.body_start, part.body_end)
        assert child.header_start >= previous
        previous = child.body_end
    if part.message is not None:
        _check(part.message, part.body_start, part.body_end)


_PIECES = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"\r\n\r\n",
        b"--b",
        b"--b--",
        b"--",
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b'Content-Type: multipart/digest; boundary="b"\n',
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: text/plain; charset*0*=utf-8''%E2; charset*1=x\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b'Content-Disposition: attachment; filename="a\r\n',
        b'From: "x" <a@b>, g: c@d;\r\n',
        b"Subject: =?utf-8?B?w6k=?= =?bogus?Q?x?=\r\n",
        b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n",
        b" folded\r\n",
        b"\xff\xfe\x00",
        b"body text",
        b"Content-Type: text/plain; charset=utf-7\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"+2D8-",
        b"=E9=",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    parsed = parse_message(raw)
    _check(parsed.root, 0, len(raw))
    assert decode_parts(encode_parts(parsed.root)) == parsed.root


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=40).map(b"".join))
def test_mime_shaped_bytes_never_raise(raw: bytes) -> None:
    parsed = parse_message(raw)
    _check(parsed.root, 0, len(raw))
    assert parsed.bodystructure.startswith(b"(") and parsed.bodystructure.endswith(b")")
    assert parsed.envelope.startswith(b"(")
    for text in (parsed.text, parsed.headers_text, parsed.subject, parsed.from_, parsed.to):
        text.encode("utf-8")  # storable: no lone surrogates
    for section in ((1,), (1, 1), (2, 1, 1)):
        find_part(parsed.root, section)
