"""Binding stream listeners from configuration entries (TCP, Unix sockets, implicit TLS)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence

from postier.net.addresses import ListenAddress

StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def start_stream_server(
    handler: StreamHandler,
    address: ListenAddress,
    tls: ssl.SSLContext | None = None,
    *,
    reuse_port: bool = False,
) -> asyncio.Server:
    """Listen on ``address``; ``tls`` makes it implicit TLS; ``reuse_port`` lets several
    worker processes bind the same TCP address (SO_REUSEPORT)."""
    if address.is_unix:
        return await asyncio.start_unix_server(handler, path=address.path, ssl=tls)
    return await asyncio.start_server(
        handler, host=address.bind_host, port=address.port, ssl=tls, reuse_address=True,
        reuse_port=reuse_port or None,
    )


def tcp_names(server: asyncio.Server) -> list[tuple[str, int]]:
    """(host, port) of every TCP socket of ``server`` (ports the OS chose included)."""
    out: list[tuple[str, int]] = []
    for sock in server.sockets:
        name = sock.getsockname()
        if isinstance(name, tuple):
            out.append((str(name[0]), int(name[1])))
    return out


# A session handler: (reader, writer, implicit TLS?, listen address as configured).
SessionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, bool, str], Awaitable[None]]


class Listeners:
    """The listening sockets of one protocol server: plain (STARTTLS-capable) and
    implicit-TLS addresses, what they are bound to, and closing them."""

    def __init__(self, log_name: str) -> None:
        self._log = logging.getLogger(log_name)
        self._servers: list[tuple[asyncio.Server, bool]] = []

    async def start(
        self,
        handle: SessionHandler,
        plain: Sequence[ListenAddress],
        implicit_tls: Sequence[ListenAddress],
        tls: ssl.SSLContext | None,
        *,
        reuse_port: bool = False,
    ) -> None:
        """Bind every address; on a failure, close what was bound and raise."""
        try:
            for addresses, is_tls in ((plain, False), (implicit_tls, True)):
                for address in addresses:
                    server = await start_stream_server(
                        _bind_handler(handle, is_tls, str(address)), address,
                        tls if is_tls else None, reuse_port=reuse_port,
                    )
                    self._servers.append((server, is_tls))
                    self._log.info("listening on %s%s", address, " (TLS)" if is_tls else "")
        except BaseException:
            await self.close()
            raise

    @property
    def bound(self) -> list[tuple[str, int, bool]]:
        """``(host, port, implicit_tls)`` of every TCP socket (ports chosen by the OS too)."""
        return [(host, port, is_tls) for server, is_tls in self._servers
                for host, port in tcp_names(server)]

    async def close(self) -> None:
        for server, _ in self._servers:
            server.close()
        for server, _ in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()


def _bind_handler(handle: SessionHandler, is_tls: bool, label: str) -> StreamHandler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle(reader, writer, is_tls, label)

    return handler
