"""parse_message, persistence of the part tree, IMAP section numbering."""

from __future__ import annotations

import base64
import itertools
import os
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier import compiled
from postier.mail.parse import (
    _SPACED,
    _WS,
    MAX_TEXT_CHARS,
    collapse_whitespace,
    decode_parts,
    encode_parts,
    find_part,
    html_to_text,
    parse_message,
)
from postier.mail.parsed import MimePart

MESSAGE = (
    b"Date: Thu, 01 Jan 1970 00:01:00 +0000\r\n"
    b"From: =?iso-8859-1?Q?Andr=E9?= <andre@example.fr>\r\n"
    b"Sender: sec@example.fr\r\n"
    b"Reply-To: reply@example.fr\r\n"
    b'To: bob@example.com, "Carol C." <carol@example.com>\r\n'
    b"Cc: dave@example.com\r\n"
    b"Bcc: eve@example.com\r\n"
    b"Subject: =?utf-8?B?SGVsbG8g4oKs?=\r\n"
    b"  world\r\n"
    b"Message-ID: <id1@example.fr>\r\n"
    b"In-Reply-To: <id0@example.fr>\r\n"
    b"References: <r1@x> <id0@example.fr>\r\n"
    b"Content-Type: multipart/mixed; boundary=OUT\r\n"
    b"\r\n"
    b"--OUT\r\n"
    b"Content-Type: multipart/alternative; boundary=ALT\r\n"
    b"\r\n"
    b"--ALT\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"caf=E9 cr=\r\n"
    b"=E8me\r\n"
    b"--ALT\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    + base64.encodebytes(b"<p>na&iuml;ve <b>HTML</b></p><script>var x;</script>").replace(
        b"\n", b"\r\n"
    )
    + b"--ALT--\r\n"
    b"--OUT\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"\r\n"
    b"Subject: inner\r\n"
    b"Content-Type: multipart/mixed; boundary=IN\r\n"
    b"\r\n"
    b"--IN\r\n"
    b"\r\n"
    b"inner text\r\n"
    b"--IN\r\n"
    b"Content-Type: application/pdf\r\n"
    b"Content-Disposition: attachment; filename=x.pdf\r\n"
    b"\r\n"
    b"PDF\r\n"
    b"--IN--\r\n"
    b"--OUT--\r\n"
)


def test_parse_message_fills_search_fields() -> None:
    p = parse_message(MESSAGE)
    assert p.subject == "Hello € world"
    assert p.from_ == "André <andre@example.fr>"
    assert p.sender == "sec@example.fr"
    assert p.reply_to == "reply@example.fr"
    assert p.to == "bob@example.com, Carol C. <carol@example.com>"
    assert p.cc == "dave@example.com"
    assert p.bcc == "eve@example.com"
    assert p.date == 60
    assert p.message_id == "<id1@example.fr>"
    assert p.in_reply_to == "<id0@example.fr>"
    assert p.references == ("<r1@x>", "<id0@example.fr>")
    assert p.has_attachment
    assert "café crème" in p.text
    assert "naïve HTML" in p.text
    assert "var x" not in p.text
    assert "inner text" in p.text
    assert "subject: Hello € world" in p.headers_text
    assert p.envelope.startswith(
        b'("Thu, 01 Jan 1970 00:01:00 +0000" "=?utf-8?B?SGVsbG8g4oKs?=  world"'
    )


def test_find_part_section_numbers() -> None:
    root = parse_message(MESSAGE).root
    assert find_part(root, ()) is root
    alt = find_part(root, (1,))
    assert alt is not None and alt.content_type == "multipart/alternative"
    assert find_part(root, (1, 1)) == alt.children[0]
    assert find_part(root, (1, 2)) == alt.children[1]
    msg = find_part(root, (2,))
    assert msg is not None and msg.message is not None
    # RFC 9051 §6.4.5: parts of the encapsulated message are numbered from its root
    assert find_part(root, (2, 1)) == msg.message.children[0]
    pdf = find_part(root, (2, 2))
    assert pdf is not None and pdf.content_type == "application/pdf"
    assert MESSAGE[pdf.body_start : pdf.body_end] == b"PDF"
    assert find_part(root, (3,)) is None
    assert find_part(root, (0,)) is None
    assert find_part(root, (1, 1, 2)) is None


