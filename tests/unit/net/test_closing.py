"""Closing with unsent data, over real loopback sockets: a client that reads slowly gets
every byte, one that never reads is cut off once nothing goes out for ``flush_s``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import pytest

from postier.net.closing import close_transport, close_writer
from postier.net.tls import ensure_certificate, server_context

PAYLOAD = b"x" * (1024 * 1024)  # far more than the socket buffers: most waits in the transport
FLUSH_S = 0.3


def _client(port: int, read_every_s: float | None, rcvbuf: int = 16384) -> tuple[int, float]:
    """Connect, then read ``rcvbuf`` bytes every ``read_every_s`` (never, if None) until
    the server closes; (bytes received, seconds until the connection ended)."""
    started = time.monotonic()
    got = 0
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(("127.0.0.1", port))
        sock.settimeout(30)
        if read_every_s is None:
            # never read; notice the end (a reset) by sending
            try:
                while time.monotonic() - started < 20:
                    time.sleep(0.05)
                    sock.send(b"ping")
            except OSError:
                pass
            return got, time.monotonic() - started
        try:
            while True:
                data = sock.recv(rcvbuf)
                if not data:
                    break
                got += len(data)
                time.sleep(read_every_s)
        except OSError:
            pass
    return got, time.monotonic() - started


async def _serve(
    close: Callable[[asyncio.StreamWriter], Awaitable[None]],
    read_every_s: float | None,
) -> tuple[int, float]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # small kernel buffers: the payload waits in the transport, not in the kernel
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        writer.write(PAYLOAD)  # not drained: the close has to flush it
        await close(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await asyncio.to_thread(_client, port, read_every_s)
    finally:
        server.close()
        await server.wait_closed()


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    await close_writer(writer, flush_s=FLUSH_S)


async def _close_transport(writer: asyncio.StreamWriter) -> None:
    close_transport(cast(asyncio.Transport, writer.transport), flush_s=FLUSH_S)


CLOSERS = [pytest.param(_close_writer, id="close_writer"),
           pytest.param(_close_transport, id="close_transport")]


@pytest.mark.parametrize("close", CLOSERS)
async def test_a_slow_reader_gets_every_byte(
    close: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> None:
    # 16 KB every 10 ms: 1 MB takes ~0.7 s, more than twice FLUSH_S
    got, seconds = await _serve(close, read_every_s=0.01)
    assert got == len(PAYLOAD)
    assert seconds > 2 * FLUSH_S  # it did take longer than one flush period


@pytest.mark.parametrize("close", CLOSERS)
async def test_a_client_that_never_reads_is_cut_off(
    close: Callable[[asyncio.StreamWriter], Awaitable[None]],
) -> None:
    _, seconds = await _serve(close, read_every_s=None)
    assert seconds < 5  # cut off after FLUSH_S without progress, not held for 20 s


async def test_max_s_bounds_a_reader_that_keeps_reading() -> None:
    async def close(writer: asyncio.StreamWriter) -> None:
        await close_writer(writer, flush_s=0.2, max_s=0.5)

    got, seconds = await _serve(close, read_every_s=0.05)  # ~3 s for the whole payload
    assert got < len(PAYLOAD) and seconds < 2.5


@pytest.mark.parametrize("twice", [False, True])
def test_a_tls_connection_closed_before_is_closed_again_quietly(
    tmp_path: Path, twice: bool
) -> None:
    """asyncio's own TLS transport drops its SSL protocol at a second close(); asking
    it for its write buffer then raises AttributeError (seen in CI: an IMAP session
    closed its writer, then the server's close_writer ran)."""
    cert, key = ensure_certificate(tmp_path, "mx.example.org")
    server_ctx = server_context(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    failures: list[BaseException] = []

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                writer.write(b"* BYE\r\n")
                if twice:
                    writer.close()  # the session closed it already
                await close_writer(writer, flush_s=FLUSH_S)
                transport = cast(asyncio.Transport, writer.transport)
                close_transport(transport, flush_s=FLUSH_S)  # and once more: nothing left
            except BaseException as exc:
                failures.append(exc)

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="mx.example.org"
            )
            assert await reader.readline() == b"* BYE\r\n"
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            await asyncio.sleep(0.2)
        finally:
            server.close()
            await server.wait_closed()

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:  # asyncio's TLS
        runner.run(main())
    assert failures == []
