"""SMTP side by side (issue 3): Postfix → LMTP → Dovecot against postier, same run, same load.

    .venv/bin/python bench/compare_smtp.py [--messages 2000] [--senders 10 50]
                                           [--sizes 10240 1048576] [--timeout 120]
                                           [--rounds 1] [--workers 1]
                                           [--indexer process|thread]
                                           [--loop auto|uvloop|asyncio]
                                           [--client-loop uvloop|asyncio]

Servers (all on 127.0.0.1, ports chosen at start, data in temporary folders):

- peer: Debian's Postfix (private instance, bench/peers/postfix.py) accepting for
  example.org and handing every message over LMTP to Debian's Dovecot (bench/peers/
  dovecot.py), which stores it in a Maildir (fsync: Dovecot's default).  A message counts
  as stored when its file is in ``Maildir/new``; the run ends when all are there.
- Every measured run delivers to a mailbox of its own (``mailbox(n)``), on both servers,
  so that no run pays for the messages of the runs before it.
- postier: ``postier serve --data TMP --config CFG`` as a subprocess, port-25 (MTA) mode;
  its 250 after DATA is sent once the message is parsed and durable; the full-text index
  follows (its own process by default), and a message counts as stored once its body is
  marked indexed in postier.db: the run ends when all are, indexing included.

The load generator is bench/smtp.py's (imported, unchanged): each sender is one
connection sending its share of the messages one after another with pipelined
MAIL/RCPT/DATA, asserting 250 for each.  It runs on uvloop (``--client-loop``): it shares
the two cores with the server under test, and on asyncio's own loop it took about 0.2 ms
of CPU per message (a sixth of postier's), on uvloop about 0.12 (bench/README.md, SMTP,
session 5); its CPU is reported beside the servers'.  Server CPU is the CPU time (user+system) of the
server's whole process tree from /proc, sampled before and after (for the peer: Postfix's
tree plus Dovecot's), including children reaped in between (see bench/peers/__init__.py).
Both servers run during the whole run; the one not under load is idle.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import smtp as load  # bench/smtp.py: make_message, sender
from peers import (
    DirectoryCounter,
    PostierProcess,
    count_files,
    free_ports,
    install_sigterm_handler,
    machine,
    postier_source,
    use_postier_source,
    versions,
)
from peers.dovecot import Dovecot
from peers.postfix import Postfix

use_postier_source()  # $POSTIER_SRC or src/: what the postier side imports and runs

DOMAIN = "example.org"
RECIPIENT = "alice@example.org"  # bench/smtp.py's sender()'s default address


def mailbox(n: int) -> str:
    """The recipient of run ``n`` (0: the warm-up): every measured run delivers into a
    mailbox of its own, on both servers, so that no run pays for the ones before it.  With
    one mailbox for all, Dovecot slowed from round to round as its Maildir/new grew
    (Postfix → Dovecot fell from ~500 to ~330 msg/s over five rounds; postier did not:
    bench/README.md, SMTP, session 5), which flattered postier's median."""
    return RECIPIENT if n == 0 else f"user{n}@{DOMAIN}"
SETTLE_S = 0.3  # after the end of a run, before the last CPU sample (same for both servers)


@dataclass
class Result:
    server: str
    size: int
    senders: int
    messages: int
    accept_s: float
    stored_s: float
    cpu_s: float
    client_cpu_s: float

    @property
    def per_s(self) -> float:
        return self.messages / self.stored_s

    @property
    def cpu_ms_per_msg(self) -> float:
        return self.cpu_s * 1000 / self.messages


async def prepare_postier(data_dir: Path, mailboxes: int = 1) -> None:
    from postier.auth.passwords import CHEAP_ARGON2, hash_password
    from postier.store.sqlite import SqliteStore

    store = await SqliteStore.open(data_dir)
    try:
        await store.add_domain(DOMAIN)
        password = hash_password("x", CHEAP_ARGON2)
        for n in range(mailboxes):
            await store.create_account(mailbox(n), password, None)
    finally:
        await store.close()


async def send_all(
    port: int, batches: list[list[bytes]], timeout: float, rcpt: str = RECIPIENT
) -> float:
    """Run bench/smtp.py's senders, one per batch; seconds until the last 250."""
    start = time.perf_counter()
    await asyncio.wait_for(
        asyncio.gather(*(load.sender(port, batch, rcpt) for batch in batches)), timeout
    )
    return time.perf_counter() - start


