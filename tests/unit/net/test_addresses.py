"""Listen-address parsing and loopback detection."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.net.addresses import (
    ListenAddress,
    ListenAddressError,
    is_loopback,
    is_valid_hostname,
    parse_listen_address,
)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("127.0.0.1:25", ListenAddress("tcp", host="127.0.0.1", port=25)),
        ("0.0.0.0:25", ListenAddress("tcp", host="0.0.0.0", port=25)),
        ("[::1]:143", ListenAddress("tcp", host="::1", port=143)),
        ("[::]:993", ListenAddress("tcp", host="::", port=993)),
        ("*:25", ListenAddress("tcp", host="*", port=25)),
        ("mail.example.org:587", ListenAddress("tcp", host="mail.example.org", port=587)),
        ("localhost:0", ListenAddress("tcp", host="localhost", port=0)),
        ("unix:/run/postier/lmtp.sock", ListenAddress("unix", path="/run/postier/lmtp.sock")),
    ],
)
def test_valid_entries_parse(entry: str, expected: ListenAddress) -> None:
    assert parse_listen_address(entry) == expected


@pytest.mark.parametrize("entry", ["127.0.0.1:25", "[::1]:143", "*:25", "unix:/tmp/x.sock"])
def test_str_round_trips(entry: str) -> None:
    assert str(parse_listen_address(entry)) == entry


def test_all_addresses_binds_none() -> None:
    addr = parse_listen_address("*:25")
    assert addr.all_addresses
    assert addr.bind_host is None
    assert parse_listen_address("127.0.0.1:25").bind_host == "127.0.0.1"


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ("", "empty"),
        ("127.0.0.1", "expected 'host:port'"),
        ("127.0.0.1:", "missing port"),
        ("127.0.0.1:smtp", "not a number"),
        ("127.0.0.1:70000", "out of range"),
        ("::1:25", "must be in brackets"),
        ("[::1]", "expected ':port'"),
        ("[::1:25", "missing ']'"),
        ("[not-ip]:25", "not an IPv6 address"),
        ("999.1.1.1:25", "not an IPv4 address"),
        (":25", "missing host"),
        ("bad_host!:25", "not an IP address or host name"),
        ("unix:", "missing socket path"),
        ("unix:relative.sock", "must be absolute"),
        ("unix:/" + "a" * 200, "longer than"),
        (" 127.0.0.1:25", "spaces"),
    ],
)
def test_invalid_entries_say_why(entry: str, fragment: str) -> None:
    with pytest.raises(ListenAddressError, match=fragment):
        parse_listen_address(entry)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("127.0.0.1", True),
        ("127.255.3.4", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", False),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("2001:db8::1", False),
        ("localhost", False),  # never resolved: security decisions use IP literals only
        ("", False),
    ],
)
def test_is_loopback(ip: str, expected: bool) -> None:
    assert is_loopback(ip) is expected


def test_listen_address_loopback_property() -> None:
    assert parse_listen_address("127.0.0.1:25").is_loopback
    assert parse_listen_address("unix:/run/x.sock").is_loopback
    assert not parse_listen_address("*:25").is_loopback


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=80))
def test_any_text_parses_or_raises_listen_address_error(text: str) -> None:
    try:
        addr = parse_listen_address(text)
    except ListenAddressError as exc:
        assert str(exc)
    else:
        assert parse_listen_address(str(addr)) == addr


def test_is_valid_hostname() -> None:
    assert is_valid_hostname("mail.example.org")
    assert is_valid_hostname("xn--ml-bia.example")
    assert not is_valid_hostname("mél.example")
    assert not is_valid_hostname("a..b")
    assert not is_valid_hostname("mx\r\n")
