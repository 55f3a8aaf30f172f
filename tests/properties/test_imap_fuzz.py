"""Fuzz invariant of the IMAP command parser (STYLE.md: "any input, whole or byte by byte,
gives events or a protocol error, nothing else")."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from postier.imap import commands as c
from postier.imap import wire
from postier.imap.parser import (
    Command,
    CommandParser,
    ContinuationNeeded,
    Event,
    LimitExceeded,
    Limits,
    LiteralMode,
    NeedData,
)

EVENT_TYPES = tuple(Event.__args__)  # type: ignore[attr-defined]

# Fragments that steer random input into interesting grammar.
TOKENS = [
    b"a1 ", b"UID ", b"FETCH ", b"SEARCH ", b"APPEND ", b"LOGIN ", b"LIST ", b"SELECT ",
    b"STORE ", b"SORT ", b"(", b")", b"[", b"]", b"<0.5>", b"{3}\r\n", b"{2+}\r\n", b"~{1}\r\n",
    b"{0}\r\n", b"\r\n", b"\n", b" ", b'"', b"\\", b"*", b"$", b"1:*", b"BODY[", b"HEADER.FIELDS",
    b"NOT ", b"OR ", b"CHARSET ", b"RETURN ", b"&", b"-", b"\x00", b"\xff", b"INBOX", b"{99999}",
    b"{18446744073709551616+}\r\n", b"1", b"FLAGS", b"+FLAGS.SILENT ", b"(CHANGEDSINCE 1)",
]  # fmt: skip

chunks = st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(TOKENS)), max_size=40).map(
    b"".join
)


def run(parser: CommandParser, data: bytes, cuts: list[int]) -> list[Event]:
    events: list[Event] = []
    points = sorted({0, len(data), *(i % (len(data) + 1) for i in cuts)})
    for start, end in itertools.pairwise(points):
        parser.receive_data(data[start:end])
        while not isinstance(event := parser.next_event(), NeedData):
            assert isinstance(event, EVENT_TYPES)
            events.append(event)
            assert len(events) < 10_000
    return events


def recovers(parser: CommandParser) -> None:
    """After any input the parser can be brought back to a clean command boundary."""
    if parser.closed:
        return
    # Finish a pending literal, end the current line and any command it belongs to.
    for _ in range(50):
        waiting = parser.waiting_literal_bytes
        if waiting:
            parser.receive_data(b"x" * waiting)
        parser.receive_data(b"\r\n")
        while not isinstance(event := parser.next_event(), NeedData):
            assert isinstance(event, EVENT_TYPES)
        if parser.closed:
            return
        if not parser.waiting_literal_bytes:
            break
    parser.receive_data(b"\r\nzz9 NOOP\r\n")
    events = []
    while not isinstance(event := parser.next_event(), NeedData):
        events.append(event)
    if parser.closed:
        return
    assert events and events[-1] == Command("zz9", c.Noop()), events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=chunks, cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=12))
def test_any_bytes_any_split_only_events(data: bytes, cuts: list[int]) -> None:
    whole = CommandParser()
    expected = run(whole, data, [])
    split = CommandParser()
    assert run(split, data, cuts) == expected
    recovers(whole)
    recovers(split)


@settings(max_examples=150, deadline=None)
@given(
    data=chunks,
    mode=st.sampled_from(list(LiteralMode)),
    line=st.integers(min_value=8, max_value=64),
    nesting=st.integers(min_value=1, max_value=4),
)
def test_small_limits_and_literal_modes(
    data: bytes, mode: LiteralMode, line: int, nesting: int
) -> None:
    limits = Limits(
        max_line_bytes=line,
        max_literal_bytes=50,
        max_append_bytes=80,
        max_command_bytes=120,
        max_nesting=nesting,
        max_list_items=5,
    )
    parser = CommandParser(limits, mode)
    events = run(parser, data, [])
    assert run(CommandParser(limits, mode), data, list(range(0, len(data), 3))) == events
    for event in events:
        if isinstance(event, LimitExceeded) and event.fatal:
            assert parser.closed
    recovers(parser)


@settings(max_examples=100, deadline=None)
@given(data=chunks)
def test_line_mode_any_bytes(data: bytes) -> None:
    parser = CommandParser()
    parser.expect_line()
    events = run(parser, data, [])
    assert all(not isinstance(e, ContinuationNeeded) for e in events[:1])
    recovers(parser)


# --------------------------------------------------------------- encoder/parser round trips


def parse_command(data: bytes, utf8: bool = False) -> c.ImapCommand:
    parser = CommandParser()
    parser.utf8 = utf8
    parser.receive_data(data)
    events = []
    while not isinstance(event := parser.next_event(), NeedData):
        if not isinstance(event, ContinuationNeeded):
            events.append(event)
    assert len(events) == 1 and isinstance(events[0], Command), events
    return events[0].command


@settings(max_examples=200, deadline=None)
@given(user=st.binary(max_size=40), password=st.binary(max_size=40))
def test_astring_round_trip(user: bytes, password: bytes) -> None:
    line = b"a1 LOGIN " + wire.astring(user) + b" " + wire.astring(password) + b"\r\n"
    assert parse_command(line) == c.Login(user, password)


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=30), utf8=st.booleans())
def test_mailbox_round_trip(name: str, utf8: bool) -> None:
    assume(not utf8 or not any(ch in name for ch in "\r\n\x00"))
    assume(not any(0xD800 <= ord(ch) <= 0xDFFF for ch in name))
    expected = "INBOX" if name.upper() == "INBOX" else name
    line = b"a1 SELECT " + wire.mailbox(name, utf8=utf8) + b"\r\n"
    assert parse_command(line, utf8) == c.Select(expected)
    assert wire.decode_mutf7(wire.encode_mutf7(name)) == name


@settings(max_examples=200, deadline=None)
@given(numbers=st.sets(st.integers(min_value=1, max_value=300), min_size=1, max_size=60))
def test_compressed_uid_set_round_trip(numbers: set[int]) -> None:
    command = parse_command(b"a1 UID EXPUNGE " + wire.compress_uids(numbers) + b"\r\n")
    assert isinstance(command, c.UidExpunge)
    assert command.seqset.expand(300) == sorted(numbers)
    assert all(command.seqset.contains(n, 300) == (n in numbers) for n in range(1, 301))