async def run_case(
    name: str, port: int, cpu: Callable[[], float], stored: Callable[[], int] | None,
    senders: int, size: int, count: int, timeout: float, first: int = 0,
    rcpt: str = RECIPIENT,
) -> Result:
    per_sender = max(1, count // senders)
    total = per_sender * senders
    batches = [
        [load.make_message(first + s * per_sender + i, size) for i in range(per_sender)]
        for s in range(senders)
    ]
    base = stored() if stored is not None else 0
    cpu0 = cpu()
    client0 = time.process_time()
    start = time.perf_counter()
    accept_s = await send_all(port, batches, timeout, rcpt)
    stored_s = accept_s
    if stored is not None:
        deadline = start + timeout
        while stored() < base + total:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{name}: {stored() - base}/{total} stored after {timeout} s")
            await asyncio.sleep(0.02)
        stored_s = time.perf_counter() - start
    client_s = time.process_time() - client0
    await asyncio.sleep(SETTLE_S)
    return Result(name, size, senders, total, accept_s, stored_s, cpu() - cpu0, client_s)


def _spread(ratios: list[float]) -> str:
    """"2.51x" for one ratio; "2.51x [2.10, 2.80]" (median, lowest, highest) for more."""
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}x"
    return f"{statistics.median(ratios):.2f}x [{ratios[0]:.2f}, {ratios[-1]:.2f}]"


def print_row(r: Result) -> None:
    print(
        f"{r.server:<22} {r.size:>8} {r.senders:>7} {r.messages:>8} {r.accept_s:>9.2f} "
        f"{r.stored_s:>9.2f} {r.per_s:>8.0f} {r.cpu_ms_per_msg:>11.2f} {r.client_cpu_s:>13.1f}",
        flush=True,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="per 10 KB case (1 MB: /10)")
    parser.add_argument("--senders", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_240, 1_048_576])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case at most")
    parser.add_argument("--workers", type=int, default=1, help="postier's [server] workers")
    parser.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default=None,
                        help="postier's [server] event_loop (default: not set, i.e. auto)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="per case, peer and postier in turns this many times (median)")
    parser.add_argument("--indexer", choices=("process", "thread"), default=None,
                        help="postier's [store] indexer (default: not set, i.e. process)")
    parser.add_argument("--postier-commit", default="", metavar="REV",
                        help="run postier from this commit (git archive), not the working tree")
    parser.add_argument("--client-loop", choices=("uvloop", "asyncio"), default="uvloop",
                        help="the load generator's event loop (default: uvloop)")
    parser.add_argument("--text", choices=load.TEXTS, default="bench",
                        help="message body text (bench/smtp.py: the repetitive bench text,"
                             " or English prose)")
    return parser.parse_args()


