"""Helpers for tests that run `postier serve` as a real process."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

READY = "Press Ctrl-C"  # the last line `postier serve` prints once it listens


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on 127.0.0.1: every socket stays bound until all
    are chosen (one at a time, the kernel can hand out the same port twice — seen in
    CI: SMTP and IMAP configured on one port)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def wait_ready(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> str:
    """What the server printed on stdout until it was ready (or ended, or timed out)."""
    assert proc.stdout is not None
    out = ""
    deadline = time.monotonic() + timeout_s
    while READY not in out and time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        out += line
    return out


def loopback_config(smtp: str = "", imap: str = "", pop3: str = "", extra: str = "") -> str:
    """A config for tests: the given listeners (``"127.0.0.1:PORT"``, "" for none), no
    submission, no TLS listeners, no DNS-based checks, no outbound queue; ``extra`` is
    appended (more sections or keys)."""

    def listen(address: str) -> str:
        return f'["{address}"]' if address else "[]"

    return f"""
[smtp]
listen = {listen(smtp)}
submission_listen = []
submissions_listen = []
check_spf = false
check_dkim = false
check_dmarc = false
check_arc = false
[imap]
listen = {listen(imap)}
tls_listen = []
[pop3]
listen = {listen(pop3)}
tls_listen = []
[queue]
enabled = false
{extra}"""


def start_serve(config: Path, data: Path, stderr: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """`postier serve` with ``config`` on ``data``, stdout piped (see wait_ready)."""
    return subprocess.Popen(
        [sys.executable, "-m", "postier.cli", "serve", "--config", str(config), "--data", str(data)],
        stdout=subprocess.PIPE, stderr=stderr,
    )


def make_data(data: Path) -> None:
    """A data folder with domain example.org and account alice@example.org (password
    tests.conftest.TEST_PASSWORD), for a server a test starts on it."""
    import asyncio

    from postier.store.sqlite import SqliteStore
    from tests.conftest import TEST_PASSWORD, cheap_hash

    async def setup() -> None:
        store = await SqliteStore.open(data)
        try:
            await store.add_domain("example.org")
            await store.create_account("alice@example.org", cheap_hash(TEST_PASSWORD), None)
        finally:
            await store.close()

    asyncio.run(setup())


def flood_without_reading(port: int, command: bytes, client_timeout_s: float = 60.0) -> float:
    """Send ``command`` over and over on one connection to 127.0.0.1:``port`` and never
    read a reply; seconds until the server cut the connection off (a send failed), or
    ``client_timeout_s`` and more if it never did."""
    import socket

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=client_timeout_s) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        chunk = command * (60_000 // len(command) + 1)
        try:
            while time.monotonic() - started < client_timeout_s * 1.5:
                sock.sendall(chunk)  # raises once the server has cut it off
        except OSError:
            pass
    return time.monotonic() - started


async def stop_while_closing(
    stop: Callable[[], Awaitable[None]], port: int, context: ssl.SSLContext,
    greeting: bytes, command: bytes, done: bytes,
) -> list[dict[str, object]]:
    """A client over implicit TLS to 127.0.0.1:``port`` reads the greeting (starting with
    ``greeting``), sends ``command`` (QUIT, LOGOUT) and reads until ``done``, then keeps
    its connection open and never answers the server's close_notify, so the server's
    close waits; the server is stopped meanwhile.  What the loop's exception handler was
    given — asyncio reports there what no code sees, such as a connection handler task
    that ended cancelled."""

    def end_session_and_stay() -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        tls = context.wrap_socket(raw, server_hostname="localhost")
        assert tls.recv(1000).startswith(greeting)
        tls.sendall(command)
        got = b""
        while done not in got:
            data = tls.recv(1000)
            assert data, got
            got += data
        return tls

    client = await asyncio.to_thread(end_session_and_stay)
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        await asyncio.sleep(0.3)  # the session is closing now
        await stop()
        await asyncio.sleep(0.1)
    finally:
        client.close()
        loop.set_exception_handler(None)
    return reported


def tls_material() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 and localhost, and a client
    context that trusts it (trustme's throwaway CA)."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx
