"""SMTP, submission and LMTP over real sockets on 127.0.0.1: smtplib (in a thread), raw
sockets for byte-exact cases, swaks from Debian for TLS + AUTH; the real SqliteStore,
Delivery and Authenticator behind the server."""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import smtplib
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import scramp

from postier.auth.passwords import scram_credentials
from postier.delivery import Delivery
from postier.store.sqlite import SqliteStore
from postier.store.types import Account
from tests.conftest import TEST_PASSWORD, cheap_hash
from tests.integration.serving import flood_without_reading
from tests.integration.test_smtp_support import HOST, Raw, Running, Tls, make_tls, start

T = TypeVar("T")
USER = "alice@example.org"
def stuffed(message: bytes) -> bytes:
    """RFC 5321 §4.5.2 dot-stuffing, as a client does before DATA."""
    return message.replace(b"\r\n.", b"\r\n..")


RECEIVED = re.compile(rb"^Received: from [^\r\n]*\r\n(\t[^\r\n]*\r\n)+")

MESSAGE = (
    b"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: test\r\n"
    b"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\nMessage-ID: <1@example.net>\r\n\r\n"
    b"Hello.\r\n.a line starting with a dot\r\n..two dots\r\n\r\n8bit: \xc3\xa9t\xc3\xa9\r\n"
)


@pytest.fixture(scope="module")
def tls() -> Tls:
    return make_tls()


@pytest.fixture
async def smtp(
    store: SqliteStore, delivery: Delivery, account: Account, tmp_path: Path, tls: Tls
) -> AsyncIterator[Running]:
    running = await start(store, delivery, tmp_path, tls)
    try:
        yield running
    finally:
        await running.server.stop()


async def in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


async def inbox(store: SqliteStore, address: str = USER) -> list[bytes]:
    account = await store.get_account(address)
    assert account is not None
    mailbox = await store.get_mailbox(account.id, "INBOX")
    if mailbox is None:
        return []
    out = []
    for info in await store.list_messages(mailbox.id):
        raw = await store.read_message(mailbox.id, info.uid)
        assert raw is not None
        out.append(raw)
    return out


def strip_trace(stored: bytes, recipient: str = USER, sender: str = "bob@example.net") -> bytes:
    """Check and remove Return-Path, Delivered-To and our Received: field."""
    prefix = f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode()
    assert stored.startswith(prefix), stored[:200]
    rest = stored[len(prefix) :]
    m = RECEIVED.match(rest)
    assert m, rest[:300]
    return rest[m.end() :]


def serves_next_client(port: int) -> None:
    """A fresh client gets a greeting and a full transaction through."""
    with smtplib.SMTP(HOST, port, timeout=10) as client:
        client.ehlo("next.example.net")
        refused = client.sendmail("bob@example.net", [USER], MESSAGE)
        assert refused == {}


# ------------------------------------------------------------ port 25


async def test_plain_message_stored_byte_identical(smtp: Running, store: SqliteStore) -> None:
    def send() -> None:
        with smtplib.SMTP(HOST, smtp.mta, timeout=10) as client:
            code, _ext = client.ehlo("client.example.net")
            assert code == 250
            for name in ("pipelining", "8bitmime", "smtputf8", "size", "enhancedstatuscodes",
                         "chunking", "dsn", "starttls"):
                assert client.has_extn(name), name
            assert not client.has_extn("auth")
            assert client.sendmail("bob@example.net", [USER], MESSAGE) == {}

    await in_thread(send)
    (stored,) = await inbox(store)
    assert strip_trace(stored) == MESSAGE
    assert b"by mx.example.org (postier) with ESMTP id" in stored
    assert b"for <alice@example.org>;" in stored


