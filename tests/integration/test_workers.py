"""`postier serve` with `[server] workers = 2`: two processes share ports and data."""

from __future__ import annotations

import os
import poplib
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_PASSWORD, cheap_hash
from tests.integration.serving import wait_ready


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int], str]]:
    import asyncio

    from postier.store.sqlite import SqliteStore

    data = tmp_path / "data"

    async def setup() -> None:
        store = await SqliteStore.open(data)
        await store.add_domain("example.org")
        await store.create_account("alice@example.org", cheap_hash(TEST_PASSWORD), None)
        await store.close()

    asyncio.run(setup())
    ports = {"smtp": free_port(), "imap": free_port(), "pop3": free_port()}
    config = tmp_path / "postier.toml"
    config.write_text(f"""
[server]
workers = 2
[smtp]
listen = ["127.0.0.1:{ports['smtp']}"]
submission_listen = []
submissions_listen = []
check_spf = false
check_dkim = false
check_dmarc = false
check_arc = false
[imap]
listen = ["127.0.0.1:{ports['imap']}"]
tls_listen = []
[pop3]
listen = ["127.0.0.1:{ports['pop3']}"]
tls_listen = []
[queue]
enabled = false
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "postier.cli", "serve", "--config", str(config), "--data", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out = wait_ready(proc)
    try:
        yield proc, ports, out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def imap_idle(port: int) -> tuple[socket.socket, object]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = sock.makefile("rb")
    f.readline()
    sock.sendall(f'a LOGIN alice@example.org "{TEST_PASSWORD}"\r\n'.encode())
    while not f.readline().startswith(b"a OK"):
        pass
    sock.sendall(b"b SELECT INBOX\r\n")
    while not f.readline().startswith(b"b OK"):
        pass
    sock.sendall(b"c IDLE\r\n")
    assert f.readline().startswith(b"+")
    return sock, f


def test_two_workers_share_ports_data_and_events(
    server: tuple[subprocess.Popen[bytes], dict[str, int], str],
) -> None:
    proc, ports, out = server
    assert "(2 worker processes)" in out and f"127.0.0.1:{ports['imap']}" in out
    workers = children(proc.pid)
    assert len(workers) == 2
    sock, f = imap_idle(ports["imap"])
    try:
        # Twenty SMTP connections: the kernel spreads them over both workers; the IDLE
        # session (in one of them) must hear every delivery.
        for n in range(20):
            with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
                s.sendmail("bob@example.net", ["alice@example.org"],
                           b"Subject: %d\r\n\r\nbody\r\n" % n)
        seen = 0
        deadline = time.monotonic() + 10
        while seen < 20 and time.monotonic() < deadline:
            line = f.readline()  # type: ignore[attr-defined]
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m:
                seen = int(m.group(1))
        assert seen == 20
    finally:
        sock.close()
    # One POP3 session per maildrop, whichever workers the two connections land on.
    for _ in range(6):
        first = poplib.POP3("127.0.0.1", ports["pop3"], timeout=10)
        first.user("alice@example.org")
        first.pass_(TEST_PASSWORD)
        second = poplib.POP3("127.0.0.1", ports["pop3"], timeout=10)
        second.user("alice@example.org")
        with pytest.raises(poplib.error_proto, match="IN-USE"):
            second.pass_(TEST_PASSWORD)
        second.quit()
        assert first.stat()[0] == 20
        first.quit()


def test_a_killed_worker_is_restarted_and_stop_is_clean(
    server: tuple[subprocess.Popen[bytes], dict[str, int], str],
) -> None:
    proc, ports, _ = server
    victim = children(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = children(proc.pid)
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.2)
    assert len(children(proc.pid)) == 2 and victim not in children(proc.pid)
    for _ in range(6):  # every connection is served, whichever worker takes it
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
            assert s.noop()[0] == 250
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"Traceback" not in err


def test_worker_0_indexes_what_every_worker_delivers(
    server: tuple[subprocess.Popen[bytes], dict[str, int], str], tmp_path: Path,
) -> None:
    import imaplib
    import sqlite3

    proc, ports, _ = server
    for n in range(20):  # spread over both workers by the kernel
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
            s.sendmail("bob@example.net", ["alice@example.org"],
                       b"Subject: note %d\r\n\r\nword quokka%03d here\r\n" % (n, n))
    data = tmp_path / "data"
    deadline = time.monotonic() + 20
    indexed = 0
    while indexed < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
        conn = sqlite3.connect(f"file:{data / 'postier.db'}?mode=ro", uri=True)
        try:
            (indexed,) = conn.execute("SELECT count(*) FROM bodies WHERE indexed = 1").fetchone()
        finally:
            conn.close()
    assert indexed == 20
    imap = imaplib.IMAP4("127.0.0.1", ports["imap"])
    try:
        imap.login("alice@example.org", TEST_PASSWORD)
        imap.select("INBOX")
        for n in (0, 7, 19):
            typ, found = imap.search(None, "BODY", f"quokka{n:03d}")
            assert typ == "OK" and len(found[0].split()) == 1
    finally:
        imap.logout()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    log = err.decode()
    # Indexed as they came, by one indexer: no body waited for the idle catch-up pass,
    # and the other worker always reached worker 0.
    assert "a worker sends its new bodies here" in log
    assert "catching up" not in log
    assert "cannot reach worker 0's indexer" not in log
