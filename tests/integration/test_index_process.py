"""The full-text indexer in its own process (store/sqlite/indexproc.py): fed over
index.sock, restarted when it dies, stopped in order, gone when its parent is gone."""

from __future__ import annotations

import asyncio
import imaplib
import os
import signal
import smtplib
import sqlite3
import time
from pathlib import Path

import pytest

from postier.delivery import Delivery
from postier.store.sqlite import SqliteStore, indexproc
from postier.store.sqlite.indexfeed import SOCKET_NAME, IndexFeed
from postier.store.sqlite.indexproc import IndexProcess
from tests.conftest import TEST_PASSWORD, cheap_hash
from tests.integration.serving import (
    free_ports,
    loopback_config,
    make_data,
    start_serve,
    wait_ready,
)
from tests.integration.test_workers import children


def indexed_count(data: Path) -> int:
    conn = sqlite3.connect(f"file:{data / 'postier.db'}?mode=ro", uri=True)
    try:
        (n,) = conn.execute("SELECT count(*) FROM bodies WHERE indexed = 1").fetchone()
    finally:
        conn.close()
    return int(n)


async def wait_indexed(data: Path, n: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    got = indexed_count(data)
    while got < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        got = indexed_count(data)
    return got


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"


async def test_fed_restarted_after_kill_and_stopped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = await SqliteStore.open(data, index_here=False)
    keeper = IndexProcess(data)
    feed = IndexFeed(data)
    try:
        await store.add_domain("example.org")
        await store.create_account("alice@example.org", cheap_hash("x"), None)
        await keeper.start()
        store.index_elsewhere(feed.add, feed.delete)
        delivery = Delivery(store)

        async def deliver(n: int) -> None:
            raw = b"Subject: note %d\r\n\r\nword wombat%03d here\r\n" % (n, n)
            await delivery.deliver(raw, "bob@example.net", ["alice@example.org"])

        for n in range(10):
            await deliver(n)
        assert await wait_indexed(data, 10) == 10
        assert feed.dropped == 0

        assert keeper.proc is not None
        first = keeper.proc.pid
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while keeper.starts < 2 or keeper.proc.returncode is not None:
            assert time.monotonic() < deadline, "index process not restarted"
            await asyncio.sleep(0.05)
        assert keeper.proc.pid != first
        # Bodies delivered while it was down or restarting are left to the catch-up pass
        # of the new process; none is lost.
        for n in range(10, 20):
            await deliver(n)
        assert await wait_indexed(data, 20) == 20
    finally:
        await store.close()
        feed.close()
        await keeper.stop()
    assert keeper.proc is not None and keeper.proc.returncode == 0  # stopped, not killed
    assert not (data / SOCKET_NAME).exists()


def test_serve_runs_it_and_it_ends_with_the_server(tmp_path: Path) -> None:
    """Default `postier serve`: one child indexes; mail is searchable; a `kill -9` of
    the server ends the child too (its stdin closes)."""
    data = tmp_path / "data"
    make_data(data)
    smtp_port, imap_port = free_ports(2)
    config = tmp_path / "postier.toml"
    config.write_text(loopback_config(smtp=f"127.0.0.1:{smtp_port}", imap=f"127.0.0.1:{imap_port}"))
    proc = start_serve(config, data)
    try:
        wait_ready(proc)
        (child,) = children(proc.pid)
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        assert b"postier.store.sqlite.indexproc" in cmdline
        # background work: below the server's priority, so clients are answered first
        assert os.getpriority(os.PRIO_PROCESS, child) == min(
            os.getpriority(os.PRIO_PROCESS, proc.pid) + indexproc.NICE, 19)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:
            for n in range(5):
                s.sendmail("bob@example.net", ["alice@example.org"],
                           b"Subject: n\r\n\r\nword numbat%03d here\r\n" % n)
        assert asyncio.run(wait_indexed(data, 5)) == 5
        imap = imaplib.IMAP4("127.0.0.1", imap_port)
        try:
            imap.login("alice@example.org", TEST_PASSWORD)
            imap.select("INBOX")
            typ, found = imap.search(None, "BODY", "numbat003")
            assert typ == "OK" and found[0].split() == [b"4"]
        finally:
            imap.logout()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 20
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_child_that_cannot_start_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that exits (or hangs) before its ready line is started again, with a
    pause; the server does not wait for it meanwhile."""
    import sys

    monkeypatch.setattr(indexproc, "RESTART_PAUSE_S", (0.1, 0.2))
    data = tmp_path / "data"
    store = await SqliteStore.open(data, index_here=False)  # the schema, as a server
    keeper = IndexProcess(data)
    real = keeper.argv
    keeper.argv = [sys.executable, "-c", "raise SystemExit(3)"]
    try:
        await keeper.start()  # logs the failure, does not raise
        deadline = time.monotonic() + 10
        while keeper.starts < 3:
            assert time.monotonic() < deadline, "not tried again"
            await asyncio.sleep(0.05)
        keeper.argv = real  # it can start now
        while not (data / SOCKET_NAME).exists():
            assert time.monotonic() < deadline, "not started once it could"
            await asyncio.sleep(0.05)
        assert keeper.proc is not None and keeper.proc.returncode is None
    finally:
        await keeper.stop()
        await store.close()
    assert keeper.proc.returncode == 0


async def test_the_child_exits_when_its_indexer_thread_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child whose indexer thread ended (a bug) exits with status 1, so that its
    parent starts a new one, instead of reading ids nobody indexes."""
    import postier.store.sqlite.indexer as indexer_module


    monkeypatch.setattr(indexproc, "ALIVE_CHECK_S", 0.05)
    data = tmp_path / "data"
    started: list[SqliteStore] = []
    real_open = SqliteStore.open

    async def open_and_keep(*args: object, **kwargs: object) -> SqliteStore:
        store = await real_open(*args, **kwargs)  # type: ignore[arg-type]
        started.append(store)
        return store

    monkeypatch.setattr(SqliteStore, "open", open_and_keep)

    def end_the_thread() -> None:  # called once the child is ready
        indexer = started[0].indexer
        assert indexer is not None
        indexer._queue.put(indexer_module._STOP)

    with pytest.raises(SystemExit) as exited:  # awaited in this task: SystemExit in a
        await indexproc.serve_index(data, asyncio.Event(), end_the_thread)  # task stops the loop
    assert exited.value.code == 1
    assert not (data / SOCKET_NAME).exists()  # stopped in order on the way out
