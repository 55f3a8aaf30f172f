"""Binding stream listeners from configuration entries (TCP, Unix sockets, implicit TLS)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

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
