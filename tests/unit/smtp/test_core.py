"""The sans-IO SMTP core, with bytes only: every bad-input case of issue 3, each followed by a
check that the same session still serves the next transaction."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postier.auth.sasl import Cancelled
from postier.smtp.core import (
    C452_INSUFFICIENT_STORAGE,
    C550_MAILBOX_UNKNOWN,
    C554_RELAY_DENIED,
    Auth,
    AuthResponse,
    CoreMisuse,
    Ehlo,
    Event,
    MailFrom,
    Message,
    Mode,
    ProtocolError,
    RcptTo,
    Reply,
    ServerConnection,
    StartTls,
    State,
    decode_xtext,
)

from .feeding import DEFER, Session, codes, new_session

EHLO = b"EHLO client.example.net\r\n"
TXN = b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
BODY = b"Subject: hi\r\n\r\nHello\r\n"


def transaction_works(s: Session, body: bytes = BODY) -> None:
    """The session still serves a full transaction after whatever came before."""
    before = len(s.of(Message))
    out = s.feed(TXN)
    assert codes(out) == ["250 2.1.0", "250 2.1.5", "354"]
    out = s.feed(body + b".\r\n")
    assert codes(out) == ["250 2.0.0"]
    messages = s.of(Message)
    assert len(messages) == before + 1
    last = messages[-1]
    assert isinstance(last, Message)
    assert last.data == body


# ------------------------------------------------------------ basics


def test_greeting_and_ehlo_extensions() -> None:
    s = new_session(tls_available=True)
    assert s.out == b"220 mx.example.org ESMTP postier ready\r\n"
    out = s.feed(EHLO)
    lines = out.decode().split("\r\n")
    assert lines[0] == "250-mx.example.org Hello client.example.net"
    for ext in ("PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 52428800", "ENHANCEDSTATUSCODES",
                "CHUNKING", "DSN", "STARTTLS"):
        assert f"250-{ext}" in lines
    assert lines[-2] == "250 HELP"
    assert not any("AUTH" in line for line in lines)  # MTA mode offers no AUTH


def test_simple_transaction_events_and_data() -> None:
    s = new_session()
    s.feed(EHLO)
    transaction_works(s)
    assert [type(e) for e in s.events] == [Ehlo, MailFrom, RcptTo, Message]


def test_pipelined_transaction_is_answered_in_one_batch() -> None:
    s = new_session()
    s.feed(EHLO)
    out = s.feed(TXN + BODY + b".\r\n" + TXN + BODY + b".\r\nQUIT\r\n")
    assert codes(out) == ["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"] * 2 + ["221 2.0.0"]
    assert len(s.of(Message)) == 2
    assert s.conn.closed


def test_byte_by_byte_gives_same_events() -> None:
    whole = new_session()
    whole.feed(EHLO + TXN + BODY + b".\r\nQUIT\r\n")
    bytewise = new_session()
    bytewise.feed_bytewise(EHLO + TXN + BODY + b".\r\nQUIT\r\n")
    assert whole.events == bytewise.events
    assert whole.out == bytewise.out


def test_dot_unstuffing_and_empty_message() -> None:
    s = new_session()
    s.feed(EHLO + TXN)
    s.feed(b"..leading dot\r\n.\r\n")
    m = s.of(Message)[-1]
    assert isinstance(m, Message) and m.data == b".leading dot\r\n"
    s.feed(TXN + b"a\r\n...\r\nb\r\n.\r\n")
    m = s.of(Message)[-1]
    assert isinstance(m, Message) and m.data == b"a\r\n..\r\nb\r\n"
    s.feed(TXN + b".\r\n")
    m = s.of(Message)[-1]
    assert isinstance(m, Message) and m.data == b""


def test_null_sender_source_route_and_postmaster() -> None:
    s = new_session()
    s.feed(EHLO)
    out = s.feed(b"MAIL FROM:<>\r\nRCPT TO:<@relay.example:alice@example.org>\r\nRCPT TO:<Postmaster>\r\n")
    assert codes(out) == ["250 2.1.0", "250 2.1.5", "250 2.1.5"]
    mail, rcpt1, rcpt2 = s.events[1:]
    assert isinstance(mail, MailFrom) and mail.address == ""
    assert isinstance(rcpt1, RcptTo) and rcpt1.address == "alice@example.org"
    assert isinstance(rcpt2, RcptTo) and rcpt2.address == "postmaster"


def test_mail_from_with_space_after_colon_is_tolerated() -> None:
    s = new_session()
    s.feed(EHLO)
    assert codes(s.feed(b"MAIL FROM: <bob@example.net>\r\n")) == ["250 2.1.0"]


def test_dsn_and_esmtp_parameters() -> None:
    s = new_session()
    s.feed(EHLO)
    out = s.feed(
        b"MAIL FROM:<bob@example.net> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1 SMTPUTF8\r\n"
        b"RCPT TO:<alice@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice+2Bx@example.org\r\n"
    )
    assert codes(out) == ["250 2.1.0", "250 2.1.5"]
    mail, rcpt = s.events[1:]
    assert mail == MailFrom("bob@example.net", 1000, "8BITMIME", True, "HDRS", "QQ+1")
    assert rcpt == RcptTo("alice@example.org", ("SUCCESS", "FAILURE"), "rfc822;alice+x@example.org")


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (b"MAIL FROM:<bob@example.net> FOO=1\r\n", "555 5.5.4"),
        (b"MAIL FROM:<bob@example.net> SIZE=abc\r\n", "501 5.5.4"),
        (b"MAIL FROM:<bob@example.net> BODY=BINARYMIME\r\n", "504 5.5.4"),
        (b"MAIL FROM:<bob@example.net> RET=ALL\r\n", "501 5.5.4"),
        (b"MAIL FROM:<bob@example.net> SIZE=1 SIZE=2\r\n", "501 5.5.4"),
        (b"MAIL FROM:bob\r\n", "501 5.1.3"),
        (b"MAIL FROM:<bob>\r\n", "501 5.1.3"),
        (b"MAIL FROM:<b\xc3\xa9@example.net>\r\n", "553 5.6.7"),
        (b"MAIL FROM:<\xff@example.net> SMTPUTF8\r\n", "501 5.1.3"),
        (b"MAIL TO:<bob@example.net>\r\n", "501 5.5.4"),
        (b"MAIL FROM:<" + b"a" * 300 + b"@example.net>\r\n", "501 5.1.3"),
    ],
)
def test_bad_mail_from_is_refused_and_session_continues(command: bytes, code: str) -> None:
    s = new_session()
    s.feed(EHLO)
    assert codes(s.feed(command)) == [code]
    transaction_works(s)


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (b"RCPT TO:<alice@example.org> NOTIFY=NEVER,SUCCESS\r\n", "501 5.5.4"),
        (b"RCPT TO:<alice@example.org> ORCPT=rfc822\r\n", "501 5.5.4"),
        (b"RCPT TO:<alice@example.org> XYZ\r\n", "555 5.5.4"),
        (b"RCPT TO:<>\r\n", "501 5.1.3"),
        (b"RCPT TO:<al ice@example.org>\r\n", "501 5.1.3"),
    ],
)
def test_bad_rcpt_to_is_refused_and_transaction_continues(command: bytes, code: str) -> None:
    s = new_session()
    s.feed(EHLO + b"MAIL FROM:<bob@example.net>\r\n")
    assert codes(s.feed(command)) == [code]
    assert codes(s.feed(b"RCPT TO:<alice@example.org>\r\nDATA\r\n")) == ["250 2.1.5", "354"]
    assert codes(s.feed(BODY + b".\r\n")) == ["250 2.0.0"]


def test_rcpt_rejected_keeps_transaction() -> None:
    def decide(conn: ServerConnection, event: Event) -> Reply | None:
        if isinstance(event, RcptTo) and event.address.startswith("nobody"):
            return C550_MAILBOX_UNKNOWN
        if isinstance(event, RcptTo) and event.address.endswith("other.example"):
            return C554_RELAY_DENIED
        return None

    s = new_session(decide=decide)
    s.feed(EHLO + b"MAIL FROM:<bob@example.net>\r\n")
    out = s.feed(
        b"RCPT TO:<nobody@example.org>\r\nRCPT TO:<x@other.example>\r\n"
        b"RCPT TO:<alice@example.org>\r\nDATA\r\n" + BODY + b".\r\n"
    )
    assert codes(out) == ["550 5.1.1", "554 5.7.1", "250 2.1.5", "354", "250 2.0.0"]
    m = s.of(Message)[-1]
    assert isinstance(m, Message)
    assert [r.address for r in m.recipients] == ["alice@example.org"]


def test_non_ascii_recipient_needs_smtputf8() -> None:
    s = new_session()
    s.feed(EHLO + b"MAIL FROM:<bob@example.net>\r\n")
    assert codes(s.feed("RCPT TO:<jos\u00e9@example.org>\r\n".encode())) == ["553 5.6.7"]
    s.feed(b"RSET\r\nMAIL FROM:<bob@example.net> SMTPUTF8\r\n")
    assert codes(s.feed("RCPT TO:<jos\u00e9@example.org>\r\n".encode())) == ["250 2.1.5"]


# ------------------------------------------------------------ SMTP smuggling

SMUGGLED = b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSpoofed\r\n"
VARIANTS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"]


@pytest.mark.parametrize("variant", VARIANTS, ids=repr)
def test_smuggling_variant_refused_on_port_25(variant: bytes) -> None:
    """CVE-2023-51764 class: a bare-LF/CR "end of data" never ends DATA; the message with
    a bare CR/LF is refused (500 5.5.2) and the hidden transaction is never executed."""
    s = new_session()
    s.feed(EHLO + TXN)
    out = s.feed(b"Subject: real\r\n\r\nreal" + variant + SMUGGLED + b".\r\n")
    assert codes(out) == ["500 5.5.2"]
    assert s.of(Message) == []
    assert len(s.of(MailFrom)) == 1  # the smuggled MAIL FROM was data, not a command
    transaction_works(s)


@pytest.mark.parametrize("variant", VARIANTS, ids=repr)
def test_smuggling_variant_normalized_on_submission(variant: bytes) -> None:
    s = new_session(Mode.MTA, normalize_bare_lf=True)
    s.feed(EHLO + TXN)
    out = s.feed(b"Subject: real\r\n\r\nreal" + variant + SMUGGLED + b".\r\n")
    assert codes(out) == ["250 2.0.0"]
    (m,) = s.of(Message)
    assert isinstance(m, Message)
    assert b"evil@example.net" in m.data  # kept as text of the one message
    assert m.data.count(b"\n") == m.data.count(b"\r\n") == m.data.count(b"\r")
    assert len(s.of(MailFrom)) == 1
    transaction_works(s)


@pytest.mark.parametrize("variant", VARIANTS, ids=repr)
def test_smuggling_variant_bytewise(variant: bytes) -> None:
    s = new_session()
    s.feed(EHLO + TXN)
    out = s.feed_bytewise(b"real" + variant + SMUGGLED + b".\r\n")
    assert codes(out) == ["500 5.5.2"]
    assert len(s.of(MailFrom)) == 1


def test_bare_lf_in_command_line_refused() -> None:
    s = new_session()
    out = s.feed(b"EHLO a\nNOOP\r\n")
    assert codes(out) == ["500 5.5.2", "250 2.0.0"]
    s.feed(EHLO)
    transaction_works(s)


# ------------------------------------------------------------ limits and sequence


def test_line_too_long_refused_and_session_continues() -> None:
    s = new_session()
    s.feed(EHLO)
    out = s.feed(b"NOOP " + b"x" * 5000 + b"\r\n")
    assert codes(out) == ["500 5.5.2"]
    out = s.feed_bytewise(b"NOOP " + b"y" * 1200 + b"\r\nNOOP\r\n")
    assert codes(out) == ["500 5.5.2", "250 2.0.0"]
    transaction_works(s)


def test_exactly_max_line_is_accepted() -> None:
    s = new_session()
    s.feed(EHLO)
    line = b"NOOP " + b"x" * (1000 - 7) + b"\r\n"
    assert len(line) == 1000
    assert codes(s.feed(line)) == ["250 2.0.0"]


@pytest.mark.parametrize(
    ("commands", "code"),
    [
        (b"MAIL FROM:<bob@example.net>\r\n", "503 5.5.1"),  # before EHLO
        (EHLO + b"RCPT TO:<alice@example.org>\r\n", "503 5.5.1"),
        (EHLO + b"DATA\r\n", "503 5.5.1"),
        (EHLO + b"MAIL FROM:<a@b.c>\r\nMAIL FROM:<a@b.c>\r\n", "503 5.5.1"),
        (EHLO + b"MAIL FROM:<a@b.c>\r\nDATA\r\n", "503 5.5.1"),
        (EHLO + b"FOO bar\r\n", "500 5.5.1"),
        (EHLO + b"\xff\xfe\r\n", "500 5.5.1"),
        (EHLO + b"EXPN staff\r\n", "502 5.5.1"),
        (EHLO + b"STARTTLS\r\n", "454 4.7.0"),
        (EHLO + b"AUTH PLAIN\r\n", "502 5.5.1"),
        (b"LHLO x\r\n", "500 5.5.1"),
        (b"EHLO\r\n", "501 5.5.4"),
        (EHLO + b"DATA x\r\n", "503 5.5.1"),
    ],
)
def test_out_of_order_or_unknown_then_next_transaction(commands: bytes, code: str) -> None:
    s = new_session()
    out = s.feed(commands)
    assert codes(out)[-1] == code
    s.feed(b"RSET\r\n" + EHLO)
    transaction_works(s)


def test_too_many_recipients_452() -> None:
    s = new_session(max_recipients=3)
    s.feed(EHLO + b"MAIL FROM:<bob@example.net>\r\n")
    out = s.feed(b"".join(b"RCPT TO:<u%d@example.org>\r\n" % i for i in range(5)))
    assert codes(out) == ["250 2.1.5"] * 3 + ["452 4.5.3"] * 2
    assert codes(s.feed(b"DATA\r\n" + BODY + b".\r\n")) == ["354", "250 2.0.0"]
    m = s.of(Message)[-1]
    assert isinstance(m, Message) and len(m.recipients) == 3
    transaction_works(s)


def test_size_parameter_over_limit_552_at_mail() -> None:
    s = new_session(max_message_bytes=1000)
    s.feed(EHLO)
    assert codes(s.feed(b"MAIL FROM:<bob@example.net> SIZE=1001\r\n")) == ["552 5.3.4"]
    assert codes(s.feed(b"MAIL FROM:<bob@example.net> SIZE=1000\r\n")) == ["250 2.1.0"]
    assert "250-SIZE 1000" in s.out.decode()


@pytest.mark.parametrize("bytewise", [False, True])
def test_oversize_data_552_and_session_continues(bytewise: bool) -> None:
    s = new_session(max_message_bytes=1000)
    s.feed(EHLO + TXN)
    big = (b"x" * 78 + b"\r\n") * 40 + b".\r\n"
    out = s.feed_bytewise(big) if bytewise else s.feed(big)
    assert codes(out) == ["552 5.3.4"]
    assert s.of(Message) == []
    transaction_works(s)


def test_oversize_data_in_one_chunk_is_refused() -> None:
    s = new_session(max_message_bytes=100)
    s.feed(EHLO + TXN)
    assert codes(s.feed(b"x" * 101 + b"\r\n.\r\n")) == ["552 5.3.4"]
    transaction_works(s)


def test_too_many_errors_421_and_close() -> None:
    s = new_session(max_errors=3)
    out = s.feed(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")
    assert codes(out) == ["500 5.5.1", "500 5.5.1", "500 5.5.1", "421 4.7.0"]
    assert s.conn.closed
    assert s.conn.data_to_send() == b""


def test_timeout_421_and_close() -> None:
    s = new_session()
    s.feed(EHLO + TXN + b"partial")
    assert s.conn.reading_message
    s.conn.timed_out()
    assert codes(s.conn.data_to_send()) == ["421 4.4.2"]
    assert s.conn.closed


def test_refuse_connection_421() -> None:
    s = new_session(greet=False)
    s.conn.refuse_connection()
    assert codes(s.conn.data_to_send()) == ["421 4.7.0"]
    assert s.conn.closed


def test_vrfy_help_noop_rset_quit() -> None:
    s = new_session()
    out = s.feed(EHLO + b"VRFY alice\r\nHELP\r\nNOOP\r\nMAIL FROM:<a@b.c>\r\nRSET\r\nQUIT\r\n")
    assert codes(out)[1:] == ["252 2.5.0", "214 2.0.0", "250 2.0.0", "250 2.1.0", "250 2.0.0", "221 2.0.0"]
    assert s.conn.closed


def test_reply_text_cannot_inject_lines() -> None:
    s = new_session()
    s.feed(b"EHLO evil\x01host\r\n")
    assert b"\x01" not in s.out
    assert Reply(550, "5.0.0", "a\rb").to_bytes() == b"550 5.0.0 a?b\r\n"


def test_misuse_raises() -> None:
    s = new_session()
    with pytest.raises(CoreMisuse):
        s.conn.accept()


# ------------------------------------------------------------ CHUNKING (RFC 3030)


def test_bdat_chunks_make_one_message() -> None:
    s = new_session()
    s.feed(EHLO + b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\n")
    part1 = b"Subject: x\r\n\r\n"
    part2 = b"line with bare \n and .\r\n.\r\n"
    out = s.feed(b"BDAT %d\r\n" % len(part1) + part1 + b"BDAT %d LAST\r\n" % len(part2))
    assert codes(out) == ["250 2.0.0"]
    out = s.feed_bytewise(part2)
    assert codes(out) == ["500 5.5.2"]  # bare LF also refused in BDAT on port 25
    s2 = new_session()
    s2.feed(EHLO + b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\n")
    part2 = b"..body\r\n.\r\n"
    out = s2.feed(b"BDAT %d\r\n" % len(part1) + part1 + b"BDAT %d LAST\r\n" % len(part2) + part2)
    assert codes(out) == ["250 2.0.0", "250 2.0.0"]
    (m,) = s2.of(Message)
    assert isinstance(m, Message) and m.chunking
    assert m.data == part1 + part2  # no dot-unstuffing in BDAT
    transaction_works(s2)


def test_bdat_zero_last_and_bdat_then_data_refused() -> None:
    s = new_session()
    s.feed(EHLO + b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\n")
    assert codes(s.feed(b"BDAT 3\r\nabcDATA\r\n")) == ["250 2.0.0", "503 5.5.1"]
    assert codes(s.feed(b"BDAT 0 LAST\r\n")) == ["250 2.0.0"]
    m = s.of(Message)[-1]
    assert isinstance(m, Message) and m.data == b"abc"


def test_bdat_without_transaction_consumes_its_octets() -> None:
    s = new_session()
    s.feed(EHLO)
    hidden = b"MAIL FROM:<evil@example.net>\r\n"
    out = s.feed(b"BDAT %d LAST\r\n" % len(hidden) + hidden)
    assert codes(out) == ["503 5.5.1"]
    assert s.of(MailFrom) == []
    transaction_works(s)


def test_bdat_oversize_552() -> None:
    s = new_session(max_message_bytes=30)
    s.feed(EHLO + b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\n")
    out = s.feed(b"BDAT 20\r\n" + b"1" * 20 + b"BDAT 20 LAST\r\n" + b"2" * 20)
    assert codes(out) == ["250 2.0.0", "552 5.3.4"]
    transaction_works(s)


def test_message_bytes_counts_what_the_message_holds() -> None:
    s = new_session()
    s.feed(EHLO + TXN)
    assert s.conn.message_bytes == 0
    s.feed(b"x" * 500 + b"\r\n")
    assert 500 <= s.conn.message_bytes <= 502
    s.feed(b".\r\n")
    assert s.conn.message_bytes == 0  # stored or not, the message is no longer held
    s.feed(b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nBDAT 300\r\n" + b"y" * 300)
    assert s.conn.message_bytes == 300  # BDAT chunks are held until LAST
    s.feed(b"BDAT 0 LAST\r\n")
    assert s.conn.message_bytes == 0


@pytest.mark.parametrize("bytewise", [False, True])
def test_refused_message_is_read_to_its_end_then_452_and_session_continues(bytewise: bool) -> None:
    s = new_session()
    s.feed(EHLO + TXN)
    s.feed(b"x" * 500 + b"\r\n")
    s.conn.refuse_message(C452_INSUFFICIENT_STORAGE)  # the adapter's memory budget
    assert s.conn.message_bytes == 0
    rest = (b"y" * 78 + b"\r\n") * 20 + b".\r\n"
    out = s.feed_bytewise(rest) if bytewise else s.feed(rest)
    assert codes(out) == ["452 4.3.1"]
    assert s.of(Message) == []
    transaction_works(s)
    # the next refusal for size is 552 again, not the 452 of before
    s2 = new_session(max_message_bytes=100)
    s2.feed(EHLO + TXN + b"z" * 50 + b"\r\n")
    s2.conn.refuse_message(C452_INSUFFICIENT_STORAGE)
    assert codes(s2.feed(b".\r\n")) == ["452 4.3.1"]
    s2.feed(TXN)
    assert codes(s2.feed(b"z" * 101 + b"\r\n.\r\n")) == ["552 5.3.4"]


def test_refused_bdat_message_takes_its_chunks_then_452() -> None:
    s = new_session()
    s.feed(EHLO + b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\n")
    assert codes(s.feed(b"BDAT 20\r\n" + b"1" * 20)) == ["250 2.0.0"]
    s.conn.refuse_message(C452_INSUFFICIENT_STORAGE)
    out = s.feed(b"BDAT 20\r\n" + b"2" * 20 + b"BDAT 20 LAST\r\n" + b"3" * 20)
    assert codes(out) == ["250 2.0.0", "452 4.3.1"]
    assert s.of(Message) == []
    transaction_works(s)


def test_refuse_message_outside_a_message_does_nothing() -> None:
    s = new_session()
    s.feed(EHLO)
    s.conn.refuse_message(C452_INSUFFICIENT_STORAGE)
    transaction_works(s)


@pytest.mark.parametrize("command", [b"BDAT\r\n", b"BDAT x\r\n", b"BDAT 1 NOTLAST\r\n"])
def test_bdat_syntax(command: bytes) -> None:
    s = new_session()
    s.feed(EHLO)
    assert codes(s.feed(command)) == ["501 5.5.4"]
    transaction_works(s)


# ------------------------------------------------------------ STARTTLS (RFC 3207)


def test_starttls_discards_pipelined_plaintext() -> None:
    """CVE-2011-0411 class: commands sent after STARTTLS in the same packet are dropped."""
    s = new_session(tls_available=True)
    s.feed(EHLO)
    out = s.feed(b"STARTTLS\r\nMAIL FROM:<injected@example.net>\r\nRCPT TO:<x@example.org>\r\n")
    assert codes(out) == ["220 2.0.0"]
    assert s.of(StartTls) and s.of(MailFrom) == []
    assert s.conn.tls_active and s.conn.state is State.CONNECTED
    # RFC 3207 §4.2: EHLO again; STARTTLS no longer offered.
    out = s.feed(b"MAIL FROM:<bob@example.net>\r\n")
    assert codes(out) == ["503 5.5.1"]
    out = s.feed(EHLO)
    assert b"STARTTLS" not in out
    transaction_works(s)
    assert codes(s.feed(b"STARTTLS\r\n")) == ["503 5.5.1"]


def test_starttls_rejected_by_adapter() -> None:
    def decide(conn: ServerConnection, event: Event) -> Reply | None:
        return Reply(454, "4.7.0", "TLS not available") if isinstance(event, StartTls) else None

    s = new_session(tls_available=True, decide=decide)
    s.feed(EHLO)
    assert codes(s.feed(b"STARTTLS\r\n")) == ["454 4.7.0"]
    transaction_works(s)


# ------------------------------------------------------------ AUTH (RFC 4954)

PLAIN = base64.b64encode(b"\0alice@example.org\0secret")


def auth_decider(password: bytes = b"secret") -> object:
    def decide(conn: ServerConnection, event: Event) -> Reply | None:
        if isinstance(event, Auth):
            if event.mechanism == "LOGIN" and event.initial_response is None:
                conn.auth_challenge(b"Username:")
                return _DEFERRED
            if event.initial_response is None:
                conn.auth_challenge(b"")
                return _DEFERRED
            ok = event.initial_response.endswith(b"\0" + password)
            return None if ok else Reply(535, "5.7.8", "no")
        if isinstance(event, AuthResponse):
            if isinstance(event.data, Cancelled):
                return Reply(501, "5.0.0", "Authentication cancelled")
            if event.data == b"alice@example.org":
                conn.auth_challenge(b"Password:")
                return _DEFERRED
            if isinstance(event.data, bytes) and event.data.endswith(password):
                return None
            return Reply(535, "5.7.8", "no")
        return None

    return decide


_DEFERRED = DEFER


def submission(**kw: object) -> Session:
    decide = auth_decider()

    def wrapped(conn: ServerConnection, event: Event) -> Reply | None:
        reply = decide(conn, event)  # type: ignore[operator]
        assert reply is None or isinstance(reply, Reply)
        return reply

    s = new_session(Mode.SUBMISSION, **kw)  # type: ignore[arg-type]
    s.decide = wrapped
    return s


def test_submission_requires_auth_before_mail() -> None:
    s = submission(tls_active=True)
    out = s.feed(EHLO)
    assert b"250-AUTH PLAIN LOGIN" in out
    assert codes(s.feed(b"MAIL FROM:<alice@example.org>\r\n")) == ["530 5.7.0"]
    assert codes(s.feed(b"AUTH PLAIN " + PLAIN + b"\r\n")) == ["235 2.7.0"]
    transaction_works(s)
    assert codes(s.feed(b"AUTH PLAIN " + PLAIN + b"\r\n")) == ["503 5.5.1"]


def test_auth_login_with_challenges() -> None:
    s = submission(tls_active=True)
    s.feed(EHLO)
    out = s.feed(b"AUTH LOGIN\r\n")
    assert out == b"334 VXNlcm5hbWU6\r\n"
    out = s.feed(base64.b64encode(b"alice@example.org") + b"\r\n")
    assert out == b"334 UGFzc3dvcmQ6\r\n"
    assert codes(s.feed(base64.b64encode(b"secret") + b"\r\n")) == ["235 2.7.0"]
    assert s.conn.authenticated


def test_auth_plain_without_initial_response_and_cancel() -> None:
    s = submission(tls_active=True)
    s.feed(EHLO)
    assert s.feed(b"AUTH PLAIN\r\n") == b"334 \r\n"
    assert codes(s.feed(b"*\r\n")) == ["501 5.0.0"]
    assert codes(s.feed(b"AUTH PLAIN\r\n" + PLAIN + b"\r\n")) == ["334", "235 2.7.0"]


def test_auth_failure_and_bad_base64() -> None:
    s = submission(tls_active=True)
    s.feed(EHLO)
    bad = base64.b64encode(b"\0alice@example.org\0wrong")
    assert codes(s.feed(b"AUTH PLAIN " + bad + b"\r\n")) == ["535 5.7.8"]
    assert codes(s.feed(b"AUTH PLAIN !!!\r\n")) == ["501 5.5.2"]
    assert codes(s.feed(b"AUTH CRAM-MD5\r\n")) == ["504 5.5.4"]
    assert not s.conn.authenticated
    assert codes(s.feed(b"AUTH PLAIN " + PLAIN + b"\r\n")) == ["235 2.7.0"]


def test_auth_needs_tls_unless_allowed() -> None:
    s = submission(tls_available=True)
    out = s.feed(EHLO)
    assert b"AUTH" not in out and b"STARTTLS" in out
    assert codes(s.feed(b"AUTH PLAIN " + PLAIN + b"\r\n")) == ["538 5.7.11"]
    s2 = submission(auth_without_tls=True)
    assert b"AUTH PLAIN LOGIN" in s2.feed(EHLO)
    assert codes(s2.feed(b"AUTH PLAIN " + PLAIN + b"\r\n")) == ["235 2.7.0"]


def test_auth_response_line_too_long() -> None:
    s = submission(tls_active=True)
    s.feed(EHLO)
    s.feed(b"AUTH LOGIN\r\n")
    out = s.feed(b"A" * 20000 + b"\r\n")
    assert codes(out)[0] == "535 5.7.8"
    assert codes(s.feed(b"AUTH PLAIN " + PLAIN + b"\r\n"))[-1] == "235 2.7.0"


def test_submission_normalizes_bare_lf() -> None:
    s = submission(tls_active=True)
    s.feed(EHLO + b"AUTH PLAIN " + PLAIN + b"\r\n" + TXN)
    assert codes(s.feed(b"a\nb\r\n.\r\n")) == ["250 2.0.0"]
    m = s.of(Message)[-1]
    assert isinstance(m, Message) and m.data == b"a\r\nb\r\n"


# ------------------------------------------------------------ LMTP (RFC 2033)


def test_lmtp_lhlo_and_one_reply_per_recipient() -> None:
    def decide(conn: ServerConnection, event: Event) -> Reply | None:
        if isinstance(event, Message):
            conn.respond_per_recipient(
                [Reply(250, "2.0.0", "ok"), Reply(452, "4.2.2", "Mailbox full")]
            )
            return _DEFERRED
        return None

    s = new_session(Mode.LMTP, decide=decide)
    assert s.out.startswith(b"220 mx.example.org LMTP")
    assert codes(s.feed(EHLO)) == ["500 5.5.1"]
    assert codes(s.feed(b"HELO x\r\n")) == ["500 5.5.1"]
    s.feed(b"LHLO client\r\n")
    out = s.feed(
        b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\n"
        b"RCPT TO:<carol@example.org>\r\nDATA\r\n" + BODY + b".\r\n"
    )
    assert codes(out) == ["250 2.1.0", "250 2.1.5", "250 2.1.5", "354", "250 2.0.0", "452 4.2.2"]


def test_lmtp_accept_and_size_refusal_reply_per_recipient() -> None:
    s = new_session(Mode.LMTP, max_message_bytes=50)
    s.feed(b"LHLO client\r\nMAIL FROM:<bob@example.net>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n")
    assert codes(s.feed(b"DATA\r\nhi\r\n.\r\n")) == ["354", "250 2.0.0", "250 2.0.0"]
    s.feed(b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\n")
    assert codes(s.feed(b"DATA\r\n" + b"x" * 60 + b"\r\n.\r\n")) == ["354", "552 5.3.4", "552 5.3.4"]


def test_decode_xtext() -> None:
    assert decode_xtext(b"a+2Bb+3D") == "a+b="
    assert decode_xtext(b"a+2b") is None
    assert decode_xtext(b"a=b") is None


def test_protocol_error_event_says_why() -> None:
    s = new_session()
    s.feed(EHLO + TXN + b"x\ny\r\n.\r\n")
    errors = s.of(ProtocolError)
    assert errors and isinstance(errors[-1], ProtocolError)
    assert errors[-1].reason == "bare CR or LF in message"


@given(st.text(max_size=40), st.sampled_from(["", "2.0.0"]))
def test_reply_bytes_match_the_rule_whatever_the_text(text: str, enhanced: str) -> None:
    """The printable fast path and the cache of encoded replies change nothing: every
    character below SPACE and DEL becomes "?", each line gets the code (RFC 5321 §4.2)."""
    lines = text.split("\n")
    expected = "".join(
        f"250{' ' if i == len(lines) - 1 else '-'}{enhanced + ' ' if enhanced else ''}"
        + "".join(c if c >= " " and c != "\x7f" else "?" for c in line) + "\r\n"
        for i, line in enumerate(lines)
    ).encode("utf-8")
    reply = Reply(250, enhanced, text)
    assert reply.to_bytes() == expected
    assert reply.to_bytes() == expected  # from the cache
