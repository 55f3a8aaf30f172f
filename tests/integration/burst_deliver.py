"""Helper process for the durability test: delivers messages concurrently and prints
"ACK <n>" for each message whose delivery returned success (i.e. after it is durable)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from postier.delivery import Delivery
from postier.store.sqlite import SqliteStore


def message(n: int) -> bytes:
    body = (b"line %d of a durable message\r\n" % n) * 200
    return b"Subject: burst %d\r\nMessage-ID: <%d@burst>\r\n\r\n" % (n, n) + body


async def main(data: Path, count: int) -> None:
    store = await SqliteStore.open(data)
    delivery = Delivery(store)
    sem = asyncio.Semaphore(20)

    async def one(n: int) -> None:
        async with sem:
            (result,) = await delivery.deliver(message(n), "burst@example.net", ["alice@example.org"])
            if result.ok:
                sys.stdout.write(f"ACK {n}\n")
                sys.stdout.flush()

    print("READY", flush=True)
    await asyncio.gather(*(one(n) for n in range(count)))
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
