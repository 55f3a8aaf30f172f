"""The POP3 core, bytes only: RFC 1939 / 2449 / 2595 / 5034 behaviour and every bad input."""

from __future__ import annotations

import base64

import pytest

from postier.auth.sasl import Cancelled
from postier.pop3.core import (
    MAX_COMMAND_LINE_BYTES,
    MAX_ERRORS,
    MAX_SASL_LINE_BYTES,
    ConnectionClosed,
    CoreMisuse,
    LoginFailure,
    NeedData,
    PasswordLogin,
    Paused,
    Pop3Connection,
    Quit,
    Retrieve,
    SaslResponse,
    SaslStart,
    StartTls,
    State,
    stuffed_chunks,
    top_end,
    unique_id,
)
from tests.unit.pop3.driver import (
    GOOD_PASSWORD,
    GOOD_USER,
    MESSAGES,
    UIDVALIDITY,
    logged_in,
    new_session,
)


def lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")[:-1]


# ------------------------------------------------------------ greeting, CAPA


def test_greeting_is_sent_first() -> None:
    a = new_session()
    assert bytes(a.out) == b"+OK postier POP3 server ready\r\n"


def test_capa_without_tls_hides_user_and_sasl_and_offers_stls() -> None:
    a = new_session(plaintext=False)
    reply = a.feed(b"CAPA\r\n")
    caps = lines(reply)
    assert caps[0].startswith(b"+OK") and caps[-1] == b"."
    for cap in (b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING",
                b"EXPIRE NEVER", b"IMPLEMENTATION postier", b"STLS"):
        assert cap in caps
    assert b"USER" not in caps
    assert not any(c.startswith(b"SASL") for c in caps)


def test_capa_with_plaintext_allowed_lists_user_and_sasl() -> None:
    a = new_session(plaintext=True, tls_available=False)
    caps = lines(a.feed(b"capa\r\n"))
    assert b"USER" in caps and b"SASL PLAIN LOGIN" in caps and b"STLS" not in caps


def test_capa_expire_days() -> None:
    conn = Pop3Connection(tls_active=True, tls_available=True, plaintext_auth_allowed=False,
                          expire_days=30)
    assert b"EXPIRE 30" in conn.capabilities()
    assert b"STLS" not in conn.capabilities()  # already TLS


def test_capa_in_transaction_omits_login_capabilities() -> None:
    a = logged_in()
    caps = lines(a.feed(b"CAPA\r\n"))
    assert b"TOP" in caps and b"USER" not in caps and b"STLS" not in caps


# ------------------------------------------------------------ login


def test_user_pass_login_then_stat_list_uidl() -> None:
    a = new_session()
    assert a.feed(f"USER {GOOD_USER}\r\n".encode()) == b"+OK send PASS\r\n"
    assert a.feed(f"PASS {GOOD_PASSWORD}\r\n".encode()) == b"+OK logged in\r\n"
    assert PasswordLogin(GOOD_USER, GOOD_PASSWORD) in a.events
    assert a.conn.state is State.TRANSACTION
    total = sum(len(m) for m in MESSAGES.values())
    assert a.feed(b"STAT\r\n") == f"+OK 3 {total}\r\n".encode()
    sizes = [len(m) for m in MESSAGES.values()]
    assert lines(a.feed(b"LIST\r\n")) == [
        f"+OK 3 messages ({total} octets)".encode(),
        f"1 {sizes[0]}".encode(), f"2 {sizes[1]}".encode(), f"3 {sizes[2]}".encode(), b".",
    ]
    assert a.feed(b"LIST 2\r\n") == f"+OK 2 {sizes[1]}\r\n".encode()
    uids = list(MESSAGES)
    assert lines(a.feed(b"UIDL\r\n")) == [b"+OK"] + [
        f"{n} {unique_id(UIDVALIDITY, uid)}".encode() for n, uid in enumerate(uids, 1)
    ] + [b"."]
    assert a.feed(b"UIDL 3\r\n") == f"+OK 3 {unique_id(UIDVALIDITY, uids[2])}\r\n".encode()


def test_password_may_contain_spaces() -> None:
    a = new_session()
    a.feed(b"USER bob\r\nPASS two words \r\n")
    assert PasswordLogin("bob", "two words ") in a.events


def test_wrong_password_stays_in_authorization() -> None:
    a = new_session()
    reply = a.feed(b"USER alice@example.org\r\nPASS nope\r\n")
    assert reply.endswith(b"-ERR [AUTH] authentication failed\r\n")
    assert a.conn.state is State.AUTHORIZATION
    assert a.feed(b"STAT\r\n").startswith(b"-ERR")


