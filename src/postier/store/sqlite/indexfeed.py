"""One indexer per data folder: the serving processes send it their new bodies' index values.

Why: the indexer's work (FTS5 inserts, ~0.3 ms of CPU per 10 KB message) done in a thread
of the process serving SMTP and IMAP competes with it for the GIL; in a process of its own
it runs on another core (indexproc.py; measured in bench/README.md, SMTP, session 4).  And
two indexers writing one ``index.db`` each discard the other's page cache and FTS5
structure at every commit (~0.8 ms of CPU per message against ~0.45 ms with one indexer,
session 3).  So one process indexes — the index process, or with ``[store] indexer =
"thread"`` worker 0 — and every serving process hands (body id, values) to it over a Unix
socket in the data folder (``index.sock``, mode 0600), from its event loop, without
waiting.  Best effort by design: a body whose values cannot be sent (the indexer
restarting, its socket buffer full) stays marked unindexed, SEARCH parses it meanwhile, and
the indexer's catch-up pass indexes it — the same path as after a crash.

Frame: ``>QI`` (body id, number of values), one ``>I`` length per value, then the values
in UTF-8 (``surrogatepass``: extracted text may hold lone surrogates).  A frame with no
values removes the body from the index (garbage collection).
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
_HEAD = struct.Struct(">QI")
_LEN = struct.Struct(">I")
MAX_VALUES = 16
MAX_FRAME_BYTES = 64 * 1024 * 1024  # far above what the index takes (64 KiB of text)
RECONNECT_S = 1.0  # after a failed connect or send, before the next attempt

Values = tuple[str, ...]


def encode(body_id: int, values: Values) -> bytes:
    data = [v.encode("utf-8", "surrogatepass") for v in values]
    return b"".join(
        [_HEAD.pack(body_id, len(data)), *(_LEN.pack(len(d)) for d in data), *data]
    )


class FrameReader:
    """Decodes frames from a byte stream; raises ValueError on a malformed one."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, Values | None]]:
        """The frames completed by ``data``: (body id, values), values None to remove."""
        buffer = self._buffer
        buffer += data
        out: list[tuple[int, Values | None]] = []
        while len(buffer) >= _HEAD.size:
            body_id, count = _HEAD.unpack_from(buffer)
            if count > MAX_VALUES:
                raise ValueError(f"frame with {count} values")
            lengths_end = _HEAD.size + _LEN.size * count
            if len(buffer) < lengths_end:
                break
            lengths = [_LEN.unpack_from(buffer, _HEAD.size + _LEN.size * i)[0] for i in range(count)]
            end = lengths_end + sum(lengths)
            if end > MAX_FRAME_BYTES:
                raise ValueError(f"frame of {end} bytes")
            if len(buffer) < end:
                break
            values: list[str] = []
            pos = lengths_end
            for size in lengths:
                values.append(bytes(buffer[pos : pos + size]).decode("utf-8", "surrogatepass"))
                pos += size
            del buffer[:end]
            out.append((body_id, tuple(values) if count else None))
        return out


class IndexFeed:
    """A serving process's side: sends index values to the indexer; never blocks the loop."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / SOCKET_NAME
        self._sock: socket.socket | None = None
        self._pending = b""  # the unsent rest of a frame (a frame is never split between peers)
        self._retry_at = 0.0
        self.sent = 0
        self.dropped = 0  # left to worker 0's catch-up pass

    def add(self, body_id: int, values: Values) -> None:
        self._send(body_id, values)

    def delete(self, body_id: int) -> None:
        """Remove a body from the index.  If the frame is lost the index keeps values for
        an id that is never used again (AUTOINCREMENT): space, never a wrong answer."""
        self._send(body_id, ())

    def _send(self, body_id: int, values: Values) -> None:
        sock = self._connected()
        if sock is None or (self._pending and not self._flush(sock)):
            self.dropped += 1  # the indexer unreachable, or still reading the last frame
            return
        self._pending = encode(body_id, values)
        self._flush(sock)  # a rest the socket did not take goes first at the next add
        if self._sock is not None:
            self.sent += 1

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
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        self._sock = sock
        return sock

    def _flush(self, sock: socket.socket) -> bool:
        """Send what is pending; True when all of it went."""
        try:
            while self._pending:
                sent = sock.send(self._pending)
                self._pending = self._pending[sent:]
        except BlockingIOError:
            return False
        except OSError as exc:
            self._fail(f"sending to the indexer: {exc}")
            return False
        return True

    def _fail(self, why: str) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._pending:
            self.dropped += 1
            self._pending = b""
        self._retry_at = time.monotonic() + RECONNECT_S
        log.warning("full-text index: %s; bodies left to its catch-up pass", why)

    def close(self) -> None:
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
        for body_id, values in frames:
            if values is None:
                owner.delete(body_id)
            else:
                owner.add(body_id, values)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class IndexFeedServer:
    """The indexer's side: receives the serving processes' index values and removals."""

    def __init__(
        self, data_dir: Path, add: Callable[[int, Values], None], delete: Callable[[int], None]
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
