"""Framing: literals, incremental feeding, pipelining, error recovery, limits, line mode."""

from __future__ import annotations

import pytest

from postier.imap import commands as c
from postier.imap.parser import (
    Command,
    CommandParser,
    ContinuationNeeded,
    LimitExceeded,
    Limits,
    Line,
    LiteralMode,
    NeedData,
    ParseError,
    ParserMisuse,
    error_response,
)
from tests.unit.imap.feeding import commands, drain, feed_bytewise, feed_whole

PIPELINE = (
    b"a1 LOGIN {5}\r\nsmith {6+}\r\nsec\x00\xffe\r\n"
    b'a2 SELECT "INBOX"\r\n'
    b"a3 BAD!COMMAND (\r\n"
    b"a4 APPEND INBOX (\\Seen) {12}\r\nHello\r\nWorld ~{0}\r\n\r\n"
    b"a5 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From)])\r\n"
    b"\r\n"
    b"* NOOP\r\n"
    b"a6 SEARCH SUBJECT {4+}\r\n\xc3\xa9t\xc3 OR SEEN NOT DELETED\r\n"
    b"a7 LOGOUT\r\n"
)


def test_pipeline_whole() -> None:
    events = feed_whole(PIPELINE)
    assert [type(e).__name__ for e in events] == [
        "ContinuationNeeded",
        "Command",
        "Command",
        "Command",  # BAD!COMMAND is an unknown command name
        "ContinuationNeeded",
        "ContinuationNeeded",
        "Command",
        "Command",
        "ParseError",  # "*" is not a tag
        "ParseError",  # 4 octets that are not UTF-8
        "Command",
    ]
    assert events[0] == ContinuationNeeded("a1", 5, "LOGIN")
    assert events[1] == Command("a1", c.Login(b"smith", b"sec\x00\xffe"))
    assert events[3] == Command("a3", c.Unknown("BAD!COMMAND"))
    append = events[6]
    assert isinstance(append, Command) and isinstance(append.command, c.Append)
    assert [m.data for m in append.command.messages] == [b"Hello\r\nWorld", b""]
    assert events[8] == ParseError(None, "invalid or missing tag")
    assert isinstance(events[9], ParseError) and events[9].tag == "a6"
    assert events[10] == Command("a7", c.Logout())


def test_bytewise_equals_whole() -> None:
    assert feed_bytewise(PIPELINE) == feed_whole(PIPELINE)


@pytest.mark.parametrize("size", [2, 3, 7, 64])
def test_chunked_equals_whole(size: int) -> None:
    parser = CommandParser()
    events = []
    for i in range(0, len(PIPELINE), size):
        parser.receive_data(PIPELINE[i : i + size])
        events.extend(drain(parser))
    assert events == feed_whole(PIPELINE)


def test_need_data_until_line_complete() -> None:
    parser = CommandParser()
    parser.receive_data(b"a1 NO")
    assert parser.next_event() == NeedData()
    parser.receive_data(b"OP\r")
    assert parser.next_event() == NeedData()
    parser.receive_data(b"\n")
    assert parser.next_event() == Command("a1", c.Noop())
    assert parser.next_event() == NeedData()


# --------------------------------------------------------------- literals


def test_sync_literal_needs_continuation_before_data() -> None:
    parser = CommandParser()
    parser.receive_data(b"a1 LOGIN {3}\r\n")
    assert parser.next_event() == ContinuationNeeded("a1", 3, "LOGIN")
    assert parser.next_event() == NeedData()
    assert parser.waiting_literal_bytes == 3
    parser.receive_data(b"bob {0}\r\n")
    assert parser.next_event() == ContinuationNeeded("a1", 0, "LOGIN")
    parser.receive_data(b"\r\n")
    assert parser.next_event() == Command("a1", c.Login(b"bob", b""))


def test_reject_literal_resynchronises() -> None:
    parser = CommandParser()
    parser.receive_data(b"a1 APPEND INBOX {30000}\r\n")
    assert parser.next_event() == ContinuationNeeded("a1", 30000, "APPEND")
    parser.reject_literal()  # e.g. over quota: "a1 NO [OVERQUOTA]" instead of "+"
    parser.receive_data(b"a2 NOOP\r\n")
    assert parser.next_event() == Command("a2", c.Noop())


