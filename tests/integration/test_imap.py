"""IMAP over real sockets on 127.0.0.1 with imaplib and imapclient (in threads), against the
real SqliteStore, delivery and Authenticator."""

from __future__ import annotations

import asyncio
import imaplib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trustme
from imapclient import IMAPClient  # type: ignore[import-untyped]

from postier.delivery import Delivery
from postier.imap.server import ImapServer, ImapSettings
from postier.store.sqlite import SqliteStore
from postier.store.types import Account
from tests.conftest import TEST_PASSWORD
from tests.integration.serving import (
    flood_without_reading,
    stop_while_closing,
    tls_material,
)
from tests.integration.test_imap_support import LOOPBACK, port_of, start_server

USER = "alice@example.org"
T = TypeVar("T")

SIMPLE = (
    b"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: lunch plans\r\n"
    b"Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.net>\r\n\r\n"
    b"Shall we meet at the harbour?\r\n"
)
MULTIPART = (
    b"From: carol@example.net\r\nTo: alice@example.org\r\nSubject: report attached\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
    b"preamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee the attachment\r\n"
    b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"aGVsbG8=\r\n--XX--\r\n"
)


async def in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


@pytest.fixture
async def server(store: SqliteStore, account: Account) -> AsyncIterator[ImapServer]:
    srv = await start_server(store)
    try:
        yield srv
    finally:
        await srv.stop()


def client(port: int) -> IMAPClient:
    c = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10)
    c.login(USER, TEST_PASSWORD)
    return c


def imaplib_login(port: int) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
    m.login(USER, TEST_PASSWORD)
    return m


async def test_login_list_select(server: ImapServer) -> None:
    port = port_of(server)

    def run() -> None:
        m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        assert "IMAP4REV2" in m.capabilities and "AUTH=PLAIN" in m.capabilities
        assert "LOGINDISABLED" not in m.capabilities  # loopback + allow_plaintext
        typ: str
        typ, _ = m.login(USER, TEST_PASSWORD)
        assert typ == "OK"
        typ, lines = m.list()
        assert typ == "OK"
        assert b'(\\HasNoChildren) "/" INBOX' in lines
        assert b'(\\HasNoChildren \\Sent) "/" Sent' in lines
        typ, data = m.select("INBOX")
        assert typ == "OK" and data == [b"0"]
        assert m.untagged_responses["UIDNEXT"] == [b"1"]
        m.create("Projects/2026")
        typ, lines = m.list('""', "Projects/%")
        assert lines == [b'(\\HasNoChildren) "/" Projects/2026']
        typ, lines = m.list('""', "Proj*")
        assert b'(\\HasChildren) "/" Projects' in lines
        assert m.logout()[0] == "BYE"

    await in_thread(run)


async def test_wrong_password_then_bad_command_session_continues(server: ImapServer) -> None:
    port = port_of(server)

    def run() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            assert f.readline().startswith(b"* OK [CAPABILITY ")
            for line, expected in [
                (b"a1 LOGIN alice@example.org wrong\r\n", b"a1 NO [AUTHENTICATIONFAILED]"),
                (b"a2 FROBNICATE\r\n", b"a2 BAD"),
                (b"a3 SELECT INBOX\r\n", b"a3 BAD"),  # not authenticated yet
                (b"a4 FETCH 1:* (FLAGS\r\n", b"a4 BAD"),
                (b"a5 NOOP\r\n", b"a5 OK"),
                (b"a6 LOGIN alice@example.org {%d+}\r\n" % len(TEST_PASSWORD) + TEST_PASSWORD.encode() + b"\r\n", b"a6 OK"),
                (b"a7 FETCH 1 FLAGS\r\n", b"a7 BAD"),  # no mailbox selected
            ]:
                f.write(line)
                f.flush()
                reply = f.readline()
                while reply.startswith(b"* "):
                    reply = f.readline()
                assert reply.startswith(expected), (line, reply)

    await in_thread(run)


