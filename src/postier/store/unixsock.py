"""Unix-socket servers in the data folder that only the server's own user can reach."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PrivateServer:
    """A server on a socket file, and which file it made (device, inode)."""

    server: asyncio.AbstractServer
    path: Path
    made: tuple[int, int]


async def serve_private(
    path: Path, start: Callable[[str], Awaitable[asyncio.AbstractServer]]
) -> PrivateServer:
    """Run ``start(path)`` with the socket created mode 0600 (no window with a wider
    mode, as a chmod afterwards would leave), replacing one left by an earlier run."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old = os.umask(0o177)
    try:
        server = await start(str(path))
    finally:
        os.umask(old)
    st = path.stat()
    return PrivateServer(server, path, (st.st_dev, st.st_ino))


async def close_private(private: PrivateServer | None) -> None:
    """Stop serving and remove the socket file — unless another process has replaced it
    since (a successor started while this one was still shutting down keeps its socket)."""
    if private is None:
        return
    private.server.close()
    await private.server.wait_closed()
    with contextlib.suppress(FileNotFoundError):
        st = private.path.stat()
        if (st.st_dev, st.st_ino) == private.made:
            private.path.unlink()
