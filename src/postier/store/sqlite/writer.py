"""The writer with group commit, and a pool of reader connections.

Every write is a plain function run inside a SAVEPOINT; the writer takes every job queued
at that moment (up to ``max_batch``) into one transaction and one fsync
(synchronous=FULL), then resolves each job's future.  A job that raises rolls back only
its own savepoint.  Measured in shared/ARCHITECTURE.md: ~11.7k write transactions/s this
way against ~1.9k with an await per statement.  Jobs run on the owner event loop's thread
and only COMMIT goes to a thread (see Writer for why); the futures of jobs submitted from
another loop are resolved by one callback per loop and batch.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
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
    # Where a new body's id goes after COMMIT (the store's Indexer, or the index feed).
    index: Callable[[int], None] | None = None
    # Body row ids by sha256 that this job stored or found (several copies of one body).
    bodies: dict[str, int] = field(default_factory=dict)

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A part of the job that may fail alone: on an exception its statements are rolled
        back, what it added to this Tx (hooks, known bodies) is forgotten, and it re-raises."""
        hooks, on_loop, bodies = len(self.after_commit), len(self.on_loop), dict(self.bodies)
        self.conn.execute("SAVEPOINT part")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK TO part")
            self.conn.execute("RELEASE part")
            del self.after_commit[hooks:]
            del self.on_loop[on_loop:]
            self.bodies = bodies
            raise
        self.conn.execute("RELEASE part")


@dataclass
class _Job(Generic[T]):
    fn: Callable[[Tx], T]
    future: concurrent.futures.Future[T] | None  # submit(): from any thread
    loop: asyncio.AbstractEventLoop | None = None  # run(): from an event loop
    waiter: asyncio.Future[T] | None = None
    large: bool = False  # run on the commit thread, not the loop (Writer docstring)

    def start(self) -> bool:
        """False when the caller gave up before the job ran (it is then dropped)."""
        if self.future is not None:
            return self.future.set_running_or_notify_cancel()
        assert self.waiter is not None
        return not self.waiter.cancelled()


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


# A job after its run: (job, its Tx, result, the job's own exception)
_Done = tuple["_Job[Any]", Tx, Any, "BaseException | None"]


def take_batch(
    source: queue.SimpleQueue[Any], first: Any, limit: int, stop_mark: object, wait_s: float = 0.0
) -> tuple[list[Any], bool]:
    """``first`` and what else is queued (up to ``limit`` items, after waiting ``wait_s``
    for more), and whether ``stop_mark`` was met (it is not returned).

    The wait is one sleep, not a get per item: each get that waits is a wake-up of this
    thread per item put, which on a VM costs tens of microseconds of CPU each."""
    items = [first]
    if wait_s and source.qsize() < limit - 1:  # not already a whole batch
        time.sleep(wait_s)
    while len(items) < limit:
        try:
            item = source.get_nowait()
        except queue.Empty:
            return items, False
        if item is stop_mark:
            return items, True
        items.append(item)
    return items, False


