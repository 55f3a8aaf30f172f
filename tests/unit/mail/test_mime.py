"""MIME scanner: offsets, boundaries, defaults (RFC 2045 §5.2, RFC 2046 §5.1.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier import compiled
from postier.mail.mime import MAX_DEPTH, _delimiter_re, _find_delimiter, count_lines, scan
from postier.mail.parsed import MimePart


def body(raw: bytes, part: MimePart) -> bytes:
    return raw[part.body_start : part.body_end]


def header(raw: bytes, part: MimePart) -> bytes:
    return raw[part.header_start : part.body_start]


MIXED = (
    b"From: a@example.com\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello\r\n"
    b"world\r\n"
    b"--b1\r\n"
    b"Content-Type: application/pdf; name=a.pdf\r\n"
    b"Content-Disposition: attachment; filename=a.pdf\r\n"
    b"Content-Transfer-Encoding: BASE64\r\n"
    b"\r\n"
    b"JVBERi0=\r\n"
    b"--b1--\r\n"
    b"epilogue\r\n"
)


def test_multipart_mixed_with_attachment_offsets() -> None:
    root = scan(MIXED)
    assert root.content_type == "multipart/mixed"
    assert root.param("boundary") == "b1"
    text, pdf = root.children
    assert body(MIXED, text) == b"Hello\r\nworld"  # RFC 2046 §5.1.1: CRLF belongs to boundary
    assert header(MIXED, text) == b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    assert text.lines == 2
    assert text.param("charset") == "utf-8"
    assert pdf.content_type == "application/pdf"
    assert pdf.encoding == "base64"
    assert body(MIXED, pdf) == b"JVBERi0="
    assert pdf.lines == 0


def test_no_content_type_defaults_to_text_plain_us_ascii() -> None:
    raw = b"Subject: x\r\n\r\nbody\r\n"
    root = scan(raw)
    assert root.content_type == "text/plain"
    assert root.params == (("charset", "us-ascii"),)
    assert root.encoding == "7bit"
    assert body(raw, root) == b"body\r\n"
    assert root.lines == 1


def test_invalid_content_type_defaults() -> None:
    root = scan(b"Content-Type: garbage\r\n\r\nx")
    assert root.content_type == "text/plain"
    assert root.param("charset") == "us-ascii"


def test_alternative_lf_only() -> None:
    raw = (
        b"Content-Type: multipart/alternative; boundary=alt\n\n"
        b"--alt\nContent-Type: text/plain\n\nplain\n"
        b"--alt\nContent-Type: text/html\n\n<p>html</p>\n"
        b"--alt--\n"
    )
    root = scan(raw)
    assert [c.content_type for c in root.children] == ["text/plain", "text/html"]
    assert body(raw, root.children[0]) == b"plain"
    assert body(raw, root.children[1]) == b"<p>html</p>"


def test_nested_multipart_with_prefix_boundary() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=abc\r\n\r\n"
        b"--abc\r\n"
        b"Content-Type: multipart/alternative; boundary=abcdef\r\n\r\n"
        b"--abcdef\r\nContent-Type: text/plain\r\n\r\none\r\n"
        b"--abcdef\r\nContent-Type: text/html\r\n\r\ntwo\r\n"
        b"--abcdef--\r\n"
        b"--abc\r\nContent-Type: image/png\r\n\r\nPNG\r\n"
        b"--abc--\r\n"
    )
    root = scan(raw)
    alt, png = root.children
    assert alt.content_type == "multipart/alternative"
    assert [body(raw, c) for c in alt.children] == [b"one", b"two"]
    assert body(raw, png) == b"PNG"


def test_nested_multipart_same_boundary_does_not_crash() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=same\r\n\r\n"
        b"--same\r\nContent-Type: multipart/mixed; boundary=same\r\n\r\n"
        b"--same\r\nContent-Type: text/plain\r\n\r\ninner\r\n"
        b"--same--\r\n"
    )
    root = scan(raw)
    assert len(root.children) == 2
    inner = root.children[0]
    assert inner.content_type == "multipart/mixed"
    assert len(inner.children) == 1  # an empty placeholder: IMAP needs 1*body
    assert body(raw, root.children[1]) == b"inner"


def test_missing_close_delimiter_last_part_runs_to_end() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\n\r\nlast part\r\n"
    root = scan(raw)
    (only,) = root.children
    assert header(raw, only) == b"\r\n"
    assert body(raw, only) == b"last part\r\n"
    assert only.content_type == "text/plain"


def test_boundary_never_found_gives_placeholder_part() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=q\r\n\r\nno parts here\r\n"
    root = scan(raw)
    assert len(root.children) == 1
    assert root.children[0].body_start == root.children[0].body_end == len(raw)


def test_multipart_without_boundary_is_text_plain() -> None:
    root = scan(b"Content-Type: multipart/mixed\r\n\r\n--x\r\n")
    assert root.content_type == "text/plain"
    assert not root.children


def test_message_rfc822_parsed_recursively() -> None:
    inner = b"Subject: inner\r\nContent-Type: text/plain\r\n\r\ninner body\r\n"
    raw = (
        b"Content-Type: multipart/mixed; boundary=m\r\n\r\n"
        b"--m\r\nContent-Type: text/plain\r\n\r\nouter\r\n"
        b"--m\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"--m--\r\n"
    )
    root = scan(raw)
    msg = root.children[1]
    assert msg.content_type == "message/rfc822"
    assert msg.message is not None
    assert header(raw, msg.message) == b"Subject: inner\r\nContent-Type: text/plain\r\n\r\n"
    assert body(raw, msg.message) == b"inner body"
    assert msg.lines == 4  # 3 LFs and the last line (its CRLF belongs to the boundary)


def test_digest_children_default_to_message_rfc822() -> None:
    raw = (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\nSubject: one\r\n\r\nfirst\r\n"
        b"--d\r\nContent-Type: text/plain\r\n\r\nnot a message\r\n"
        b"--d--\r\n"
    )
    root = scan(raw)
    first, second = root.children
    assert first.content_type == "message/rfc822"
    assert first.message is not None and body(raw, first.message) == b"first"
    assert second.content_type == "text/plain"


def test_rfc2231_parameters() -> None:
    raw = (
        b"Content-Type: application/octet-stream;\r\n"
        b" name*0*=utf-8''%E2%82%AC%20rate;\r\n"
        b' name*1=" report.pdf";\r\n'
        b" title*=iso-8859-1'fr'caf%E9\r\n\r\nx"
    )
    root = scan(raw)
    assert root.param("name") == "€ rate report.pdf"
    assert root.param("title") == "café"


def test_no_header_body_separator_is_all_header() -> None:
    raw = b"Subject: only header\r\nFrom: a@b\r\n"
    root = scan(raw)
    assert root.body_start == root.body_end == len(raw)


def test_empty_message() -> None:
    root = scan(b"")
    assert (root.header_start, root.body_start, root.body_end) == (0, 0, 0)
    assert root.content_type == "text/plain"


def test_message_starting_with_blank_line_has_empty_header() -> None:
    raw = b"\r\nbody only"
    root = scan(raw)
    assert root.body_start == 2
    assert body(raw, root) == b"body only"


def test_depth_limit_treats_deep_nesting_as_text() -> None:
    raw = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(80)
    )
    root = scan(raw)
    depth = 0
    part = root
    while part.children:
        part = part.children[0]
        depth += 1
    assert depth == MAX_DEPTH
    assert part.content_type == "text/plain"


def test_message_rfc822_nesting_is_bounded() -> None:
    raw = b"Content-Type: message/rfc822\r\n\r\n" * 200 + b"end"
    root = scan(raw)
    depth = 0
    part: MimePart | None = root
    while part is not None and part.message is not None:
        part = part.message
        depth += 1
    assert depth == MAX_DEPTH


def test_boundary_with_transport_padding() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n--p  \r\n\r\nbody\r\n--p-- \r\n"
    root = scan(raw)
    assert [body(raw, c) for c in root.children] == [b"body"]


def test_empty_digest_placeholder_is_text_plain() -> None:
    root = scan(b"Content-Type: multipart/digest; boundary=d\r\n\r\nnothing\r\n")
    (placeholder,) = root.children
    assert placeholder.content_type == "text/plain"  # never a message/rfc822 without message


def test_is_token_matches_rfc2045_definition() -> None:
    from postier.mail.mime import _TOKEN_BAD, _is_token

    for c in range(0x3000):
        ch = chr(c)
        assert _is_token(ch) == (0x20 < c < 0x7F and c not in _TOKEN_BAD), hex(c)
    assert not _is_token("")
    assert _is_token("multipart") and _is_token("x-foo.bar+baz")
    assert not _is_token("text plain") and not _is_token("a\n") and not _is_token("caf\u00e9")


_BODY_PIECES = st.sampled_from(
    [b"\n", b"\r\n", b"\r", b"-", b"--", b"--b", b"--bb", b"--b--", b"x", b" ", b"\t", b"b"]
)


@given(
    st.lists(_BODY_PIECES, max_size=40).map(b"".join),
    st.sampled_from([b"--b", b"--bb"]),
    st.integers(0, 5),
    st.integers(0, 5),
)
def test_find_delimiter_matches_the_delimiter_regex(
    raw: bytes, delimiter: bytes, skip: int, cut: int
) -> None:
    start, end = min(skip, len(raw)), max(len(raw) - cut, 0)
    match = _delimiter_re(delimiter).search(raw, start, end) if start < end else None
    expected = -1 if match is None else match.start()
    assert _find_delimiter(raw, delimiter, start, end) == expected


TEXTSCAN = compiled.c_module("postier._textscan")


@pytest.mark.skipif(TEXTSCAN is None, reason="_textscan not built or POSTIER_COMPILED=0")
@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"\r\n", b"a", b"\x0b", b"\x8a", b"\n" * 9, b"x" * 13]),
                max_size=60).map(b"".join) | st.binary(max_size=200), st.data())
def test_count_lf_in_c_is_bytes_count(data: bytes, draw: st.DataObject) -> None:
    assert TEXTSCAN is not None
    start = draw.draw(st.integers(0, len(data)))
    end = draw.draw(st.integers(start, len(data)))
    assert TEXTSCAN.count_lf(data, start, end) == data.count(b"\n", start, end)
    with pytest.raises(ValueError):
        TEXTSCAN.count_lf(data, start, len(data) + 1)


def test_count_lines_counts_a_last_line_without_lf() -> None:
    text = b"one\r\ntwo\r\n" * 300 + b"three"
    assert count_lines(text, 0, len(text)) == 601
    assert count_lines(text, 5, 5) == 0 and count_lines(text, 0, 10) == 2
    # every byte an LF: the C scan's byte counters are summed before they overflow
    for size in (7, 8, 2040, 2041, 16_327, 100_003):
        assert count_lines(b"\n" * size, 0, size) == size
        assert count_lines(b"\n\n\nx" * size, 1, 4 * size) == 3 * size
