"""Header helpers: unfolding, RFC 2047, addresses, dates, message IDs."""

from __future__ import annotations

import re
from datetime import UTC
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.mail.headers import (
    _NOT_BASE64,
    Address,
    _parse_address_list,
    _simple_addresses,
    _simple_date,
    decode_charset,
    decode_header_value,
    decode_words,
    first_field,
    first_values,
    parse_addresses,
    parse_date,
    parse_fields,
    parse_msg_ids,
    parse_params_value,
    unfold,
)


def test_parse_fields_unfolds_and_lowercases() -> None:
    raw = b"Subject: a\r\n  folded\r\nX-Empty:\r\nFrom sender garbage\r\nTo:b@c\r\n\r\n"
    assert parse_fields(raw) == [(b"subject", b"a  folded"), (b"x-empty", b""), (b"to", b"b@c")]


@given(st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c"]), st.binary(max_size=3))))
def test_first_values_is_first_field_of_each_name(fields: list[tuple[bytes, bytes]]) -> None:
    first = first_values(fields)
    assert set(first) == {name for name, _ in fields}
    for name in (b"a", b"b", b"c"):
        assert first.get(name) == first_field(fields, name)


def test_unfold() -> None:
    assert unfold(b" a\r\n\tb\n c \r\n") == b"a\tb c"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"=?utf-8?B?w6lsw6h2ZQ==?=", "élève"),
        (b"=?ISO-8859-1?Q?Caf=E9_cr=E8me?=", "Café crème"),
        (b"=?iso-2022-jp?B?GyRCJEgkJhsoQg==?=", "とう"),
        (b"=?koi8-r?B?8NLJ18XU?=", "Привет"),
        (b"=?shift_jis?B?g2WDWINn?=", "テスト"),
        (b"=?utf-8?q?a?= =?utf-8?q?b?=", "ab"),  # RFC 2047 §6.2: space between words dropped
        (b"=?utf-8?q?a?= x =?utf-8?q?b?=", "a x b"),
        (b"=?utf-8?B?4oI=?= =?utf-8?B?rA==?=", "€"),  # split multi-byte char joined
        (b"=?utf-8*en?Q?hi?=", "hi"),  # RFC 2231 §5 language
        (b"=?no-such-charset?Q?abc?=", "abc"),
        (b"=?utf-8?B?####?=", ""),
        (b"=?utf-8?X?abc?=", "=?utf-8?X?abc?="),
        (b"=?base64_codec?Q?abc?=", "abc"),  # non-text codec falls back
        (b"=?idna?Q?abc?=", "abc"),
        (b"plain \xc3\xa9t\xc3\xa9", "plain été"),  # RFC 6532 raw UTF-8
        (b"latin \xe9t\xe9", "latin été"),
    ],
)
def test_decode_words(raw: bytes, text: str) -> None:
    assert decode_words(raw) == text


def test_decode_header_value_collapses_whitespace() -> None:
    assert decode_header_value(b"=?utf-8?Q?a?=\r\n =?utf-8?Q?b?=  c") == "ab c"


_HEADER_PIECES = st.sampled_from(
    [
        b"a", b"\xc3\xa9", b"\xc3", b"\xe9", b"\xc2\xa0", b"\x1c", b"=", b"?",
        b" ", b"\t", b"\r\n", b"\n", b"\r", b"\r\n ", b"\n\t",
        b"=?utf-8?q?x?=", b"=?utf-8?B?w6k=?=",
    ]
)


@given(st.lists(_HEADER_PIECES, max_size=12).map(b"".join))
def test_decode_header_value_is_collapsed_decode_words_of_unfolded(value: bytes) -> None:
    """The shortcut for values without encoded words gives the general result."""
    assert decode_header_value(value) == " ".join(decode_words(unfold(value)).split())


@given(st.binary(max_size=40))
def test_base64_deletion_set_is_all_but_the_alphabet(text: bytes) -> None:
    assert text.translate(None, _NOT_BASE64) == re.sub(rb"[^A-Za-z0-9+/]", b"", text)


def test_decode_charset_never_raises() -> None:
    assert decode_charset(b"\xff\xfe", "utf-8") == "\ufffd\ufffd"
    assert decode_charset(b"abc", "undefined") == "abc"
    assert decode_charset(b"\xb0\xa1", "ks_c_5601-1987") == "가"


def test_parse_params_quoted_comment_and_2231() -> None:
    head, params = parse_params_value(
        b"multipart/report; report-type=delivery-status; (comment) "
        b"boundary=\"a(b)c;d\"; name*=utf-8''%C3%A9"
    )
    assert head == b"multipart/report"
    assert dict(params) == {"report-type": "delivery-status", "boundary": "a(b)c;d", "name": "é"}


def test_parse_params_encoded_word_value_and_garbage() -> None:
    _head, params = parse_params_value(b'x/y; ;; junk; name="=?utf-8?B?w6k=?="; a=1; a=2; =x')
    assert dict(params) == {"name": "é", "a": "1"}


def test_addresses_simple_and_named() -> None:
    addrs = parse_addresses(b'"Doe, John" <john@example.com>, jane@example.org (Jane)')
    assert addrs == [
        Address(b"Doe, John", None, b"john", b"example.com"),
        Address(b"Jane", None, b"jane", b"example.org"),
    ]


def test_addresses_group_and_route() -> None:
    addrs = parse_addresses(b"Team: a@x.org, <@r1,@r2:b@y.org>;, c@z.org")
    assert addrs == [
        Address(None, None, b"Team", None, group=True),
        Address(None, None, b"a", b"x.org"),
        Address(None, b"@r1,@r2", b"b", b"y.org"),
        Address(None, None, None, None, group=True),
        Address(None, None, b"c", b"z.org"),
    ]


