"""SMTP benchmark: messages per second accepted over port-25 SMTP and durably stored.

    .venv/bin/python bench/smtp.py [--messages 2000] [--senders 10 50] [--sizes 10240 1048576]
                                   [--loop auto|uvloop|asyncio] [--indexer process|thread]
                                   [--threads]

The server runs in its own process (real SqliteStore, synchronous=FULL, fsync'd bodies,
parse-once at delivery) so its CPU time per message can be measured apart from the
clients'.  Each sender is one connection that sends its messages one after the other with
a pipelined MAIL/RCPT/DATA (RFC 2920).  Every message counts only after its 250, i.e. once
durable.  ``--loop`` picks the server's event loop as ``[server] event_loop`` does for
``postier serve`` (default ``auto``: uvloop when installed); the clients always run on the
standard asyncio loop, so only the server side changes between runs.  Server CPU is the
whole server process (user+system, all threads); "loop thread" is the event loop's own
thread alone (its thread CPU time), the part the loop implementation can change.  With
``--indexer process`` (the default, as ``postier serve``) the full-text indexer runs in its
own process (store/sqlite/indexproc.py) and its CPU is added to the server's.

The side-by-side comparison with Postfix → LMTP → Dovecot (issue 3) is bench/compare_smtp.py,
which imports this file's load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

SETTLE_S = 0.3  # after a case's last 250, before the last CPU sample

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = (b"alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         b"november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()


# The body text: "bench", one line of 12 of the 24 words above, repeated (74 distinct
# trigrams, 24 distinct words in 10 KB: very cheap to index), or "english": sentences
# drawn from the license texts every Debian system has, one seeded draw per message
# (~1,800 distinct trigrams and ~700 distinct words in 10 KB, as real prose has).
TEXT = "bench"
TEXTS = ("bench", "english")
_SENTENCES: list[bytes] = []


def _english(n: int, size: int) -> bytes:
    if not _SENTENCES:
        for path in sorted(Path("/usr/share/common-licenses").iterdir()):
            try:
                words = path.read_bytes().split()
            except OSError:
                continue
            sentence: list[bytes] = []
            for word in words:
                sentence.append(word)
                if word.endswith((b".", b";", b":")) and len(sentence) > 3:
                    _SENTENCES.append(b" ".join(sentence))
                    sentence = []
    rng = random.Random(n)
    lines: list[bytes] = []
    total = 0
    while total < size:
        line = b" ".join(rng.choice(_SENTENCES) for _ in range(2))
        lines.append(line)
        total += len(line) + 2
    return b"\r\n".join(lines) + b"\r\n"


def make_message(n: int, size: int) -> bytes:
    header = (
        b"From: Sender <sender%d@example.net>\r\nTo: alice@example.org\r\n"
        b"Subject: benchmark message %d\r\nMessage-ID: <%d@bench.example.net>\r\n"
        b"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\nContent-Type: text/plain\r\n\r\n" % (n % 97, n, n)
    )
    if TEXT == "english":
        body = _english(n, size)
    else:
        line = b" ".join(WORDS[(n + i) % len(WORDS)] for i in range(12)) + b"\r\n"
        body = line * (max(0, size - len(header)) // len(line) + 1)
    return header + body[: max(0, size - len(header) - 2)].rstrip(b"\r\n") + b"\r\n"


async def alice_inbox(store: Any) -> Any:
    """alice@example.org's INBOX in ``store`` (a SqliteStore), made with its domain and
    account the first time: the mailbox the in-process benches fill."""
    if not await store.get_domain("example.org"):
        await store.add_domain("example.org")
        await store.create_account("alice@example.org", "x", None)
    account = await store.get_account("alice@example.org")
    assert account is not None
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    return box


# ---------------------------------------------------------------- server process


def server_main(data_dir: str, pipe: Connection, event_loop: str = "auto",
                indexer: str = "process") -> None:
    import faulthandler
    import signal

    from postier.eventloop import choose_event_loop, run

    faulthandler.register(signal.SIGUSR1, all_threads=True)
    run(_server(Path(data_dir), pipe, indexer), choose_event_loop(event_loop))


async def _server(data_dir: Path, pipe: Connection, indexer: str) -> None:
    from argon2 import PasswordHasher

    from postier.delivery import Delivery
    from postier.eventloop import describe_loop
    from postier.smtp.server import Mode, SmtpServer, SmtpSettings
    from postier.store.sqlite import SqliteStore

    if os.environ.get("BENCH_LOG"):
        from postier.log import setup_logging

        setup_logging(os.environ["BENCH_LOG"])
    # As `postier serve` with [store] indexer = "process" (the default) or "thread".
    store = await SqliteStore.open(data_dir, index_here=indexer == "thread")
    index_process = None
    if indexer == "process":
        from postier.store.sqlite.indexfeed import IndexFeed
        from postier.store.sqlite.indexproc import IndexProcess

        index_process = IndexProcess(data_dir)
        await index_process.start()
        feed = IndexFeed(data_dir)
        store.index_elsewhere(feed.add, feed.delete)
    await store.add_domain("example.org")
    pw = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash("x")
    await store.create_account("alice@example.org", pw, None)
    server = SmtpServer(
        SmtpSettings(hostname="bench.example.org", max_connections_per_ip=1000), store, Delivery(store)
    )
    _, port = await server.listen(Mode.MTA, "127.0.0.1", 0)
    loop = asyncio.get_running_loop()
    pipe.send((port, describe_loop(loop)))
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "times":
            # The whole process, and the event loop's own thread (this one).
            t = os.times()
            pipe.send((t.user + t.system, time.thread_time()))
        elif command == "threads":
            cpu = _thread_cpu()
            if index_process is not None and index_process.proc is not None:
                cpu["index process"] = _process_cpu(index_process.proc.pid)
            pipe.send(cpu)
        elif command == "writer":
            pipe.send((store.writer.batches, store.writer.contended))
        elif command == "stop":
            break
    await server.stop()
    await store.close()
    if index_process is not None:
        feed.close()
        await index_process.stop()
    pipe.send("stopped")


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) per thread kind, from /proc (Linux): the event loop
    (MainThread), the store's writer, the default executor's workers (asyncio_N, summed)."""
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        kind = "executor" if thread.name.startswith("asyncio_") else thread.name
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


