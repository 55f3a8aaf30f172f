"""A/B of two postier source trees under the same SMTP load, in interleaved rounds.

The host's speed drifts by 10-30 % from one minute to the next (bench/README.md), so two
variants are compared round by round, alternating which goes first, and the medians are
reported.  Each round starts a ``postier serve`` from one tree (``--src``: a folder
holding the ``postier`` package, e.g. a ``git archive`` of a commit, or ``src`` with its
compiled modules; ``TREE@N`` runs N workers), warms it with 300 messages, then times
``--messages`` 10 KB messages from ``--senders`` connections until every one is stored
and indexed.

    .venv/bin/python bench/ab_smtp.py /tmp/old/src src --rounds 6
    .venv/bin/python bench/ab_smtp.py src@1 src@2 --text english

Prints per round and per tree: messages per second (end to end: stored and in the
full-text index), CPU per message of the whole server, and of the serving process and
the index process apart (that split holds for one worker; with several the first process
is the supervisor).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

import smtp as load
from compare_smtp import run_case
from peers import PostierProcess, free_ports, process_tree_cpu

WARM_UP = 300


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def one_round(tree: str, messages: int, senders: int) -> tuple[float, float, float, float]:
    """(msg/s, CPU ms/msg of the server, of its first process, of its last child)."""
    src, _, workers = tree.partition("@")
    server = PostierProcess(smtp_port=free_ports(1)[0], src=Path(src).resolve(),
                            workers=int(workers or 1))
    server.prepare(Path(__file__).with_name("compare_smtp.py"))
    with server:
        assert server.proc is not None
        await run_case("warm-up", server.smtp_port, server.cpu_seconds, server.indexed,
                       10, 10240, WARM_UP, 60, first=10**8)
        pids = [server.proc.pid, *_children(server.proc.pid)]
        before = [process_tree_cpu([pid]) for pid in pids]
        result = await run_case("postier", server.smtp_port, server.cpu_seconds,
                                server.indexed, senders, 10240, messages, 120)
        after = [process_tree_cpu([pid]) for pid in pids]
    own = [(b - a) * 1000 / result.messages for a, b in zip(before, after, strict=True)]
    # the first process's tree holds its children: take them off for its own share
    return result.per_s, result.cpu_ms_per_msg, own[0] - sum(own[1:]), own[-1]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs=2, metavar="TREE[@WORKERS]")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--text", choices=("bench", "english"), default="bench")
    args = parser.parse_args()
    load.TEXT = args.text
    results: dict[str, list[tuple[float, float, float, float]]] = {t: [] for t in args.trees}
    for n in range(args.rounds):
        for tree in args.trees if n % 2 == 0 else args.trees[::-1]:
            r = await one_round(tree, args.messages, args.senders)
            results[tree].append(r)
            print(f"round {n} {tree}: {r[0]:.0f} msg/s, {r[1]:.2f} ms/msg "
                  f"(serving {r[2]:.2f}, index {r[3]:.2f})", flush=True)
    for tree, rs in results.items():
        print(f"{tree}: median {statistics.median(r[0] for r in rs):.0f} msg/s, "
              f"{statistics.median(r[1] for r in rs):.2f} ms/msg (serving "
              f"{statistics.median(r[2] for r in rs):.2f}, index "
              f"{statistics.median(r[3] for r in rs):.2f})")


if __name__ == "__main__":
    if sys.platform == "linux":
        import uvloop

        uvloop.run(main())
    else:  # pragma: no cover
        asyncio.run(main())
