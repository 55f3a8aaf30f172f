"""Closing a connection whose peer may never read what is left to send.

asyncio's ``close()`` flushes the write buffer before it closes the socket; a client that
stops reading (the socket buffers full) would keep the connection, and the unsent bytes,
for as long as it stays connected.  Every server closes through these: what is written
gets ``flush_s`` seconds to go out, then the connection is cut off (``abort()``).
"""

from __future__ import annotations

import asyncio
import contextlib

FLUSH_S = 5.0  # for a closing connection's last replies to be read


def close_transport(transport: asyncio.Transport, flush_s: float = FLUSH_S) -> None:
    """Close now; abort after ``flush_s`` if unsent data still holds it open."""
    if transport.is_closing():
        return
    transport.close()
    if transport.get_write_buffer_size():
        asyncio.get_running_loop().call_later(flush_s, transport.abort)


async def close_writer(writer: asyncio.StreamWriter, flush_s: float = FLUSH_S) -> None:
    """Close ``writer`` and wait until it is closed: at most ``flush_s``, then abort."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), flush_s)
    except TimeoutError:
        writer.transport.abort()
    except Exception:  # the connection failed while closing: it is closed
        with contextlib.suppress(Exception):
            writer.transport.abort()