# ---------------------------------------------------------------- clients


async def sender(port: int, messages: list[bytes], rcpt: str = "alice@example.org") -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if len(line) < 4 or line[3:4] != b"-":
                return line

    assert (await reply()).startswith(b"220")
    writer.write(b"EHLO bench.example.net\r\n")
    assert (await reply()).startswith(b"250")
    for raw in messages:
        writer.write(
            b"MAIL FROM:<sender@example.net> SIZE=%d\r\nRCPT TO:<%s>\r\nDATA\r\n"
            % (len(raw), rcpt.encode())
        )
        for expected in (b"250", b"250", b"354"):
            line = await reply()
            assert line.startswith(expected), line
        writer.write(raw.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        line = await reply()
        assert line.startswith(b"250"), line
    writer.write(b"QUIT\r\n")
    await reply()
    writer.close()


async def run_case(
    port: int, pipe: Connection, senders: int, size: int, count: int
) -> dict[str, Any]:
    per_sender = max(1, count // senders)
    batches = [
        [make_message(s * per_sender + i, size) for i in range(per_sender)] for s in range(senders)
    ]
    pipe.send("times")
    cpu0, loop0 = pipe.recv()
    pipe.send("threads")
    threads0 = pipe.recv()
    pipe.send("writer")
    writer0 = pipe.recv()
    start = time.perf_counter()
    await asyncio.gather(*(sender(port, batch) for batch in batches))
    elapsed = time.perf_counter() - start
    await asyncio.sleep(SETTLE_S)  # the indexer's last batch, in either mode
    pipe.send("times")
    cpu1, loop1 = pipe.recv()
    pipe.send("threads")
    threads1 = pipe.recv()
    pipe.send("writer")
    writer1 = pipe.recv()
    total = per_sender * senders
    # an executor thread that exited during the run would make its kind go down: clamp
    per_thread = {k: max(0.0, v - threads0.get(k, 0.0)) * 1000 / total for k, v in threads1.items()}
    return {
        "threads": per_thread,
        "messages": total,
        "seconds": elapsed,
        "per_s": total / elapsed,
        # the server process and, with indexer = "process", the index process
        "cpu_ms_per_msg": (cpu1 - cpu0) * 1000 / total + per_thread.get("index process", 0.0),
        "loop_ms_per_msg": (loop1 - loop0) * 1000 / total,
        "batches": writer1[0] - writer0[0],
        "contended": writer1[1] - writer0[1],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="per 10 KB case (1 MB: /10)")
    parser.add_argument("--senders", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_240, 1_048_576])
    parser.add_argument("--threads", action="store_true", help="server CPU per thread kind")
    parser.add_argument("--indexer", choices=("process", "thread"), default="process",
                        help="where the full-text indexer runs, as [store] indexer")
    parser.add_argument("--data", type=Path, default=None, help="data folder (default: temporary)")
    parser.add_argument("--text", choices=TEXTS, default="bench", help="message body text")
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                        help="the server's event loop (default: auto, as postier serve)")
    args = parser.parse_args()
    global TEXT
    TEXT = args.text
    with tempfile.TemporaryDirectory(prefix="postier-bench-smtp-") as tmp:
        data_dir = args.data or Path(tmp) / "data"
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=server_main, args=(str(data_dir), child, args.loop, args.indexer),
                           daemon=True)
        proc.start()
        port, loop_name = parent.recv()
        print(f"server pid {proc.pid} on 127.0.0.1:{port}, event loop {loop_name}, data in {data_dir}")
        print(f"{'size':>9} {'senders':>7} {'messages':>8} {'seconds':>8} {'msg/s':>8} "
              f"{'server CPU ms/msg':>18} {'loop thread ms/msg':>19}")
        for size in args.sizes:
            count = args.messages if size <= 100_000 else max(args.messages // 10, 50)
            for senders in args.senders:
                r = await run_case(port, parent, senders, size, count)
                print(
                    f"{size:>9} {senders:>7} {int(r['messages']):>8} {r['seconds']:>8.2f} "
                    f"{r['per_s']:>8.0f} {r['cpu_ms_per_msg']:>18.2f} {r['loop_ms_per_msg']:>19.2f}"
                )
                if args.threads:
                    print("    CPU ms/msg by thread: " + ", ".join(
                        f"{k} {v:.2f}" for k, v in sorted(r["threads"].items(), key=lambda kv: -kv[1])
                    ) + f"; writer: {r['batches']} batches, {r['contended']} found the lock taken")
        parent.send("stop")
        parent.recv()
        proc.join(10)


if __name__ == "__main__":
    asyncio.run(main())