def test_three_failed_logins_disconnect() -> None:
    a = new_session()
    a.feed(b"USER x\r\nPASS a\r\nUSER x\r\nPASS b\r\nUSER x\r\nPASS c\r\nUSER x\r\n")
    assert a.closed is not None
    assert a.out.endswith(b"-ERR [AUTH] too many failed logins, closing connection\r\n")
    assert b"+OK send PASS\r\n" * 3 in bytes(a.out).replace(b"-ERR [AUTH] authentication failed\r\n", b"")


def test_refused_login_replies_and_closes() -> None:
    conn = Pop3Connection(tls_active=True, tls_available=True, plaintext_auth_allowed=False)
    conn.receive_data(b"USER a\r\nPASS b\r\nNOOP\r\n")
    assert isinstance(conn.next_event(), PasswordLogin)
    conn.login_failed(LoginFailure.REFUSED)
    assert isinstance(conn.next_event(), ConnectionClosed)
    assert conn.data_to_send().endswith(b"-ERR [AUTH] too many failed logins, try again later\r\n")


def test_in_use_reply_and_session_goes_on() -> None:
    a = new_session()
    a.in_use = True
    reply = a.feed(f"USER {GOOD_USER}\r\nPASS {GOOD_PASSWORD}\r\n".encode())
    assert reply.endswith(b"-ERR [IN-USE] maildrop is locked by another POP3 session\r\n")
    assert a.feed(b"QUIT\r\n") == b"+OK bye\r\n"


def test_pass_without_user() -> None:
    a = new_session()
    assert a.feed(b"PASS x\r\n") == b"-ERR send USER first\r\n"
    assert a.closed is None


def test_plaintext_login_refused_without_tls() -> None:
    a = new_session(plaintext=False)
    assert a.feed(b"USER alice\r\n").startswith(b"-ERR [AUTH] plaintext")
    assert a.feed(b"PASS x\r\n").startswith(b"-ERR [AUTH] plaintext")
    assert a.feed(b"AUTH PLAIN AGFAYg==\r\n").startswith(b"-ERR [AUTH] plaintext")
    assert not any(isinstance(e, PasswordLogin | SaslStart) for e in a.events)