async def test_pipelined_transaction(smtp: Running, store: SqliteStore) -> None:
    def send() -> list[str]:
        c = Raw(smtp.mta)
        c.reply()
        c.send(b"EHLO client.example.net\r\n")
        assert b"PIPELINING" in c.reply()
        c.send(
            b"MAIL FROM:<bob@example.net> BODY=8BITMIME SIZE=1000\r\n"
            b"RCPT TO:<alice@example.org> NOTIFY=NEVER\r\nRCPT TO:<nobody@example.org>\r\n"
            b"RCPT TO:<someone@elsewhere.example>\r\nDATA\r\n"
        )
        codes = c.codes(5)
        c.send(stuffed(MESSAGE) + b".\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster@example.org>\r\nDATA\r\n")
        codes += c.codes(4)
        c.send(b"Subject: bounce\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        codes += c.codes(2)
        assert c.closed()
        return codes

    codes = await in_thread(send)
    assert codes == [
        "250 2.1.0", "250 2.1.5", "550 5.1.1", "554 5.7.1", "354",
        "250 2.0.0", "250 2.1.0", "250 2.1.5", "354",
        "250 2.0.0", "221 2.0.0",
    ]
    first, bounce = await inbox(store)
    assert strip_trace(first) == MESSAGE
    assert strip_trace(bounce, sender="") == b"Subject: bounce\r\n\r\nbody\r\n"


async def test_bdat_chunks(smtp: Running, store: SqliteStore) -> None:
    half = len(MESSAGE) // 2

    def send() -> list[str]:
        with smtplib.SMTP(HOST, smtp.mta, timeout=10) as client:
            client.ehlo("client.example.net")
            assert client.mail("bob@example.net")[0] == 250
            assert client.rcpt(USER)[0] == 250
            sock = client.sock
            assert sock is not None
            sock.sendall(b"BDAT %d\r\n" % half + MESSAGE[:half])
            first = client.getreply()
            sock.sendall(b"BDAT %d LAST\r\n" % (len(MESSAGE) - half) + MESSAGE[half:])
            last = client.getreply()
            return [str(first[0]), str(last[0])]

    assert await in_thread(send) == ["250", "250"]
    (stored,) = await inbox(store)
    assert strip_trace(stored) == MESSAGE


async def test_long_lines_and_a_big_message_stored_byte_identical(
    smtp: Running, store: SqliteStore
) -> None:
    """No line-length limit inside DATA (RFC 5321 §4.5.3.1.6 is broken by real mail and
    Postfix accepts it): a 100 KB line, then 3 MB without a CRLF, sent in one go, are
    stored unchanged; the next transaction on the connection is served."""
    long_line = b"<p>" + b"long html line, " * 6400 + b"</p>"
    blob = b"A" * (3 * 1024 * 1024)
    message = MESSAGE + long_line + b"\r\n.dot after it\r\n" + blob + b"\r\n"

    def send() -> list[str]:
        c = Raw(smtp.mta)
        c.reply()
        c.send(b"EHLO client.example.net\r\n")
        c.reply()
        c.send(b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        codes = c.codes(3)
        c.send(stuffed(message) + b".\r\nMAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        codes += c.codes(4)
        c.send(stuffed(MESSAGE) + b".\r\nQUIT\r\n")
        codes += c.codes(2)
        return codes

    assert await in_thread(send) == [
        "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0",
        "221 2.0.0",
    ]
    big, small = await inbox(store)
    assert strip_trace(big) == message
    assert strip_trace(small) == MESSAGE


async def test_relay_denied_and_unknown_user(smtp: Running) -> None:
    def send() -> None:
        with smtplib.SMTP(HOST, smtp.mta, timeout=10) as client:
            client.ehlo("client.example.net")
            client.mail("bob@example.net")
            code, msg = client.rcpt("victim@elsewhere.example")
            assert (code, msg[:5]) == (554, b"5.7.1")
            code, msg = client.rcpt("nobody@example.org")
            assert (code, msg[:5]) == (550, b"5.1.1")
            code, msg = client.rcpt("Postmaster")  # RFC 5321 §4.1.1.3, no domain
            assert code == 250
        serves_next_client(smtp.mta)

    await in_thread(send)


async def test_over_quota_refuses_whole_transaction(
    smtp: Running, store: SqliteStore
) -> None:
    await store.create_account("carol@example.org", cheap_hash("x"), None, quota_bytes=100)

    def send() -> None:
        with smtplib.SMTP(HOST, smtp.mta, timeout=10) as client:
            with pytest.raises(smtplib.SMTPDataError) as info:
                client.sendmail("bob@example.net", [USER, "carol@example.org"], MESSAGE)
            assert info.value.smtp_code == 452
            assert "4.2.2" in str(info.value.smtp_error)

    await in_thread(send)
    assert await inbox(store) == []  # not half-delivered
    assert await inbox(store, "carol@example.org") == []


VARIANTS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"]


async def test_smuggling_variants_refused_and_next_client_served(
    smtp: Running, store: SqliteStore
) -> None:
    """CVE-2023-51764 class: none of the fake terminators ends DATA; the hidden second
    transaction is never executed; each message with bare CR/LF is refused."""

    def send() -> list[list[str]]:
        results = []
        for variant in VARIANTS:
            c = Raw(smtp.mta)
            c.reply()
            c.send(b"EHLO client.example.net\r\n")
            c.reply()
            c.send(b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
            codes = c.codes(3)
            c.send(
                b"Subject: real\r\n\r\nreal" + variant
                + b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"
                + b"Subject: smuggled\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n"
            )
            codes += c.codes(2)
            results.append(codes)
            c.close()
        serves_next_client(smtp.mta)
        return results

    results = await in_thread(send)
    for codes in results:
        assert codes == ["250 2.1.0", "250 2.1.5", "354", "500 5.5.2", "221 2.0.0"]
    messages = await inbox(store)
    assert len(messages) == 1  # only the next client's message
    assert b"smuggled" not in messages[0]


async def test_smuggling_normalized_when_configured(
    store: SqliteStore, delivery: Delivery, account: Account, tmp_path: Path, tls: Tls
) -> None:
    running = await start(store, delivery, tmp_path, tls, bare_lf="normalize")
    try:
        def send() -> list[str]:
            c = Raw(running.mta)
            c.reply()
            c.send(b"EHLO c\r\nMAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
            codes = c.codes(4)
            c.send(b"Subject: real\r\n\r\nreal\n.\nMAIL FROM:<evil@example.net>\r\n.\r\nQUIT\r\n")
            return codes + c.codes(2)

        assert await in_thread(send) == ["250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "221 2.0.0"]
        (stored,) = await inbox(store)
        assert strip_trace(stored) == b"Subject: real\r\n\r\nreal\r\n\r\nMAIL FROM:<evil@example.net>\r\n"
    finally:
        await running.server.stop()


async def test_bad_input_then_next_client_served(smtp: Running) -> None:
    def send() -> list[str]:
        c = Raw(smtp.mta)
        c.reply()
        c.send(b"EHLO client.example.net\r\n")
        c.reply()
        c.send(b"NOOP " + b"x" * 2000 + b"\r\n")  # line too long
        c.send(b"RCPT TO:<alice@example.org>\r\n")  # out of order
        c.send(b"FROBNICATE\r\n")  # unknown
        c.send(b"MAIL FROM:<bob@example.net> SIZE=999999999999\r\n")  # oversize at MAIL
        codes = c.codes(4)
        c.send(b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nNOOP\r\n")
        codes += c.codes(3)
        c.close()
        serves_next_client(smtp.mta)
        return codes

    assert await in_thread(send) == [
        "500 5.5.2", "503 5.5.1", "500 5.5.1", "552 5.3.4", "250 2.1.0", "250 2.1.5", "250 2.0.0",
    ]


async def test_limits_recipients_size_errors(
    store: SqliteStore, delivery: Delivery, account: Account, tmp_path: Path, tls: Tls
) -> None:
    running = await start(
        store, delivery, tmp_path, tls, max_recipients=2, max_message_bytes=2000, max_errors=3
    )
    try:
        def send() -> list[str]:
            c = Raw(running.mta)
            c.reply()
            c.send(b"EHLO c\r\nMAIL FROM:<bob@example.net>\r\n")
            c.send(b"RCPT TO:<alice@example.org>\r\n" * 3 + b"DATA\r\n")
            codes = c.codes(6)
            c.send(b"x" * 3000 + b"\r\n.\r\n")  # oversize data
            codes.append(c.code())
            c.send(b"FOO\r\nFOO\r\nFOO\r\nNOOP\r\n")  # too many errors
            codes += c.codes(4)
            assert c.closed()
            serves_next_client(running.mta)
            return codes

        assert await in_thread(send) == [
            "250", "250 2.1.0", "250 2.1.5", "250 2.1.5", "452 4.5.3", "354", "552 5.3.4",
            "500 5.5.1", "500 5.5.1", "500 5.5.1", "421 4.7.0",
        ]
    finally:
        await running.server.stop()


async def test_messages_in_memory_over_the_budget_get_452_and_nothing_is_lost(
    store: SqliteStore, delivery: Delivery, account: Account, tmp_path: Path, tls: Tls
) -> None:
    running = await start(store, delivery, tmp_path, tls, max_buffered_bytes=100_000)
    line = b"x" * 998 + b"\r\n"
    try:
        def send() -> list[str]:
            first, second = Raw(running.mta), Raw(running.mta)
            for c in (first, second):
                c.reply()
                c.send(b"EHLO c\r\nMAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
                assert c.codes(4)[-1] == "354"
            first.send(b"Subject: first\r\n\r\n" + line * 80)  # 80 KB held, not ended
            time.sleep(0.5)
            second.send(b"Subject: second\r\n\r\n" + line * 80)  # 160 KB: over
            time.sleep(0.5)
            second.send(b".\r\n")
            codes = [second.code()]
            first.send(b".\r\n")  # alone it may use the whole budget and more
            codes.append(first.code())
            # both sessions go on; the refused sender retries and gets through
            second.send(b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
            assert second.codes(3)[-1] == "354"
            second.send(b"Subject: second again\r\n\r\n" + line * 80 + b".\r\n")
            codes.append(second.code())
            serves_next_client(running.mta)
            return codes

        assert await in_thread(send) == ["452 4.3.1", "250 2.0.0", "250 2.0.0"]
        subjects = sorted(m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in await inbox(store))
        assert subjects == [b"first", b"second again", b"test"]
        assert running.server._held_bytes == 0
    finally:
        await running.server.stop()


async def test_idle_timeout_421(
    store: SqliteStore, delivery: Delivery, account: Account, tmp_path: Path, tls: Tls
) -> None:
    running = await start(store, delivery, tmp_path, tls, command_timeout_s=0.3, data_timeout_s=0.3)
    try:
        def send() -> list[str]:
            c = Raw(running.mta)
            codes = [c.code()]
            c.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
            codes += c.codes(4)
            c.send(b"slow data")
            codes.append(c.code())  # the DATA timeout
            assert c.closed()
            serves_next_client(running.mta)
            return codes

        assert await in_thread(send) == ["220", "250", "250 2.1.0", "250 2.1.5", "354", "421 4.4.2"]
    finally:
        await running.server.stop()


async def test_a_short_command_timeout_after_a_long_data_timeout(
    store: SqliteStore, delivery: Delivery, account: Account, tmp_path: Path, tls: Tls
) -> None:
    """The read deadline moves with each read: after a message (read under the 30 s data
    timeout) an idle client is cut off after the 0.3 s command timeout, not 30 s."""
    running = await start(store, delivery, tmp_path, tls, command_timeout_s=0.3, data_timeout_s=30)
    try:
        def send() -> tuple[list[str], float]:
            c = Raw(running.mta)
            codes = [c.code()]
            c.send(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
            codes += c.codes(4)
            c.send(b"Subject: t\r\n\r\n")
            time.sleep(0.6)  # slow data: past the command timeout, well within the data one
            c.send(b"body\r\n.\r\n")
            codes.append(c.code())
            idle = time.monotonic()
            codes.append(c.code())  # the command timeout
            return codes, time.monotonic() - idle

        codes, waited = await in_thread(send)
        assert codes == ["220", "250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0", "421 4.4.2"]
        assert waited < 5
    finally:
        await running.server.stop()


async def test_a_client_that_never_reads_its_replies_times_out(
    store: SqliteStore, delivery: Delivery, account: Account, tmp_path: Path, tls: Tls
) -> None:
    """Commands pipelined without ever reading a reply fill the socket buffers; the
    server's write then waits, bounded by the same timeout as a read: it closes the
    connection (the replies cannot be read, so no 421 is asked for) and serves others."""
    running = await start(store, delivery, tmp_path, tls, command_timeout_s=0.5, data_timeout_s=0.5)
    try:
        def flood() -> float:
            seconds = flood_without_reading(running.mta, b"NOOP\r\n")
            serves_next_client(running.mta)
            return seconds

        assert await in_thread(flood) < 40  # cut off by the server, not the client's 60 s
    finally:
        await running.server.stop()


async def test_connection_limits_421(
    store: SqliteStore, delivery: Delivery, account: Account, tmp_path: Path, tls: Tls
) -> None:
    running = await start(store, delivery, tmp_path, tls, max_connections_per_ip=2)
    try:
        def send() -> list[str]:
            a, b = Raw(running.mta), Raw(running.mta)
            codes = [a.code(), b.code()]
            c = Raw(running.mta)
            codes.append(c.code())
            assert c.closed()
            a.send(b"QUIT\r\n")
            codes.append(a.code())
            a.close()
            return codes

        assert await in_thread(send) == ["220", "220", "421 4.7.0", "221 2.0.0"]
        for _ in range(50):  # the server notices the close
            if running.server.connection_count < 2:
                break
            await asyncio.sleep(0.02)
        await in_thread(lambda: serves_next_client(running.mta))
    finally:
        await running.server.stop()


async def test_stop_sends_421_to_idle_clients(smtp: Running) -> None:
    c = await in_thread(lambda: Raw(smtp.mta))
    assert await in_thread(c.code) == "220"
    for _ in range(50):
        if smtp.server.connection_count:
            break
        await asyncio.sleep(0.01)
    await smtp.server.stop()
    assert await in_thread(c.code) == "421 4.3.2"


# ------------------------------------------------------------ STARTTLS


async def test_starttls_then_message_with_tls_in_received(smtp: Running, store: SqliteStore) -> None:
    def send() -> None:
        with smtplib.SMTP(HOST, smtp.mta, timeout=10) as client:
            client.starttls(context=smtp.tls.client)
            client.ehlo("client.example.net")
            assert not client.has_extn("starttls")
            assert client.sendmail("bob@example.net", [USER], MESSAGE) == {}

    await in_thread(send)
    (stored,) = await inbox(store)
    assert strip_trace(stored) == MESSAGE
    assert re.search(rb"with ESMTPS id \w+\r\n\t\(version=TLSv1\.[23] cipher=\S+\)", stored)


async def test_starttls_discards_pipelined_plaintext(smtp: Running) -> None:
    """CVE-2011-0411 class: commands sent in clear text right behind STARTTLS are dropped."""

    def send() -> list[bytes]:
        c = Raw(smtp.mta)
        c.reply()
        c.send(b"EHLO c\r\n")
        c.reply()
        c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.net>\r\nRCPT TO:<alice@example.org>\r\n")
        assert c.reply().startswith(b"220 2.0.0")
        c.starttls(smtp.tls.client)
        c.send(b"NOOP\r\nMAIL FROM:<bob@example.net>\r\n")
        return c.replies(2)

    first, second = await in_thread(send)
    assert first.startswith(b"250 2.0.0")  # the NOOP's reply, no stray injected replies
    assert second.startswith(b"503 5.5.1")  # RFC 3207 §4.2: EHLO needed again


async def test_failed_tls_handshake_then_next_client_served(smtp: Running) -> None:
    def send() -> None:
        c = Raw(smtp.mta)
        c.reply()
        c.send(b"EHLO c\r\nSTARTTLS\r\n")
        c.replies(2)
        c.send(b"this is not a TLS ClientHello\r\n" * 10)
        assert c.closed()
        serves_next_client(smtp.mta)

    await in_thread(send)


# ------------------------------------------------------------ submission


async def test_submission_starttls_auth_plain_local_and_remote(
    smtp: Running, store: SqliteStore
) -> None:
    message = MESSAGE.replace(b"From: Bob <bob@example.net>", b"From: Alice <alice@example.org>")

    def send() -> None:
        with smtplib.SMTP(HOST, smtp.submission, timeout=10) as client:
            client.ehlo("client.example.net")
            code, _ = client.mail(USER)
            assert code == 530  # AUTH first
            client.rset()
            client.starttls(context=smtp.tls.client)
            client.ehlo("client.example.net")
            assert "PLAIN" in client.esmtp_features["auth"]
            client.login(USER, TEST_PASSWORD)
            refused = client.sendmail(
                USER, [USER, "friend@elsewhere.example"], message,
                rcpt_options=["NOTIFY=SUCCESS,FAILURE"],
            )
            assert refused == {}

    await in_thread(send)
    (stored,) = await inbox(store)
    assert strip_trace(stored, sender=USER) == message
    assert b"with ESMTPSA" in stored
    (entry,) = await store.list_queue()
    assert entry.sender == USER
    assert [r.address for r in entry.recipients] == ["friend@elsewhere.example"]
    assert entry.recipients[0].notify == "SUCCESS,FAILURE"


async def test_implicit_tls_auth_login_adds_message_id_and_date(
    smtp: Running, store: SqliteStore
) -> None:
    bare = b"From: alice@example.org\r\nTo: alice@example.org\r\nSubject: bare\r\n\r\nHi\r\n"

    def send_login() -> None:
        with smtplib.SMTP_SSL(HOST, smtp.submissions, timeout=10, context=smtp.tls.client) as client:
            client.ehlo("client.example.net")
            assert not client.has_extn("starttls")
            client.user, client.password = USER, TEST_PASSWORD
            client.auth("LOGIN", client.auth_login, initial_response_ok=False)  # type: ignore[arg-type]
            assert client.sendmail(USER, [USER], bare) == {}

    await in_thread(send_login)
    (stored,) = await inbox(store)
    body = strip_trace(stored, sender=USER)
    m = re.match(
        rb"Date: [^\r\n]+\r\nMessage-ID: <[0-9a-f]{32}@mx\.example\.org>\r\n", body
    )
    assert m, body[:200]
    assert body[m.end() :] == bare


async def test_auth_requires_tls_off_loopback(
    store: SqliteStore, delivery: Delivery, account: Account, tmp_path: Path, tls: Tls
) -> None:
    running = await start(store, delivery, tmp_path, tls, allow_plaintext_auth_on_loopback=False)
    try:
        def send() -> None:
            with smtplib.SMTP(HOST, running.submission, timeout=10) as client:
                client.ehlo("c")
                assert not client.has_extn("auth")
                code, msg = client.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHg=")
                assert (code, msg[:6]) == (538, b"5.7.11")
                client.starttls(context=running.tls.client)
                client.ehlo("c")
                client.login(USER, TEST_PASSWORD)

        await in_thread(send)
    finally:
        await running.server.stop()


async def test_auth_failure_then_success(smtp: Running) -> None:
    def send() -> None:
        with smtplib.SMTP(HOST, smtp.submission, timeout=10) as client:
            client.ehlo("c")
            with pytest.raises(smtplib.SMTPAuthenticationError) as info:
                client.login(USER, "wrong")
            assert info.value.smtp_code == 535
            client.login(USER, TEST_PASSWORD)

    await in_thread(send)


async def test_sender_must_match(smtp: Running, store: SqliteStore) -> None:
    await store.add_alias("sales@example.org", [USER])
    await store.add_alias("@example.org", [USER])  # a catch-all grants no sender rights
    own = MESSAGE.replace(b"From: Bob <bob@example.net>", b"From: Sales <sales@example.org>")

    def send() -> None:
        with smtplib.SMTP(HOST, smtp.submission, timeout=10) as client:
            client.ehlo("c")
            client.login(USER, TEST_PASSWORD)
            code, msg = client.mail("bob@example.net")
            assert (code, msg[:5]) == (553, b"5.7.1")
            code, _ = client.mail("random@example.org")
            assert code == 553
            client.rset()
            # MAIL FROM is ours, From: is somebody else's.
            with pytest.raises(smtplib.SMTPDataError) as info:
                client.sendmail("alice+tag@example.org", [USER], MESSAGE)
            assert info.value.smtp_code == 553
            assert client.sendmail("sales@example.org", [USER], own) == {}

    await in_thread(send)
    (stored,) = await inbox(store)
    assert strip_trace(stored, sender="sales@example.org") == own


# ------------------------------------------------------------ LMTP


def lmtp_transaction(c: Raw) -> list[str]:
    c.reply()
    c.send(b"LHLO mta.example.org\r\n")
    c.reply()
    c.send(
        b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\n"
        b"RCPT TO:<carol@example.org>\r\nRCPT TO:<nobody@example.org>\r\nDATA\r\n"
    )
    codes = c.codes(5)
    c.send(stuffed(MESSAGE) + b".\r\n")
    return codes + c.codes(2)


async def test_lmtp_one_reply_per_recipient(smtp: Running, store: SqliteStore) -> None:
    await store.create_account("carol@example.org", cheap_hash("x"), None, quota_bytes=100)
    codes = await in_thread(lambda: lmtp_transaction(Raw(smtp.lmtp)))
    assert codes == ["250 2.1.0", "250 2.1.5", "250 2.1.5", "550 5.1.1", "354", "250 2.0.0", "452 4.2.2"]
    (stored,) = await inbox(store)
    assert strip_trace(stored) == MESSAGE
    assert b"with LMTP" in stored


async def test_lmtp_over_unix_socket(smtp: Running, store: SqliteStore) -> None:
    await store.create_account("carol@example.org", cheap_hash("x"), None)

    def send() -> list[str]:
        c = Raw.__new__(Raw)
        c.sock = socket.socket(socket.AF_UNIX)
        c.sock.settimeout(10)
        c.sock.connect(smtp.lmtp_path)
        c.buf = b""
        return lmtp_transaction(c)

    assert await in_thread(send) == [
        "250 2.1.0", "250 2.1.5", "250 2.1.5", "550 5.1.1", "354", "250 2.0.0", "250 2.0.0",
    ]
    assert len(await inbox(store)) == 1
    assert len(await inbox(store, "carol@example.org")) == 1


# ------------------------------------------------------------ swaks (Debian)

swaks = shutil.which("swaks")


async def run_swaks(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "swaks", "--server", HOST, "--timeout", "10", "--helo", "swaks.example.net", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode("utf-8", "replace")


@pytest.mark.skipif(swaks is None, reason="swaks not installed (apt-get install swaks)")
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_swaks_starttls_auth(smtp: Running, store: SqliteStore, mechanism: str) -> None:
    rc, out = await run_swaks(
        "--port", str(smtp.submission), "--tls", "--auth", mechanism,
        "--auth-user", USER, "--auth-password", TEST_PASSWORD,
        "--from", USER, "--to", USER, "--header", f"From: {USER}",
    )
    assert rc == 0, out
    assert "<-  220 2.0.0 Ready to start TLS" in out
    assert "235 2.7.0" in out
    (stored,) = await inbox(store)
    assert b"with ESMTPSA" in stored and b"version=TLSv1." in stored


@pytest.mark.skipif(swaks is None, reason="swaks not installed (apt-get install swaks)")
async def test_swaks_implicit_tls_and_bad_password(smtp: Running, store: SqliteStore) -> None:
    rc, out = await run_swaks(
        "--port", str(smtp.submissions), "--tls-on-connect", "--auth", "PLAIN",
        "--auth-user", USER, "--auth-password", "wrong", "--from", USER, "--to", USER,
    )
    assert rc != 0 and "535 5.7.8" in out, out
    rc, out = await run_swaks(
        "--port", str(smtp.submissions), "--tls-on-connect", "--auth", "PLAIN",
        "--auth-user", USER, "--auth-password", TEST_PASSWORD, "--from", USER, "--to", USER,
        "--header", f"From: {USER}",
    )
    assert rc == 0, out
    assert len(await inbox(store)) == 1


@pytest.mark.skipif(swaks is None, reason="swaks not installed (apt-get install swaks)")
async def test_swaks_pipelining_port_25(smtp: Running, store: SqliteStore) -> None:
    rc, out = await run_swaks("--port", str(smtp.mta), "--pipeline", "--from", "bob@example.net", "--to", USER)
    assert rc == 0, out
    assert len(await inbox(store)) == 1


async def test_auth_scram_sha_256(smtp: Running, store: SqliteStore) -> None:
    """RFC 7677 over RFC 4954: server-final data in a 334, empty answer, then 235."""
    await store.set_password(USER, cheap_hash(TEST_PASSWORD), scram_credentials(TEST_PASSWORD, 4096))

    def send(password: str) -> list[str]:
        c = Raw(smtp.submission)
        c.reply()
        c.send(b"EHLO c\r\n")
        assert b"AUTH SCRAM-SHA-256 PLAIN LOGIN" in c.reply()
        client = scramp.ScramClient(["SCRAM-SHA-256"], USER, password)
        first = base64.b64encode(client.get_client_first().encode())
        c.send(b"AUTH SCRAM-SHA-256 " + first + b"\r\n")
        challenge = c.reply()
        assert challenge.startswith(b"334 ")
        client.set_server_first(base64.b64decode(challenge[4:].strip()).decode())
        c.send(base64.b64encode(client.get_client_final().encode()) + b"\r\n")
        final = c.reply()
        if not final.startswith(b"334 "):
            return [final.decode()[:9]]
        client.set_server_final(base64.b64decode(final[4:].strip()).decode())
        c.send(b"\r\n")
        return ["334", c.reply().decode()[:9]]

    assert await in_thread(lambda: send(TEST_PASSWORD)) == ["334", "235 2.7.0"]
    assert await in_thread(lambda: send("wrong")) == ["535 5.7.8"]


async def test_smtputf8_address_and_trace(smtp: Running, store: SqliteStore) -> None:
    """RFC 6531: a UTF-8 reverse-path with SMTPUTF8; Received says "with UTF8SMTP"."""

    def send() -> list[str]:
        c = Raw(smtp.mta)
        c.reply()
        c.send(
            "EHLO c\r\nMAIL FROM:<jos\u00e9@example.net> SMTPUTF8\r\n"
            "RCPT TO:<alice@example.org>\r\nDATA\r\n".encode()
        )
        codes = c.codes(4)
        c.send("From: jos\u00e9@example.net\r\nSubject: caf\u00e9\r\n\r\nhi\r\n.\r\n".encode())
        return [*codes, c.code()]

    assert await in_thread(send) == ["250", "250 2.1.0", "250 2.1.5", "354", "250 2.0.0"]
    (stored,) = await inbox(store)
    assert "Return-Path: <jos\u00e9@example.net>".encode() in stored
    assert b"with UTF8SMTP id" in stored


async def test_submission_without_from_refused(smtp: Running, store: SqliteStore) -> None:
    def send() -> None:
        with smtplib.SMTP(HOST, smtp.submission, timeout=10) as client:
            client.ehlo("c")
            client.login(USER, TEST_PASSWORD)
            with pytest.raises(smtplib.SMTPDataError) as info:
                client.sendmail(USER, [USER], b"Subject: no from\r\n\r\nhi\r\n")
            assert info.value.smtp_code == 550
            assert client.noop()[0] == 250  # the session goes on

    await in_thread(send)
    assert await inbox(store) == []
