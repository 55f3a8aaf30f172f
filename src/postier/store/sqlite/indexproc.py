"""The full-text indexer in a process of its own: ``postier serve``'s default.

Why: indexing a 10 KB message costs ~0.3 ms of CPU (FTS5 inserts, batching,
marking), and in a thread of the serving process part of that holds the GIL the event
loop needs; with 10 SMTP senders the process was GIL-bound at ~1,050–1,170 msg/s, and
with the indexer out of it the same load ran at ~1,350–1,590 (bench/README.md, SMTP,
session 4).  In its own process the indexer runs on another core.

Shape:

- The child (``python -m postier.store.sqlite.indexproc --data DIR``) opens the store with
  its indexer thread (catch-up included: it is the one indexer of the data folder), serves
  ``index.sock`` (indexfeed.IndexFeedServer), prints READY_LINE on stdout, and runs until
  its stdin reaches end of file (the parent closed it, or died: even ``kill -9`` of the
  parent ends the child) or SIGTERM.  It ignores SIGINT: Ctrl-C in a terminal reaches the
  whole process group, and the parent stops it in order, after its own last deliveries.
- The parent (IndexProcess, in worker 0) starts it, restarts it when it dies (with a
  growing pause), and stops it by closing its stdin after the store is closed.

Nothing waits for the index, so nothing is lost when the child is down: new bodies stay
marked unindexed, SEARCH reads them whole meanwhile, and the catch-up pass of the next
child indexes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("postier.store")

READY_LINE = "postier index process ready"
START_TIMEOUT_S = 60.0  # for the ready line (a new index.db, a migration)
STOP_TIMEOUT_S = 30.0  # after closing its stdin, before SIGKILL
DRAIN_S = 2.0  # at stop, for the serving processes to close their feeds
RESTART_PAUSE_S = (1.0, 60.0)  # first and longest pause before a restart
STABLE_S = 60.0  # a child that ran this long restarts after the first pause again
ALIVE_CHECK_S = 5.0  # how often the child checks that its indexer thread runs
# The child runs at this much lower priority (nice): indexing is background work, and on
# a busy machine the serving processes that answer clients come first.  Nothing waits
# for the index (SEARCH reads unindexed bodies whole), and at nice 10 a saturated CPU
# still gives the child about a tenth of a core against each busy serving process.
NICE = 10


class IndexProcess:
    """The parent's side: start, keep and stop the index process."""

    def __init__(self, data_dir: Path, log_level: str = "info", event_loop: str = "auto") -> None:
        self.data_dir = data_dir
        self.argv = [
            sys.executable, "-m", "postier.store.sqlite.indexproc", "--data", str(data_dir),
            "--log-level", log_level, "--event-loop", event_loop,
        ]
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0  # children started (tests)
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the child and wait for it to be ready.  If it cannot start, the server
        runs on (SEARCH reads unindexed bodies whole) and the keeper tries again."""
        try:
            await self._spawn()
        except OSError as exc:
            log.error("cannot start the full-text index process: %s", exc)
        self._task = asyncio.create_task(self._keep(), name="index-process")

    async def _spawn(self) -> bool:
        self.starts += 1
        proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        self.proc = proc
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        if READY_LINE.encode() not in line:
            log.error("full-text index process did not start (pid %d)", proc.pid)
            if proc.returncode is None:  # hung: the keeper starts another
                proc.kill()
            return False
        log.info("full-text index process started (pid %d)", proc.pid)
        return True

    async def _keep(self) -> None:
        pause = RESTART_PAUSE_S[0]
        loop = asyncio.get_running_loop()
        while True:
            proc = self.proc
            started = loop.time()
            code = await proc.wait() if proc is not None else None
            if self._stopping:
                return
            if loop.time() - started >= STABLE_S:
                pause = RESTART_PAUSE_S[0]
            log.warning("full-text index process exited with status %s; restarting it in %g s",
                        code, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RESTART_PAUSE_S[1])
            if self._stopping:
                return
            try:
                await self._spawn()
            except OSError as exc:
                log.error("cannot start the full-text index process: %s", exc)

    async def stop(self) -> None:
        """Close the child's stdin (it finishes what it holds and exits); kill it if it
        has not exited within STOP_TIMEOUT_S."""
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.error("full-text index process did not stop; killing it")
                proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


# ---------------------------------------------------------------- the child


async def serve_index(data_dir: Path, stopping: asyncio.Event, ready: Callable[[], None]) -> None:
    """Index what the serving processes send until ``stopping`` is set; ``ready()`` once
    the feed socket listens."""
    from postier.store.sqlite.indexfeed import IndexFeedServer
    from postier.store.sqlite.store import SqliteStore

    store = await SqliteStore.open(data_dir, readers=1, catch_up=True)
    try:
        indexer = store.indexer
        assert indexer is not None
        feed = IndexFeedServer(data_dir, indexer.add, indexer.delete)
        await feed.start()
        try:
            ready()
            while not stopping.is_set():
                # An indexer thread that died (a bug) would leave a process that only
                # reads ids: exit instead, and the parent starts a new one.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), ALIVE_CHECK_S)
                if not indexer.alive():
                    log.error("full-text indexer thread ended; the index process exits")
                    raise SystemExit(1)
        finally:
            await feed.stop(DRAIN_S)
    finally:
        await store.close()


def _announce_ready() -> None:
    """READY_LINE for the parent; then stdout goes nowhere: nobody reads the pipe after
    that line, so anything written to it would fill it and block (logs go to stderr)."""
    print(READY_LINE, flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _watch_stdin(loop: asyncio.AbstractEventLoop, stopping: asyncio.Event) -> None:
    """Set ``stopping`` when stdin ends: the parent closed it or is gone."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    loop.call_soon_threadsafe(stopping.set)


async def _main(data_dir: Path) -> None:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    threading.Thread(target=_watch_stdin, args=(loop, stopping), daemon=True,
                     name="postier-stdin").start()
    await serve_index(data_dir, stopping, _announce_ready)


def main(argv: list[str] | None = None) -> None:
    from postier import eventloop
    from postier.log import setup_logging

    parser = argparse.ArgumentParser(description="postier's full-text index process (internal)")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--event-loop", default="auto")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us, in order
    setup_logging(args.log_level)
    try:
        os.nice(NICE)
    except OSError as exc:  # not allowed (a seccomp profile): index at the same priority
        log.warning("full-text index process: cannot lower its priority: %s", exc)
    eventloop.run(_main(args.data), eventloop.choose_event_loop(args.event_loop))


if __name__ == "__main__":
    main()
