"""Log line format, connection ids and quiet disconnects."""

import io
import logging
import re
import time
from collections.abc import Iterator

import pytest

from postier.log import (
    ConnectionLogger,
    LineFormatter,
    format_peer,
    get_logger,
    is_expected_disconnect,
    new_connection_id,
    one_line,
    setup_logging,
)

LINE_RE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO  smtp \[[0-9a-f]{6}\] 127\.0\.0\.1:51234 connected$"
)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    setup_logging("info", out)
    yield out
    setup_logging("warning", io.StringIO())


def test_connection_line_format(stream: io.StringIO) -> None:
    log = ConnectionLogger("smtp", peer="127.0.0.1:51234")
    log.info("connected")
    line = stream.getvalue().rstrip("\n")
    assert LINE_RE.match(line), line
    assert f"[{log.conn_id}]" in line


def test_plain_logger_line_has_no_connection_part(stream: io.StringIO) -> None:
    get_logger("app").warning("listening on %s", "127.0.0.1:2525")
    line = stream.getvalue().rstrip("\n")
    assert re.match(r"^\S+ \S+ WARNING app listening on 127\.0\.0\.1:2525$", line), line


def test_debug_hidden_at_info(stream: io.StringIO) -> None:
    ConnectionLogger("imap", peer="[::1]:1").debug("C: a1 NOOP")
    assert stream.getvalue() == ""


def test_peer_data_cannot_forge_lines(stream: io.StringIO) -> None:
    ConnectionLogger("smtp", peer="127.0.0.1:1").info("HELO %s", "x\r\n2026-01-01 INFO fake")
    out = stream.getvalue()
    assert out.count("\n") == 1
    assert "x\\r\\n2026-01-01 INFO fake" in out


def test_control_characters_are_escaped_and_other_text_kept() -> None:
    assert one_line("plain ascii, café, 日本") == "plain ascii, café, 日本"
    assert one_line("a\tb") == "a\tb"  # TAB stays
    assert one_line("a\x00b\x1bc\x7f") == "a\\x00b\\x1bc\\x7f"
    # not printable yet no control character: kept as it is
    assert one_line("a\u2028b\xa0c") == "a\u2028b\xa0c"
    assert one_line("é\r\n") == "é\\r\\n"


def test_the_time_of_each_line_is_its_own_though_seconds_are_formatted_once() -> None:
    formatter = LineFormatter()

    def stamp(created: float) -> str:
        record = logging.LogRecord("postier.x", logging.INFO, "", 0, "m", None, None)
        record.created = created
        record.msecs = int((created - int(created)) * 1000) + 0.0
        return formatter.formatTime(record)

    base = time.mktime((2026, 11, 27, 8, 0, 1, 0, 0, -1))
    # binary fractions, exact in a float
    assert stamp(base + 0.125) == "2026-11-27 08:00:01.125"
    assert stamp(base + 0.5) == "2026-11-27 08:00:01.500"
    assert stamp(base + 1.0625) == "2026-11-27 08:00:02.062"
    assert stamp(base + 0.75) == "2026-11-27 08:00:01.750"  # back: formatted again
    assert stamp(base + 86400) == "2026-11-28 08:00:01.000"
    assert stamp(base) == "2026-11-27 08:00:01.000"
    record = logging.LogRecord("postier.x", logging.INFO, "", 0, "m", None, None)
    record.created = base
    assert formatter.formatTime(record, "%H:%M") == "08:00"  # another format: not cached


def test_expected_disconnect_is_one_info_line(stream: io.StringIO) -> None:
    log = ConnectionLogger("pop3", peer="127.0.0.1:2")
    log.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
    out = stream.getvalue()
    assert out.count("\n") == 1
    assert "INFO  pop3" in out and "disconnected: ConnectionResetError" in out
    assert "Traceback" not in out


def test_clean_disconnect(stream: io.StringIO) -> None:
    ConnectionLogger("pop3", peer="127.0.0.1:2").connection_lost(None)
    assert stream.getvalue().rstrip().endswith("127.0.0.1:2 disconnected")


def test_unexpected_error_has_traceback(stream: io.StringIO) -> None:
    log = ConnectionLogger("imap", peer="127.0.0.1:3")
    try:
        raise KeyError("bug")
    except KeyError as exc:
        log.connection_lost(exc)
    out = stream.getvalue()
    assert "ERROR imap" in out and "Traceback" in out


def test_expected_disconnect_kinds() -> None:
    assert is_expected_disconnect(BrokenPipeError())
    assert is_expected_disconnect(TimeoutError())
    assert not is_expected_disconnect(ValueError())
    assert not is_expected_disconnect(None)


def test_connection_ids_are_short_and_unique() -> None:
    ids = [new_connection_id() for _ in range(100_000)]
    assert all(re.fullmatch(r"[0-9a-f]{6}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_with_peer_keeps_id(stream: io.StringIO) -> None:
    log = ConnectionLogger("smtp", peer="10.0.0.1:1")
    proxied = log.with_peer("203.0.113.5:4444")
    assert proxied.conn_id == log.conn_id
    proxied.info("proxied")
    assert f"[{log.conn_id}] 203.0.113.5:4444 proxied" in stream.getvalue()


def test_format_peer() -> None:
    assert format_peer(("127.0.0.1", 51234)) == "127.0.0.1:51234"
    assert format_peer(("::1", 143, 0, 0)) == "[::1]:143"
    assert format_peer("") == "unix"


def test_unknown_level_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("verbose")


def test_setup_is_idempotent(stream: io.StringIO) -> None:
    setup_logging("info", stream)
    get_logger("app").info("once")
    assert stream.getvalue().count("once") == 1
    assert logging.getLogger().level == logging.INFO


def test_asyncio_disconnect_noise_is_one_info_line(stream: io.StringIO) -> None:
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        logging.getLogger("asyncio").error("Fatal read error on socket transport", exc_info=True)
    out = stream.getvalue()
    assert out.count("\n") == 1
    assert "INFO  asyncio Fatal read error on socket transport: ConnectionResetError" in out


def test_other_asyncio_errors_keep_traceback(stream: io.StringIO) -> None:
    try:
        raise RuntimeError("bug")
    except RuntimeError:
        logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=True)
    assert "Traceback" in stream.getvalue()