def test_find_part_non_multipart_part_1_is_the_body() -> None:
    root = parse_message(b"Subject: x\r\n\r\nbody").root
    assert find_part(root, (1,)) is root
    assert find_part(root, (2,)) is None
    inner = parse_message(b"Content-Type: message/rfc822\r\n\r\nSubject: y\r\n\r\ntext").root
    assert find_part(inner, (1,)) is inner
    assert inner.message is not None
    assert find_part(inner, (1, 1)) is inner.message


def test_encode_decode_parts_round_trip() -> None:
    root = parse_message(MESSAGE).root
    data = encode_parts(root)
    assert decode_parts(data) == root
    odd = MimePart(0, 1, 2, "text/plain", (("name", 'é"\\\n'),), "7bit", 3)
    assert decode_parts(encode_parts(odd)) == odd


def test_decode_parts_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        decode_parts(b"[1, 2]")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n",
        b"\n\n\n",
        b"no header at all",
        b"\x00\xff\xfe" * 100,
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
        b"Content-Type: text/plain; charset=idna\r\n\r\n\xff\xff",
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!===",
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n=",
        b"From: <<<@@@>>>\r\nTo: :;:;:,\r\nDate: 99 99 99\r\n\r\n",
    ],
)
def test_parse_message_never_raises(raw: bytes) -> None:
    p = parse_message(raw)
    assert p.bodystructure.startswith(b"(")
    assert 0 <= p.root.body_start <= p.root.body_end == len(raw)


def test_8bit_headers_rfc6532() -> None:
    p = parse_message("Subject: Grüße\r\nFrom: Jörg <jörg@bücher.de>\r\n\r\nx".encode())
    assert p.subject == "Grüße"
    assert p.from_ == "Jörg <jörg@bücher.de>"
    assert b"{7}\r\nGr\xc3\xbc\xc3\x9fe" in p.envelope


def test_text_is_capped() -> None:
    raw = b"Content-Type: text/plain\r\n\r\n" + b"word " * 400_000
    assert len(parse_message(raw).text) <= MAX_TEXT_CHARS


def test_html_to_text_linear_on_unclosed_tags() -> None:
    assert html_to_text("a<b>b</b><style>x{}</style>c &amp; d").split() == ["a", "b", "c", "&", "d"]
    start = time.perf_counter()
    html_to_text("<script" * 50_000 + "<" * 100_000)
    assert time.perf_counter() - start < 2


_TEXT_PIECES = st.sampled_from(
    ["a", "bc", " ", "  ", "\r", "\n", "\r\n", "\n\r", "\t", "\x0b", "\x0c", "\x1c", "\x1f",
     "\u00a0", "\x85"]
)  # fmt: skip


@given(st.lists(_TEXT_PIECES, max_size=20).map("".join))
def test_collapse_whitespace_matches_the_regex(text: str) -> None:
    assert collapse_whitespace(text) == _WS.sub(" ", text).strip()


def python_collapse_ascii(data: bytes) -> bytes:
    """What ``collapse_ascii`` in ``_textscan.c`` does: each run of ASCII whitespace (as
    str.isspace has it) one SPACE, none at the ends, other bytes kept."""
    return b" ".join(data.translate(_SPACED).split())


def c_collapse() -> Callable[[bytes], bytes]:
    module = compiled.c_module("postier._textscan")
    if module is None:
        assert os.environ.get(compiled.ENV) == "0", "the C text scans are not built"
        pytest.skip("POSTIER_COMPILED=0: collapse_whitespace runs its Python ways")
    collapse: Callable[[bytes], bytes] = module.collapse_ascii
    return collapse


# Words of up to 8 bytes, SPACEs alone and in runs, other whitespace, other control
# bytes, bytes >= 0x80: the C copies eight bytes whole unless they hold whitespace other
# than a SPACE after a word (or a control byte), so where each falls in a block matters.
_BYTE_PIECES = st.sampled_from(
    [b"a", b"bcdefgh", b"ijklmnop", b" ", b"  ", b"\r\n", b"\t", b"\x0b", b"\x1f", b"\x00",
     b"\x7f", b"\x80", b"\xff", b"word "]
)  # fmt: skip


