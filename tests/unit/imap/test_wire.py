"""Wire encoders, modified UTF-7, responses and sequence sets."""

from __future__ import annotations

import pytest

from postier.imap import commands as c
from postier.imap import wire
from postier.imap.parser import Command, CommandParser
from tests.unit.imap.feeding import feed_whole

# --------------------------------------------------------------- modified UTF-7


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3
        ("INBOX", b"INBOX"),
        ("Tom & Jerry", b"Tom &- Jerry"),
        ("&", b"&-"),
        ("Entwürfe", b"Entw&APw-rfe"),
        ("Envoyés", b"Envoy&AOk-s"),
        ("", b""),
        ("😀 emoji", b"&2D3eAA- emoji"),  # a surrogate pair
        ("a\tb", b"a&AAk-b"),  # controls are encoded
        ("日本語&x", b"&ZeVnLIqe-&-x"),
    ],
)
def test_mutf7_round_trip(text: str, encoded: bytes) -> None:
    assert wire.encode_mutf7(text) == encoded
    assert wire.decode_mutf7(encoded) == text


@pytest.mark.parametrize(
    "bad",
    [
        b"&",  # unterminated
        b"&U,BTFw",  # unterminated
        b"&U/BTFw-",  # "/" is not modified base64
        b"&AGE-",  # encodes printable "a"
        b"&AOl-",  # non-zero trailing bits
        b"&2D0-",  # lone high surrogate
        b"\xc3\xa9",  # 8-bit
        b"a\x01b",  # control
        b"&A-",  # truncated
    ],
)
def test_mutf7_invalid(bad: bytes) -> None:
    with pytest.raises(ValueError):
        wire.decode_mutf7(bad)


def test_mailbox_encoding() -> None:
    assert wire.mailbox("INBOX") == b"INBOX"
    assert wire.mailbox("Envoyés") == b"Envoy&AOk-s"
    assert wire.mailbox("Envoyés", utf8=True) == '"Envoyés"'.encode()
    assert wire.mailbox("My Folder") == b'"My Folder"'
    assert wire.mailbox("") == b'""'


def test_mailbox_encoding_parses_back() -> None:
    for name in ("~peter/mail/台北/日本語", 'a b "q" \\', "Tom & Jerry", "x\ty"):
        for utf8 in (False, True):
            parser = CommandParser()
            parser.utf8 = utf8
            data = b"a1 DELETE " + wire.mailbox(name, utf8=utf8) + b"\r\n"
            events = [e for e in feed_whole(data, parser) if isinstance(e, Command)]
            assert events == [Command("a1", c.Delete(name))], (name, utf8)


# --------------------------------------------------------------- strings


def test_string_encoders() -> None:
    assert wire.quoted(b'a"b\\c') == b'"a\\"b\\\\c"'
    with pytest.raises(ValueError):
        wire.quoted(b"a\r\nb")
    assert wire.literal(b"ab\r\n") == b"{4}\r\nab\r\n"
    assert wire.literal(b"\x00", binary=True) == b"~{1}\r\n\x00"
    assert wire.string("é") == '"é"'.encode()
    assert wire.string(b"a\nb") == b"{3}\r\na\nb"
    assert wire.string(b"x" * 2000).startswith(b"{2000}\r\n")
    assert wire.nstring(None) == b"NIL"
    assert wire.nstring(b"") == b'""'
    assert wire.astring(b"abc]") == b"abc]"
    assert wire.astring(b"nil") == b'"nil"'
    assert wire.astring(b"a b") == b'"a b"'
    assert wire.astring(b"") == b'""'
    assert wire.is_atom(b"FLAGS") and not wire.is_atom(b"a(b") and not wire.is_atom(b"")


# --------------------------------------------------------------- responses


def test_status_responses() -> None:
    assert wire.tagged("a1", "OK", "[READ-WRITE] SELECT completed") == (
        b"a1 OK [READ-WRITE] SELECT completed\r\n"
    )
    assert wire.tagged("a1", "NO", "too big", code=wire.response_code("TOOBIG")) == (
        b"a1 NO [TOOBIG] too big\r\n"
    )
    assert wire.tagged("a1", "OK", code=wire.response_code("UIDNEXT", b"4392")) == (
        b"a1 OK [UIDNEXT 4392]\r\n"
    )
    assert wire.tagged("a1", "BAD", "evil\r\n* OK injected") == b"a1 BAD evil  * OK injected\r\n"
    assert wire.untagged_status("BYE", "Logging out") == b"* BYE Logging out\r\n"
    assert wire.untagged_status("OK") == b"* OK done\r\n"
    assert wire.untagged(b"23", b"EXISTS") == b"* 23 EXISTS\r\n"
    assert wire.continuation() == b"+ Ready\r\n"
    assert wire.continuation(b"") == b"+ \r\n"


def test_flag_list() -> None:
    assert wire.flag_list(["\\Seen", "$Junk"]) == b"(\\Seen $Junk)"
    assert wire.flag_list([]) == b"()"


@pytest.mark.parametrize(
    ("numbers", "expected"),
    [
        ([1, 2, 3, 5], b"1:3,5"),
        ([], b""),
        ([7], b"7"),
        ([5, 3, 2, 1, 3], b"1:3,5"),
        ([1, 3, 5, 6], b"1,3,5:6"),
        ([4294967295, 4294967294], b"4294967294:4294967295"),
    ],
)
def test_compress_uids(numbers: list[int], expected: bytes) -> None:
    assert wire.compress_uids(numbers) == expected


# --------------------------------------------------------------- sequence sets


def seqset(text: bytes) -> c.SequenceSet:
    [event] = feed_whole(b"a UID EXPUNGE " + text + b"\r\n")
    assert isinstance(event, Command) and isinstance(event.command, c.UidExpunge)
    return event.command.seqset


def test_sequence_set_expand() -> None:
    assert seqset(b"1:3,5").expand(10) == [1, 2, 3, 5]
    assert seqset(b"4:2").expand(10) == [2, 3, 4]
    assert seqset(b"1:*").expand(4) == [1, 2, 3, 4]
    assert seqset(b"*").expand(4) == [4]
    assert seqset(b"*").expand(0) == []
    assert seqset(b"3,1:2,2").expand(9) == [1, 2, 3]
    assert seqset(b"8:12").expand(10) == [8, 9, 10]


def test_uid_range_with_star_contains_last_uid() -> None:
    """RFC 9051 §6.4.9: 559:* always includes the highest UID, even if 559 is larger."""
    s = seqset(b"559:*")
    assert s.expand(100) == [100]
    assert s.contains(100, 100) and not s.contains(99, 100)
    assert s.normalized(1000) == [(559, 1000)]
    assert s.uses_star


def test_sequence_set_huge_range_normalizes_cheaply() -> None:
    s = seqset(b"1:4294967295,7")
    assert s.normalized(5) == [(1, 5)]
    assert s.max_explicit() == 4294967295
    assert s.contains(3, 5)


def test_saved_sequence_set() -> None:
    s = seqset(b"$")
    assert s.saved
    with pytest.raises(ValueError):
        s.expand(10)
    with pytest.raises(ValueError):
        s.contains(1, 10)