def test_apop_is_not_offered() -> None:
    a = new_session()
    assert a.feed(b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n").startswith(b"-ERR APOP")


# ------------------------------------------------------------ AUTH (RFC 5034)


def plain(user: str = GOOD_USER, password: str = GOOD_PASSWORD) -> bytes:
    return base64.b64encode(f"\0{user}\0{password}".encode())


def test_auth_plain_with_initial_response() -> None:
    a = new_session()
    assert a.feed(b"AUTH PLAIN " + plain() + b"\r\n") == b"+OK logged in\r\n"
    assert SaslStart("PLAIN", f"\0{GOOD_USER}\0{GOOD_PASSWORD}".encode()) in a.events


def test_auth_plain_with_challenge() -> None:
    a = new_session()
    assert a.feed(b"auth plain\r\n") == b"+ \r\n"
    assert a.feed(plain() + b"\r\n") == b"+OK logged in\r\n"


def test_auth_empty_initial_response_is_equals_sign() -> None:
    conn = Pop3Connection(tls_active=True, tls_available=True, plaintext_auth_allowed=False)
    conn.receive_data(b"AUTH PLAIN =\r\n")
    assert conn.next_event() == SaslStart("PLAIN", b"")


def test_auth_cancelled_with_star() -> None:
    a = new_session()
    a.feed(b"AUTH LOGIN\r\n")
    assert a.out.endswith(b"+ " + base64.b64encode(b"Username:") + b"\r\n")
    assert a.feed(b"*\r\n") == b"-ERR [AUTH] authentication cancelled\r\n"
    assert SaslResponse(Cancelled()) in a.events
    assert a.conn.state is State.AUTHORIZATION


def test_auth_bad_base64_response() -> None:
    a = new_session()
    a.feed(b"AUTH PLAIN\r\n")
    assert a.feed(b"!!!notbase64\r\n") == b"-ERR [AUTH] invalid authentication exchange\r\n"


def test_auth_overlong_sasl_line_is_malformed() -> None:
    a = new_session()
    a.feed(b"AUTH PLAIN\r\n")
    reply = a.feed(b"A" * (MAX_SASL_LINE_BYTES + 10) + b"\r\n")
    assert reply == b"-ERR [AUTH] invalid authentication exchange\r\n"
    assert a.feed(b"NOOP\r\n").startswith(b"-ERR NOOP not allowed")


def test_auth_unknown_mechanism_and_bad_initial_response() -> None:
    a = new_session()
    assert a.feed(b"AUTH CRAM-MD5\r\n") == b"-ERR unsupported authentication mechanism\r\n"
    assert a.feed(b"AUTH PLAIN %%%\r\n") == b"-ERR [AUTH] invalid base64 in initial response\r\n"
    assert a.feed(b"AUTH PLAIN a b\r\n") == b"-ERR syntax error\r\n"


def test_auth_without_arguments_lists_mechanisms() -> None:
    a = new_session()
    assert a.feed(b"AUTH\r\n") == b"+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n"


# ------------------------------------------------------------ TRANSACTION


def test_retr_is_byte_stuffed_and_sized() -> None:
    a = logged_in()
    body = MESSAGES[11]
    reply = a.feed(b"RETR 2\r\n")
    assert reply == (
        f"+OK {len(body)} octets\r\n".encode()
        + b"Subject: two\r\nX: y\r\n\r\n..dot line\r\nline 2\r\n...two dots\r\nlast\r\n.\r\n"
    )
    assert Retrieve(2, 11, len(body)) in a.events


def test_retr_adds_final_crlf_when_missing() -> None:
    a = logged_in()
    assert a.feed(b"RETR 3\r\n").endswith(b"body without final newline\r\n.\r\n")


def test_top_sends_header_and_n_lines() -> None:
    a = logged_in()
    assert a.feed(b"TOP 2 0\r\n") == b"+OK top of message follows\r\nSubject: two\r\nX: y\r\n\r\n.\r\n"
    assert a.feed(b"TOP 2 2\r\n").endswith(b"\r\n\r\n..dot line\r\nline 2\r\n.\r\n")
    assert a.feed(b"TOP 2 999\r\n").endswith(b"last\r\n.\r\n")


def test_dele_marks_and_rset_unmarks() -> None:
    a = logged_in()
    assert a.feed(b"DELE 1\r\n") == b"+OK message 1 deleted\r\n"
    assert a.feed(b"DELE 1\r\n") == b"-ERR message 1 already deleted\r\n"
    assert a.feed(b"RETR 1\r\n") == b"-ERR message 1 already deleted\r\n"
    assert a.feed(b"LIST 1\r\n") == b"-ERR message 1 already deleted\r\n"
    assert a.feed(b"STAT\r\n").startswith(b"+OK 2 ")
    assert b"\r\n1 " not in a.feed(b"LIST\r\n")
    assert a.feed(b"RSET\r\n").startswith(b"+OK maildrop has 3 messages")
    assert a.feed(b"STAT\r\n").startswith(b"+OK 3 ")


def test_quit_in_transaction_enters_update_with_marked_uids() -> None:
    a = logged_in()
    a.feed(b"DELE 3\r\nDELE 1\r\nNOOP\r\n")
    assert a.feed(b"QUIT\r\n") == b"+OK bye\r\n"
    assert a.updates == [(10, 13)]
    assert a.closed is not None


def test_quit_in_authorization_enters_no_update() -> None:
    a = new_session()
    assert a.feed(b"QUIT\r\n") == b"+OK bye\r\n"
    assert a.closed is not None and not any(isinstance(e, Quit) for e in a.events)


def test_dropped_connection_deletes_nothing() -> None:
    a = logged_in()
    a.feed(b"DELE 1\r\nDELE 2\r\n")
    a.feed(b"")
    assert a.closed == ConnectionClosed("peer closed the connection")
    assert a.updates == [] and not any(isinstance(e, Quit) for e in a.events)


def test_message_expunged_meanwhile_gives_err_and_session_goes_on() -> None:
    a = logged_in()
    a.gone.add(11)
    assert a.feed(b"RETR 2\r\n") == b"-ERR message was deleted by another session\r\n"
    assert a.feed(b"TOP 2 1\r\n") == b"-ERR message was deleted by another session\r\n"
    assert a.feed(b"RETR 1\r\n").startswith(b"+OK")


def test_pipelined_commands_are_answered_in_order() -> None:
    a = logged_in()
    reply = a.feed(b"STAT\r\nRETR 1\r\nDELE 1\r\nNOOP\r\nUIDL 2\r\n")
    parts = reply.split(b"\r\n")
    assert parts[0].startswith(b"+OK 3")
    assert b"+OK message 1 deleted" in parts
    assert reply.endswith(f"+OK\r\n+OK 2 {unique_id(UIDVALIDITY, 11)}\r\n".encode())


def test_bare_lf_commands_are_accepted() -> None:
    a = logged_in()
    assert a.feed(b"NOOP\n") == b"+OK\r\n"


# ------------------------------------------------------------ bad input: session continues


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"STAT", b"-ERR STAT not allowed in the AUTHORIZATION state"),
        (b"RETR 1", b"-ERR RETR not allowed in the AUTHORIZATION state"),
        (b"NOOP", b"-ERR NOOP not allowed in the AUTHORIZATION state"),
        (b"XYZZY", b"-ERR unknown command"),
        (b"", b"-ERR unknown command"),
        (b"\x00\xff\xfe garbage", b"-ERR unknown command"),
        (b"RETRIEVE 1", b"-ERR unknown command"),
        (b"CAPA extra", b"-ERR syntax error"),
        (b"STLS now", b"-ERR syntax error"),
    ],
)
def test_bad_input_in_authorization(command: bytes, reply: bytes) -> None:
    a = new_session()
    assert a.feed(command + b"\r\n") == reply + b"\r\n"
    assert a.closed is None
    assert a.feed(b"CAPA\r\n").startswith(b"+OK")


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"USER alice", b"-ERR USER not allowed in the TRANSACTION state"),
        (b"STLS", b"-ERR STLS not allowed in the TRANSACTION state"),
        (b"AUTH PLAIN", b"-ERR AUTH not allowed in the TRANSACTION state"),
        (b"RETR 0", b"-ERR no such message"),
        (b"RETR 4", b"-ERR no such message"),
        (b"RETR -1", b"-ERR invalid message number"),
        (b"RETR +1", b"-ERR invalid message number"),
        (b"RETR abc", b"-ERR invalid message number"),
        (b"RETR 99999999999999999999", b"-ERR invalid message number"),
        (b"RETR", b"-ERR syntax error"),
        (b"RETR 1 2", b"-ERR syntax error"),
        (b"DELE 9", b"-ERR no such message"),
        (b"DELE", b"-ERR syntax error"),
        (b"LIST 0", b"-ERR no such message"),
        (b"LIST 1 2", b"-ERR syntax error"),
        (b"UIDL x", b"-ERR invalid message number"),
        (b"TOP 1", b"-ERR syntax error"),
        (b"TOP 1 x", b"-ERR invalid number of lines"),
        (b"TOP 1 -3", b"-ERR invalid number of lines"),
        (b"TOP 7 1", b"-ERR no such message"),
        (b"STAT 1", b"-ERR syntax error"),
        (b"NOOP x", b"-ERR syntax error"),
        (b"RSET x", b"-ERR syntax error"),
        (b"\x80\x81\x82", b"-ERR unknown command"),
        (b"RETR\x001", b"-ERR unknown command"),
    ],
)
def test_bad_input_in_transaction(command: bytes, reply: bytes) -> None:
    a = logged_in()
    assert a.feed(command + b"\r\n") == reply + b"\r\n"
    assert a.closed is None
    assert a.feed(b"STAT\r\n").startswith(b"+OK 3 ")


