"""Closing a connection whose peer may never read what is left to send.

asyncio's ``close()`` flushes the write buffer before it closes the socket; a client that
stops reading (the socket buffers full) would keep the connection, and the unsent bytes,
for as long as it stays connected.  Every server closes through these: the connection
is cut off (``abort()``) once ``flush_s`` seconds pass in which none of what is left
went out, or after ``MAX_FLUSH_S`` in all.  A client that reads, however slowly, gets
its last replies whole: at 100 kbit/s a full 64 KiB write buffer takes ~5 s, which a
fixed limit of FLUSH_S would have cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import cast

FLUSH_S = 5.0  # without progress, for a closing connection's last replies to be read
MAX_FLUSH_S = 120.0  # with progress: a reader this slow is cut off anyway


def _unsent(transport: asyncio.BaseTransport) -> int:
    """Bytes the transport still holds; 0 once it cannot tell (asyncio's TLS transport
    raises AttributeError after a second close(): its SSL protocol is dropped)."""
    try:
        return cast(asyncio.WriteTransport, transport).get_write_buffer_size()
    except Exception:
        return 0


def _progressed(now: int, before: int, deadline: float) -> bool:
    """Some of what was unsent went out since, and ``deadline`` (loop time) is ahead."""
    return now < before and asyncio.get_running_loop().time() < deadline


def close_transport(
    transport: asyncio.Transport, flush_s: float = FLUSH_S, max_s: float = MAX_FLUSH_S
) -> None:
    """Close now; abort once ``flush_s`` passes without unsent data going out (or after
    ``max_s``)."""
    if transport.is_closing():
        return
    transport.close()
    left = _unsent(transport)
    if left:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_s

        def check(before: int) -> None:
            now = _unsent(transport)
            if not now:
                return  # all sent: the transport closes itself
            if _progressed(now, before, deadline):
                loop.call_later(flush_s, check, now)
            else:
                transport.abort()

        loop.call_later(flush_s, check, left)


async def close_writer(
    writer: asyncio.StreamWriter, flush_s: float = FLUSH_S, max_s: float = MAX_FLUSH_S
) -> None:
    """Close ``writer`` and wait until it is closed; abort once ``flush_s`` passes without
    unsent data going out (or after ``max_s``)."""
    writer.close()
    deadline = asyncio.get_running_loop().time() + max_s
    before = _unsent(writer.transport)
    # A connection that failed while closing is closed: its error is only retrieved.
    closed = asyncio.ensure_future(writer.wait_closed())
    closed.add_done_callback(_retrieve)
    try:
        while not (await asyncio.wait({closed}, timeout=flush_s))[0]:
            now = _unsent(writer.transport)
            if not _progressed(now, before, deadline):
                with contextlib.suppress(Exception):  # a TLS transport closed twice raises
                    writer.transport.abort()
                await asyncio.wait({closed}, timeout=flush_s)  # connection_lost follows
                return
            before = now
    finally:
        closed.cancel()  # nothing once it is done


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


async def close_handler_writer(writer: asyncio.StreamWriter, stopping: Callable[[], bool]) -> None:
    """``close_writer`` at the end of a stream server's connection handler.  If the
    server's stop() cancels it there, the connection is cut off and the handler ends
    normally: Python 3.11's start_server callback reports a handler task that ends
    cancelled as an error, with a CancelledError traceback."""
    try:
        await close_writer(writer)
    except asyncio.CancelledError:
        if not stopping():
            raise
        with contextlib.suppress(Exception):
            writer.transport.abort()
