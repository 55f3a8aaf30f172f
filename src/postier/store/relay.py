"""Carry change events from other processes into the server's bus.

The server listens on a Unix socket in its data folder (``events.sock``, mode 0600).
Another process working on the same data (``postier deliver`` called by an MTA, an
import) publishes its committed changes there, so IMAP IDLE and POP3 sessions hear about
them as if the server had made them.  Best effort: with no server running nothing is sent
and nothing is lost (the changes are committed; sessions see them when they next read).
Format: one JSON object per line, ``{"type": "MessageAdded", "account_id": 1, ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import socket
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from postier.auth.limiter import LoginAttempt
from postier.store import bus as ev
from postier.store.unixsock import PrivateServer, close_private, serve_private

log = logging.getLogger("postier.store")

SOCKET_NAME = "events.sock"  # the server (worker 0 when there are several)
SOCKET_GLOB = "events*.sock"  # every worker: events.sock, events-1.sock, ...


def socket_name(worker: int) -> str:
    return SOCKET_NAME if worker == 0 else f"events-{worker}.sock"
MAX_LINE_BYTES = 1024 * 1024
_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (ev.MessageAdded, ev.FlagsChanged, ev.Expunged, ev.MailboxCreated,
                ev.MailboxRenamed, ev.MailboxDeleted, LoginAttempt)
}
# What goes over the relay: store changes, and between workers the limiter's counts.
Relayed = ev.Event | LoginAttempt
# Each type's fields and their declared types (NewTypes such as Uid are their base type).
_HINTS: dict[type[Any], dict[str, Any]] = {cls: typing.get_type_hints(cls) for cls in _TYPES.values()}


def _fits(value: Any, hint: Any) -> bool:
    """A JSON value of the declared field type: bool, int, str or tuple[int, ...]."""
    hint = getattr(hint, "__supertype__", hint)
    if typing.get_origin(hint) is tuple:
        (item, _) = typing.get_args(hint)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return hint in (bool, str) and type(value) is hint


def encode(event: Relayed) -> bytes:
    data = dataclasses.asdict(event)
    data["type"] = type(event).__name__
    return json.dumps(data, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Relayed | None:
    try:
        data = json.loads(line)
        cls = _TYPES[data.pop("type")]
        hints = _HINTS[cls]
        if set(data) != set(hints) or not all(_fits(data[k], hints[k]) for k in hints):
            return None
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        event: Relayed = cls(**fields)
        return event
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class EventRelay:
    """The server side: publish what other processes send into ``bus``."""

    def __init__(self, bus: ev.ChangeBus, data_dir: Path, worker: int = 0) -> None:
        self.bus = bus
        # Another worker's login outcome (the app points it at its limiter); dropped if None.
        self.on_login: Callable[[LoginAttempt], None] | None = None
        self.path = data_dir / socket_name(worker)
        self._server: PrivateServer | None = None
        self._open: dict[asyncio.StreamWriter, asyncio.Task[Any] | None] = {}  # and handlers

    async def start(self) -> None:
        self._server = await serve_private(
            self.path, lambda path: asyncio.start_unix_server(self._handle, path=path)
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open[writer] = asyncio.current_task()
        try:
            while line := await reader.readuntil(b"\n"):
                if len(line) > MAX_LINE_BYTES:
                    break
                event = decode(line)
                if isinstance(event, LoginAttempt):
                    if self.on_login is not None:
                        self.on_login(event)
                elif event is not None:
                    self.bus.publish(event, local=False)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._open.pop(writer, None)
            writer.close()

    async def stop(self) -> None:
        """Stop, and end the open connections' handlers (left to the loop's final
        cancellation, asyncio's stream callback logs a CancelledError traceback)."""
        await close_private(self._server)
        self._server = None
        handlers = [task for task in self._open.values() if task is not None]
        for writer in list(self._open):
            writer.close()
        if handlers:
            await asyncio.wait(handlers, timeout=2)


def forward(data_dir: Path, events: Sequence[ev.Event], timeout_s: float = 2.0) -> bool:
    """Send committed ``events`` to every running server process; False if none listens."""
    if not events:
        return True
    payload = b"".join(encode(e) for e in events)
    told = False
    for path in sorted(data_dir.glob(SOCKET_GLOB)):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout_s)
                sock.connect(str(path))
                sock.sendall(payload)
                told = True
        except OSError as exc:
            log.debug("%s not told about %d change(s): %s", path.name, len(events), exc)
    return told


class PeerForwarder:
    """A worker's tap: forward its own committed events to the other workers, in order.

    Events are queued without blocking the loop and written by one task over persistent
    connections (reconnected when a peer restarts).
    """

    def __init__(self, data_dir: Path, worker: int, workers: int) -> None:
        self.paths = [data_dir / socket_name(i) for i in range(workers) if i != worker]
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._writers: dict[Path, asyncio.StreamWriter] = {}
        self._task: asyncio.Task[None] | None = None

    def __call__(self, event: Relayed) -> None:
        if self.paths:
            self._queue.put_nowait(encode(event))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-forwarder")

    async def _run(self) -> None:
        while True:
            lines = [await self._queue.get()]
            while not self._queue.empty():
                lines.append(self._queue.get_nowait())
            payload = b"".join(lines)
            for path in self.paths:
                await self._send(path, payload)

    async def _send(self, path: Path, payload: bytes) -> None:
        for _attempt in range(2):
            writer = self._writers.get(path)
            try:
                if writer is None:
                    _, writer = await asyncio.open_unix_connection(str(path))
                    self._writers[path] = writer
                writer.write(payload)
                await writer.drain()
                return
            except OSError:
                self._writers.pop(path, None)
        log.debug("worker socket %s unreachable; its sessions will re-read", path.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
