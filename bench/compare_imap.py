"""IMAP side by side (issue 4): Dovecot's IMAP against postier's, same run, same load.

    .venv/bin/python bench/compare_imap.py [--clients 10 50] [--seconds 10]
                                           [--accounts 100] [--messages 30] [--workers 1]
                                           [--postier-commit REV]

Both servers get the same mailboxes: ``--accounts`` accounts with ``--messages`` messages
of 10-20 KB each, byte for byte the same.  Dovecot (bench/peers/dovecot.py: Maildir,
passwd-file, Debian defaults) receives them through LMTP; postier's store is filled
through the store API (bench/peers/postier_imap.py) before ``postier serve`` starts as a
subprocess (IMAP on 127.0.0.1, ``[server] workers`` = ``--workers``).  One unmeasured
warm-up session per account on each server first (Dovecot builds its indexes then).

Load (this process, asyncio on uvloop unless ``--client-loop asyncio``, raw sockets): N concurrent clients, client k working on
accounts k, k+N, k+2N, … in turn (no two clients on one mailbox).  Each session:
LOGIN, SELECT INBOX, FETCH of 3 random messages (FLAGS ENVELOPE BODY.PEEK[]),
STORE of the same +FLAGS (\\Seen), APPEND of a 10 KB message (synchronising literal),
STORE 1 +FLAGS (\\Deleted), EXPUNGE (the oldest message goes: the mailbox keeps its
size), SEARCH UNSEEN SUBJECT "bench", LOGOUT — 9 commands, each one operation.  Clients
start sessions for ``--seconds``, then finish the one they are in.  Latency: from sending
a command to its tagged response, per command.  Server CPU: the server's whole process
tree from /proc (user+system, reaped children included), sampled before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import free_ports, install_sigterm_handler, machine, postier_source, versions
from peers.dovecot import Dovecot
from peers.postier_imap import ImapPostier, fill_store

PASSWORD = "bench password"
COMMANDS = ("LOGIN", "SELECT", "FETCH", "STORE", "APPEND", "EXPUNGE", "SEARCH", "LOGOUT")
LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


def address(i: int) -> str:
    return f"user{i}@bench.example"


def make_message(to: str, n: int, size: int | None = None) -> bytes:
    rng = random.Random(f"{to}/{n}")
    size = size or rng.randint(10_000, 20_000)
    head = (
        f"From: Sender {n % 13} <sender{n % 13}@example.net>\r\nTo: {to}\r\n"
        f"Subject: bench {n} for {to}\r\nMessage-ID: <{n}.{rng.random()}@bench.example>\r\n"
        "Date: Fri, 27 Nov 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghij\r\n"
    body = line * (size // len(line) + 1)
    return head + body[: max(0, size - len(head))]


@dataclass
class Result:
    server: str
    clients: int
    sessions: int = 0
    errors: int = 0
    first_error: str = ""
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    latency: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in COMMANDS})

    @property
    def ops(self) -> int:
        return sum(len(v) for v in self.latency.values())

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.elapsed_s

    @property
    def cpu_ms_per_op(self) -> float:
        return self.cpu_s * 1000 / max(1, self.ops)


class Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.n = 0

    async def response(self, tag: bytes) -> tuple[list[bytes], bytes]:
        """Untagged lines (literals read and dropped) and the tagged line."""
        lines: list[bytes] = []
        while True:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("closed by the server")
            while m := LITERAL.search(line):
                await self.reader.readexactly(int(m.group(1)))
                line = line[: m.start()] + b"{}" + await self.reader.readline()
            if line.startswith(tag + b" "):
                return lines, line
            lines.append(line)

    async def command(self, name: str, text: str, result: Result,
                      literal: bytes | None = None) -> list[bytes]:
        self.n += 1
        tag = f"a{self.n}".encode()
        t0 = time.perf_counter()
        if literal is None:
            self.writer.write(tag + b" " + text.encode() + b"\r\n")
        else:
            self.writer.write(tag + b" " + text.encode() + b" {%d}\r\n" % len(literal))
            line = await self.reader.readline()
            if not line.startswith(b"+"):
                raise RuntimeError(f"{name}: no continuation: {line!r}")
            self.writer.write(literal + b"\r\n")
        lines, tagged = await self.response(tag)
        result.latency[name].append((time.perf_counter() - t0) * 1000)
        if not tagged.startswith(tag + b" OK"):
            raise RuntimeError(f"{name}: {tagged.decode(errors='replace').strip()}")
        return lines


async def one_session(port: int, user: str, rng: random.Random, result: Result,
                      appended: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    s = Session(reader, writer)
    try:
        greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError(f"greeting: {greeting!r}")
        await s.command("LOGIN", f'LOGIN "{user}" "{PASSWORD}"', result)
        lines = await s.command("SELECT", "SELECT INBOX", result)
        exists = next(int(x.split()[1]) for x in lines if x.endswith(b" EXISTS\r\n"))
        seqs = ",".join(str(x) for x in sorted(rng.sample(range(1, exists + 1), min(3, exists))))
        await s.command("FETCH", f"FETCH {seqs} (FLAGS ENVELOPE BODY.PEEK[])", result)
        await s.command("STORE", f"STORE {seqs} +FLAGS (\\Seen)", result)
        await s.command("APPEND", "APPEND INBOX", result,
                        make_message(user, 1_000_000 + appended, 10_000))
        await s.command("STORE", "STORE 1 +FLAGS (\\Deleted)", result)
        await s.command("EXPUNGE", "EXPUNGE", result)
        await s.command("SEARCH", 'SEARCH UNSEEN SUBJECT "bench"', result)
        s.n += 1
        tag = f"a{s.n}".encode()
        t0 = time.perf_counter()
        writer.write(tag + b" LOGOUT\r\n")
        await s.response(tag)
        result.latency["LOGOUT"].append((time.perf_counter() - t0) * 1000)
    finally:
        writer.close()


async def load(port: int, clients: int, seconds: float, accounts: int, result: Result) -> None:
    deadline = time.monotonic() + seconds

    async def client(k: int) -> None:
        rng = random.Random(k)
        mine = list(range(k, accounts, clients)) or [k % accounts]
        i = 0
        while time.monotonic() < deadline:
            try:
                await one_session(port, address(mine[i % len(mine)]), rng, result,
                                  k * 1_000_000 + i)
                result.sessions += 1
            except (OSError, RuntimeError, StopIteration, ValueError) as exc:
                result.errors += 1
                result.first_error = result.first_error or repr(exc)
                await asyncio.sleep(0.05)
            i += 1

    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(client(k) for k in range(clients))), seconds + 60)
    result.elapsed_s = time.monotonic() - t0


async def run_case(name: str, port: int, cpu: Callable[[], float], clients: int,
                   seconds: float, accounts: int) -> Result:
    r = Result(name, clients)
    cpu0, client0 = cpu(), time.process_time()
    await load(port, clients, seconds, accounts, r)
    r.cpu_s, r.client_cpu_s = cpu() - cpu0, time.process_time() - client0
    return r


async def warm_up(port: int, accounts: int) -> None:
    """One session per account, 10 at a time; must succeed everywhere."""
    sem = asyncio.Semaphore(10)
    r = Result("warm-up", 10)

    async def one(i: int) -> None:
        async with sem:
            await one_session(port, address(i), random.Random(i), r, 999_000_000 + i)

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(accounts))), 300)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def print_row(r: Result) -> None:
    lat = " ".join(f"{statistics.median(r.latency[c]) if r.latency[c] else float('nan'):>6.1f}/"
                   f"{pct(r.latency[c], 0.95):<6.1f}" for c in COMMANDS)
    print(f"{r.server:<8} {r.clients:>4} {r.sessions:>6} {r.errors:>4} {r.ops_per_s:>7.0f} "
          f"{r.sessions / r.elapsed_s:>7.1f} {r.cpu_ms_per_op:>8.2f} {r.client_cpu_s:>6.1f}  {lat}",
          flush=True)
    if r.first_error:
        print(f"{'':<8} first error: {r.first_error[:200]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--seconds", type=float, default=10.0, help="per case and server")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--messages", type=int, default=30, help="per account")
    parser.add_argument("--workers", type=int, default=1, help="postier's [server] workers")
    parser.add_argument("--postier-commit", default="", metavar="REV",
                        help="run postier from this commit (git archive), not the working tree")
    parser.add_argument("--client-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the load generator's event loop (default: uvloop: it shares the "
                             "cores with the server under test, see compare_smtp.py)")
    args = parser.parse_args()
    install_sigterm_handler()
    tmp = Path(tempfile.mkdtemp(prefix="bench-postier-src-"))
    try:
        src = postier_source(args.postier_commit, tmp)
        if args.postier_commit:
            repo = Path(__file__).resolve().parents[1]
            rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", args.postier_commit],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
            os.environ["POSTIER_SRC"] = str(src)
            os.environ["POSTIER_COMMIT"] = rev or args.postier_commit
        sys.path.insert(0, str(src))
        from postier import eventloop

        eventloop.run(compare(args, src), eventloop.choose_event_loop(args.client_loop))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def compare(args: argparse.Namespace, src: Path) -> None:
    print(f"IMAP comparison, {time.strftime('%Y-%m-%d %H:%M %Z')}; {machine()}; "
          f"load generator on {args.client_loop}")
    print(versions())
    users = [address(i) for i in range(args.accounts)]
    contents = [(u, [make_message(u, n) for n in range(args.messages)]) for u in users]
    with ExitStack() as stack:
        dovecot = stack.enter_context(Dovecot(dict.fromkeys(users, PASSWORD)))
        t0 = time.monotonic()
        delivered = dovecot.deliver_many(contents)
        t1 = time.monotonic()
        postier = ImapPostier(free_ports(1)[0], src=src, workers=args.workers)
        postier.prepare(Path(__file__), str(args.accounts), str(args.messages))
        t2 = time.monotonic()
        stack.enter_context(postier)
        print(f"setup: {args.accounts} accounts x {args.messages} messages of 10-20 KB; "
              f"Dovecot via LMTP {t1 - t0:.1f} s ({delivered} messages), "
              f"postier via its store API {t2 - t1:.1f} s")
        print(f"Dovecot IMAP 127.0.0.1:{dovecot.imap_port}, postier IMAP "
              f"127.0.0.1:{postier.imap_port} ({args.workers} worker(s))")
        await warm_up(dovecot.imap_port, args.accounts)
        await warm_up(postier.imap_port, args.accounts)

        print()
        print(f"{'server':<8} {'cli':>4} {'sess':>6} {'err':>4} {'ops/s':>7} {'sess/s':>7} "
              f"{'CPUms/op':>8} {'cliCPU':>6}  " + " ".join(f"{c:<13}" for c in COMMANDS))
        print(f"{'':<8} {'':>4} {'':>6} {'':>4} {'':>7} {'':>7} {'':>8} {'s':>6}  "
              + " ".join(f"{'med/p95 ms':<13}" for _ in COMMANDS))
        results: list[tuple[Result, Result]] = []
        for clients in args.clients:
            peer = await run_case("dovecot", dovecot.imap_port, dovecot.cpu_seconds, clients,
                                  args.seconds, args.accounts)
            print_row(peer)
            ours = await run_case("postier", postier.imap_port, postier.cpu_seconds, clients,
                                  args.seconds, args.accounts)
            print_row(ours)
            results.append((peer, ours))

    print()
    print("postier / dovecot")
    print(f"{'clients':>7} {'ops/s':>7} {'CPU per op':>11}")
    for peer, ours in results:
        print(f"{peer.clients:>7} {ours.ops_per_s / peer.ops_per_s:>6.2f}x "
              f"{ours.cpu_ms_per_op / peer.cpu_ms_per_op:>10.2f}x")
    print("\nAn operation: one IMAP command (9 per session: LOGIN, SELECT, FETCH, STORE \\Seen, "
          "APPEND,\nSTORE \\Deleted, EXPUNGE, SEARCH, LOGOUT; STORE's latency column has both "
          "STOREs).  CPU: the\nserver's whole process tree (Dovecot: master, auth, imap-login and "
          "imap processes), user+system;\nclient CPU: this process, which shares the 2 cores "
          "with the server.")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--prepare"]:  # child: fill postier's store with $POSTIER_SRC
        accounts, per = int(sys.argv[3]), int(sys.argv[4])
        asyncio.run(fill_store(Path(sys.argv[2]), {address(i): per for i in range(accounts)},
                               PASSWORD, make_message))
    else:
        main()
