"""SEARCH through the full-text index: indexing cost, index size and needle latency.

    .venv/bin/python bench/search.py [--messages 20000] [--text english] [--data DIR]

Fills one INBOX with 10 KB messages (bench/smtp.py's generator: English prose drawn
from the license texts, or the repetitive bench text) through the store's appends, waits
until the indexer has indexed and marked them all, then times store.search_text for a
set of needles (wall ms, best of 3).  To compare with another tree, run the same command
with PYTHONPATH pointing at that tree's src.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import smtp as load
from postier.store.sqlite import SqliteStore
from postier.store.types import NewMessage

NEEDLES = [
    ("text", "benchmark message 4242"),  # a header: a handful of hits
    ("body", "zanzibar"),  # no hit
    ("body", "mailing list"),  # no hit, two common-looking words
    ("body", "incidental"),  # a word in some messages
    ("body", "warranty"),  # a word in most messages
    ("body", "with the"),  # two common words across a space
    ("body", "the"),  # three characters inside many terms
    ("body", "ense"),  # inside many words (license, sense, expense)
    ("subject", "message 42"),
]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--text", choices=load.TEXTS, default="english")
    parser.add_argument("--data", type=Path, default=None, help="data folder (default: temporary)")
    args = parser.parse_args()
    load.TEXT = args.text
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "data"
        store = await SqliteStore.open(data)
        try:
            box = await load.alice_inbox(store)
            assert store.indexer is not None
            indexer = store.indexer
            t0 = time.perf_counter()
            c0 = time.process_time()
            for start in range(0, args.messages, 500):
                bodies = await asyncio.gather(*(
                    store.prepare_body(load.make_message(n, 10_240))
                    for n in range(start, min(args.messages, start + 500))
                ))
                await store.append([NewMessage(box.id, b) for b in bodies])
            # Bodies past the indexer's queue limit are left to its catch-up pass: wait
            # until every body is marked indexed, not only for the queue to drain.
            while True:
                await asyncio.to_thread(indexer.wait_idle, 600.0)
                left = await store._read(lambda c: c.execute(
                    "SELECT count(*) FROM bodies WHERE indexed = 0").fetchone()[0])
                if not left:
                    break
                await asyncio.sleep(0.5)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            size = sum(p.stat().st_size for p in data.glob("index.db*"))
            print(f"{args.messages} {args.text} messages appended and indexed: {wall:.1f} s,"
                  f" {cpu * 1000 / args.messages:.2f} ms CPU each (parse, store, index);"
                  f" index.db {size / args.messages:,.0f} bytes per message")
            for field, needle in NEEDLES:
                best = float("inf")
                hits = 0
                for _ in range(3):
                    t = time.perf_counter()
                    hits = len(await store.search_text(box.id, field, needle))
                    best = min(best, time.perf_counter() - t)
                print(f"  {field:<8} {needle!r:<26} {hits:>6} hits {best * 1000:>9.1f} ms")
        finally:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())
