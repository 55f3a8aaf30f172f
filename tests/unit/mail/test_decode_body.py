"""Content-Transfer-Encoding decoding of part bodies (RFC 2045 §6.7, §6.8)."""

from __future__ import annotations

import pytest

from postier.mail.parse import decode_body
from postier.mail.parsed import MimePart


@pytest.mark.parametrize(
    ("encoded", "decoded"),
    [
        (b"aGVsbG8=", b"hello"),  # one padding octet: the last group must not be lost
        (b"aGk=", b"hi"),  # two padding octets
        (b"aGVsbG8h", b"hello!"),  # no padding
        (b"aGVs\r\nbG8=\r\n", b"hello"),  # line breaks are outside the alphabet
        (b"aGVsbG8", b"hello"),  # padding missing altogether
        (b"a", b""),  # a lone sextet carries no octet
        (b"!!aGk=**", b"hi"),  # other characters outside the alphabet are ignored
    ],
)
def test_base64_keeps_the_last_group(encoded: bytes, decoded: bytes) -> None:
    part = MimePart(0, 0, len(encoded), "text/plain", encoding="base64")
    assert decode_body(encoded, part) == decoded


def test_quoted_printable() -> None:
    data = b"caf=C3=A9 soft=\r\nbreak"
    part = MimePart(0, 0, len(data), "text/plain", encoding="quoted-printable")
    assert decode_body(data, part) == "café softbreak".encode()