async def main(args: argparse.Namespace) -> None:
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
    print(f"SMTP comparison, {time.strftime('%Y-%m-%d %H:%M %Z')}; {machine()}; "
          f"load generator on {args.client_loop}; {args.text} text")
    load.TEXT = args.text
    print(versions())
    runs = len(args.sizes) * len(args.senders) * args.rounds
    mailboxes = [mailbox(n) for n in range(runs + 1)]
    with ExitStack() as stack:
        dovecot = stack.enter_context(Dovecot({m: "x" for m in mailboxes}))
        postfix = stack.enter_context(Postfix([DOMAIN], mailboxes, dovecot.lmtp_port))
        postier = PostierProcess(smtp_port=free_ports(1)[0], src=src, workers=args.workers,
                                 event_loop=args.loop or "", indexer=args.indexer or "")
        postier.prepare(Path(__file__), str(len(mailboxes)))
        stack.enter_context(postier)

        def peer_cpu() -> float:
            return postfix.cpu_seconds() + dovecot.cpu_seconds()

        def new_dir(m: str) -> Path:
            return dovecot.maildir(m) / "new"

        print(f"peer: Postfix 127.0.0.1:{postfix.smtp_port} → LMTP 127.0.0.1:"
              f"{dovecot.lmtp_port} → Dovecot Maildir; postier: 127.0.0.1:{postier.smtp_port}"
              f"; a mailbox of its own for each of the {runs} runs")
        # Warm-up (not measured): start the processes, create the mailboxes and indexes.
        await run_case("peer", postfix.smtp_port, peer_cpu, lambda: count_files(new_dir(RECIPIENT)),
                       10, 10_240, 100, args.timeout, first=10**8)
        await run_case("postier", postier.smtp_port, postier.cpu_seconds, postier.indexed, 10,
                       10_240, 100, args.timeout, first=10**8)
        base = postier.indexed()
        for n, m in enumerate(mailboxes[1:], start=1):  # one message each: folders exist
            await send_all(postfix.smtp_port, [[load.make_message(10**8 + 1000 + n, 1024)]],
                           args.timeout, m)
            await send_all(postier.smtp_port, [[load.make_message(10**8 + 1000 + n, 1024)]],
                           args.timeout, m)
        deadline = time.monotonic() + args.timeout
        while (postier.indexed() < base + runs
               or any(count_files(new_dir(m)) < 1 for m in mailboxes[1:])):
            if time.monotonic() > deadline:
                raise TimeoutError("the mailboxes' first messages were not stored")
            await asyncio.sleep(0.05)
        # Maildir/new exists now: count its files from inotify events, not listings.
        counters = {m: stack.enter_context(closing(DirectoryCounter(new_dir(m))))
                    for m in mailboxes[1:]}

        print()
        print(f"{'server':<22} {'size':>8} {'senders':>7} {'messages':>8} {'accept s':>9} "
              f"{'stored s':>9} {'msg/s':>8} {'CPU ms/msg':>11} {'client CPU s':>13}")
        results: list[tuple[Result, Result]] = []
        first = 0
        run = 0
        for size in args.sizes:
            count = args.messages if size <= 100_000 else max(args.messages // 10, 50)
            for senders in args.senders:
                for _ in range(args.rounds):  # peer and postier in turns: the host's speed drifts
                    run += 1
                    m = mailbox(run)
                    peer = await run_case("postfix→lmtp→dovecot", postfix.smtp_port, peer_cpu,
                                          counters[m], senders, size, count, args.timeout,
                                          first, m)
                    print_row(peer)
                    first += count
                    ours = await run_case("postier", postier.smtp_port, postier.cpu_seconds,
                                          postier.indexed, senders, size, count, args.timeout,
                                          first, m)
                    print_row(ours)
                    results.append((peer, ours))
                    first += count

    print()
    print("postier / peer (end to end: every message stored)"
          + (f"; median of {args.rounds} rounds [lowest, highest]" if args.rounds > 1 else ""))
    print(f"{'size':>8} {'senders':>7} {'throughput':>22} {'CPU per msg':>22} "
          f"{'postier at its 250s':>22}")
    cases = list(dict.fromkeys((peer.size, peer.senders) for peer, _ in results))
    for size, senders in cases:
        pairs = [(p, o) for p, o in results if (p.size, p.senders) == (size, senders)]
        speed = sorted(o.per_s / p.per_s for p, o in pairs)
        cpu = sorted(o.cpu_ms_per_msg / p.cpu_ms_per_msg for p, o in pairs)
        # postier's message is in its mailbox, durable, at its 250; the index follows
        at_250 = sorted(p.stored_s / o.accept_s for p, o in pairs)
        print(f"{size:>8} {senders:>7} {_spread(speed):>22} {_spread(cpu):>22} "
              f"{_spread(at_250):>22}")
    print("\naccept s: until the last 250; stored s: until the last message is stored "
          "(postier: durable\nand in the full-text index); postier at its 250s: the peer's "
          "stored s over postier's accept s\n(its messages are in their mailbox, durable, "
          "at the 250; the full-text index follows);\nCPU: the server's whole "
          "process tree, user+system;\nclient CPU: this process (load generator and, for the peer, counting Maildir/new).")

    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--prepare"]:  # child: fill postier's store with $POSTIER_SRC
        asyncio.run(prepare_postier(Path(sys.argv[2]), int(sys.argv[3]) if sys.argv[3:] else 1))
    else:
        from postier import eventloop

        arguments = parse_args()
        eventloop.run(main(arguments), eventloop.choose_event_loop(arguments.client_loop))
