"""Where one SMTP delivery spends its time, stage by stage, one message at a time.

    .venv/bin/python bench/smtp_stages.py [--size 1048576] [--rounds 20]

bench/smtp.py measures the whole server under load, where threads compete for the GIL and
the CPUs; this runs each stage of a port-25 delivery alone, in order, on a real
SqliteStore in a temporary folder, and prints the CPU (thread time of the thread doing the
work) and wall milliseconds of each, median over the rounds:

  core        the sans-IO SMTP core reading DATA in 64 KiB reads (end mark, bare CR/LF,
              dot-unstuffing) up to the Message event
  prefix      ``Received: ... + data`` (server.py, _message)
  sha256      the body's content address
  blob put    sha256 + write + fsync + rename + directory fsync of the body file
  parse       parse_message (postier.mail) of the whole message
  prepare     store.prepare_body as the server awaits it (blob put and parse together)
  append      store.append: the write job on the event loop's thread (rows) and the
              COMMIT with its fsync on the commit thread; CPU is both threads'
  index       the indexer thread (in this process here): text extraction, the words
              for the vocabulary, the FTS5 insert, its commit and the marks
  (no text)   prepare, append and index again with the body as application/octet-stream:
              no body text to parse and index, so the difference is what the text costs

Runs against whatever ``postier`` is importable (PYTHONPATH=old/src to measure a checkout).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smtp import alice_inbox, make_message

READ = 64 * 1024


def thread_cpu(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_once(wire: bytes) -> bytes:
    from postier.smtp.core import (
        CoreSettings,
        MailFrom,
        Message,
        NeedData,
        RcptTo,
        ServerConnection,
    )

    conn = ServerConnection(CoreSettings(hostname="mx.example.org"))
    conn.greeting()
    conn.receive_data(b"EHLO c\r\nMAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
    while not isinstance(event := conn.next_event(), NeedData):
        if not isinstance(event, MailFrom | RcptTo) and type(event).__name__ != "Ehlo":
            continue
        conn.accept()
    for i in range(0, len(wire), READ):
        conn.receive_data(wire[i : i + READ])
        event = conn.next_event()
    assert isinstance(event, Message), event
    return event.data


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(rounds):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append((time.thread_time() - c0) * 1000)
        wall.append((time.perf_counter() - w0) * 1000)
    return statistics.median(cpu), statistics.median(wall)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_048_576)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    from postier.mail.parse import parse_message
    from postier.store.sqlite import SqliteStore
    from postier.store.types import NewMessage

    n = args.rounds
    messages = [make_message(i, args.size) for i in range(n + 1)]
    wire = messages[0].replace(b"\r\n.", b"\r\n..") + b".\r\n"
    prefix = b"Received: from client.example.net ([127.0.0.1])\r\n\tby mx.example.org (postier)" \
             b" with ESMTP id 0123456789abcdef\r\n\tfor <alice@example.org>;\r\n" \
             b"\tFri, 27 Nov 2026 08:00:00 +0000\r\n"
    rows: list[tuple[str, float, float]] = []
    assert core_once(wire) == messages[0]
    rows.append(("core", *timed(lambda: core_once(wire), n)))
    data = messages[0]
    rows.append(("prefix", *timed(lambda: prefix + data, n)))
    import hashlib

    rows.append(("sha256", *timed(lambda: hashlib.sha256(data).hexdigest(), n)))
    with tempfile.TemporaryDirectory(prefix="postier-bench-stages-") as tmp:
        store = await SqliteStore.open(Path(tmp) / "data")
        inbox = await alice_inbox(store)
        unique = iter(prefix + m for m in messages[1:])
        rows.append(("blob put", *timed(lambda: store.blobs.put(next(unique)), n)))
        rows.append(("parse", *timed(lambda: parse_message(data), n)))
        await store.append([NewMessage(inbox.id, await store.prepare_body(prefix + b"warm-up"))])
        commit = next(t for t in threading.enumerate() if t.name.startswith("postier-commit"))
        indexer_thread = next(t for t in threading.enumerate() if t.name == "postier-indexer")
        assert commit.native_id is not None and indexer_thread.native_id is not None
        indexer = store.indexer
        assert indexer is not None
        for label, kind in (("", b"text/plain"), (" (no text)", b"application/octet-stream")):
            prepare_cpu, prepare_wall, append_cpu, append_wall = [], [], [], []
            commit_cpu = thread_cpu(commit.native_id)
            await asyncio.to_thread(indexer.wait_idle)
            index_cpu = thread_cpu(indexer_thread.native_id)
            for i in range(n):
                body = messages[i].replace(b"Content-Type: text/plain", b"Content-Type: " + kind, 1)
                raw = prefix + body + b"%d%s\r\n" % (i, kind)  # a body not stored yet
                c0, w0 = time.process_time(), time.perf_counter()
                prepared = await store.prepare_body(raw)
                prepare_cpu.append((time.process_time() - c0) * 1000)
                prepare_wall.append((time.perf_counter() - w0) * 1000)
                c0, w0 = time.thread_time(), time.perf_counter()
                await store.append([NewMessage(inbox.id, prepared)])
                append_cpu.append((time.thread_time() - c0) * 1000)
                append_wall.append((time.perf_counter() - w0) * 1000)
            commit_ms = (thread_cpu(commit.native_id) - commit_cpu) * 1000 / n  # mean: /proc ticks
            await asyncio.to_thread(indexer.wait_idle)
            index_ms = (thread_cpu(indexer_thread.native_id) - index_cpu) * 1000 / n
            rows.append(("prepare" + label, statistics.median(prepare_cpu), statistics.median(prepare_wall)))
            rows.append(("append" + label, statistics.median(append_cpu) + commit_ms,
                         statistics.median(append_wall)))
            rows.append(("index" + label, index_ms, float("nan")))
        await store.close()
    print(f"{args.size} bytes, median of {n} (append CPU: loop thread's median + commit"
          " thread's mean; index: the indexer thread's mean, one message at a time)")
    print(f"{'stage':<20} {'CPU ms':>8} {'wall ms':>8}")
    for name, cpu, wall in rows:
        print(f"{name:<20} {cpu:>8.2f} {wall:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