def test_addresses_empty_group() -> None:
    assert parse_addresses(b"undisclosed-recipients:;") == [
        Address(None, None, b"undisclosed-recipients", None, group=True),
        Address(None, None, None, None, group=True),
    ]


@pytest.mark.parametrize(
    "garbage", [b"", b"<<<", b'"unterminated', b"(((", b"@@@,,,;;;::", b"\xff\xfe<\x00>", b">a<"]
)
def test_addresses_garbage_does_not_raise(garbage: bytes) -> None:
    parse_addresses(garbage)


@pytest.mark.parametrize(
    "value",
    [
        b"alice@example.org",
        b"Sender 5 <sender5@example.net>",
        b'"Alice A." <alice@example.org>, bob@example.org',
        b'"Doe, John" <john@example.com>,jane@example.org ,  x@y',
        b'""  <a@b>, "x"y"z" <c@d>,\t<e@f>\t',
        b"=?utf-8?Q?J=C3=BCrgen?= <jurgen@example.net>",
        b"a@b,",
        b"J\xc3\xb6rg [x] <j\x0b@b\xc3\xa4r.de>",
    ],
)
def test_simple_address_fast_path(value: bytes) -> None:
    assert _simple_addresses(value) is not None
    assert parse_addresses(value) == _parse_address_list(value)


@pytest.mark.parametrize(
    "value",
    [b"a@b (c)", b"a@b@c", b"<a @b>", b"x: a@b;", b'"a\\"b" <c@d>', b"a@b, ", b"a@b,,c@d", b"<a@b"],
)
def test_simple_address_fast_path_declines(value: bytes) -> None:
    assert _simple_addresses(value) is None


_ADDRESS_PIECES = st.sampled_from(
    [b"a", b"b.c", b"@", b"<", b">", b",", b" ", b"\t", b'"', b'"q r"', b"(c)", b":", b";",
     b"\\", b"\r\n", b"\xc3\xa9", b"=?utf-8?q?x?=", b"", b"[1.2]", b"\x0b"]
)  # fmt: skip


@given(st.lists(_ADDRESS_PIECES, max_size=14).map(b"".join))
def test_simple_addresses_match_the_tokenizer(value: bytes) -> None:
    simple = _simple_addresses(value)
    if simple is not None:
        assert simple == _parse_address_list(value)


def test_address_display_decodes_name() -> None:
    (addr,) = parse_addresses(b"=?utf-8?Q?J=C3=B6rg?= <j@x.de>")
    assert addr.name == b"=?utf-8?Q?J=C3=B6rg?="  # raw for ENVELOPE
    assert addr.display() == "Jörg <j@x.de>"


def test_parse_date() -> None:
    assert parse_date(b"Thu, 01 Jan 1970 00:00:10 +0000") == 10
    assert parse_date(b"Thu, 01 Jan 1970 01:00:00 +0100") == 0
    assert parse_date(b"01 Jan 1970 00:00:00 -0000") == 0
    assert parse_date(b"garbage") is None
    assert parse_date(b"Mon, 99 Foo 99999999 99:99:99") is None
    assert parse_date(None) is None


def _stdlib_date(value: bytes) -> int | None:
    try:
        dt = parsedate_to_datetime(value.decode("utf-8", "replace"))
        return int(dt.replace(tzinfo=dt.tzinfo or UTC).timestamp())
    except Exception:
        return None


@given(
    st.tuples(
        st.sampled_from(["", "Fri, ", "Sun, "]),
        st.integers(0, 40),
        st.sampled_from(["Jan", "Feb", "Dec"]),
        st.sampled_from([1899, 1900, 1969, 1970, 2000, 2024, 2026, 2100, 9000, 9001]),
        st.integers(0, 25),
        st.integers(0, 61),
        st.sampled_from([":00", ":59", ":60", ""]),
        st.sampled_from(["+", "-"]),
        st.integers(0, 99),
        st.integers(0, 99),
        st.sampled_from(["", " (UTC)", "\t x"]),
    )
)
def test_simple_date_matches_the_stdlib(parts: tuple[object, ...]) -> None:
    dayname, day, month, year, hour, minute, second, sign, zh, zm, tail = parts
    value = f"{dayname}{day} {month} {year} {hour:02}:{minute:02}{second} {sign}{zh:02}{zm:02}{tail}"
    simple = _simple_date(value.encode())
    if simple is not None:
        assert simple == _stdlib_date(value.encode())
    assert parse_date(value.encode()) == _stdlib_date(value.encode())


def test_simple_date_is_used() -> None:
    assert _simple_date(b"Fri, 27 Nov 2026 08:00:00 +0100 (CET)") == 1795762800
    assert _simple_date(b"29 Feb 2024 23:59 -0000") == 1709251140
    assert _simple_date(b"30 Feb 2024 00:00:00 +0000") is None
    assert parse_date(b"30 Feb 2024 00:00:00 +0000") is None


def test_parse_msg_ids() -> None:
    assert parse_msg_ids(b"<a@b>\r\n <c@d> junk <> <e@f>") == ("<a@b>", "<c@d>", "<e@f>")
    assert parse_msg_ids(b"no ids") == ()


@pytest.mark.parametrize(
    ("data", "charset"),
    [(b"+2D8-", "utf-7"), (b"\\ud800", "unicode_escape"), (b"\\ud800", "raw-unicode-escape")],
)
def test_decode_charset_never_yields_lone_surrogates(data: bytes, charset: str) -> None:
    decode_charset(data, charset).encode("utf-8")  # must not raise