async def test_append_then_fetch_byte_identical(server: ImapServer) -> None:
    port = port_of(server)

    def run() -> None:
        c = client(port)
        c.select_folder("INBOX")
        for raw in (SIMPLE, MULTIPART):
            reply = c.append("INBOX", raw, flags=("\\Draft", "$Work"))
            assert b"APPENDUID" in reply
        data = c.fetch([1, 2], ["BODY.PEEK[]", "RFC822.SIZE", "FLAGS", "ENVELOPE", "BODYSTRUCTURE"])
        assert data[1][b"BODY[]"] == SIMPLE
        assert data[2][b"BODY[]"] == MULTIPART
        assert data[2][b"RFC822.SIZE"] == len(MULTIPART)
        assert set(data[1][b"FLAGS"]) == {b"\\Draft", b"$Work", b"\\Recent"}  # PEEK: no \Seen
        assert data[1][b"ENVELOPE"].subject == b"lunch plans"
        assert data[2][b"BODYSTRUCTURE"].is_multipart
        parts = c.fetch([2], ["BODY.PEEK[1]", "BODY.PEEK[2]", "BODY.PEEK[HEADER.FIELDS (SUBJECT)]",
                              "BINARY.PEEK[2]", "BODY.PEEK[TEXT]<0.8>"])[2]
        assert parts[b"BODY[1]"] == b"see the attachment"
        assert parts[b"BODY[2]"] == b"aGVsbG8="
        assert parts[b"BINARY[2]"] == b"hello"
        assert parts[b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: report attached\r\n\r\n"
        assert parts[b"BODY[TEXT]<0>"] == b"preamble"
        # BODY[] without PEEK sets \Seen (RFC 9051 §6.4.5).
        c.fetch([1], ["BODY[TEXT]"])
        assert b"\\Seen" in c.get_flags([1])[1]
        c.logout()

    await in_thread(run)


async def test_text_search_through_the_word_index(
    server: ImapServer, delivery: Delivery, store: SqliteStore
) -> None:
    """Once the full-text index holds the messages, SEARCH answers from it: substrings
    inside words, across word boundaries and punctuation, case-insensitive, non-ASCII."""
    await delivery.deliver(SIMPLE, "bob@example.net", [USER])
    await delivery.deliver(MULTIPART, "carol@example.net", [USER])
    await delivery.deliver(
        b"From: Dora <dora@example.net>\r\nTo: alice@example.org\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nStra\xc3\x9fe 12-B, see the harbour-front.\r\n",
        "dora@example.net", [USER],
    )
    indexer = store.indexer
    assert indexer is not None and await asyncio.to_thread(indexer.wait_idle)
    marks = await store._read(lambda c: c.execute("SELECT min(indexed) FROM bodies").fetchone())
    assert marks == (1,)
    port = port_of(server)

    def run() -> None:
        c = client(port)
        c.select_folder("INBOX")
        assert c.search(["BODY", "ARBOU"]) == [1, 3]  # inside a word
        assert c.search(["BODY", "the harb"]) == [1, 3]  # across a space
        assert c.search(["BODY", "harbour?"]) == [1]
        assert c.search(["BODY", "our-fr"]) == [3]  # across punctuation
        assert c.search(["BODY", "see the"]) == [2, 3]
        assert c.search(["TEXT", "12-b, SEE"]) == [3]
        assert c.search(["BODY", "12-c"]) == []
        assert c.search(["FROM", "dora@exam"]) == [3]
        assert c.search(["TO", "alice@example.org"]) == [1, 2, 3]
        assert c.search(["BODY", "zanzibar"]) == []
        assert c.search(["SUBJECT", "grüße"], charset="UTF-8") == [3]
        assert c.search(["BODY", "STRAßE 12"], charset="UTF-8") == [3]
        c.logout()

    await in_thread(run)


async def test_text_search_with_odd_needles_answers_and_the_session_goes_on(
    server: ImapServer, delivery: Delivery, store: SqliteStore
) -> None:
    """Needles the word index cannot narrow (only separators) or that are huge (a 70 KB
    literal of 8,000 words) still get their exact answer; a command line too long gets a
    BAD and the session serves the next command."""
    await delivery.deliver(SIMPLE, "bob@example.net", [USER])
    indexer = store.indexer
    assert indexer is not None and await asyncio.to_thread(indexer.wait_idle)
    port = port_of(server)
    huge = " ".join(f"word{i}" for i in range(8000))

    def run() -> None:
        c = client(port)
        c.select_folder("INBOX")
        assert c.search(["BODY", "?"]) == [1]  # one separator: the short path
        assert c.search(["TEXT", ": <"]) == [1]  # separators only: every text checked
        assert c.search(["BODY", "@@@"]) == []
        with pytest.raises(Exception, match="line too long"):  # as one quoted line: BAD
            c.search(["BODY", huge])
        assert c.search(["BODY", "harbour"]) == [1]
        c.logout()
        m = imaplib_login(port)
        m.select("INBOX")
        m.literal = huge.encode()  # type: ignore[assignment]  # bytes at run time (typeshed: str)
        assert m.search(None, "BODY") == ("OK", [b""])
        m.literal = b"HARBOUR?"  # type: ignore[assignment]
        assert m.search(None, "BODY") == ("OK", [b"1"])
        m.logout()

    await in_thread(run)


async def test_store_flags_and_search(server: ImapServer, delivery: Delivery) -> None:
    await delivery.deliver(SIMPLE, "bob@example.net", [USER])
    await delivery.deliver(MULTIPART, "carol@example.net", [USER])
    port = port_of(server)

    def run() -> None:
        c = client(port)
        c.select_folder("INBOX")
        c.add_flags([2], ["\\Flagged", "$Important"])
        # \\Recent: this IMAP4rev1 session is the first to see them (RFC 3501 §2.3.2)
        assert set(c.get_flags([2])[2]) == {b"\\Flagged", b"$Important", b"\\Recent"}
        assert c.search(["FLAGGED"]) == [2]
        assert c.search(["UNFLAGGED"]) == [1]
        assert c.search(["SUBJECT", "lunch"]) == [1]
        assert c.search(["FROM", "carol"]) == [2]
        assert c.search(["BODY", "harbour"]) == [1]
        assert c.search(["OR", "SUBJECT", "lunch", "KEYWORD", "$Important"]) == [1, 2]
        assert c.search(["NOT", "SUBJECT", "lunch"]) == [2]
        sizes = c.fetch([1, 2], ["RFC822.SIZE"])
        assert c.search(["LARGER", str(sizes[1][b"RFC822.SIZE"])]) == [2]
        assert c.search(["SMALLER", str(sizes[2][b"RFC822.SIZE"])]) == [1]
        assert c.search(["UID", "2:*"]) == [2]
        assert c.search(["SINCE", "1-Jan-2020"]) == [1, 2]
        assert c.search(["SENTON", "2-Nov-2026"]) == [1]  # MULTIPART has no Date:
        assert c.search(["SAVEDSINCE", "1-Jan-2020", "SAVEDATESUPPORTED"]) == [1, 2]
        assert c.search(["SAVEDBEFORE", "1-Jan-2020"]) == []
        assert c.fetch([1], ["SAVEDATE"])[1][b"SAVEDATE"] is not None
        c.remove_flags([2], ["\\Flagged"])
        c.set_flags([1], ["\\Answered"])
        assert c.get_flags([1, 2]) == {1: (b"\\Answered", b"\\Recent"), 2: (b"$Important", b"\\Recent")}
        c.logout()

    await in_thread(run)


async def test_copy_and_move_report_copyuid(server: ImapServer, delivery: Delivery) -> None:
    for _ in range(3):
        await delivery.deliver(SIMPLE, "bob@example.net", [USER])
    port = port_of(server)

    def run() -> None:
        c = client(port)
        c.select_folder("INBOX")
        c.copy([1], "Archive")
        c.move([2, 3], "Trash")
        assert c.search(["ALL"]) == [1]
        assert c.folder_status("Trash", ["MESSAGES"])[b"MESSAGES"] == 2
        c.select_folder("Trash")
        assert c.fetch([1, 2], ["BODY.PEEK[]"])[1][b"BODY[]"].endswith(SIMPLE)  # after trace fields
        try:
            c.copy([1], "Nowhere")
        except Exception as exc:
            assert "TRYCREATE" in str(exc)
        else:
            raise AssertionError("COPY to a missing mailbox succeeded")
        c.logout()

    await in_thread(run)


async def test_expunge_seen_from_second_connection(server: ImapServer, delivery: Delivery) -> None:
    for _ in range(3):
        await delivery.deliver(SIMPLE, "bob@example.net", [USER])
    port = port_of(server)

    def run() -> None:
        a, b = client(port), client(port)
        a.use_uid = b.use_uid = False  # sequence numbers are the point here
        a.select_folder("INBOX")
        b.select_folder("INBOX")
        a.add_flags([2], ["\\Deleted"])
        assert a.expunge()[1] == [(2, b"EXPUNGE")]
        # B may not hear EXPUNGE during FETCH (RFC 9051 §7.5.1): message 3 keeps number 3.
        fetched = b.fetch([3], ["UID"])
        assert fetched[3][b"UID"] == 3
        assert all(b"EXPUNGE" not in r for r in _untagged(b))
        try:  # message 2 is a ghost until B may hear about it
            b.fetch([2], ["UID"])
        except Exception as exc:
            assert "EXPUNGEISSUED" in str(exc)
        else:
            raise AssertionError("FETCH of an expunged message succeeded")
        _, responses = b.noop()
        assert (2, b"EXPUNGE") in responses
        assert b.fetch([2], ["UID"])[2][b"UID"] == 3
        # A flag change by A reaches B as FETCH FLAGS.
        a.add_flags([1], ["\\Seen"])
        _, responses = b.noop()
        assert any(r[1] == b"FETCH" for r in responses)
        a.logout()
        b.logout()

    await in_thread(run)


def _untagged(c: IMAPClient) -> list[bytes]:
    return [str(x).encode() for x in c._imap.untagged_responses.get("EXPUNGE", [])]


async def test_idle_hears_delivery_within_one_second(
    server: ImapServer, delivery: Delivery
) -> None:
    port = port_of(server)
    c = await in_thread(lambda: client(port))
    await in_thread(lambda: c.select_folder("INBOX"))
    await in_thread(c.idle)
    started = time.monotonic()
    check = asyncio.ensure_future(in_thread(lambda: c.idle_check(timeout=5)))
    await asyncio.sleep(0.1)
    await delivery.deliver(SIMPLE, "bob@example.net", [USER])
    responses = await check
    assert (1, b"EXISTS") in responses
    assert time.monotonic() - started < 1.5
    await in_thread(c.idle_done)
    assert (await in_thread(lambda: c.search(["ALL"]))) == [1]
    await in_thread(c.logout)


async def test_authenticate_plain_with_sasl_ir(server: ImapServer) -> None:
    port = port_of(server)

    def run() -> None:
        c = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10)
        c.plain_login(USER, TEST_PASSWORD)
        assert b"INBOX" in [f[2].encode() for f in c.list_folders()]
        c.logout()

    await in_thread(run)


