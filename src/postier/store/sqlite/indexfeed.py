"""One indexer per data folder: the serving processes send it their new bodies' ids.

Why: the indexer's work (text extraction and FTS5 inserts, ~0.35 ms of CPU per
10 KB message of the bench text with the trigram index of session 4) done in a thread of the process serving SMTP and IMAP competes with it for
the GIL and the cores; in a process of its own (indexproc.py) it runs beside it (bench/
README.md, SMTP, session 4).  And two indexers writing one ``index.db`` each discard the
other's page cache and FTS5 structure at every commit (~0.8 ms of CPU per message against
~0.45 ms with one indexer, session 3).  So one process indexes — the index process, or
with ``[store] indexer = "thread"`` worker 0 — and every serving process hands it the id
of each new body after COMMIT over a Unix socket in the data folder (``index.sock``, mode
0600), from its event loop, without waiting; the indexer reads the body's row and bytes
itself.  Best effort by design: a body whose id cannot be sent (the indexer restarting,
its socket buffer full) stays marked unindexed, SEARCH parses it meanwhile, and the
indexer's catch-up pass indexes it — the same path as after a crash.

Frame: 9 bytes, ``>QB``: the body id, then 1 (index it) or 0 (remove it: garbage
collection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from postier.store.unixsock import PrivateServer, close_private, serve_private

log = logging.getLogger("postier.store")

SOCKET_NAME = "index.sock"
_FRAME = struct.Struct(">QB")
RECONNECT_S = 1.0  # after a failed connect or send, before the next attempt
SEND_EVERY_S = 0.02  # frames gather this long before one send (at most 50 wake-ups/s)
# Unsent frames kept at most (the indexer not reading); past that new ids are dropped
# (left to the catch-up pass).  The socket's own buffer (1 MiB asked) comes first.
MAX_UNSENT_BYTES = 64 * 1024


def encode(body_id: int, add: bool = True) -> bytes:
    return _FRAME.pack(body_id, int(add))


class FrameReader:
    """Decodes frames from a byte stream; raises ValueError on a malformed one."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bool]]:
        """The frames completed by ``data``: (body id, True to index / False to remove)."""
        buffer = self._buffer + data
        whole = len(buffer) - len(buffer) % _FRAME.size
        out: list[tuple[int, bool]] = []
        for body_id, op in _FRAME.iter_unpack(buffer[:whole]):
            if op > 1:
                raise ValueError(f"frame with operation {op}")
            out.append((body_id, bool(op)))
        self._buffer = buffer[whole:]
        return out


class IndexFeed:
    """A serving process's side: sends body ids to the indexer; never blocks the loop.

    Frames wait up to SEND_EVERY_S to leave together: each send wakes the indexer's
    process.  With one send per message its receiving thread had 11 % of the process's
    py-spy samples, batched 2 % (end to end within the host's noise: bench/README.md,
    SMTP, session 5)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / SOCKET_NAME
        self._sock: socket.socket | None = None
        # Frames not yet sent; whole frames only, except that a send the socket took in
        # part leaves the rest of its last frame at the front (never split between peers).
        self._out = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._retry_at = 0.0
        self._sent_bytes = 0  # frames are sent in order: a frame counts once its last byte went
        self.dropped = 0  # left to the indexer's catch-up pass

    @property
    def sent(self) -> int:
        return self._sent_bytes // _FRAME.size

    def add(self, body_id: int) -> None:
        self._send(body_id, True)

    def delete(self, body_id: int) -> None:
        """Remove a body from the index.  If the frame is lost the index keeps values for
        an id that is never used again (AUTOINCREMENT): space, never a wrong answer."""
        self._send(body_id, False)

    def _send(self, body_id: int, add: bool) -> None:
        if self._connected() is None or len(self._out) >= MAX_UNSENT_BYTES:
            self.dropped += 1  # the indexer unreachable, or not reading
            return
        self._out += encode(body_id, add)
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to wait on (a command, a thread): send at once
            self.flush()
            return
        self._timer = loop.call_later(SEND_EVERY_S, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()
        if self._out and self._sock is not None:  # the socket is full: try again later
            self._timer = asyncio.get_running_loop().call_later(SEND_EVERY_S, self._on_timer)

    def _connected(self) -> socket.socket | None:
        if self._sock is not None:
            return self._sock
        if time.monotonic() < self._retry_at:
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.path))  # local: completes at once or fails
        except OSError as exc:
            sock.close()
            self._fail(f"cannot reach the indexer: {exc}")
            return None
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1024 * 1024)
        self._sock = sock
        return sock

    def flush(self) -> None:
        """Send what the socket takes now (never waits); the rest stays for later."""
        sock = self._sock
        if sock is None or not self._out:
            return
        try:
            while self._out:
                sent = sock.send(self._out)
                self._sent_bytes += sent
                del self._out[:sent]
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(f"sending to the indexer: {exc}")

    def _fail(self, why: str) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._drop_unsent()
        self._retry_at = time.monotonic() + RECONNECT_S
        log.warning("full-text index: %s; bodies left to its catch-up pass", why)

    def _drop_unsent(self) -> None:
        """Frames not wholly sent are dropped, a partly sent one too (the next frame goes
        to a new connection: the byte count starts at a frame boundary again)."""
        if self._out:
            self.dropped += -(-len(self._out) // _FRAME.size)
            self._out.clear()
        self._sent_bytes -= self._sent_bytes % _FRAME.size

    def close(self) -> None:
        """Send what the socket takes at once, then close; the rest is dropped."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
        self._drop_unsent()
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class _Receiver(asyncio.Protocol):
    def __init__(self, owner: IndexFeedServer) -> None:
        self._owner = owner
        self._reader = FrameReader()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio's classes: no isinstance here
        self._transport = cast(asyncio.Transport, transport)
        self._owner.connections.add(self)
        log.info("full-text index: a server process sends its new bodies here")

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.connections.discard(self)
        if not self._owner.connections:
            self._owner.all_closed.set()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except ValueError as exc:
            log.error("full-text index feed: %s; connection closed", exc)
            if self._transport is not None:
                self._transport.close()
            return
        owner = self._owner
        for body_id, add in frames:
            if add:
                owner.add(body_id)
            else:
                owner.delete(body_id)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class IndexFeedServer:
    """The indexer's side: receives the serving processes' body ids and removals."""

    def __init__(
        self, data_dir: Path, add: Callable[[int], None], delete: Callable[[int], None]
    ) -> None:
        self.path = data_dir / SOCKET_NAME
        self.add = add
        self.delete = delete
        self.connections: set[_Receiver] = set()
        self.all_closed = asyncio.Event()
        self._server: PrivateServer | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await serve_private(
            self.path, lambda path: loop.create_unix_server(lambda: _Receiver(self), path)
        )

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop accepting; give the senders ``drain_s`` to close their side (what they sent
        before is read in full), then close what is left."""
        await close_private(self._server)
        self._server = None
        if self.connections and drain_s > 0:
            self.all_closed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_closed.wait(), drain_s)
        for receiver in list(self.connections):
            receiver.close()