@settings(max_examples=1000)
@given(st.one_of(st.binary(max_size=300),
                 st.lists(_TEXT_PIECES, max_size=30).map(lambda t: "".join(t).encode()),
                 st.lists(_BYTE_PIECES, max_size=40).map(b"".join)))
def test_c_collapse_is_its_python_twin(data: bytes) -> None:
    assert c_collapse()(data) == python_collapse_ascii(data)


def test_c_collapse_on_every_short_text() -> None:
    """Every text of up to 11 bytes of a letter, a SPACE and a TAB: each position of
    each kind of byte in the first block and the one after, and the tail."""
    collapse = c_collapse()
    checked = 0
    for length in range(12):
        for chars in itertools.product(b"a \t", repeat=length):
            text = bytes(chars)
            assert collapse(text) == python_collapse_ascii(text), text
            checked += 1
    assert checked == (3**12 - 1) // 2


def test_c_collapse_on_edges() -> None:
    collapse = c_collapse()
    for text in ["", " ", "\t\r\n", "a", " a ", "a\x1c\x1d\x1e\x1fb", "a \r\n\r\n b",
                 "w\r\n" * 100_000, "a  b " * 60_000, " " * 300_000 + "x"]:
        assert collapse(text.encode()).decode() == " ".join(text.split()), text[:20]
    assert collapse(b"caf\xc3\xa9\xa0 x") == b"caf\xc3\xa9\xa0 x"  # bytes >= 0x80 kept
    with pytest.raises(TypeError):
        collapse("text")  # type: ignore[arg-type]


def test_ten_megabyte_message_parses_fast() -> None:
    attachment = base64.encodebytes(bytes(range(256)) * 9_600).replace(b"\n", b"\r\n")
    parts = [b"--B\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"]
    for i in range(3):
        parts.append(
            b"--B\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=f%d.bin\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" % i + attachment * 4
        )
    raw = (
        b"From: a@b.c\r\nSubject: big\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        + b"".join(parts)
        + b"--B--\r\n"
    )
    assert len(raw) > 10_000_000
    best = min(_timed(raw) for _ in range(3))
    assert best < 0.05  # typically ~1.5 ms; generous bound for slow CI machines
    p = parse_message(raw)
    assert len(p.root.children) == 4
    assert p.has_attachment


def _timed(raw: bytes) -> float:
    start = time.perf_counter()
    parse_message(raw)
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"To: " + b"a@b.c, " * 150_000 + b"\r\n\r\nx", id="huge-address-list"),
        pytest.param(
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n"
            + b"--bx\r\n" * 300_000
            + b"--b--\r\n",
            id="near-miss-boundary-lines",
        ),
        pytest.param(
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n" + b"-" * 2_000_000,
            id="dashes",
        ),
        pytest.param((b"X-H: " + b"a" * 70 + b"\r\n") * 30_000, id="all-header"),
        pytest.param(b"Subject: " + b"=?utf-8?B?w6k=?= " * 50_000 + b"\r\n\r\n", id="words"),
        pytest.param(b"Content-Type: text/html\r\n\r\n" + b"<script" * 200_000, id="html"),
    ],
)
def test_hostile_input_stays_cheap(raw: bytes) -> None:
    assert _timed(raw) < 2.0  # each is a few to ~100 ms; quadratic behaviour would be minutes


def test_near_miss_boundary_lines_are_body() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--bx\r\n--b-\r\n--b--\r\n"
    (part,) = parse_message(raw).root.children
    assert raw[part.body_start : part.body_end] == b"--bx\r\n--b-"


def test_text_limit_bounds_the_extracted_text() -> None:
    raw = b"Subject: x\r\nContent-Type: text/plain\r\n\r\n" + b"word " * 50_000
    whole = parse_message(raw)
    part = parse_message(raw, 1001)
    assert len(whole.text) > 200_000
    assert part.text == whole.text[:1001]
    assert part.bodystructure == whole.bodystructure and part.envelope == whole.envelope
