"""`postier serve` with `[server] workers = 2`: two processes share ports and data."""

from __future__ import annotations

import os
import poplib
import re
import signal
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_PASSWORD
from tests.integration.serving import (
    free_ports,
    loopback_config,
    make_data,
    start_serve,
    wait_ready,
)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.fixture
def server(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int], str]]:
    """``postier serve`` with two workers; the indexer where ``request.param`` says
    ([store] indexer, "process" unless the test parametrizes it)."""
    data = tmp_path / "data"
    make_data(data)
    ports = dict(zip(("smtp", "imap", "pop3"), free_ports(3), strict=True))
    config = tmp_path / "postier.toml"
    config.write_text(loopback_config(
        smtp=f"127.0.0.1:{ports['smtp']}", imap=f"127.0.0.1:{ports['imap']}",
        pop3=f"127.0.0.1:{ports['pop3']}",
        extra=f'[server]\nworkers = 2\n[store]\nindexer = "{getattr(request, "param", "process")}"\n',
    ))
    proc = start_serve(config, data)
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


@pytest.mark.parametrize("server", ["process", "thread"], indirect=True)
def test_one_indexer_indexes_what_every_worker_delivers(
    server: tuple[subprocess.Popen[bytes], dict[str, int], str], tmp_path: Path,
    request: pytest.FixtureRequest,
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
    # and every worker that feeds it always reached it (both workers feed the index
    # process; with the thread, worker 1 feeds worker 0).
    feeders = 2 if request.node.callspec.params["server"] == "process" else 1
    assert log.count("a server process sends its new bodies here") == feeders
    assert log.count("full-text index process started") == (feeders == 2)
    assert "catching up" not in log
    assert "cannot reach the indexer" not in log
    assert "Traceback" not in log


def test_failed_logins_count_across_workers(tmp_path: Path) -> None:
    """The failed-login limit holds for the server, not per worker: after 4 failures
    (connections spread over both workers by the kernel) the right password is refused
    on every connection, whichever worker takes it."""
    import imaplib

    data = tmp_path / "data"
    make_data(data)
    (imap_port,) = free_ports(1)
    config = tmp_path / "postier.toml"
    config.write_text(loopback_config(
        imap=f"127.0.0.1:{imap_port}",
        # no answer delays (all failures "free"), refused from the 4th failure on
        extra="[server]\nworkers = 2\n[auth]\nfailed_login_free = 100\nfailed_login_max_per_ip = 4\n",
    ))
    proc = start_serve(config, data)
    try:
        assert "(2 worker processes)" in wait_ready(proc)

        def login(password: str) -> bool:
            imap = imaplib.IMAP4("127.0.0.1", imap_port)
            try:
                imap.login("alice@example.org", password)
            except imaplib.IMAP4.error:
                return False
            finally:
                imap.shutdown()
            return True

        assert login(TEST_PASSWORD)  # the limit is not hit yet
        for _ in range(4):
            assert not login("wrong")
        time.sleep(0.2)  # the workers tell each other at once; leave the forwarders a moment
        assert [login(TEST_PASSWORD) for _ in range(12)] == [False] * 12
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    log = err.decode()
    assert log.count("login refused: too many failures") == 12
    assert "Traceback" not in log
