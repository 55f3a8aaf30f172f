"""The index feed to the one indexer: frames, a real Unix socket, an absent indexer."""

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
    frames = encode(1, ODD) + encode(7, ()) + encode(2**40, ("only",))
    expected = [(1, ODD), (7, None), (2**40, ("only",))]  # no values: remove body 7
    assert FrameReader().feed(frames) == expected
    reader = FrameReader()
    got = []
    for i in range(len(frames)):
        got.extend(reader.feed(frames[i : i + 1]))
    assert got == expected


def test_a_malformed_frame_is_refused() -> None:
    with pytest.raises(ValueError):
        FrameReader().feed(b"\x00" * 8 + b"\x00\x00\xff\xff")  # 65,535 values
    with pytest.raises(ValueError):
        FrameReader().feed(encode(1, ("a",))[:12] + b"\x7f\xff\xff\xff")  # 2 GB value


async def test_values_and_removals_reach_the_indexer(tmp_path: Path) -> None:
    received: list[tuple[int, tuple[str, ...] | None]] = []
    server = IndexFeedServer(
        tmp_path,
        lambda body_id, values: received.append((body_id, values)),
        lambda body_id: received.append((body_id, None)),
    )
    await server.start()
    assert (tmp_path / SOCKET_NAME).stat().st_mode & 0o777 == 0o600
    feed = IndexFeed(tmp_path)
    try:
        for n in range(50):
            feed.add(n, TYPICAL)
            await asyncio.sleep(0)  # the indexer's loop reads between deliveries
        feed.delete(3)
        deadline = time.monotonic() + 5
        while len(received) < 51 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert received == [(n, TYPICAL) for n in range(50)] + [(3, None)]
        assert feed.sent == 51 and feed.dropped == 0
    finally:
        feed.close()
        await server.stop()
    assert not (tmp_path / SOCKET_NAME).exists()


async def test_stop_reads_what_was_sent_before_the_sender_closed(tmp_path: Path) -> None:
    received: list[int] = []
    server = IndexFeedServer(tmp_path, lambda body_id, values: received.append(body_id), print)
    await server.start()
    feed = IndexFeed(tmp_path)
    feed.add(0, TYPICAL)
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # connected and accepted
    for n in range(1, 20):
        feed.add(n, TYPICAL)  # the loop has not read any of these yet
    stopping = asyncio.create_task(server.stop(drain_s=5))
    await asyncio.sleep(0.05)
    feed.close()  # the sender ends (a serving process stopping)
    await stopping
    assert received == list(range(20))


async def test_a_successors_socket_is_not_removed(tmp_path: Path) -> None:
    """An indexer still shutting down must not unlink the socket of the one started after it."""
    old = IndexFeedServer(tmp_path, lambda body_id, values: None, print)
    await old.start()
    received: list[int] = []
    new = IndexFeedServer(tmp_path, lambda body_id, values: received.append(body_id), print)
    await new.start()
    await old.stop()
    assert (tmp_path / SOCKET_NAME).exists()
    feed = IndexFeed(tmp_path)
    try:
        feed.add(1, ("v",))
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert received == [1]
    finally:
        feed.close()
        await new.stop()
    assert not (tmp_path / SOCKET_NAME).exists()


async def test_no_indexer_drops_without_blocking(tmp_path: Path) -> None:
    feed = IndexFeed(tmp_path)  # nobody listens
    started = time.monotonic()
    for n in range(100):
        feed.add(n, ("v",))
    assert time.monotonic() - started < 1
    assert feed.dropped == 100 and feed.sent == 0  # left to the indexer's catch-up pass
