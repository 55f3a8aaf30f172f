"""POP3 over real sockets on 127.0.0.1 with the stdlib poplib client (in a thread), against
the real SqliteStore, delivery and Authenticator."""

from __future__ import annotations

import asyncio
import base64
import poplib
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import pytest

from postier.delivery import Delivery
from postier.pop3.core import unique_id
from postier.pop3.server import Pop3Server, Pop3Settings
from postier.store.sqlite import SqliteStore
from postier.store.types import Account, FlagMode, Uid
from tests.conftest import TEST_PASSWORD, cheap_hash
from tests.integration.serving import (
    flood_without_reading,
    stop_while_closing,
    tls_material,
)
from tests.integration.test_pop3_support import LOOPBACK, port_of, start_server

USER = "alice@example.org"
T = TypeVar("T")


def message(n: int, extra: bytes = b"") -> bytes:
    return (
        f"From: bob@example.net\r\nTo: {USER}\r\nSubject: message {n}\r\n"
        f"Message-ID: <{n}@example.net>\r\n\r\n".encode()
        + b"Hello.\r\n.a line starting with a dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n"
        + extra
    )


MESSAGES = [message(1), message(2, b"x" * 70 + b"\r\n"), message(3, (b"line of text " * 6 + b"\r\n") * 4000)]


async def deliver_all(delivery: Delivery, messages: list[bytes] = MESSAGES) -> None:
    for raw in messages:
        results = await delivery.deliver(raw, "bob@example.net", [USER])
        assert results[0].ok


async def in_thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


def login(port: int) -> poplib.POP3:
    p = poplib.POP3("127.0.0.1", port, timeout=10)
    p.user(USER)
    p.pass_(TEST_PASSWORD)
    return p


def cmd(p: poplib.POP3, line: str) -> bytes:
    """A raw command through poplib (it has no AUTH); raises error_proto on -ERR."""
    out: bytes = p._shortcmd(line)  # type: ignore[attr-defined]
    return out


def resp(p: poplib.POP3) -> bytes:
    out: bytes = p._getresp()  # type: ignore[attr-defined]
    return out


def retr_bytes(p: poplib.POP3, n: int) -> bytes:
    _resp, lines, _octets = p.retr(n)
    return b"".join(line + b"\r\n" for line in lines)  # poplib has undone the byte-stuffing


async def stored(store: SqliteStore, account: Account) -> list[bytes]:
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    out = []
    for info in await store.list_messages(inbox.id):
        data = await store.read_message(inbox.id, info.uid)
        assert data is not None
        out.append(data)
    return out


@pytest.fixture
async def server(store: SqliteStore, account: Account) -> AsyncIterator[Pop3Server]:
    srv = await start_server(store)
    try:
        yield srv
    finally:
        await srv.stop()


async def test_user_pass_list_retr_byte_identical(server, store, account, delivery) -> None:
    await deliver_all(delivery)
    expected = await stored(store, account)
    assert [e.endswith(m) for e, m in zip(expected, MESSAGES, strict=True)] == [True] * 3

    def client() -> None:
        p = login(port_of(server))
        count, size = p.stat()
        assert (count, size) == (3, sum(len(e) for e in expected))
        _resp, listing, _ = p.list()
        assert listing == [f"{n} {len(e)}".encode() for n, e in enumerate(expected, 1)]
        for n, e in enumerate(expected, 1):
            assert retr_bytes(p, n) == e
        assert p.quit().startswith(b"+OK")

    await in_thread(client)
    assert len(await stored(store, account)) == 3  # no DELE: nothing removed


async def test_retr_wire_octets_match_list(server, store, account, delivery) -> None:
    """LIST's size is exactly what RETR sends once the byte-stuffing is undone."""
    await deliver_all(delivery, MESSAGES[:1])
    expected = (await stored(store, account))[0]

    def raw_session() -> bytes:
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10) as s:
            s.sendall(f"USER {USER}\r\nPASS {TEST_PASSWORD}\r\nRETR 1\r\nQUIT\r\n".encode())
            data = b""
            while not data.endswith(b"+OK bye\r\n"):
                chunk = s.recv(65536)
                assert chunk
                data += chunk
            return data

    wire = await in_thread(raw_session)
    head = f"+OK {len(expected)} octets\r\n".encode()
    start = wire.index(head) + len(head)
    body = wire[start:wire.index(b"\r\n.\r\n+OK bye") + 2]
    assert body == expected.replace(b"\r\n.", b"\r\n..")