def test_overlong_line_is_refused_and_session_continues() -> None:
    a = logged_in()
    long_line = b"NOOP " + b"x" * MAX_COMMAND_LINE_BYTES
    reply = a.feed(long_line[:300])
    reply += a.feed(long_line[300:] + b"\r\nNOOP\r\n")
    assert reply == b"-ERR line too long\r\n+OK\r\n"


def test_overlong_line_in_one_piece() -> None:
    a = new_session()
    assert a.feed(b"USER " + b"a" * 5000 + b"\r\nCAPA\r\n").startswith(b"-ERR line too long\r\n+OK")


def test_line_at_the_limit_is_accepted() -> None:
    a = logged_in()
    line = b"NOOP" + b" " * (MAX_COMMAND_LINE_BYTES - 6) + b"\r\n"
    assert len(line) == MAX_COMMAND_LINE_BYTES
    assert a.feed(line) == b"-ERR syntax error\r\n"  # parsed, not "too long"


def test_too_many_errors_disconnect() -> None:
    a = new_session()
    a.feed(b"BOGUS\r\n" * (MAX_ERRORS + 5))
    assert a.closed == ConnectionClosed("too many bad commands")
    assert bytes(a.out).count(b"-ERR unknown command\r\n") == MAX_ERRORS - 1
    assert a.out.endswith(b"-ERR too many bad commands, closing connection\r\n")
    assert isinstance(a.conn.next_event(), ConnectionClosed)


# ------------------------------------------------------------ STLS (RFC 2595)


