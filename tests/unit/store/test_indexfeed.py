"""The index feed between workers: frames, a real Unix socket, and an absent worker 0."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from postier.store.sqlite.indexfeed import (
    SOCKET_NAME,
    FrameReader,
    IndexFeed,
    IndexFeedServer,
    encode,
)

ODD = ("subject é", "", "a\x00b", "lone \udc80 surrogate", "x" * 70_000, "日本語", "end")
TYPICAL = ("subject é", "bob", "alice", "", "", "headers", "text " * 2000)  # ~10 KB


def test_frames_round_trip_whole_and_byte_by_byte() -> None:
    frames = encode(1, ODD) + encode(2**40, ("only",))
    assert FrameReader().feed(frames) == [(1, ODD), (2**40, ("only",))]
    reader = FrameReader()
    got = []
    for i in range(len(frames)):
        got.extend(reader.feed(frames[i : i + 1]))
    assert got == [(1, ODD), (2**40, ("only",))]


def test_a_malformed_frame_is_refused() -> None:
    with pytest.raises(ValueError):
        FrameReader().feed(b"\x00" * 8 + b"\x00\x00\xff\xff")  # 65,535 values
    with pytest.raises(ValueError):
        FrameReader().feed(encode(1, ("a",))[:12] + b"\x7f\xff\xff\xff")  # 2 GB value


async def test_values_reach_worker_0s_indexer(tmp_path: Path) -> None:
    received: list[tuple[int, tuple[str, ...]]] = []
    server = IndexFeedServer(tmp_path, lambda body_id, values: received.append((body_id, values)))
    await server.start()
    assert (tmp_path / SOCKET_NAME).stat().st_mode & 0o777 == 0o600
    feed = IndexFeed(tmp_path)
    try:
        for n in range(50):
            feed.add(n, TYPICAL)
            await asyncio.sleep(0)  # worker 0's loop reads between deliveries
        deadline = time.monotonic() + 5
        while len(received) < 50 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert received == [(n, TYPICAL) for n in range(50)]
        assert feed.sent == 50 and feed.dropped == 0
    finally:
        feed.close()
        await server.stop()
    assert not (tmp_path / SOCKET_NAME).exists()


async def test_no_worker_0_drops_without_blocking(tmp_path: Path) -> None:
    feed = IndexFeed(tmp_path)  # nobody listens
    started = time.monotonic()
    for n in range(100):
        feed.add(n, ("v",))
    assert time.monotonic() - started < 1
    assert feed.dropped == 100 and feed.sent == 0  # left to worker 0's catch-up pass
