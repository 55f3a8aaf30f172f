"""The writer on its own: where jobs run, group commit, other threads and loops, the lock."""

from __future__ import annotations

import asyncio
import fcntl
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from postier.store.sqlite.writer import Tx, Writer, connect, take_batch


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    path = tmp_path / "w.db"
    conn = connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    conn.close()
    w = Writer(path, loop=asyncio.get_running_loop())
    yield w
    await asyncio.to_thread(w.close)


def insert(value: str) -> Callable[[Tx], int]:
    def fn(tx: Tx) -> int:
        return int(tx.execute("INSERT INTO t (v) VALUES (?)", (value,)).lastrowid or 0)

    return fn


def rows(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT v FROM t ORDER BY id")]
    finally:
        conn.close()


async def test_small_jobs_run_on_the_loop_thread_and_share_a_commit(writer: Writer, tmp_path: Path) -> None:
    seen: set[int] = set()

    def fn(tx: Tx) -> int:
        seen.add(threading.get_ident())
        return int(tx.execute("INSERT INTO t (v) VALUES ('x')").lastrowid or 0)

    ids = await asyncio.gather(*(writer.run(fn) for _ in range(20)))
    assert sorted(ids) == list(range(1, 21))
    assert seen == {threading.get_ident()}  # no writer thread in between
    assert writer.batches == 1 and writer.jobs == 20  # one transaction, one fsync
    assert rows(tmp_path / "w.db") == ["x"] * 20  # committed: another connection sees them


async def test_large_jobs_run_off_the_loop_and_the_loop_keeps_serving(writer: Writer) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    where: list[int] = []

    def slow(tx: Tx) -> None:
        where.append(threading.get_ident())
        time.sleep(0.3)  # stands for a job over thousands of rows
        tx.execute("INSERT INTO t (v) VALUES ('big')")

    task = asyncio.create_task(ticker())
    try:
        await writer.run(slow, large=True)
    finally:
        task.cancel()
    assert where and where[0] != threading.get_ident()
    assert ticks >= 10  # the loop ran all along


async def test_a_failing_job_rolls_back_alone(writer: Writer, tmp_path: Path) -> None:
    def bad(tx: Tx) -> None:
        tx.execute("INSERT INTO t (v) VALUES ('half')")
        raise ValueError("no")

    results = await asyncio.gather(
        writer.run(insert("a")), writer.run(bad), writer.run(insert("b")), return_exceptions=True
    )
    assert isinstance(results[1], ValueError)
    assert rows(tmp_path / "w.db") == ["a", "b"]


async def test_jobs_from_other_threads_and_other_loops(writer: Writer, tmp_path: Path) -> None:
    # another thread, no loop: submit() and a blocking wait (the indexer does this)
    from_thread = await asyncio.to_thread(lambda: writer.submit(insert("thread")).result(5))
    assert from_thread == 1
    # another running loop: run() there; its on-loop hooks run on that loop's thread
    hook_threads: list[int] = []

    def with_hook(tx: Tx) -> int:
        tx.on_loop.append(lambda: hook_threads.append(threading.get_ident()))
        return int(tx.execute("INSERT INTO t (v) VALUES ('loop')").lastrowid or 0)

    def other_loop() -> tuple[int, int]:
        async def go() -> int:
            return await writer.run(with_hook)

        return asyncio.run(go()), threading.get_ident()

    result, other_thread = await asyncio.to_thread(other_loop)
    assert result == 2 and hook_threads == [other_thread]
    assert rows(tmp_path / "w.db") == ["thread", "loop"]


async def test_another_process_holding_the_lock_delays_writes_but_not_the_loop(
    writer: Writer, tmp_path: Path
) -> None:
    # An flock taken through another open file description conflicts as one taken by
    # another process (a second worker, `postier deliver`).
    fd = os.open(tmp_path / "w.db.writelock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        job = asyncio.ensure_future(writer.run(insert("after")))
        started = time.monotonic()
        await asyncio.sleep(0.2)  # the loop runs: the wait is not on it
        assert time.monotonic() - started < 0.5
        assert not job.done()
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert await asyncio.wait_for(job, 5) == 1
    assert rows(tmp_path / "w.db") == ["after"]


async def test_a_failed_begin_fails_the_batch_and_the_writer_goes_on(writer: Writer, tmp_path: Path) -> None:
    # Another connection holding SQLite's own write lock (no flock: an outside program)
    # past the busy timeout makes BEGIN IMMEDIATE fail.
    writer._conn.execute("PRAGMA busy_timeout = 50")
    other = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await writer.run(insert("lost"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await writer.run(insert("kept")) == 1
    assert rows(tmp_path / "w.db") == ["kept"]


async def test_close_finishes_queued_jobs(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    conn = connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    conn.close()
    w = Writer(path, loop=asyncio.get_running_loop())
    futures = [w.submit(insert(str(i))) for i in range(5)]  # queued, not yet run
    await asyncio.to_thread(w.close)
    assert [f.result(0) for f in futures] == [1, 2, 3, 4, 5]
    assert rows(path) == ["0", "1", "2", "3", "4"]
    with pytest.raises(sqlite3.ProgrammingError):
        await w.run(insert("late"))


def test_close_does_not_hang_when_the_loop_is_gone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "w.db"
    conn = connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    conn.close()
    loop = asyncio.new_event_loop()  # never run: nothing will ever run the jobs
    try:
        w = Writer(path, loop=loop)
        w.submit(insert("never"))
        started = time.monotonic()
        w.close(timeout=0.3)
        assert time.monotonic() - started < 5
        assert "1 write jobs never run" in caplog.text
    finally:
        loop.close()
    assert rows(path) == []


def test_take_batch_gathers_with_one_wait() -> None:
    """The indexer's batching: what arrives during the wait joins the batch; a queue that
    already holds a whole batch is taken at once; the stop mark ends it."""
    source: queue.SimpleQueue[object] = queue.SimpleQueue()
    stop = object()

    def later() -> None:
        time.sleep(0.05)
        for n in range(2, 5):
            source.put(n)

    threading.Thread(target=later).start()
    started = time.monotonic()
    items, stopped = take_batch(source, 1, 10, stop, wait_s=0.3)
    assert items == [1, 2, 3, 4] and not stopped
    assert time.monotonic() - started >= 0.3

    for n in range(20):
        source.put(n)
    started = time.monotonic()
    items, stopped = take_batch(source, -1, 10, stop, wait_s=5)
    assert items == [-1, *range(9)] and not stopped
    assert time.monotonic() - started < 1  # a whole batch was there: no wait

    source.put(stop)
    items, stopped = take_batch(source, 99, 100, stop)  # 9..19 left, then the mark
    assert items == [99, *range(9, 20)] and stopped