class Writer:
    """The write connection, driven from its owner event loop.

    Jobs run on the owner loop's thread, a batch at a time inside one BEGIN IMMEDIATE
    (each job in its own SAVEPOINT); the COMMIT and its fsync run on the ``postier-commit``
    thread, and jobs that arrive meanwhile form the next batch (group commit).  Why not a
    writer thread: every SQLite statement releases the GIL, and taking it back while the
    event loop is busy waits up to the switch interval (5 ms); a writer thread spent about
    three quarters of its time waiting so (bench/README.md, SMTP, session 3).

    Large jobs (``run(fn, large=True)``: thousands of rows, a whole mailbox) would stall
    the loop: a batch holding one runs whole on the commit thread, as do batches that find
    another process writing (the flock is waited for there, never on the loop).
    """

    def __init__(
        self, path: Path, max_batch: int = 256, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._conn = connect(path)
        self._max_batch = max_batch
        # Writers in several processes (workers, `postier deliver`) take turns through an
        # flock around each transaction: a blocked one wakes when the lock is released,
        # where SQLite's busy handler polls with sleeps of 1 ms and more.
        self._lock_fd = os.open(path.parent / (path.name + ".writelock"), os.O_RDWR | os.O_CREAT, 0o600)
        self._loop = loop  # the owner: None until the first run()
        self._pending: collections.deque[_Job[Any]] = collections.deque()  # owner loop only
        self._inbox: queue.SimpleQueue[_Job[Any]] = queue.SimpleQueue()  # from other threads
        self._busy = False  # a batch is between its first job and its settling
        self._outstanding = 0  # jobs queued or running, from any thread (close() waits)
        self._count_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="postier-commit")
        self.batches = 0
        self.jobs = 0
        self.contended = 0  # batches that found another process writing (waited off the loop)
        self.index: Callable[[int], None] | None = None  # set by the store

    def submit(self, fn: Callable[[Tx], T]) -> concurrent.futures.Future[T]:
        """Queue ``fn`` from any thread; never wait on the result on the owner loop's thread."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._post(_Job(fn, future))
        return future

    async def run(self, fn: Callable[[Tx], T], *, large: bool = False) -> T:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        job = _Job(fn, None, loop, waiter, large)
        owner = self._loop
        if owner is None or (owner is not loop and not self._busy and not owner.is_running()):
            self._loop = owner = loop  # the store outlived the loop it was opened on
        if owner is loop:
            if self._closed:
                raise sqlite3.ProgrammingError("the store is closed")
            self._count(1)
            self._pending.append(job)
            if not self._busy:
                self._busy = True
                loop.call_soon(self._next_batch)  # what else this loop turn queues joins in
        else:
            self._post(job)
        return await waiter

    def _post(self, job: _Job[Any]) -> None:
        if self._closed:
            raise sqlite3.ProgrammingError("the store is closed")
        if self._loop is None:
            raise RuntimeError("the writer has no event loop yet")
        self._count(1)
        self._inbox.put(job)
        self._loop.call_soon_threadsafe(self._wake)

    def _count(self, change: int) -> None:
        with self._count_lock:
            before = self._outstanding
            self._outstanding += change
            if not before:
                self._idle.clear()
            elif not self._outstanding:
                self._idle.set()

    def close(self, timeout: float = 60.0) -> None:
        """Finish the queued jobs, then close; call it off the owner loop's thread."""
        self._closed = True
        if not self._idle.wait(timeout):  # the owner loop stopped with jobs queued
            log.error("closing the store with %d write jobs never run", self._outstanding)
        self._thread.shutdown(wait=True)
        self._conn.close()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # ------------------------------------------------------------ on the owner loop

    def _wake(self) -> None:
        if not self._busy:
            self._busy = True
            self._next_batch()

    def _next_batch(self) -> None:
        while True:
            try:
                self._pending.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        batch: list[_Job[Any]] = []
        while self._pending and len(batch) < self._max_batch:
            job = self._pending.popleft()
            # A job whose caller gave up before it ran is dropped; once running, its
            # future can no longer be cancelled, so its result is always deliverable.
            if job.start():
                batch.append(job)
            else:
                self._count(-1)
        if not batch:
            self._busy = False
            return
        if any(job.large for job in batch):
            self._thread.submit(self._whole_batch, batch)
            return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process is writing: wait for it off the loop
            self.contended += 1
            self._thread.submit(self._whole_batch, batch)
            return
        self._run_locked(batch)

    def _run_locked(self, batch: list[_Job[Any]]) -> None:
        outcomes, failure = self._run_jobs(batch)
        if failure is not None:
            self._settle_batch(outcomes, failure)
        else:
            self._thread.submit(self._commit, outcomes)

    def _settle_batch(self, outcomes: list[_Done], failure: BaseException | None) -> None:
        """Publish a finished batch (after-commit hooks, results), then start the next."""
        if failure is None:
            self.batches += 1
            self.jobs += len(outcomes)
        per_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
        for job, tx, result, err in outcomes:
            if failure is not None:
                result, err = None, failure
            elif err is None:
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
            per_loop.setdefault(job.loop, []).append(
                (job.waiter, tx.on_loop if err is None else [], result, err)
            )
        for loop, settled in per_loop.items():
            if loop is self._loop:
                _settle(settled)
                continue
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # the loop was closed meanwhile: nobody is waiting
                pass
        self._count(-len(outcomes))
        self._next_batch()

    # ------------------------------------------------------------ on either thread, locked

    def _run_jobs(self, batch: list[_Job[Any]]) -> tuple[list[_Done], sqlite3.Error | None]:
        """BEGIN and every job; if BEGIN fails, its error (and the lock is released)."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            return _not_run(batch, conn), exc
        outcomes: list[_Done] = []
        try:
            for job in batch:
                tx = Tx(conn, index=self.index)
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(tx)
                except BaseException as exc:  # the job's own failure: roll back its work
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, tx, None, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, tx, result, None))
        except sqlite3.Error as exc:  # the connection itself failed: nothing is kept
            log.error("write transaction failed: %s", exc)
            _rollback(conn)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            return _not_run(batch, conn), exc
        return outcomes, None

    # ------------------------------------------------------------ on the commit thread

    def _whole_batch(self, batch: list[_Job[Any]]) -> None:
        """Wait for the lock here; run a large batch here too, a small one on the loop."""
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        except OSError as exc:
            self._to_owner(self._settle_batch, _not_run(batch, self._conn), exc)
            return
        if not any(job.large for job in batch):
            self._to_owner(self._run_locked, batch)
            return
        outcomes, failure = self._run_jobs(batch)
        if failure is not None:
            self._to_owner(self._settle_batch, outcomes, failure)
        else:
            self._commit(outcomes)

    def _commit(self, outcomes: list[_Done]) -> None:
        conn = self._conn
        failure: BaseException | None = None
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("commit failed: %s", exc)
            failure = exc
            _rollback(conn)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._to_owner(self._settle_batch, outcomes, failure)

    def _to_owner(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the owner loop is closed: settle here, no one else will
            fn(*args)


def _not_run(batch: list[_Job[Any]], conn: sqlite3.Connection) -> list[_Done]:
    """A batch that failed as a whole (_settle_batch gives every job the failure)."""
    return [(job, Tx(conn), None, None) for job in batch]


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:  # no transaction left to roll back
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