def test_stls_then_login_allowed_and_pipelined_injection_discarded() -> None:
    a = new_session(plaintext=False)
    reply = a.feed(b"STLS\r\nUSER injected\r\nPASS injected\r\n")
    assert reply == b"+OK begin TLS negotiation\r\n"
    assert StartTls() in a.events
    assert a.conn.discarded_after_stls == len(b"USER injected\r\nPASS injected\r\n")
    assert not any(isinstance(e, PasswordLogin) for e in a.events)
    caps = lines(a.feed(b"CAPA\r\n"))
    assert b"STLS" not in caps and b"USER" in caps
    assert a.feed(b"STLS\r\n") == b"-ERR TLS is already active\r\n"
    a.feed(f"USER {GOOD_USER}\r\nPASS {GOOD_PASSWORD}\r\n".encode())
    assert a.conn.state is State.TRANSACTION


def test_user_before_stls_is_forgotten() -> None:
    a = new_session(plaintext=True)
    a.feed(b"USER alice\r\nSTLS\r\n")
    assert a.feed(b"PASS x\r\n") == b"-ERR send USER first\r\n"


def test_stls_unavailable() -> None:
    a = new_session(tls_available=False)
    assert a.feed(b"STLS\r\n") == b"-ERR STLS is not available\r\n"


# ------------------------------------------------------------ the decision protocol


def test_paused_until_decision_and_misuse_raises() -> None:
    conn = Pop3Connection(tls_active=True, tls_available=False, plaintext_auth_allowed=False)
    conn.receive_data(b"USER a\r\nPASS b\r\nCAPA\r\n")
    assert isinstance(conn.next_event(), PasswordLogin)
    assert conn.next_event() == Paused()
    with pytest.raises(CoreMisuse):
        conn.update_done()
    with pytest.raises(CoreMisuse):
        list(conn.send_message(b"x"))
    conn.login_failed(LoginFailure.CREDENTIALS)
    assert conn.next_event() == NeedData()
    from tests.unit.pop3.driver import maildrop

    with pytest.raises(CoreMisuse):
        conn.login_succeeded(maildrop())


def test_temporary_failure_on_retr() -> None:
    conn = Pop3Connection(tls_active=True, tls_available=False, plaintext_auth_allowed=False)
    conn.receive_data(f"USER {GOOD_USER}\r\nPASS x\r\nRETR 1\r\nNOOP\r\n".encode())
    from tests.unit.pop3.driver import maildrop

    assert isinstance(conn.next_event(), PasswordLogin)
    conn.login_succeeded(maildrop())
    assert isinstance(conn.next_event(), Retrieve)
    conn.command_failed()
    assert conn.next_event() == NeedData()
    assert conn.data_to_send().endswith(b"-ERR [SYS/TEMP] temporary failure, try again later\r\n+OK\r\n")


def test_byte_by_byte_gives_the_same_transcript() -> None:
    script = (
        f"CAPA\r\nUSER {GOOD_USER}\r\nPASS {GOOD_PASSWORD}\r\nSTAT\r\nLIST\r\nUIDL\r\n"
        "RETR 2\r\nTOP 1 0\r\nDELE 2\r\nBOGUS\r\nQUIT\r\n"
    ).encode()
    whole = new_session()
    whole.feed(script)
    single = new_session()
    for i in range(len(script)):
        single.feed(script[i:i + 1])
    assert bytes(whole.out) == bytes(single.out)
    assert whole.updates == single.updates == [(11,)]


# ------------------------------------------------------------ framing helpers


def test_unique_id_is_stable_and_printable() -> None:
    uid = unique_id(0xDEADBEEF, 42)
    assert uid == unique_id(0xDEADBEEF, 42) == "deadbeef0000002a"
    assert unique_id(1, 42) != uid
    assert all(0x21 <= ord(c) <= 0x7E for c in uid) and 1 <= len(uid) <= 70


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 64 * 1024])
def test_stuffing_is_independent_of_chunk_size(chunk: int) -> None:
    data = b".start\r\n..\r\nmid.dle\r\n.\r\n.x\r\nend"
    out = b"".join(stuffed_chunks(data, chunk_bytes=chunk))
    assert out == b"..start\r\n...\r\nmid.dle\r\n..\r\n..x\r\nend\r\n.\r\n"


def test_stuffing_empty_message() -> None:
    assert b"".join(stuffed_chunks(b"")) == b".\r\n"


def test_top_end_variants() -> None:
    msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3"
    assert msg[:top_end(msg, 0)] == b"A: 1\r\nB: 2\r\n\r\n"
    assert msg[:top_end(msg, 2)] == b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n"
    assert top_end(msg, 5) == len(msg)
    assert top_end(b"A: 1\r\nB: 2\r\n", 3) == len(b"A: 1\r\nB: 2\r\n")
    assert top_end(b"\r\nbody\r\n", 0) == 2