def test_reject_literal_only_while_waiting() -> None:
    with pytest.raises(ParserMisuse):
        CommandParser().reject_literal()


def test_literal_plus_eight_bit_and_crlf_inside() -> None:
    data = b"a1 LOGIN {5+}\r\n\r\n\xff\x80\n {1+}\r\n\x00\r\n"
    assert feed_whole(data) == [Command("a1", c.Login(b"\r\n\xff\x80\n", b"\x00"))]


def test_zero_length_literals() -> None:
    data = b"a1 LOGIN {0}\r\n {0+}\r\n\r\n"
    assert commands(feed_whole(data)) == [Command("a1", c.Login(b"", b""))]


def test_literal_minus_small_nonsync_accepted() -> None:
    parser = CommandParser(literal_mode=LiteralMode.MINUS)
    body = b"x" * 4096
    data = b"a1 APPEND INBOX {4096+}\r\n" + body + b"\r\n"
    [event] = feed_whole(data, parser)
    assert isinstance(event, Command) and isinstance(event.command, c.Append)


def test_literal_minus_big_nonsync_rejected_and_skipped() -> None:
    """RFC 7888 §4: BAD [TOOBIG], the literal is read and discarded, the session goes on."""
    parser = CommandParser(literal_mode=LiteralMode.MINUS)
    data = b"a1 APPEND INBOX {4097+}\r\n" + b"a2 NOOP\r\n" * 455 + b"xx" + b" {3+}\r\nabc\r\n"
    data += b"a3 NOOP\r\n"
    assert len(data) - len(b"a1 APPEND INBOX {4097+}\r\n") == 4097 + len(b" {3+}\r\nabc\r\n") + 9
    events = feed_whole(data, parser)
    assert len(events) == 2
    assert isinstance(events[0], ParseError) and events[0].tag == "a1"
    assert "[TOOBIG]" in events[0].message
    assert events[1] == Command("a3", c.Noop())
    assert feed_bytewise(data, CommandParser(literal_mode=LiteralMode.MINUS)) == events


def test_sync_only_mode_refuses_nonsync() -> None:
    parser = CommandParser(literal_mode=LiteralMode.SYNC_ONLY)
    events = feed_whole(b"a1 LOGIN {3+}\r\nbob x\r\na2 NOOP\r\n", parser)
    assert isinstance(events[0], ParseError) and events[0].tag == "a1"
    assert events[1:] == [Command("a2", c.Noop())]


def test_literal_in_every_astring_position() -> None:
    data = b"a1 RENAME {3}\r\nold {3}\r\nnew\r\n"
    assert commands(feed_whole(data)) == [Command("a1", c.Rename("old", "new"))]
    data = b'a2 LIST {0}\r\n ({1}\r\n* "%")\r\n'
    assert commands(feed_whole(data)) == [Command("a2", c.List("", ("*", "%"), extended=True))]


def test_literal_announcement_not_at_end_is_bad() -> None:
    [event] = feed_whole(b"a1 LOGIN {3} x\r\n")
    assert isinstance(event, ParseError) and event.tag == "a1"


