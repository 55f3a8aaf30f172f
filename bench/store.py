"""Store benchmark: durable deliveries per second and reading a 100,000-message mailbox.

    .venv/bin/python bench/store.py [--messages 100000] [--data DIR]

Prints figures; bench/README.md records them with date and machine.  Everything is
durable (SQLite synchronous=FULL, bodies fsync'd) exactly as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sqlite3
import tempfile
import time
from pathlib import Path

from postier.delivery import Delivery
from postier.store.blobs import FileBlobStore
from postier.store.sqlite import SqliteStore
from postier.store.types import NewMessage

WORDS = (b"alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         b"november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()


def make_message(n: int, size: int = 10_000) -> bytes:
    header = (
        b"From: Sender %d <sender%d@example.net>\r\nTo: alice@example.org\r\n"
        b"Subject: benchmark message %d about %s\r\nMessage-ID: <%d@bench.example.net>\r\n"
        b"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        % (n % 97, n % 97, n, WORDS[n % len(WORDS)], n)
    )
    line = b" ".join(WORDS[(n + i) % len(WORDS)] for i in range(12)) + b"\r\n"
    body = line * (max(0, size - len(header)) // len(line) + 1)
    return header + body[: max(0, size - len(header))]


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def deliveries(data: Path, writers: int, count: int) -> tuple[float, float]:
    store = await SqliteStore.open(data)
    try:
        if not await store.get_domain("example.org"):
            await store.add_domain("example.org")
            await store.create_account("alice@example.org", "x", None)
        delivery = Delivery(store)
        queue = list(range(count))

        async def writer() -> None:
            while queue:
                n = queue.pop()
                (r,) = await delivery.deliver(make_message(n + writers * 1_000_000), "s@example.net",
                                              ["alice@example.org"])
                assert r.ok, r
        c0, t0 = cpu_s(), time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        return count / wall, cpu / count * 1000
    finally:
        await store.close()


async def fill(data: Path, total: int) -> None:
    """Fill alice's INBOX quickly (batches of appends; still durable)."""
    store = await SqliteStore.open(data)
    try:
        account = await store.get_account("alice@example.org")
        assert account is not None
        box = await store.get_mailbox(account.id, "INBOX")
        assert box is not None
        have = (await store.mailbox_status(box.id)).messages
        t0 = time.perf_counter()
        batch = 500
        for start in range(have, total, batch):
            bodies = await asyncio.gather(
                *(store.prepare_body(make_message(n)) for n in range(start, min(total, start + batch)))
            )
            await store.append([NewMessage(box.id, b) for b in bodies])
            if (start // batch) % 20 == 0:
                print(f"  filled {start + batch} / {total}", flush=True)
        print(f"  fill: {total - have} messages in {time.perf_counter() - t0:.1f} s")
    finally:
        await store.close()


async def read_all(data: Path) -> None:
    store = await SqliteStore.open(data)
    try:
        account = await store.get_account("alice@example.org")
        assert account is not None
        box = await store.get_mailbox(account.id, "INBOX")
        assert box is not None
        t0 = time.perf_counter()
        infos = await store.list_messages(box.id)
        t1 = time.perf_counter()
        metas = await store.fetch_meta(box.id, [i.uid for i in infos])
        t2 = time.perf_counter()
        hits = await store.search_text(box.id, "text", "benchmark message 4242")
        t3 = time.perf_counter()
        word_hits = await store.search_text(box.id, "body", "whiskey xray alpha")
        t4 = time.perf_counter()
        print(f"  list {len(infos)} messages (uid, flags, size, modseq): {(t1 - t0) * 1000:.0f} ms")
        print(f"  envelope + bodystructure of all {len(metas)}: {(t2 - t1) * 1000:.0f} ms")
        print(f"  FTS 'benchmark message 4242': {len(hits)} hits in {(t3 - t2) * 1000:.1f} ms")
        print(f"  FTS 'whiskey xray alpha': {len(word_hits)} hits in {(t4 - t3) * 1000:.1f} ms")
    finally:
        await store.close()


def compare_blob_storage(tmp: Path, count: int = 2000) -> None:
    """Why bodies are files: cost of 10 KB and 1 MB bodies as fsync'd files vs SQLite rows."""
    for size in (10_000, 1_000_000):
        n = count if size == 10_000 else 100
        msgs = [os.urandom(size) for _ in range(n)]
        blobs = FileBlobStore(tmp / f"blobs{size}")
        t0 = time.perf_counter()
        for m in msgs:
            blobs.put(m)
        files = (time.perf_counter() - t0) / n * 1000
        conn = sqlite3.connect(tmp / f"rows{size}.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE b (id INTEGER PRIMARY KEY, data BLOB)")
        t0 = time.perf_counter()
        for m in msgs:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO b (data) VALUES (?)", (m,))
            conn.execute("COMMIT")
        rows = (time.perf_counter() - t0) / n * 1000
        t0 = time.perf_counter()
        for i in range(0, n, 50):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO b (data) VALUES (?)", [(m,) for m in msgs[i:i + 50]])
            conn.execute("COMMIT")
        rows_batched = (time.perf_counter() - t0) / n * 1000
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        print(f"  {size // 1000} KB body: file+fsync {files:.2f} ms, SQLite row own commit "
              f"{rows:.2f} ms, SQLite row in 50-commit batches {rows_batched:.2f} ms (before checkpoint)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="postier-bench-"))
    data = args.data or tmp / "data"
    print(f"data in {data}; {os.cpu_count()} CPUs")
    print("blob storage:")
    compare_blob_storage(tmp)
    print("durable deliveries through Delivery.deliver (10 KB messages):")
    for writers in (1, 10, 50):
        rate, cpu_ms = await deliveries(data / f"w{writers}", writers, args.deliveries)
        print(f"  {writers:>2} concurrent writers: {rate:,.0f} deliveries/s, {cpu_ms:.2f} ms CPU each")
    print(f"mailbox of {args.messages:,} messages:")
    big = data / "big"
    await deliveries(big, 1, 1)
    await fill(big, args.messages)
    await read_all(big)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
