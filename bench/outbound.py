"""Outbound benchmark: messages per second from the durable queue to a receiving server.

    .venv/bin/python bench/outbound.py [--messages 2000] [--domains 100] [--size 10240] [--dkim]

N messages of ``--size`` bytes (default 10 KB) are enqueued, one recipient each, spread
over ``--domains`` destination domains (default 100) that a fake resolver maps to one
receiving server on 127.0.0.2 (a separate process: a minimal ESMTP server offering
PIPELINING and CHUNKING that counts messages).  Timed: ``QueueRunner.flush()`` until every
entry is delivered, recorded durably and deleted (bodies collected).  ``--dkim`` signs each
message with an RSA-2048 key (postier.mailauth.dkim).  Nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HOST = "127.0.0.2"


def _receiver(port: int, conn: Connection) -> None:
    count = 0

    async def session(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal count
        w.write(b"220 sink ESMTP\r\n")
        try:
            while line := await r.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    w.write(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-CHUNKING\r\n"
                            b"250 SIZE 100000000\r\n")
                elif verb == b"BDAT":
                    await r.readexactly(int(line.split()[1]))
                    count += 1
                    w.write(b"250 2.0.0 ok\r\n")
                elif verb == b"QUIT":
                    w.write(b"221 bye\r\n")
                    await w.drain()
                    break
                else:
                    w.write(b"250 ok\r\n")
                await w.drain()
        finally:
            w.close()

    async def main() -> None:
        server = await asyncio.start_server(session, HOST, port, backlog=512)
        conn.send("ready")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)
        conn.send(count)
        server.close()

    asyncio.run(main())


def make_message(n: int, size: int) -> bytes:
    head = (b"From: Sender <alice@example.org>\r\nTo: rcpt%d@example.net\r\n"
            b"Subject: outbound benchmark %d\r\nMessage-ID: <%d@bench.example.org>\r\n"
            b"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\n\r\n" % (n, n, n))
    line = b"The quick brown fox jumps over the lazy dog %08d.\r\n" % n
    return head + line * max(1, (size - len(head)) // len(line))


async def run(messages: int, domains: int, size: int, dkim: bool) -> None:
    from postier.mailauth.dns import FakeResolver
    from postier.queue import QueueRunner, QueueSettings
    from postier.store.sqlite import SqliteStore
    from postier.store.types import QueuedRecipient

    with socket.socket() as s:
        s.bind((HOST, 0))
        port = int(s.getsockname()[1])
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=_receiver, args=(port, child), daemon=True)
    proc.start()
    assert parent.recv() == "ready"
    resolver = FakeResolver()
    for d in range(domains):
        resolver.add(f"d{d}.test", "MX", (10, "mx.sink.test"))
    resolver.add("mx.sink.test", "A", HOST)
    signer = None
    if dkim:
        from postier.mailauth.dkim import generate_key, sign

        key = generate_key("example.org", "bench")

        async def signer(sender: str, message: bytes) -> bytes:
            return sign(message, [key], time.time())

    with tempfile.TemporaryDirectory() as tmp:
        store = await SqliteStore.open(Path(tmp) / "data")
        try:
            for n in range(messages):
                body = await store.prepare_body(make_message(n, size))
                await store.enqueue("alice@example.org",
                                    [QueuedRecipient(f"rcpt{n}@d{n % domains}.test")], body)
            settings = QueueSettings(hostname="bench.example.org", port=port,
                                     max_connections=100, max_connections_per_domain=2,
                                     claim_batch=messages)
            runner = QueueRunner(store, settings, resolver, signer=signer)
            started = time.perf_counter()
            cpu = time.process_time()
            await runner.flush()
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            left = len(await store.list_queue())
        finally:
            await store.close()
    parent.send("stop")
    received = parent.recv()
    proc.join()
    print(f"{messages} msgs x {size} B to {domains} domains{' (DKIM rsa-sha256)' if dkim else ''}: "
          f"{elapsed:.2f} s, {messages / elapsed:.0f} msg/s, "
          f"{cpu / messages * 1000:.2f} ms CPU/msg, received {received}, left in queue {left}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=2000)
    p.add_argument("--domains", type=int, default=100)
    p.add_argument("--size", type=int, default=10240)
    p.add_argument("--dkim", action="store_true")
    a = p.parse_args()
    asyncio.run(run(a.messages, a.domains, a.size, a.dkim))


if __name__ == "__main__":
    main()
