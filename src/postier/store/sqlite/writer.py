"""One writer thread with group commit, and a pool of reader connections.

Every write is a plain function run on the writer thread inside a SAVEPOINT; the thread
takes every job queued at that moment (up to ``max_batch``) into one transaction and one
fsync (synchronous=FULL), then resolves each job's future.  A job that raises rolls back
only its own savepoint.  Measured in shared/ARCHITECTURE.md: ~11.7k write transactions/s
this way against ~1.9k with an await per statement.  The futures of jobs submitted from an
event loop are resolved by one callback per loop and batch (one wake-up of the loop for the
whole batch, not one per job).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("postier.store")


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    else:
        conn.execute("PRAGMA journal_mode = WAL")
        # "250 OK" means durable: a NORMAL commit can roll back on power loss.
        conn.execute("PRAGMA synchronous = FULL")
    return conn


@dataclass
class Tx:
    """What a write job sees: the connection and hooks that run after COMMIT."""

    conn: sqlite3.Connection
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    # Run on the submitting event loop's thread after COMMIT, before the job's caller
    # resumes (change-bus events); only for jobs submitted with Writer.run().
    on_loop: list[Callable[[], None]] = field(default_factory=list)
    # Where a new body's full-text index values go after COMMIT (the store's Indexer).
    index: Callable[[int, tuple[str, ...]], None] | None = None

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)


@dataclass
class _Job(Generic[T]):
    fn: Callable[[Tx], T]
    future: concurrent.futures.Future[T] | None  # submit(): from any thread
    loop: asyncio.AbstractEventLoop | None = None  # run(): from an event loop
    waiter: asyncio.Future[T] | None = None

    def start(self) -> bool:
        """False when the caller gave up before the job ran (it is then dropped)."""
        if self.future is not None:
            return self.future.set_running_or_notify_cancel()
        assert self.waiter is not None
        return not self.waiter.cancelled()

    def fail_now(self, exc: BaseException) -> None:
        if self.future is not None:
            self.future.set_exception(exc)
        else:
            assert self.loop is not None
            failed: list[_Outcome] = [(self.waiter, [], None, exc)]
            try:
                self.loop.call_soon_threadsafe(_settle, failed)
            except RuntimeError:  # the loop was closed meanwhile: nobody is waiting
                pass


_Outcome = tuple["asyncio.Future[Any] | None", list[Callable[[], None]], Any, "BaseException | None"]


def _settle(outcomes: list[_Outcome]) -> None:
    """On the loop: run each job's on_loop hooks, then resolve its future, in commit order."""
    for waiter, hooks, result, exc in outcomes:
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("on-loop hook failed")
        if waiter is None or waiter.cancelled():
            continue
        if exc is not None:
            waiter.set_exception(exc)
        else:
            waiter.set_result(result)


_STOP = object()


def take_batch(
    source: queue.SimpleQueue[Any], first: Any, limit: int, stop_mark: object, wait_s: float = 0.0
) -> tuple[list[Any], bool]:
    """``first`` and what else is queued (up to ``limit`` items; waiting up to ``wait_s``
    for more), and whether ``stop_mark`` was met (it is not returned)."""
    items = [first]
    deadline = time.monotonic() + wait_s
    while len(items) < limit:
        try:
            if wait_s:
                item = source.get(timeout=max(0.0, deadline - time.monotonic()))
            else:
                item = source.get_nowait()
        except queue.Empty:
            return items, False
        if item is stop_mark:
            return items, True
        items.append(item)
    return items, False


class Writer:
    def __init__(self, path: Path, max_batch: int = 256) -> None:
        self._conn = connect(path)
        self._max_batch = max_batch
        # Writers in several processes (workers, `postier deliver`) take turns through an
        # flock around each transaction: a blocked one wakes when the lock is released,
        # where SQLite's busy handler polls with sleeps of 1 ms and more.
        self._lock_fd = os.open(path.parent / (path.name + ".writelock"), os.O_RDWR | os.O_CREAT, 0o600)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="postier-writer", daemon=True)
        self._thread.start()
        self.batches = 0
        self.jobs = 0
        self.index: Callable[[int, tuple[str, ...]], None] | None = None  # set by the store

    def submit(self, fn: Callable[[Tx], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(_Job(fn, future))
        return future

    async def run(self, fn: Callable[[Tx], T]) -> T:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, None, loop, waiter))
        return await waiter

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._conn.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _loop(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                break
            batch, stop = take_batch(self._queue, first, self._max_batch, _STOP)
            # A job whose caller was cancelled before it ran is dropped; once running, its
            # future can no longer be cancelled, so its result is always deliverable.
            batch = [job for job in batch if job.start()]
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[_Job[Any]]) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            self._run_batch_locked(batch)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _run_batch_locked(self, batch: list[_Job[Any]]) -> None:
        conn = self._conn
        outcomes: list[tuple[_Job[Any], Tx, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for job in batch:
                job.fail_now(exc)
            return
        for job in batch:
            tx = Tx(conn, index=self.index)
            conn.execute("SAVEPOINT job")
            try:
                result = job.fn(tx)
            except BaseException as exc:  # the job's own failure: roll back only its work
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((job, tx, None, exc))
            else:
                conn.execute("RELEASE job")
                outcomes.append((job, tx, result, None))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("commit failed: %s", exc)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            for job, _tx, _result, _err in outcomes:
                job.fail_now(exc)
            return
        self.batches += 1
        self.jobs += len(batch)
        per_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for job, tx, result, err in outcomes:
            if err is None:
                for hook in tx.after_commit:
                    try:
                        hook()
                    except Exception:
                        log.exception("after-commit hook failed")
            if job.future is not None:
                if err is not None:
                    job.future.set_exception(err)
                else:
                    job.future.set_result(result)
                continue
            assert job.loop is not None
            hooks = tx.on_loop if err is None else []
            per_loop.setdefault(job.loop, []).append((job.waiter, hooks, result, err))
        for loop, settled in per_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # the loop was closed meanwhile: nobody is waiting
                pass


class ReaderPool:
    """Reader connections, one per worker thread; WAL lets them run beside the writer."""

    def __init__(self, path: Path, size: int, attach: dict[str, Path] | None = None) -> None:
        self._path = path
        self._attach = dict(attach or {})  # schema name -> database file, read-only
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(size, thread_name_prefix="postier-read")

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self._path, readonly=True)
            for name, path in self._attach.items():
                # query_only (set by connect) covers attached databases too
                conn.execute("ATTACH DATABASE ? AS " + name, (str(path),))
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self._conn()))

    def run_sync(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        return self._pool.submit(fn)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
