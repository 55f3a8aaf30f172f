"""IMAP memory (issue 4): N concurrent authenticated connections in IDLE; RSS per connection.

    .venv/bin/python bench/imap_memory.py [--connections 10000] [--accounts 10]
                                          [--postier-commit REV]

``postier serve`` runs as a subprocess (bench/peers/postier_imap.py: IMAP on 127.0.0.1,
``[server] max_connections`` / ``max_connections_per_ip`` raised above N, one worker,
``ulimit -n`` N+2000 through preexec_fn).  Its store is filled before it starts:
``--accounts`` accounts with 20 messages of ~5 KB each.  This process (asyncio, raw
sockets, its own RLIMIT_NOFILE raised) opens the connections in waves of 200: greeting,
LOGIN, SELECT INBOX, IDLE, up to "+ idling"; connections are spread over the accounts and,
past 20,000, over several loopback source addresses (127.0.0.2, .3, …) so that the
ephemeral ports do not run out.  Resident memory (VmRSS of the server's process tree,
/proc/<pid>/status) is read after a warm-up (10 full sessions), then with all N idling
(after 3 s of quiet); the difference divided by N is the cost of one connection.  Every
connection then sends DONE (answered by a tagged OK) and LOGOUT, to check that they are
all still alive.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import free_ports, install_sigterm_handler, machine, postier_source, versions
from peers.postier_imap import ImapPostier, fill_store, raise_nofile

PASSWORD = "bench password"
WAVE = 200
PORTS_PER_SOURCE = 20_000


def address(i: int) -> str:
    return f"idle{i}@bench.example"


def message(to: str, n: int) -> bytes:
    head = (f"From: sender{n}@example.net\r\nTo: {to}\r\nSubject: idle bench {n}\r\n"
            f"Message-ID: <{n}.{to}>\r\nDate: Fri, 27 Nov 2026 08:00:00 +0000\r\n\r\n").encode()
    return head + b"The quick brown fox jumps over the lazy dog. 0123456789\r\n" * 90


class Idler:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def until(self, prefix: bytes) -> bytes:
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("connection closed by the server")
            if line.startswith(prefix):
                return line
            if line.startswith(b"* BYE") and prefix != b"d ":  # d: LOGOUT's tag
                raise ConnectionError(line.decode(errors="replace").strip())

    async def command(self, tag: str, text: str) -> None:
        self.writer.write(f"{tag} {text}\r\n".encode())
        line = await self.until(tag.encode() + b" ")
        if not line.startswith(tag.encode() + b" OK"):
            raise RuntimeError(f"{text.split()[0]}: {line.decode(errors='replace').strip()}")


async def open_idler(port: int, user: str, source: str) -> Idler:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0),
                                                   limit=1 << 16)
    c = Idler(reader, writer)
    try:
        await c.until(b"* OK")
        await c.command("a", f'LOGIN "{user}" "{PASSWORD}"')
        await c.command("b", "SELECT INBOX")
        writer.write(b"c IDLE\r\n")
        await c.until(b"+")
    except BaseException:
        writer.close()
        raise
    return c


async def finish(c: Idler) -> None:
    try:
        c.writer.write(b"DONE\r\n")
        line = await c.until(b"c ")
        if not line.startswith(b"c OK"):
            raise RuntimeError(f"IDLE: {line!r}")
        await c.command("d", "LOGOUT")
    finally:
        c.writer.close()


async def measure(server: ImapPostier, n: int, accounts: int) -> None:
    port = server.imap_port
    # Warm-up: every code path once, then closed, before the baseline.
    warm = await asyncio.gather(*(open_idler(port, address(i % accounts), "127.0.0.1")
                                  for i in range(10)))
    await asyncio.gather(*(finish(c) for c in warm))
    await asyncio.sleep(2)
    before = server.rss_kib()
    sources = [f"127.0.0.{1 + k}" for k in range((n + PORTS_PER_SOURCE - 1) // PORTS_PER_SOURCE)]
    conns: list[Idler] = []
    t0 = time.monotonic()
    try:
        for start in range(0, n, WAVE):
            wave = range(start, min(n, start + WAVE))
            conns.extend(await asyncio.wait_for(asyncio.gather(
                *(open_idler(port, address(i % accounts), sources[i // PORTS_PER_SOURCE])
                  for i in wave)), 120))
            if start and start % 2000 == 0:
                print(f"  {len(conns):,} idling, server RSS {server.rss_kib() / 1024:,.0f} MiB",
                      file=sys.stderr, flush=True)
        opened = time.monotonic() - t0
        await asyncio.sleep(3)
        with_all = server.rss_kib()
        cpu = server.cpu_seconds()
        per = (with_all - before) / n
        print(f"connections in IDLE:           {len(conns):,} (accounts: {accounts}, "
              f"source addresses: {len(sources)})")
        print(f"time to open them (LOGIN, SELECT, IDLE): {opened:.1f} s "
              f"({n / opened:,.0f} connections/s)")
        print(f"server RSS before:             {before / 1024:,.1f} MiB")
        print(f"server RSS with all idling:    {with_all / 1024:,.1f} MiB")
        print(f"per connection:                {per:,.1f} KiB")
        print(f"server CPU so far:             {cpu:.1f} s")
        t1 = time.monotonic()
        results = await asyncio.wait_for(
            asyncio.gather(*(finish(c) for c in conns), return_exceptions=True), 300)
        bad = [r for r in results if isinstance(r, BaseException)]
        print(f"DONE + LOGOUT on all:          {len(results) - len(bad):,} OK, {len(bad)} failed "
              f"({time.monotonic() - t1:.1f} s)" + (f"; first failure: {bad[0]!r}" if bad else ""))
        conns.clear()
    finally:
        for c in conns:
            c.writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--postier-commit", default="", metavar="REV",
                        help="run postier from this commit (git archive), not the working tree")
    args = parser.parse_args()
    install_sigterm_handler()
    n = args.connections
    limit = raise_nofile(n + 2000)
    if limit < n + 100:
        raise SystemExit(f"RLIMIT_NOFILE is {limit}, too low for {n} connections")
    tmp = Path(tempfile.mkdtemp(prefix="bench-imap-memory-"))
    try:
        src = postier_source(args.postier_commit, tmp)
        if args.postier_commit:
            repo = Path(__file__).resolve().parents[1]
            rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", args.postier_commit],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
            os.environ["POSTIER_SRC"] = str(src)
            os.environ["POSTIER_COMMIT"] = rev or args.postier_commit
        sys.path.insert(0, str(src))
        print(f"IMAP memory, {time.strftime('%Y-%m-%d %H:%M %Z')}; {machine()}")
        print(versions())
        server = ImapPostier(free_ports(1)[0], src=src, max_connections=n + 1000, workers=1,
                             nofile=n + 2000)
        t0 = time.monotonic()
        server.prepare(Path(__file__), str(args.accounts))
        print(f"setup: {args.accounts} accounts x 20 messages via the store API "
              f"({time.monotonic() - t0:.1f} s); postier IMAP 127.0.0.1:{server.imap_port}, "
              f"1 worker, ulimit -n {n + 2000}")
        with server:
            asyncio.run(measure(server, n, args.accounts))
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--prepare"]:  # child: fill postier's store with $POSTIER_SRC
        accounts = int(sys.argv[3])
        asyncio.run(fill_store(Path(sys.argv[2]), {address(i): 20 for i in range(accounts)},
                               PASSWORD, message))
    else:
        main()
