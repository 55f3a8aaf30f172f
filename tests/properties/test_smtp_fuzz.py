"""Fuzz invariant of the SMTP core: any input, whole or byte by byte, gives events and
replies — never an exception — and the output is only well-formed reply lines."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from postier.smtp.core import (
    Auth,
    AuthResponse,
    Closed,
    CoreSettings,
    Ehlo,
    Event,
    Helo,
    MailFrom,
    Message,
    Mode,
    NeedData,
    Paused,
    RcptTo,
    Reply,
    ServerConnection,
    StartTls,
)

FRAGMENTS = st.sampled_from(
    [
        b"EHLO x\r\n", b"HELO x\r\n", b"LHLO x\r\n", b"MAIL FROM:<a@b.c>", b"MAIL FROM:<>",
        b" SIZE=100", b" BODY=8BITMIME", b" SMTPUTF8", b" RET=FULL", b" ENVID=a+2B",
        b"RCPT TO:<d@e.f>", b" NOTIFY=NEVER", b" ORCPT=rfc822;a+40b", b"DATA\r\n", b"BDAT 5",
        b" LAST", b"BDAT 0 LAST\r\n", b"RSET\r\n", b"NOOP\r\n", b"QUIT\r\n", b"VRFY x\r\n",
        b"STARTTLS\r\n", b"AUTH PLAIN", b"AUTH LOGIN\r\n", b" AGFsaWNlAHB3\r\n", b"*\r\n",
        b"\r\n", b"\n", b"\r", b".", b"\r\n.\r\n", b"\n.\n", b"\r.\r", b"..", b"\x00", b"\xff",
        b"<", b">", b":", b"=", b"+", b"@", b"x" * 1100, "é".encode(),
    ]
)
INPUTS = st.lists(st.one_of(FRAGMENTS, st.binary(max_size=40)), max_size=40).map(b"".join)
REPLY_LINE = re.compile(rb"^[2-5][0-9][0-9][ -].*$")


def run(mode: Mode, chunks: list[bytes], reject_every: int, tls: bool = True) -> bytes:
    conn = ServerConnection(
        CoreSettings(
            mode=mode,
            max_message_bytes=2000,
            max_recipients=3,
            normalize_bare_lf=mode is Mode.SUBMISSION,
            auth_mechanisms=("PLAIN", "LOGIN"),
            require_auth=mode is Mode.SUBMISSION,
        ),
        tls_available=tls,
        auth_without_tls=True,
    )
    conn.greeting()
    out = bytearray(conn.data_to_send())
    n = 0
    for chunk in chunks:
        conn.receive_data(chunk)
        while True:
            event: Event = conn.next_event()
            if isinstance(event, NeedData | Closed):
                break
            assert not isinstance(event, Paused)
            if isinstance(event, Helo | Ehlo | MailFrom | RcptTo | Message | StartTls | Auth | AuthResponse):
                n += 1
                if isinstance(event, Auth) and n % 3 == 0:
                    conn.auth_challenge(b"Username:")
                elif isinstance(event, Message) and mode is Mode.LMTP and n % 2:
                    conn.respond_per_recipient([Reply(250, "2.0.0", "ok")] * len(event.recipients))
                elif n % reject_every == 0:
                    conn.reject(Reply(550, "5.0.0", "no"))
                else:
                    conn.accept()
        out += conn.data_to_send()
    return bytes(out)


def check_output(out: bytes) -> None:
    assert out == b"" or out.endswith(b"\r\n")
    for line in out.split(b"\r\n")[:-1]:
        assert REPLY_LINE.match(line) or line.startswith(b"334 "), line


@settings(max_examples=300, deadline=None)
@given(data=INPUTS, mode=st.sampled_from(list(Mode)), reject_every=st.integers(1, 5))
def test_any_input_whole_gives_only_replies(data: bytes, mode: Mode, reject_every: int) -> None:
    check_output(run(mode, [data], reject_every))


@settings(max_examples=150, deadline=None)
@given(data=INPUTS, mode=st.sampled_from(list(Mode)), reject_every=st.integers(1, 5))
def test_any_input_byte_by_byte_same_as_whole(data: bytes, mode: Mode, reject_every: int) -> None:
    # Without STARTTLS: accepting it discards whatever was buffered, by design.
    whole = run(mode, [data], reject_every, tls=False)
    bytewise = run(mode, [data[i : i + 1] for i in range(len(data))], reject_every, tls=False)
    check_output(bytewise)
    assert whole == bytewise