def test_large_append_literal_in_small_chunks_is_linear() -> None:
    body = b"0123456789abcdef" * (4 * 1024 * 1024 // 16)  # 4 MiB
    parser = CommandParser()
    parser.receive_data(b"a1 APPEND INBOX {%d}\r\n" % len(body))
    assert parser.next_event() == ContinuationNeeded("a1", len(body), "APPEND")
    for i in range(0, len(body), 1500):
        parser.receive_data(body[i : i + 1500])
        assert parser.next_event() == NeedData()
    parser.receive_data(b"\r\n")
    event = parser.next_event()
    assert isinstance(event, Command) and isinstance(event.command, c.Append)
    assert event.command.messages[0].data == body


# --------------------------------------------------------------- errors and recovery


@pytest.mark.parametrize(
    ("line", "tag"),
    [
        (b"a1 LOGIN\r\n", "a1"),
        (b"a1\r\n", "a1"),
        (b"+ NOOP\r\n", None),
        (b"(a) NOOP\r\n", None),
        (b'a1 LOGIN "unterminated\r\n', "a1"),
        (b'a1 LOGIN "bad\\escape" x\r\n', "a1"),
        (b"a1 LOGIN \xff x\r\n", "a1"),
        (b"a1 SELECT a\x00b\r\n", "a1"),
        (b"\xff\xfe NOOP\r\n", None),
    ],
)
def test_parse_error_then_session_continues(line: bytes, tag: str | None) -> None:
    events = feed_whole(line + b"z9 NOOP\r\n")
    assert len(events) == 2, events
    assert isinstance(events[0], ParseError) and events[0].tag == tag
    assert events[0].status == "BAD"
    assert events[1] == Command("z9", c.Noop())


def test_untagged_literal_is_refused_without_continuation() -> None:
    events = feed_whole(b"* LOGIN {3}\r\nz9 NOOP\r\n")
    assert events == [ParseError(None, "invalid tag"), Command("z9", c.Noop())]


def test_error_inside_literal_command_recovers_after_it() -> None:
    events = feed_whole(b"a1 FETCH {3+}\r\nabc BODY[\r\na2 NOOP\r\n")
    assert isinstance(events[0], ParseError) and events[0].tag == "a1"
    assert events[1] == Command("a2", c.Noop())


def test_empty_lines_are_ignored() -> None:
    assert feed_whole(b"\r\n\r\n  \r\na NOOP\r\n") == [Command("a", c.Noop())]


# --------------------------------------------------------------- limits


def test_line_too_long_is_refused_and_skipped() -> None:
    parser = CommandParser(Limits(max_line_bytes=100))
    data = b"a1 SEARCH " + b"SEEN " * 100 + b"\r\na2 NOOP\r\n"
    events = feed_whole(data, parser)
    assert events == [LimitExceeded("a1", "line too long", fatal=False), Command("a2", c.Noop())]
    assert feed_bytewise(data, CommandParser(Limits(max_line_bytes=100))) == events


def test_line_too_long_without_lf_yet() -> None:
    parser = CommandParser(Limits(max_line_bytes=100))
    parser.receive_data(b"a1 NOOP" + b"x" * 200)
    assert parser.next_event() == LimitExceeded("a1", "line too long", fatal=False)
    for _ in range(100):  # memory stays bounded while the line goes on
        parser.receive_data(b"y" * 1000)
        assert parser.next_event() == NeedData()
    assert parser.buffered_bytes < 100
    parser.receive_data(b"\r\nb1 NOOP\r\n")
    assert parser.next_event() == Command("b1", c.Noop())


def test_long_line_ending_in_nonsync_literal_skips_the_literal() -> None:
    parser = CommandParser(Limits(max_line_bytes=50))
    data = b"a1 LOGIN " + b"u" * 100 + b" {10+}\r\nb1 NOOP\r\n\r\nb2 NOOP\r\n"
    events = feed_whole(data, parser)
    assert events == [LimitExceeded("a1", "line too long", fatal=False), Command("b2", c.Noop())]


def test_sync_literal_too_big_is_toobig_without_reading() -> None:
    parser = CommandParser(Limits(max_literal_bytes=1000))
    events = feed_whole(b"a1 APPEND INBOX {1001}\r\na2 NOOP\r\n", parser)
    assert events == [
        LimitExceeded("a1", "[TOOBIG] literal too large", fatal=False, status="NO"),
        Command("a2", c.Noop()),
    ]


def test_nonsync_literal_too_big_is_fatal() -> None:
    parser = CommandParser(Limits(max_literal_bytes=1000))
    events = feed_whole(b"a1 APPEND INBOX {1001+}\r\n" + b"x" * 1001 + b"\r\na2 NOOP\r\n", parser)
    assert len(events) == 1
    assert isinstance(events[0], LimitExceeded) and events[0].fatal
    assert "[TOOBIG]" in events[0].message
    assert parser.closed
    parser.receive_data(b"a3 NOOP\r\n")
    assert parser.next_event() == NeedData()


def test_huge_literal_size_digits() -> None:
    events = feed_whole(b"a1 LOGIN {" + b"9" * 40 + b"}\r\na2 NOOP\r\n")
    assert isinstance(events[0], LimitExceeded) and not events[0].fatal
    assert events[1] == Command("a2", c.Noop())


def test_multiappend_total_limit() -> None:
    parser = CommandParser(Limits(max_literal_bytes=10, max_append_bytes=15))
    events = feed_whole(b"a1 APPEND INBOX {10}\r\n0123456789 {10}\r\na2 NOOP\r\n", parser)
    assert events[0] == ContinuationNeeded("a1", 10, "APPEND")
    assert isinstance(events[1], LimitExceeded) and "[TOOBIG]" in events[1].message
    assert events[2] == Command("a2", c.Noop())


def test_command_bytes_limit_for_other_literals() -> None:
    parser = CommandParser(Limits(max_command_bytes=100))
    events = feed_whole(b"a1 LOGIN {200}\r\na2 NOOP\r\n", parser)
    assert isinstance(events[0], LimitExceeded) and events[0].status == "BAD"
    assert events[1] == Command("a2", c.Noop())


def test_command_bytes_limit_over_many_lines() -> None:
    parser = CommandParser(Limits(max_command_bytes=100))
    data = b"a1 LOGIN " + b"x" * 60 + b" {1+}\r\ny" + b"z" * 60 + b" {2+}\r\nab\r\na2 NOOP\r\n"
    events = feed_whole(data, parser)
    assert events == [
        LimitExceeded("a1", "command too long", fatal=False),
        Command("a2", c.Noop()),
    ]


def test_nesting_limit() -> None:
    parser = CommandParser(Limits(max_nesting=5))
    events = feed_whole(b"a1 SEARCH " + b"(" * 6 + b"SEEN" + b")" * 6 + b"\r\n", parser)
    assert events == [LimitExceeded("a1", "parentheses nested too deeply", fatal=False)]
    events = feed_whole(b"a1 SEARCH " + b"NOT " * 6 + b"SEEN\r\n", parser)
    assert isinstance(events[0], LimitExceeded)
    events = feed_whole(b"a1 SEARCH " + b"(" * 5 + b"SEEN" + b")" * 5 + b"\r\n", parser)
    assert isinstance(events[0], Command)


def test_deep_nesting_default_limits_never_recurse_out() -> None:
    events = feed_whole(b"a1 SEARCH " + b"(" * 30000 + b"\r\n")
    assert isinstance(events[0], LimitExceeded)


def test_list_items_limit() -> None:
    parser = CommandParser(Limits(max_list_items=10))
    assert isinstance(
        feed_whole(b"a1 FETCH " + b"1," * 10 + b"1 UID\r\n", parser)[0], LimitExceeded
    )
    assert isinstance(
        feed_whole(b"a1 FETCH 1 (" + b"UID " * 11 + b"UID)\r\n", parser)[0], LimitExceeded
    )
    assert isinstance(feed_whole(b"a1 SEARCH" + b" SEEN" * 11 + b"\r\n", parser)[0], LimitExceeded)
    assert isinstance(feed_whole(b"a1 FETCH 1:9 UID\r\n", parser)[0], Command)


# --------------------------------------------------------------- line mode


def test_authenticate_continuation_lines() -> None:
    parser = CommandParser()
    parser.receive_data(b"a1 AUTHENTICATE PLAIN\r\n")
    assert parser.next_event() == Command("a1", c.Authenticate("PLAIN"))
    parser.expect_line()
    assert parser.next_event() == NeedData()
    parser.receive_data(b"dGVzdAB0ZXN0AHRlc3Q=\r\na2 NOOP\r\n")
    assert parser.next_event() == Line(b"dGVzdAB0ZXN0AHRlc3Q=")
    assert parser.next_event() == Command("a2", c.Noop())


def test_idle_done_line() -> None:
    parser = CommandParser()
    parser.receive_data(b"a1 IDLE\r\nDONE\r\na2 NOOP\r\n")
    assert parser.next_event() == Command("a1", c.Idle())
    parser.expect_line()
    assert parser.next_event() == Line(b"DONE")
    assert parser.next_event() == Command("a2", c.Noop())


def test_line_mode_does_not_interpret_literals() -> None:
    parser = CommandParser()
    parser.expect_line()
    parser.receive_data(b"abc {5}\r\n")
    assert parser.next_event() == Line(b"abc {5}")


def test_line_mode_line_too_long() -> None:
    parser = CommandParser(Limits(max_line_bytes=10))
    parser.expect_line()
    parser.receive_data(b"x" * 50 + b"\r\na1 NOOP\r\n")
    assert parser.next_event() == LimitExceeded(None, "line too long", fatal=False)
    assert parser.next_event() == Command("a1", c.Noop())


def test_expect_line_in_middle_of_command_is_misuse() -> None:
    parser = CommandParser()
    parser.receive_data(b"a1 LOGIN {3}\r\n")
    parser.next_event()
    with pytest.raises(ParserMisuse):
        parser.expect_line()


# --------------------------------------------------------------- STARTTLS injection


def test_starttls_pipelined_plaintext_is_visible_and_droppable() -> None:
    """CVE-2011-0411 class: commands sent in clear after STARTTLS must not run after TLS."""
    parser = CommandParser()
    parser.receive_data(b"a1 STARTTLS\r\na2 LOGIN evil injected\r\n")
    assert parser.next_event() == Command("a1", c.StartTLS())
    assert parser.buffered_bytes > 0
    parser.clear_buffer()
    assert parser.next_event() == NeedData()
    parser.receive_data(b"b1 NOOP\r\n")
    assert parser.next_event() == Command("b1", c.Noop())


def test_utf8_mode_switch() -> None:
    parser = CommandParser()
    parser.receive_data(b'a1 SELECT "&AOk-"\r\n')
    assert parser.next_event() == Command("a1", c.Select("é"))
    parser.utf8 = True
    parser.receive_data(b'a2 SELECT "&AOk-"\r\n')
    assert parser.next_event() == Command("a2", c.Select("&AOk-"))


def test_second_long_line_of_refused_command_gives_no_second_error() -> None:
    parser = CommandParser(Limits(max_line_bytes=20))
    data = b"a1 LOGIN " + b"x" * 30 + b" {3+}\r\nabc" + b"y" * 30 + b"\r\na2 NOOP\r\n"
    events = feed_whole(data, parser)
    assert events == [LimitExceeded("a1", "line too long", fatal=False), Command("a2", c.Noop())]


def test_error_responses() -> None:
    assert error_response(ParseError("a1", "bad syntax")) == b"a1 BAD bad syntax\r\n"
    assert error_response(ParseError(None, "no tag")) == b"* BAD no tag\r\n"
    assert error_response(ParseError("a1", "[BADCHARSET (UTF-8)] x", status="NO")) == (
        b"a1 NO [BADCHARSET (UTF-8)] x\r\n"
    )
    assert error_response(LimitExceeded("a1", "[TOOBIG] big", fatal=False, status="NO")) == (
        b"a1 NO [TOOBIG] big\r\n"
    )
    assert error_response(LimitExceeded("a1", "[TOOBIG] big", fatal=True)) == (
        b"* BYE [TOOBIG] big\r\n"
    )


def test_continuation_names_the_command() -> None:
    parser = CommandParser()
    parser.receive_data(b"a1 uid SEARCH TEXT {3}\r\n")
    assert parser.next_event() == ContinuationNeeded("a1", 3, "UID")


def test_nonsync_literal_over_command_limit_is_skipped_not_fatal() -> None:
    parser = CommandParser(Limits(max_command_bytes=100, max_literal_bytes=1000))
    data = b"a1 LOGIN {500+}\r\n" + b"a9 NOOP\r\n" * 50 + b"x" * 50 + b" y\r\na2 NOOP\r\n"
    events = feed_whole(data, parser)
    assert events == [
        LimitExceeded("a1", "[TOOBIG] literal too large", fatal=False),
        Command("a2", c.Noop()),
    ]
    assert not parser.closed


def test_multiappend_nonsync_over_total_is_skipped() -> None:
    parser = CommandParser(Limits(max_literal_bytes=10, max_append_bytes=15))
    data = b"a1 APPEND INBOX {10+}\r\n0123456789 {10+}\r\n0123456789\r\na2 NOOP\r\n"
    events = feed_whole(data, parser)
    assert events == [
        LimitExceeded("a1", "[TOOBIG] literal too large", fatal=False, status="NO"),
        Command("a2", c.Noop()),
    ]
