"""POP3 side by side (issue 5): Dovecot's POP3 against postier's, same run, same load.

    .venv/bin/python bench/compare_pop3.py [--clients 10 50] [--seconds 10]
                                           [--mailboxes 100] [--messages 30]

Both servers get the same mailboxes: ``--mailboxes`` accounts (bench/pop3.py's names and
password), each with ``--messages`` messages of 10-20 KB, byte for byte the same (bench/
pop3.py's make_message with its seed).  Dovecot (bench/peers/dovecot.py, Maildir, passwd-
file with a {PLAIN} password, Debian defaults otherwise) receives them through LMTP;
postier's store is filled by bench/pop3.py's setup() (Delivery API, parse-once, index)
before ``postier serve --data TMP --config CFG`` starts as a subprocess with POP3 in keep
mode.  Nothing is deleted: the client never sends DELE, so every session sees the full
mailbox.

Load: bench/pop3.py's client (imported, unchanged): N concurrent clients, each looping
USER/PASS, STAT, UIDL, RETR of every message (pipelined), QUIT over its own slice of
the mailboxes, for ``--seconds``.  One unmeasured warm-up session per mailbox first (both
servers: Dovecot builds its index files and moves the messages from new/ to cur/ then).
Server CPU: the server's whole process tree from /proc (user+system, reaped children
included: Dovecot's per-connection login and pop3 processes), sampled before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pop3 as load  # bench/pop3.py: its setup and client
from peers import (
    PostierProcess,
    free_ports,
    install_sigterm_handler,
    machine,
    postier_source,
    use_postier_source,
    versions,
)
from peers.dovecot import Dovecot

use_postier_source()  # $POSTIER_SRC or src/: what the postier side imports and runs


@dataclass
class Result:
    server: str
    clients: int
    sessions: int
    messages: int
    elapsed_s: float
    cpu_s: float
    client_cpu_s: float

    @property
    def sessions_per_s(self) -> float:
        return self.sessions / self.elapsed_s

    @property
    def messages_per_s(self) -> float:
        return self.messages / self.elapsed_s

    @property
    def cpu_ms_per_session(self) -> float:
        return self.cpu_s * 1000 / max(1, self.sessions)


def mailbox_contents(mailboxes: int, per_box: int) -> list[tuple[str, list[bytes]]]:
    """The messages bench/pop3.py's setup() delivers, in the same order and bytes."""
    rng = random.Random(5)
    boxes: list[list[bytes]] = [[] for _ in range(mailboxes)]
    for n in range(per_box):
        for i in range(mailboxes):
            boxes[i].append(load.make_message(rng, i, n))
    return [(load.address(i), boxes[i]) for i in range(mailboxes)]


async def prepare_postier(data_dir: Path, mailboxes: int, per_box: int) -> None:
    store = await load.setup(data_dir, mailboxes, per_box)
    await store.close()  # type: ignore[attr-defined]


async def warm_up(port: int, mailboxes: int, per_box: int, timeout: float) -> None:
    """One session per mailbox (10 at a time); every mailbox must show all its messages."""
    sem = asyncio.Semaphore(10)

    async def one(i: int) -> None:
        async with sem:
            got = await load.one_session(port, load.address(i))
        if got != per_box:
            raise RuntimeError(f"{load.address(i)} on port {port}: {got} messages, not {per_box}")

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(mailboxes))), timeout)


async def run_case(name: str, port: int, cpu: Callable[[], float], clients: int,
                   seconds: float, mailboxes: int) -> Result:
    cpu0 = cpu()
    client0 = time.process_time()
    r = await asyncio.wait_for(load.client_main(port, clients, seconds, mailboxes), seconds + 60)
    cpu_s = cpu() - cpu0
    client_s = time.process_time() - client0
    return Result(name, clients, int(r["sessions"]), int(r["messages"]), r["elapsed_s"], cpu_s,
                  client_s)


def print_row(r: Result) -> None:
    print(f"{r.server:<10} {r.clients:>7} {r.sessions:>8} {r.elapsed_s:>8.1f} "
          f"{r.sessions_per_s:>10.1f} {r.messages_per_s:>11.0f} {r.cpu_ms_per_session:>15.2f} "
          f"{r.client_cpu_s:>13.1f}",
          flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--seconds", type=float, default=10.0, help="per case and server")
    parser.add_argument("--mailboxes", type=int, default=100)
    parser.add_argument("--messages", type=int, default=30, help="per mailbox")
    parser.add_argument("--workers", type=int, default=1, help="postier's [server] workers")
    parser.add_argument("--postier-commit", default="", metavar="REV",
                        help="run postier from this commit (git archive), not the working tree")
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
        await compare(args, src)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def compare(args: argparse.Namespace, src: Path) -> None:
    print(f"POP3 comparison, {time.strftime('%Y-%m-%d %H:%M %Z')}; {machine()}")
    print(versions())
    contents = mailbox_contents(args.mailboxes, args.messages)
    with ExitStack() as stack:
        dovecot = stack.enter_context(Dovecot({u: load.PASSWORD for u, _ in contents}))
        t0 = time.monotonic()
        delivered = dovecot.deliver_many(contents)
        t1 = time.monotonic()
        postier = PostierProcess(pop3_port=free_ports(1)[0], src=src, workers=args.workers)
        postier.prepare(Path(__file__), str(args.mailboxes), str(args.messages))
        t2 = time.monotonic()
        stack.enter_context(postier)
        print(f"setup: {args.mailboxes} mailboxes x {args.messages} messages of 10-20 KB; "
              f"Dovecot via LMTP {t1 - t0:.1f} s ({delivered} messages), "
              f"postier via its Delivery API {t2 - t1:.1f} s")
        print(f"Dovecot POP3 127.0.0.1:{dovecot.pop3_port}, postier POP3 "
              f"127.0.0.1:{postier.pop3_port} (keep mode)")
        await warm_up(dovecot.pop3_port, args.mailboxes, args.messages, 120)
        await warm_up(postier.pop3_port, args.mailboxes, args.messages, 120)

        print()
        print(f"{'server':<10} {'clients':>7} {'sessions':>8} {'seconds':>8} {'sessions/s':>10} "
              f"{'messages/s':>11} {'CPU ms/session':>15} {'client CPU s':>13}")
        results: list[tuple[Result, Result]] = []
        for clients in args.clients:
            peer = await run_case("dovecot", dovecot.pop3_port, dovecot.cpu_seconds, clients,
                                  args.seconds, args.mailboxes)
            print_row(peer)
            ours = await run_case("postier", postier.pop3_port, postier.cpu_seconds, clients,
                                  args.seconds, args.mailboxes)
            print_row(ours)
            results.append((peer, ours))

    print()
    print("postier / dovecot")
    print(f"{'clients':>7} {'sessions/s':>11} {'CPU per session':>16}")
    for peer, ours in results:
        print(f"{peer.clients:>7} {ours.sessions_per_s / peer.sessions_per_s:>10.2f}x "
              f"{ours.cpu_ms_per_session / peer.cpu_ms_per_session:>15.2f}x")
    print("\nA session: USER/PASS, STAT, UIDL, RETR of every message, QUIT. CPU: the server's "
          "whole process\ntree (Dovecot: master, auth, login and pop3 processes), user+system; client CPU: this\nprocess (bench/pop3.py's client), which shares the machine's cores with the server.")

    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--prepare"]:  # child: fill postier's store with $POSTIER_SRC
        asyncio.run(prepare_postier(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
    else:
        asyncio.run(main())
