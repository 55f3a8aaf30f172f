"""Unix-socket servers in the data folder that only the server's own user can reach."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path


async def serve_private(
    path: Path, start: Callable[[str], Awaitable[asyncio.AbstractServer]]
) -> asyncio.AbstractServer:
    """Run ``start(path)`` with the socket created mode 0600 (no window with a wider
    mode, as a chmod afterwards would leave), replacing one left by an earlier run."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old = os.umask(0o177)
    try:
        return await start(str(path))
    finally:
        os.umask(old)


async def close_private(server: asyncio.AbstractServer | None, path: Path) -> None:
    if server is not None:
        server.close()
        await server.wait_closed()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
