"""Backup and restore throughput: N messages (default 100,000 of ~10 KB, ~1 GB).

    .venv/bin/python bench/backup.py [--messages N] [--size BYTES] [--big-every K] [--dir D]

One message in ``--big-every`` is 100 KB (a body file, > INLINE_BODY_MAX); the rest are
stored in the database.  Prints fill time, then backup (full, then incremental with
1% new messages), verify and restore: seconds and MB/s of the data folder's size,
and for each backup the bytes it wrote into DEST and the size of its snapshot database;
for restore, the part of it spent rebuilding the full-text index (format 3).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

from postier.admin.backup import backup, restore, verify
from postier.store.sqlite import SqliteStore
from postier.store.types import NewMessage

BATCH = 500


def message(n: int, size: int) -> bytes:
    head = (f"From: s{n}@example.net\r\nTo: bench@example.org\r\nSubject: bench {n}\r\n"
            f"Message-ID: <b{n}@example.net>\r\n\r\n").encode()
    line = f"{n:08d} lorem ipsum dolor sit amet, consectetur adipiscing elit\r\n".encode()
    return head + line * max(1, (size - len(head)) // len(line))


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def fill(data: Path, count: int, size: int, big_every: int, first: int = 0) -> None:
    store = await SqliteStore.open(data)
    try:
        if first == 0:
            await store.add_domain("example.org")
            acct = await store.create_account("bench@example.org", "x", None)
        else:
            found = await store.get_account("bench@example.org")
            assert found is not None
            acct = found
        mb = await store.get_mailbox(acct.id, "INBOX")
        assert mb is not None
        for start in range(first, first + count, BATCH):
            batch = []
            for n in range(start, min(first + count, start + BATCH)):
                raw = message(n, 100 * 1024 if big_every and n % big_every == 0 else size)
                batch.append(NewMessage(mb.id, await store.prepare_body(raw)))
            await store.append(batch)
    finally:
        await store.close()


def line(what: str, seconds: float, size: int, written: int | None = None,
         db: int | None = None) -> None:
    extra = f"  {written / 1e6:8.1f} MB written" if written is not None else ""
    extra += f"  (snapshot db {db / 1e6:.1f} MB)" if db is not None else ""
    print(f"{what:<24} {seconds:8.2f} s  {size / 1e6 / seconds if seconds else 0:8.1f} MB/s"
          + extra)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--big-every", type=int, default=20)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.dir))
    try:
        data, dest, restored = root / "data", root / "backup", root / "restored"
        t = time.perf_counter()
        asyncio.run(fill(data, args.messages, args.size, args.big_every))
        size = folder_bytes(data)
        print(f"{args.messages} messages, data folder {size / 1e6:.0f} MB "
              f"(filled in {time.perf_counter() - t:.1f} s)")
        t = time.perf_counter()
        full = backup(data, dest)
        line("backup (full)", time.perf_counter() - t, size, folder_bytes(dest), full.db_bytes)
        assert full.blobs_copied == full.blobs
        before = folder_bytes(dest)
        t = time.perf_counter()
        again = backup(data, dest)
        line("backup (nothing new)", time.perf_counter() - t, size, folder_bytes(dest) - before,
             again.db_bytes)
        extra = max(1, args.messages // 100)
        asyncio.run(fill(data, extra, args.size, args.big_every, first=args.messages))
        size = folder_bytes(data)
        before = folder_bytes(dest)
        t = time.perf_counter()
        incr = backup(data, dest)
        line(f"backup (+{extra} messages)", time.perf_counter() - t, size,
             folder_bytes(dest) - before, incr.db_bytes)
        t = time.perf_counter()
        assert verify(dest).ok
        line("verify", time.perf_counter() - t, size)
        index_started: list[float] = []

        def progress(done: int, total: int, what: str) -> None:
            if what == "index" and not index_started:
                index_started.append(time.perf_counter())

        t = time.perf_counter()
        restore(dest, restored, progress=progress)
        end = time.perf_counter()
        line("restore", end - t, size)
        if index_started:
            print(f"  of which index rebuild {end - index_started[0]:8.2f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
