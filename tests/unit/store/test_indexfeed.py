"""The index feed to the one indexer: frames, a real Unix socket, an absent indexer."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from postier.store.sqlite.indexfeed import (
    SEND_EVERY_S,
    SOCKET_NAME,
    FrameReader,
    IndexFeed,
    IndexFeedServer,
    encode,
)


def test_frames_round_trip_whole_and_byte_by_byte() -> None:
    frames = encode(1) + encode(7, add=False) + encode(2**40) + encode(2**64 - 1)
    expected = [(1, True), (7, False), (2**40, True), (2**64 - 1, True)]
    assert FrameReader().feed(frames) == expected
    reader = FrameReader()
    got = []
    for i in range(len(frames)):
        got.extend(reader.feed(frames[i : i + 1]))
    assert got == expected


def test_a_malformed_frame_is_refused() -> None:
    with pytest.raises(ValueError):
        FrameReader().feed(b"\x00" * 8 + b"\x02")  # no operation 2


async def test_ids_and_removals_reach_the_indexer(tmp_path: Path) -> None:
    received: list[tuple[int, bool]] = []
    server = IndexFeedServer(
        tmp_path,
        lambda body_id: received.append((body_id, True)),
        lambda body_id: received.append((body_id, False)),
    )
    await server.start()
    assert (tmp_path / SOCKET_NAME).stat().st_mode & 0o777 == 0o600
    feed = IndexFeed(tmp_path)
    try:
        for n in range(50):
            feed.add(n)
            await asyncio.sleep(0)  # the indexer's loop reads between deliveries
        feed.delete(3)
        deadline = time.monotonic() + 5
        while len(received) < 51 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert received == [(n, True) for n in range(50)] + [(3, False)]
        assert feed.sent == 51 and feed.dropped == 0
    finally:
        feed.close()
        await server.stop()
    assert not (tmp_path / SOCKET_NAME).exists()


async def test_stop_reads_what_was_sent_before_the_sender_closed(tmp_path: Path) -> None:
    received: list[int] = []
    server = IndexFeedServer(tmp_path, received.append, print)
    await server.start()
    feed = IndexFeed(tmp_path)
    feed.add(0)
    deadline = time.monotonic() + 5
    while not received and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # connected and accepted
    for n in range(1, 20):
        feed.add(n)  # the loop has not read any of these yet
    stopping = asyncio.create_task(server.stop(drain_s=5))
    await asyncio.sleep(0.05)
    feed.close()  # the sender ends (a serving process stopping)
    await stopping
    assert received == list(range(20))


async def test_a_successors_socket_is_not_removed(tmp_path: Path) -> None:
    """An indexer still shutting down must not unlink the socket of the one started after it."""
    old = IndexFeedServer(tmp_path, print, print)
    await old.start()
    received: list[int] = []
    new = IndexFeedServer(tmp_path, received.append, print)
    await new.start()
    await old.stop()
    assert (tmp_path / SOCKET_NAME).exists()
    feed = IndexFeed(tmp_path)
    try:
        feed.add(1)
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
        feed.add(n)
    assert time.monotonic() - started < 1
    assert feed.dropped == 100 and feed.sent == 0  # left to the indexer's catch-up pass


async def test_ids_wait_to_go_in_one_send(tmp_path: Path) -> None:
    """In a running loop the frames gather for SEND_EVERY_S: one wake-up of the indexer
    for many bodies, not one each."""
    received: list[int] = []
    server = IndexFeedServer(tmp_path, received.append, print)
    await server.start()
    feed = IndexFeed(tmp_path)
    try:
        for n in range(20):
            feed.add(n)
        assert feed.sent == 0  # nothing left yet
        await asyncio.sleep(SEND_EVERY_S / 2)
        assert feed.sent == 0
        deadline = time.monotonic() + 5
        while len(received) < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert received == list(range(20)) and feed.sent == 20 and feed.dropped == 0
    finally:
        feed.close()
        await server.stop()


def test_a_full_socket_keeps_frames_whole(tmp_path: Path) -> None:
    """An indexer that does not read: the socket takes part of a frame, the rest waits
    for the next flush; past MAX_UNSENT_BYTES new ids are dropped, never half sent."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / SOCKET_NAME))
    listener.listen()
    feed = IndexFeed(tmp_path)  # no running loop: each id is sent at once
    try:
        feed.add(0)
        conn, _ = listener.accept()
        total = 200_000  # 1.8 MB of frames: more than the socket buffer plus the backlog
        for n in range(1, total):
            feed.add(n)
        assert feed.dropped > 0 and feed.sent + feed.dropped < total  # some wait unsent
        reader = FrameReader()
        got: list[tuple[int, bool]] = []
        conn.settimeout(0.2)
        while True:
            try:
                data = conn.recv(100)  # room opens bit by bit: partial sends
            except TimeoutError:
                break
            got.extend(reader.feed(data))
            feed.flush()  # what waited goes on as the indexer reads
        assert feed.sent + feed.dropped == total
        assert got == [(n, True) for n in range(feed.sent)]  # in order, none split or lost
        conn.close()
    finally:
        feed.close()
        listener.close()