async def test_starttls_and_implicit_tls(store: SqliteStore, account: Account, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    srv = await start_server(
        store, ImapSettings(listen=(LOOPBACK,), tls_listen=(LOOPBACK,)), tls_context=ctx
    )
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    client_ctx.check_hostname = False

    def run() -> None:
        m = imaplib.IMAP4("127.0.0.1", port_of(srv), timeout=10)
        assert "STARTTLS" in m.capabilities
        m.starttls(client_ctx)
        assert "STARTTLS" not in m.capabilities
        assert m.login(USER, TEST_PASSWORD)[0] == "OK"
        m.logout()
        s = imaplib.IMAP4_SSL("127.0.0.1", port_of(srv, implicit_tls=True), ssl_context=client_ctx, timeout=10)
        assert s.login(USER, TEST_PASSWORD)[0] == "OK"
        s.logout()

    try:
        await in_thread(run)
    finally:
        await srv.stop()


def _raw_session(port: int, lines: list[bytes]) -> list[bytes]:
    """Send each chunk, collect everything the server answers until the last tag."""
    out: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        f = s.makefile("rwb")
        out.append(f.readline())
        for chunk in lines:
            f.write(chunk)
            f.flush()
            tag = chunk.split(b" ", 1)[0]
            while True:
                line = f.readline()
                out.append(line)
                if not line or line.startswith(tag + b" ") or line.startswith(b"+ "):
                    break
    return out


async def test_starttls_command_injection_is_discarded(
    store: SqliteStore, account: Account
) -> None:
    """CVE-2011-0411 class: commands pipelined after STARTTLS must not run inside TLS."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    srv = await start_server(store, tls_context=ctx)

    def run() -> None:
        with socket.create_connection(("127.0.0.1", port_of(srv)), timeout=10) as s:
            s.recv(4096)
            s.sendall(b"a STARTTLS\r\nb CAPABILITY\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += s.recv(1)
            assert reply.startswith(b"a OK")
            tls = client_ctx.wrap_socket(s, server_hostname="127.0.0.1")
            tls.sendall(b"c NOOP\r\n")
            answer = tls.recv(4096)
            assert answer.startswith(b"c OK"), answer  # "b CAPABILITY" was dropped
            tls.close()

    try:
        await in_thread(run)
    finally:
        await srv.stop()


async def test_append_literal_refused_before_login(server: ImapServer) -> None:
    out = await in_thread(lambda: _raw_session(port_of(server), [b"a APPEND INBOX {5}\r\n", b"b NOOP\r\n"]))
    assert out[1].startswith(b"a BAD") and out[2].startswith(b"b OK")


async def test_enable_imap4rev2_gives_esearch(server: ImapServer, delivery: Delivery) -> None:
    await delivery.deliver(SIMPLE, "bob@example.net", [USER])
    login = b"l LOGIN alice@example.org {%d+}\r\n%s\r\n" % (len(TEST_PASSWORD), TEST_PASSWORD.encode())
    out = await in_thread(
        lambda: _raw_session(
            port_of(server),
            [login, b"e ENABLE IMAP4rev2\r\n", b"s SELECT inbox\r\n", b"f SEARCH ALL\r\n",
             b"u UID SEARCH RETURN (COUNT MIN) UNSEEN\r\n", b"x LOGOUT\r\n"],
        )
    )
    text = b"".join(out)
    assert b"* ENABLED IMAP4rev2\r\n" in text
    assert b'* LIST () "/" INBOX\r\n' in text
    assert b'* ESEARCH (TAG "f") ALL 1\r\n' in text
    assert b'* ESEARCH (TAG "u") UID MIN 1 COUNT 1\r\n' in text
    assert b"* BYE" in text


async def test_authenticate_plain_exchange_and_login_mechanism(server: ImapServer) -> None:
    import base64

    plain = base64.b64encode(b"\0" + USER.encode() + b"\0" + TEST_PASSWORD.encode()) + b"\r\n"

    def run() -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(b"a AUTHENTICATE PLAIN\r\n")
            f.flush()
            first = f.readline()
            f.write(plain)
            f.flush()
            return [first, f.readline()]

    first, result = await in_thread(run)
    assert first.startswith(b"+")
    assert result.startswith(b"a OK [CAPABILITY ")

    def run_login() -> None:
        m = imaplib.IMAP4("127.0.0.1", port_of(server), timeout=10)
        answers = iter([USER.encode(), TEST_PASSWORD.encode()])
        assert m.authenticate("LOGIN", lambda _challenge: next(answers))[0] == "OK"
        m.logout()

    await in_thread(run_login)


async def test_idle_timeout_says_bye(store: SqliteStore, account: Account) -> None:
    srv = await start_server(store, ImapSettings(idle_timeout_s=0.3))

    def run() -> bytes:
        with socket.create_connection(("127.0.0.1", port_of(srv)), timeout=10) as s:
            f = s.makefile("rb")
            f.readline()
            return f.readline()

    try:
        assert (await in_thread(run)).startswith(b"* BYE")
    finally:
        await srv.stop()


async def test_a_client_that_never_reads_is_cut_off(store: SqliteStore, account: Account) -> None:
    """Commands sent without ever reading the responses fill the socket buffers: the
    server's write times out like a read, and the connection is cut off even though its
    last bytes can never be delivered (net/closing.py), not held while the client stays."""
    srv = await start_server(store, ImapSettings(idle_timeout_s=0.5, max_commands_per_s=0))
    try:
        # ~20 bytes of response per byte sent: the server's buffers fill fast
        flooded = await in_thread(lambda: flood_without_reading(port_of(srv), b"x CAPABILITY\r\n"))
        assert flooded < 40  # cut off by the server, not the client's 60 s
    finally:
        await srv.stop()


async def test_misbehaving_client_is_disconnected(server: ImapServer) -> None:
    def run() -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as s:
            s.sendall(b"x GARBAGE\r\n" * 30)
            return s.makefile("rb").readlines()

    lines = await in_thread(run)
    assert lines[-1].startswith(b"* BYE")
    assert sum(1 for line in lines if line.startswith(b"x BAD")) == 20


async def test_condstore_changedsince(server: ImapServer, delivery: Delivery) -> None:
    for _ in range(3):
        await delivery.deliver(SIMPLE, "bob@example.net", [USER])

    def run() -> None:
        c = client(port_of(server))
        status = c.select_folder("INBOX")
        highest = status[b"HIGHESTMODSEQ"]
        c.add_flags([2], ["\\Flagged"])
        changed = c.fetch([1, 2, 3], ["FLAGS"], modifiers=[f"CHANGEDSINCE {highest}"])
        assert list(changed) == [2]
        assert changed[2][b"MODSEQ"][0] > highest
        c._imap.untagged_responses.clear()
        typ, data = c._imap.search(None, "MODSEQ", str(highest + 1))
        assert typ == "OK" and data[0] == b"2 (MODSEQ %d)" % changed[2][b"MODSEQ"][0]
        c.logout()

    await in_thread(run)


async def test_quota_multiappend_and_overquota(store: SqliteStore, server: ImapServer) -> None:
    await store.set_quota(USER, 4096)

    def run() -> None:
        m = imaplib_login(port_of(server))
        typ, data = m.getquotaroot("INBOX")
        assert typ == "OK"
        assert data[1] == [b'"" (STORAGE 0 4)']
        # MULTIAPPEND (RFC 3502): two messages, one command, consecutive UIDs.
        tag = m._new_tag()
        m.send(tag + b" APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(SIMPLE), SIMPLE, len(SIMPLE), SIMPLE))
        typ, data = m._command_complete("APPEND", tag)
        assert typ == "OK" and b"[APPENDUID " in data[0] and b" 1:2]" in data[0]
        typ, data = m.append("INBOX", "", None, b"X: y\r\n\r\n" + b"z" * 5000)
        assert typ == "NO" and b"OVERQUOTA" in data[0]
        m.logout()

    await in_thread(run)


async def test_compress_deflate(server: ImapServer) -> None:
    import zlib

    def run() -> bytes:
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            f.write(b"l LOGIN alice@example.org {%d+}\r\n%s\r\n" % (len(TEST_PASSWORD), TEST_PASSWORD.encode()))
            f.flush()
            assert f.readline().startswith(b"l OK")
            f.write(b"c COMPRESS DEFLATE\r\n")
            f.flush()
            assert f.readline().startswith(b"c OK")
            out = zlib.compressobj(6, zlib.DEFLATED, -15)
            inflate = zlib.decompressobj(-15)
            s.sendall(out.compress(b"n NOOP\r\nx LIST \"\" INBOX\r\n") + out.flush(zlib.Z_SYNC_FLUSH))
            text = b""
            while b"x OK" not in text:
                text += inflate.decompress(s.recv(4096))
            return text

    text = await in_thread(run)
    assert b"n OK" in text and b'* LIST (\\HasNoChildren) "/" INBOX\r\n' in text


async def test_sort_and_thread(server: ImapServer, delivery: Delivery) -> None:
    first = SIMPLE
    reply = SIMPLE.replace(b"Subject: lunch plans", b"Subject: Re: lunch plans").replace(
        b"Message-ID: <1@example.net>", b"Message-ID: <3@example.net>\r\nIn-Reply-To: <1@example.net>"
    ).replace(b"02 Nov", b"03 Nov")
    for raw in (first, MULTIPART, reply):
        await delivery.deliver(raw, "bob@example.net", [USER])

    def run() -> None:
        c = client(port_of(server))
        c.select_folder("INBOX")
        assert c.sort(["SUBJECT"]) == [1, 3, 2]  # "lunch plans" (x2) < "report attached"
        assert c.sort(["REVERSE", "SIZE"])[0] == 2
        assert c.thread("REFERENCES") == ((1, 3), (2,))
        assert c.thread("ORDEREDSUBJECT") == ((1, 3), (2,))
        c.logout()

    await in_thread(run)


async def test_qresync_vanished(server: ImapServer, delivery: Delivery) -> None:
    for _ in range(3):
        await delivery.deliver(SIMPLE, "bob@example.net", [USER])
    login = b"l LOGIN alice@example.org {%d+}\r\n%s\r\n" % (len(TEST_PASSWORD), TEST_PASSWORD.encode())

    def run() -> None:
        other = client(port_of(server))
        other.select_folder("INBOX")
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as s:
            f = s.makefile("rwb")

            def command(line: bytes) -> bytes:
                f.write(line)
                f.flush()
                tag = line.split(b" ", 1)[0] + b" "
                text = b""
                while not (reply := f.readline()).startswith(tag):
                    text += reply
                assert reply.startswith(tag + b"OK"), reply
                return text + reply

            f.readline()
            command(login)
            assert b"* ENABLED QRESYNC" in command(b"e ENABLE QRESYNC\r\n")
            selected = command(b"s SELECT INBOX\r\n")
            uidvalidity = int(selected.split(b"[UIDVALIDITY ")[1].split(b"]")[0])
            modseq = int(selected.split(b"[HIGHESTMODSEQ ")[1].split(b"]")[0])
            other.add_flags([2], ["\\Deleted"])
            other.expunge()
            other.add_flags([3], ["\\Flagged"])
            noop = command(b"n NOOP\r\n")
            assert b"* VANISHED 2\r\n" in noop and b"EXPUNGE" not in noop
            command(b"u UNSELECT\r\n")
            again = command(b"r SELECT INBOX (QRESYNC (%d %d 1:3))\r\n" % (uidvalidity, modseq))
            assert b"* VANISHED (EARLIER) 2\r\n" in again
            assert b"* 2 FETCH (FLAGS (\\Flagged) UID 3 MODSEQ (" in again
            fetched = command(b"f UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)\r\n" % modseq)
            assert b"* VANISHED (EARLIER) 2\r\n" in fetched
        other.logout()

    await in_thread(run)


async def test_searchres_saved_result(server: ImapServer, delivery: Delivery) -> None:
    for raw in (SIMPLE, MULTIPART, SIMPLE):
        await delivery.deliver(raw, "bob@example.net", [USER])
    login = b"l LOGIN alice@example.org {%d+}\r\n%s\r\n" % (len(TEST_PASSWORD), TEST_PASSWORD.encode())
    out = await in_thread(
        lambda: _raw_session(
            port_of(server),
            [login, b"s SELECT INBOX\r\n", b"a SEARCH RETURN (SAVE) SUBJECT lunch\r\n",
             b"f FETCH $ (UID)\r\n", b"b SEARCH NOT UID $\r\n"],
        )
    )
    text = b"".join(out)
    assert b"* ESEARCH" not in text
    assert b"* 1 FETCH (UID 1)\r\n* 3 FETCH (UID 3)\r\nf OK" in text
    assert b"* SEARCH 2\r\n" in text


async def test_mailbox_management(server: ImapServer, delivery: Delivery) -> None:
    await delivery.deliver(SIMPLE, "bob@example.net", [USER])

    def run() -> None:
        c = client(port_of(server))
        assert c.namespace().personal == (("", "/"),)
        assert c.id_({"name": "test"}) == ((b"name", b"postier"),)
        c.create_folder("Projects/2026/Q1")
        names = {f[2] for f in c.list_folders()}
        assert {"Projects", "Projects/2026", "Projects/2026/Q1"} <= names
        c.rename_folder("Projects", "Old")
        names = {f[2] for f in c.list_folders()}
        assert {"Old", "Old/2026", "Old/2026/Q1"} <= names and "Projects/2026" not in names
        c.unsubscribe_folder("Old/2026")  # new mailboxes start subscribed
        assert "Old/2026" not in [f[2] for f in c.list_sub_folders("", "Old*")]
        c.subscribe_folder("Old/2026")
        assert "Old/2026" in [f[2] for f in c.list_sub_folders("", "Old*")]
        c.delete_folder("Old/2026/Q1")
        assert "Old/2026/Q1" not in {f[2] for f in c.list_folders()}
        status = c.folder_status("INBOX", ["MESSAGES", "UNSEEN", "SIZE", "HIGHESTMODSEQ", "UIDNEXT"])
        assert status[b"MESSAGES"] == 1 and status[b"UNSEEN"] == 1 and status[b"UIDNEXT"] == 2
        # RFC 9051 §6.3.6: renaming INBOX moves its messages and leaves INBOX empty.
        c.rename_folder("INBOX", "Before")
        assert c.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 0
        assert c.folder_status("Before", ["MESSAGES"])[b"MESSAGES"] == 1
        special = [f for f in c.list_folders() if f[2] == "Sent"]
        assert b"\\Sent" in special[0][0]
        c.logout()

    await in_thread(run)


async def test_examine_is_read_only_and_close_expunges(server: ImapServer, delivery: Delivery) -> None:
    for _ in range(2):
        await delivery.deliver(SIMPLE, "bob@example.net", [USER])

    def run() -> None:
        c = client(port_of(server))
        c.select_folder("INBOX", readonly=True)
        c.fetch([1], ["BODY[]"])
        assert c.get_flags([1])[1] == (b"\\Recent",)  # EXAMINE: no implicit \Seen
        try:
            c.add_flags([1], ["\\Flagged"])
        except Exception as exc:
            assert "READ-ONLY" in str(exc) or "read-only" in str(exc)
        else:
            raise AssertionError("STORE worked in a read-only mailbox")
        c.unselect_folder()
        c.select_folder("INBOX")
        c.add_flags([1], ["\\Deleted"])
        c.close_folder()  # RFC 9051 §6.4.1: expunges silently
        assert c.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 1
        c.logout()

    await in_thread(run)


async def test_command_rate_is_paced(store: SqliteStore, account: Account) -> None:
    srv = await start_server(store, ImapSettings(max_commands_per_s=50))

    def run() -> float:
        with socket.create_connection(("127.0.0.1", port_of(srv)), timeout=10) as s:
            f = s.makefile("rwb")
            f.readline()
            started = time.monotonic()
            f.write(b"".join(b"n%d NOOP\r\n" % i for i in range(75)))
            f.flush()
            while not f.readline().startswith(b"n74 OK"):
                pass
            return time.monotonic() - started

    try:
        assert await in_thread(run) >= 0.45  # 50 at once, then 25 at 50/s
    finally:
        await srv.stop()


async def test_list_extended_status_and_nonexistent_parents(
    store: SqliteStore, account: Account, server: ImapServer
) -> None:
    await store.create_mailbox(account.id, "Lists/postier")  # no "Lists" mailbox
    await store.create_mailbox(account.id, "Entwürfe")
    await store.set_subscribed(account.id, "Trash", False)
    login = b"l LOGIN alice@example.org {%d+}\r\n%s\r\n" % (len(TEST_PASSWORD), TEST_PASSWORD.encode())
    out = await in_thread(
        lambda: _raw_session(
            port_of(server),
            [login, b'a LIST "" %\r\n', b'b LIST "" "*" RETURN (STATUS (MESSAGES UIDNEXT))\r\n',
             b'c LIST (SUBSCRIBED RECURSIVEMATCH) "" %\r\n', b'd LIST (SPECIAL-USE) "" "*"\r\n',
             b"e ENABLE IMAP4rev2\r\n", b'f LIST "" %\r\n'],
        )
    )
    text = b"".join(out)
    assert b'* LIST (\\Noselect \\HasChildren) "/" Lists\r\n' in text
    assert b'* LIST (\\HasNoChildren) "/" Entw&APw-rfe\r\n' in text  # modified UTF-7
    assert b'* STATUS INBOX (MESSAGES 0 UIDNEXT 1)\r\n' in text
    assert b'* LIST (\\HasChildren) "/" Lists/postier\r\n' not in text
    assert b'* LIST (\\NonExistent \\HasChildren) "/" Lists ("CHILDINFO" ("SUBSCRIBED"))\r\n' in text
    assert b'* LIST (\\NonExistent \\HasChildren) "/" Lists\r\n' in text
    assert b'* LIST (\\HasNoChildren) "/" "Entw\xc3\xbcrfe"\r\n' in text or b"Entw\xc3\xbcrfe\r\n" in text
    specials = [line for line in out if line.startswith(b"* LIST (\\HasNoChildren \\")]
    assert len(specials) >= 5


async def test_start_imap_registers_listeners(store: SqliteStore, account: Account, tmp_path: Path) -> None:
    from dataclasses import replace

    from postier.app import App
    from postier.config import Config
    from postier.imap.service import start_imap
    from tests.integration.test_pop3_support import authenticator

    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    config = Config()
    config = replace(config, imap=replace(config.imap, listen=(LOOPBACK,), tls_listen=(LOOPBACK,)))
    app = App(config, tmp_path, store=store, authenticator=authenticator(store), tls=tls, hostname="mx.test")
    await start_imap(app)
    try:
        assert len(app.listening) == 2
        assert app.listening[0].startswith("IMAP        127.0.0.1:") and "(STARTTLS)" in app.listening[0]
        assert "(implicit TLS)" in app.listening[1]
        port = int(app.listening[0].split(":")[1].split(" ")[0])
        greeting = await in_thread(lambda: imaplib.IMAP4("127.0.0.1", port, timeout=10).welcome)
        assert b"mx.test" in greeting
    finally:
        app.store = None  # the fixture closes it
        await app.stop()


async def test_many_idle_sessions_all_hear_one_delivery(
    store: SqliteStore, account: Account, delivery: Delivery
) -> None:
    """Fan-out: 100 sessions IDLE on one INBOX; one delivery reaches every one within 1 s."""
    # 100 connections from 127.0.0.1: above the default per-IP limit.
    server = await start_server(store, ImapSettings(max_connections_per_ip=200))
    try:
        await _many_idle_sessions(port_of(server), delivery)
    finally:
        await server.stop()


async def _many_idle_sessions(port: int, delivery: Delivery) -> None:
    login = b"l LOGIN alice@example.org {%d+}\r\n%s\r\n" % (len(TEST_PASSWORD), TEST_PASSWORD.encode())
    sessions: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def until(reader: asyncio.StreamReader, prefix: bytes) -> None:
        while not (await reader.readline()).startswith(prefix):
            pass

    for _ in range(100):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(login + b"s SELECT INBOX\r\ni IDLE\r\n")
        sessions.append((reader, writer))
    for reader, _ in sessions:
        await asyncio.wait_for(until(reader, b"+ "), 10)
    started = time.monotonic()
    await delivery.deliver(SIMPLE, "bob@example.net", [USER])
    await asyncio.wait_for(asyncio.gather(*(until(r, b"* 1 EXISTS") for r, _ in sessions)), 5)
    assert time.monotonic() - started < 1.0
    for reader, writer in sessions:
        writer.write(b"DONE\r\n")
        await asyncio.wait_for(until(reader, b"i OK"), 5)
        writer.close()


async def test_authenticate_scram_sha_256(store: SqliteStore, account: Account, server: ImapServer) -> None:
    import base64

    import scramp  # type: ignore[import-untyped]

    from postier.auth.passwords import scram_credentials
    from tests.conftest import cheap_hash

    await store.set_password(USER, cheap_hash(TEST_PASSWORD), scram_credentials(TEST_PASSWORD, 4096))

    def run() -> bytes:
        client = scramp.ScramClient(["SCRAM-SHA-256"], USER, TEST_PASSWORD)
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as s:
            f = s.makefile("rwb")
            assert b"AUTH=SCRAM-SHA-256" in f.readline()
            first = base64.b64encode(client.get_client_first().encode())
            f.write(b"a AUTHENTICATE SCRAM-SHA-256 " + first + b"\r\n")  # SASL-IR
            f.flush()
            challenge = f.readline()
            client.set_server_first(base64.b64decode(challenge[2:].strip()).decode())
            f.write(base64.b64encode(client.get_client_final().encode()) + b"\r\n")
            f.flush()
            final = f.readline()
            client.set_server_final(base64.b64decode(final[2:].strip()).decode())  # verifies server
            f.write(b"\r\n")
            f.flush()
            return f.readline()

    assert (await in_thread(run)).startswith(b"a OK")


async def test_stop_says_bye(store: SqliteStore, account: Account) -> None:
    srv = await start_server(store)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(srv))
    await reader.readline()
    writer.write(b"n NOOP\r\n")
    assert (await reader.readline()).startswith(b"n OK")
    await srv.stop()
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"* BYE")
    writer.close()


async def test_logindisabled_until_starttls_when_loopback_plaintext_off(
    store: SqliteStore, account: Account
) -> None:
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    settings = ImapSettings(listen=(LOOPBACK,), allow_plaintext_auth_on_loopback=False)
    srv = await start_server(store, settings, tls_context=ctx)

    def run() -> None:
        m = imaplib.IMAP4("127.0.0.1", port_of(srv), timeout=10)
        assert "LOGINDISABLED" in m.capabilities and "AUTH=PLAIN" not in m.capabilities
        try:
            m.login(USER, TEST_PASSWORD)
        except imaplib.IMAP4.error as exc:
            assert "PRIVACYREQUIRED" in str(exc)
        else:
            raise AssertionError("LOGIN accepted in clear text")
        m.starttls(client_ctx)
        assert "LOGINDISABLED" not in m.capabilities and "AUTH=PLAIN" in m.capabilities
        assert m.login(USER, TEST_PASSWORD)[0] == "OK"
        # APPEND keeps the given internal date (RFC 9051 §6.3.12).
        when = imaplib.Time2Internaldate(1700000000)
        assert m.append("INBOX", "", when, SIMPLE)[0] == "OK"
        m.select("INBOX")
        _typ, data = m.fetch("1", "(INTERNALDATE)")
        assert isinstance(data[0], bytes)
        assert b'INTERNALDATE "14-Nov-2023 22:13:20 +0000"' in data[0]
        m.logout()

    try:
        await in_thread(run)
    finally:
        await srv.stop()


async def test_connections_over_the_per_ip_limit_get_a_bye_greeting(
    store: SqliteStore, account: Account
) -> None:
    """RFC 9051 §7.1.5: a BYE greeting refuses; a freed slot is usable again."""
    srv = await start_server(store, ImapSettings(max_connections_per_ip=2, max_connections=3))
    port = port_of(srv)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return reader, writer, await asyncio.wait_for(reader.readline(), 5)

    try:
        first = await connect()
        second = await connect()
        assert first[2].startswith(b"* OK ") and second[2].startswith(b"* OK ")
        reader, writer, greeting = await connect()
        assert greeting == b"* BYE [UNAVAILABLE] too many connections from your address\r\n"
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server
        writer.close()
        first[1].write(b"a LOGOUT\r\n")
        assert b"a OK" in await asyncio.wait_for(first[0].read(), 5)
        first[1].close()
        for _ in range(50):  # the server notices the close
            third = await connect()
            if third[2].startswith(b"* OK "):
                break
            third[1].close()
            await asyncio.sleep(0.05)
        assert third[2].startswith(b"* OK ")
        third[1].close()
        second[1].close()
    finally:
        await srv.stop()


async def test_connections_over_the_server_limit_get_a_bye_greeting(
    store: SqliteStore, account: Account
) -> None:
    srv = await start_server(store, ImapSettings(max_connections_per_ip=10, max_connections=1))
    port = port_of(srv)
    try:
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        assert (await asyncio.wait_for(r1.readline(), 5)).startswith(b"* OK ")
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(r2.readline(), 5) == b"* BYE [UNAVAILABLE] too many connections\r\n"
        w1.close()
        w2.close()
    finally:
        await srv.stop()


async def test_unknown_system_flag_is_refused_with_bad(server: ImapServer) -> None:
    """RFC 9051 §2.3.2: \\Bogus is no system flag; refused rather than silently dropped."""

    def client() -> None:
        m = imaplib_login(port_of(server))
        assert m.append("INBOX", "(\\Seen)", None, SIMPLE)[0] == "OK"
        with pytest.raises(imaplib.IMAP4.error, match="invalid system flag"):
            m.append("INBOX", "(\\Bogus)", None, SIMPLE)
        m.select("INBOX")
        with pytest.raises(imaplib.IMAP4.error, match="invalid system flag"):
            m.store("1", "+FLAGS", "(\\Bogus)")
        typ, data = m.store("1", "+FLAGS", "($Custom \\Flagged)")
        assert typ == "OK"
        assert isinstance(data[0], bytes) and b"$Custom" in data[0] and b"\\Flagged" in data[0]
        m.logout()

    await in_thread(client)


async def test_stop_while_a_session_closes_logs_nothing(
    store: SqliteStore, account: Account
) -> None:
    """A TLS session that ended (LOGOUT) waits in its close for the client's close_notify
    when the server stops: stop()'s cancel must not end the handler task cancelled,
    which Python 3.11's stream callback reports with a CancelledError traceback."""
    ctx, client_ctx = tls_material()
    srv = await start_server(store, ImapSettings(tls_listen=(LOOPBACK,)), tls_context=ctx)

    def stop() -> Awaitable[None]:
        return srv.stop(timeout_s=0.2)  # then cancelled

    port = port_of(srv, implicit_tls=True)
    reported = await stop_while_closing(stop, port, client_ctx, b"* OK", b"a LOGOUT\r\n", b"a OK")
    assert reported == []