async def test_auth_plain_with_initial_response(server, delivery) -> None:
    await deliver_all(delivery, MESSAGES[:1])

    def client() -> None:
        p = poplib.POP3("127.0.0.1", port_of(server), timeout=10)
        caps = p.capa()
        assert caps["SASL"] == ["PLAIN", "LOGIN"] and "USER" in caps and "PIPELINING" in caps
        token = base64.b64encode(f"\0{USER}\0{TEST_PASSWORD}".encode()).decode()
        assert cmd(p, f"AUTH PLAIN {token}").startswith(b"+OK")
        assert p.stat()[0] == 1
        p.quit()

    await in_thread(client)


async def test_auth_login_with_challenges(server) -> None:
    def client() -> None:
        p = poplib.POP3("127.0.0.1", port_of(server), timeout=10)
        assert cmd(p, "AUTH LOGIN") == b"+ " + base64.b64encode(b"Username:")
        assert cmd(p, base64.b64encode(USER.encode()).decode()).startswith(b"+ ")
        assert cmd(p, base64.b64encode(TEST_PASSWORD.encode()).decode()).startswith(b"+OK")
        p.quit()

    await in_thread(client)


async def test_wrong_password_then_right_one(server) -> None:
    def client() -> None:
        p = poplib.POP3("127.0.0.1", port_of(server), timeout=10)
        p.user(USER)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            p.pass_("wrong")
        p.user(USER)
        assert p.pass_(TEST_PASSWORD).startswith(b"+OK")
        p.quit()

    await in_thread(client)


async def test_stls_required_for_login_then_works(store, account, delivery, tmp_path) -> None:
    await deliver_all(delivery, MESSAGES[:1])
    server_ctx, client_ctx = tls_material()
    settings = Pop3Settings(listen=(LOOPBACK,), allow_plaintext_auth_on_loopback=False)
    srv = await start_server(store, settings, tls_context=server_ctx)
    expected = (await stored(store, account))[0]

    def client() -> None:
        p = poplib.POP3("127.0.0.1", port_of(srv), timeout=10)
        caps = p.capa()
        assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] plaintext"):
            p.user(USER)
        p.stls(client_ctx)
        caps = p.capa()
        assert "STLS" not in caps and "USER" in caps
        p.user(USER)
        p.pass_(TEST_PASSWORD)
        assert retr_bytes(p, 1) == expected
        p.quit()

    try:
        await in_thread(client)
    finally:
        await srv.stop()


async def test_stls_command_injection_is_discarded(store, account, tmp_path) -> None:
    server_ctx, client_ctx = tls_material()
    srv = await start_server(store, Pop3Settings(listen=(LOOPBACK,)), tls_context=server_ctx)

    def client() -> bytes:
        with socket.create_connection(("127.0.0.1", port_of(srv)), timeout=10) as raw:
            raw.recv(1024)
            raw.sendall(b"STLS\r\nCAPA\r\n")  # CAPA injected in clear text
            assert raw.recv(1024) == b"+OK begin TLS negotiation\r\n"
            with client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"NOOP\r\n")
                return tls.recv(1024)

    try:
        # Only the NOOP sent over TLS is answered; the injected CAPA never ran.
        assert await in_thread(client) == b"-ERR NOOP not allowed in the AUTHORIZATION state\r\n"
    finally:
        await srv.stop()


async def test_implicit_tls_listener(store, account, delivery, tmp_path) -> None:
    await deliver_all(delivery, MESSAGES[:2])
    server_ctx, client_ctx = tls_material()
    settings = Pop3Settings(tls_listen=(LOOPBACK,), allow_plaintext_auth_on_loopback=False)
    srv = await start_server(store, settings, tls_context=server_ctx)

    def client() -> None:
        p = poplib.POP3_SSL("127.0.0.1", port_of(srv, implicit_tls=True), context=client_ctx, timeout=10)
        assert "STLS" not in p.capa()
        p.user(USER)
        p.pass_(TEST_PASSWORD)
        assert p.stat()[0] == 2
        p.quit()

    try:
        await in_thread(client)
    finally:
        await srv.stop()


async def test_top(server, delivery) -> None:
    await deliver_all(delivery, MESSAGES[:1])

    def client() -> None:
        p = login(port_of(server))
        _resp, lines, _ = p.top(1, 2)
        assert lines[-3:] == [b"", b"Hello.", b".a line starting with a dot"]
        assert lines[0].startswith(b"Return-Path:")
        _resp, lines, _ = p.top(1, 0)
        assert lines[-1] == b"" and b"Hello." not in lines
        p.quit()

    await in_thread(client)


async def test_uidl_stable_across_sessions_and_restart(account, tmp_path) -> None:
    data_dir = tmp_path / "restart"

    async def uidls() -> list[bytes]:
        s = await SqliteStore.open(data_dir)
        srv = await start_server(s)
        try:
            def client() -> list[bytes]:
                p = login(port_of(srv))
                listing = p.uidl()[1]
                p.quit()
                return listing

            return await in_thread(client)
        finally:
            await srv.stop()
            await s.close()

    s = await SqliteStore.open(data_dir)
    await s.add_domain("example.org")
    await s.create_account(USER, cheap_hash(TEST_PASSWORD), None)
    await deliver_all(Delivery(s))
    inbox = await s.get_mailbox((await s.get_account(USER)).id, "INBOX")  # type: ignore[union-attr]
    assert inbox is not None
    uids = [i.uid for i in await s.list_messages(inbox.id)]
    await s.close()

    first = await uidls()
    assert first == [f"{n} {unique_id(inbox.uidvalidity, u)}".encode() for n, u in enumerate(uids, 1)]
    assert await uidls() == first  # another session, another process-level store: same ids


@pytest.mark.parametrize("mode", ["expunge", "trash", "keep"])
async def test_delete_modes(mode, store, account, delivery) -> None:
    await deliver_all(delivery)
    before = await stored(store, account)
    srv = await start_server(store, Pop3Settings(listen=(LOOPBACK,), delete_mode=mode))

    def client() -> None:
        p = login(port_of(srv))
        p.dele(1)
        p.dele(3)
        assert p.quit() == b"+OK bye"

    try:
        await in_thread(client)
    finally:
        await srv.stop()
    after = await stored(store, account)
    trash = await store.get_mailbox(account.id, "Trash")
    assert trash is not None
    in_trash = await store.list_messages(trash.id)
    if mode == "keep":
        assert after == before and in_trash == []
    elif mode == "expunge":
        assert after == [before[1]] and in_trash == []
    else:
        assert after == [before[1]]
        moved = [await store.read_message(trash.id, i.uid) for i in in_trash]
        assert moved == [before[0], before[2]]


async def test_rset_and_dropped_connection_delete_nothing(server, store, account, delivery) -> None:
    await deliver_all(delivery)

    def client() -> None:
        p = login(port_of(server))
        p.dele(1)
        p.rset()
        p.dele(2)
        p.dele(3)
        p.sock.close()  # gone without QUIT: no UPDATE state

    await in_thread(client)
    for _ in range(50):  # the server notices the EOF
        if not server._locks:
            break
        await asyncio.sleep(0.02)
    assert len(await stored(store, account)) == 3
    await in_thread(lambda: login(port_of(server)).quit())  # the lock was released


async def test_idle_timeout_deletes_nothing(store, account, delivery) -> None:
    await deliver_all(delivery, MESSAGES[:2])
    srv = await start_server(store, Pop3Settings(listen=(LOOPBACK,), idle_timeout_s=0.3))

    def client() -> bytes:
        p = login(port_of(srv))
        p.dele(1)
        time.sleep(0.8)
        return p.sock.recv(100)  # the server closed without a reply (RFC 1939 §3)

    try:
        assert await in_thread(client) == b""
    finally:
        await srv.stop()
    assert len(await stored(store, account)) == 2


async def test_a_client_that_never_reads_is_cut_off(store, account) -> None:
    """Commands sent without ever reading the responses fill the socket buffers: the
    server's write times out, and the connection is cut off even though its last bytes
    can never be delivered (net/closing.py), not held while the client stays."""
    srv = await start_server(store, Pop3Settings(listen=(LOOPBACK,), idle_timeout_s=0.5))
    try:
        flooded = await in_thread(lambda: flood_without_reading(port_of(srv), b"CAPA\r\n"))
        assert flooded < 40  # cut off by the server, not the client's 60 s
    finally:
        await srv.stop()


async def test_second_session_gets_in_use(server, delivery) -> None:
    await deliver_all(delivery, MESSAGES[:1])

    def client() -> None:
        first = login(port_of(server))
        second = poplib.POP3("127.0.0.1", port_of(server), timeout=10)
        second.user(USER)
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            second.pass_(TEST_PASSWORD)
        first.quit()
        second.user(USER)
        assert second.pass_(TEST_PASSWORD).startswith(b"+OK")
        second.quit()

    await in_thread(client)


async def test_message_expunged_by_imap_during_session(server, store, account, delivery) -> None:
    await deliver_all(delivery)
    inbox = await store.get_mailbox(account.id, "INBOX")
    assert inbox is not None
    uids = [i.uid for i in await store.list_messages(inbox.id)]
    p = await in_thread(lambda: login(port_of(server)))
    # An IMAP client deletes message 1 meanwhile (STORE +FLAGS \Deleted; EXPUNGE).
    await store.store_flags(inbox.id, [Uid(uids[0])], FlagMode.ADD, frozenset({"\\Deleted"}))
    await store.expunge(inbox.id, [Uid(uids[0])])

    def client() -> None:
        with pytest.raises(poplib.error_proto, match="deleted by another session"):
            p.retr(1)
        with pytest.raises(poplib.error_proto, match="deleted by another session"):
            p.top(1, 0)
        assert p.retr(2)[0].startswith(b"+OK")
        p.dele(1)
        p.dele(2)
        assert p.quit() == b"+OK bye"

    await in_thread(client)
    remaining = [i.uid for i in await store.list_messages(inbox.id)]
    assert remaining == [uids[2]]


async def test_retention_removes_old_messages_at_login(store, account, delivery) -> None:
    await deliver_all(delivery)
    later = time.time() + 10 * 86_400  # ten days from now, every message is 10 days old
    srv = await start_server(
        store, Pop3Settings(listen=(LOOPBACK,), retention_days=5), clock=lambda: later
    )

    def client() -> None:
        p = poplib.POP3("127.0.0.1", port_of(srv), timeout=10)
        assert p.capa()["EXPIRE"] == ["5"]
        p.user(USER)
        p.pass_(TEST_PASSWORD)
        assert p.stat() == (0, 0)
        p.quit()

    try:
        await in_thread(client)
    finally:
        await srv.stop()
    assert await stored(store, account) == []


async def test_bad_input_over_the_wire_keeps_the_session(server, delivery) -> None:
    await deliver_all(delivery, MESSAGES[:1])

    def client() -> None:
        p = login(port_of(server))
        for bad in ("RETR 7", "RETR x", "BOGUS", "USER again", "TOP 1"):
            with pytest.raises(poplib.error_proto):
                cmd(p, bad)
        p.sock.sendall(b"\x00\xff" * 600 + b"\r\n")
        with pytest.raises(poplib.error_proto, match="line too long"):
            resp(p)
        assert p.noop() == b"+OK"
        p.quit()

    await in_thread(client)


async def test_stop_while_a_session_closes_logs_nothing(store, account, tmp_path) -> None:
    """A TLS session that ended (QUIT) waits in its close for the client's close_notify
    when the server stops: stop()'s cancel must not end the handler task cancelled,
    which Python 3.11's stream callback reports with a CancelledError traceback."""
    server_ctx, client_ctx = tls_material()
    srv = await start_server(store, Pop3Settings(tls_listen=(LOOPBACK,)), tls_context=server_ctx)
    port = port_of(srv, implicit_tls=True)
    assert await stop_while_closing(srv.stop, port, client_ctx, b"+OK", b"QUIT\r\n", b"+OK") == []
