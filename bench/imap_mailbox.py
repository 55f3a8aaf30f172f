"""IMAP on a big mailbox (issue 4): SELECT, FETCH 1:* (UID FLAGS), UID FETCH of ENVELOPE +
BODYSTRUCTURE for 1,000 messages, SEARCH TEXT "word" — milliseconds, postier and Dovecot.

    .venv/bin/python bench/imap_mailbox.py [--messages 100000] [--size 4000] [--repeat 5]
                                           [--no-dovecot] [--postier-commit REV]

One account, ``--messages`` generated messages of about ``--size`` bytes in its INBOX;
every 100th contains the word "zanzibar" in its body (1% of the mailbox matches SEARCH
TEXT "zanzibar"), the others do not contain it anywhere.  postier: the store is filled
through the store API (bench/peers/postier_imap.py fill_store: prepare_body + append in
batches of 500, durable) before ``postier serve`` starts (subprocess, IMAP on 127.0.0.1,
one worker).  Dovecot (bench/peers/dovecot.py, Debian defaults, no FTS plugin): the same
bytes written as Maildir files in cur/ (LF line ends, S= and W= sizes in the names) and
indexed with ``doveadm force-resync``.

Client: a plain blocking socket in this process (no imaplib: its per-line parsing would
be timed too); a command's time is from sending it to reading its tagged OK, every byte
of the response read.  Each round: LOGIN (not timed), SELECT INBOX, FETCH 1:* (UID FLAGS),
UID FETCH <1,000 UIDs from the middle> (ENVELOPE BODYSTRUCTURE), SEARCH TEXT "zanzibar",
LOGOUT, on a new connection.  Round 1 is reported on its own (first SELECT after start:
cold caches); then the median of the other ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import free_ports, install_sigterm_handler, machine, postier_source, versions
from peers.dovecot import MAIL_USER, Dovecot
from peers.postier_imap import ImapPostier, fill_store

USER = "big@bench.example"
PASSWORD = "bench password"
WORD = "zanzibar"
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo",
         "sierra", "tango", "uniform", "victor", "whiskey", "xray"]
SIZE = 4000
COMMANDS = ("SELECT", "FETCH 1:* (UID FLAGS)", "UID FETCH 1,000 (ENVELOPE BODYSTRUCTURE)",
            f'SEARCH TEXT "{WORD}"')


def message(n: int, size: int) -> bytes:
    head = (
        f"From: Sender {n % 97} <sender{n % 97}@example.net>\r\nTo: {USER}\r\n"
        f"Subject: message {n} about {WORDS[n % len(WORDS)]}\r\n"
        f"Message-ID: <{n}@bench.example.net>\r\nDate: Fri, 27 Nov 2026 08:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = (" ".join(WORDS[(n + i) % len(WORDS)] for i in range(12)) + "\r\n").encode()
    body = line * (max(0, size - len(head)) // len(line) + 1)
    if n % 100 == 0:
        body = f"a note about {WORD} here\r\n".encode() + body
    return head + body[: max(0, size - len(head))]


class Client:
    """Blocking IMAP client: a command's whole response is read, up to its tagged line."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.buf = b""
        self.n = 0
        self._read_until(re.compile(rb"^\* OK.*\r\n", re.M))

    def _read_until(self, pattern: re.Pattern[bytes]) -> bytes:
        start = 0
        while True:
            m = pattern.search(self.buf, start)
            if m:
                out, self.buf = self.buf[: m.end()], self.buf[m.end():]
                return out
            start = max(0, len(self.buf) - 200)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buf += chunk

    def command(self, text: str) -> tuple[bytes, float]:
        self.n += 1
        tag = f"T{self.n}".encode()
        t0 = time.perf_counter()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        data = self._read_until(re.compile(rb"(?:^|\n)" + tag + rb" [A-Z]+[^\r\n]*\r\n"))
        ms = (time.perf_counter() - t0) * 1000
        last = data[data.rstrip(b"\r\n").rfind(b"\n") + 1:]
        if not last.startswith(tag + b" OK"):
            raise RuntimeError(f"{text[:40]}: {last.decode(errors='replace').strip()}")
        return data, ms

    def close(self) -> None:
        try:
            self.command("LOGOUT")
        except (OSError, RuntimeError):
            pass
        self.sock.close()


def one_round(port: int, expect: int) -> tuple[list[float], int]:
    c = Client(port)
    try:
        c.command(f'LOGIN "{USER}" "{PASSWORD}"')
        data, t_select = c.command("SELECT INBOX")
        m = re.search(rb"\* (\d+) EXISTS", data)
        if not m or int(m.group(1)) != expect:
            raise RuntimeError(f"SELECT: expected {expect} messages, got {m and m.group(1)!r}")
        data, t_flags = c.command("FETCH 1:* (UID FLAGS)")
        uids = [int(u) for u in re.findall(rb"\* \d+ FETCH \(.*?UID (\d+)", data)]
        if len(uids) != expect:
            raise RuntimeError(f"FETCH 1:*: {len(uids)} responses, not {expect}")
        mid = len(uids) // 2
        chosen = uids[mid: mid + 1000]
        data, t_env = c.command(f"UID FETCH {chosen[0]}:{chosen[-1]} (ENVELOPE BODYSTRUCTURE)")
        got = len(re.findall(rb"^\* \d+ FETCH ", data, re.M))
        if got != len(chosen):
            raise RuntimeError(f"UID FETCH: {got} responses, not {len(chosen)}")
        data, t_search = c.command(f'SEARCH TEXT "{WORD}"')
        hits = sum(len(line.split()) - 2 for line in data.split(b"\r\n")
                   if line.startswith(b"* SEARCH"))
        return [t_select, t_flags, t_env, t_search], hits
    finally:
        c.close()


def bench(name: str, port: int, n: int, repeat: int, cpu: Callable[[], float]) -> list[str]:
    cpu0 = cpu()
    first, hits = one_round(port, n)
    rest = [one_round(port, n)[0] for _ in range(repeat)]
    cpu_s = cpu() - cpu0
    med = [statistics.median(r[i] for r in rest) for i in range(len(COMMANDS))]
    rows = [f"{name:<8} {'first':<7} " + " ".join(f"{x:>12,.0f}" for x in first),
            f"{name:<8} {'median':<7} " + " ".join(f"{x:>12,.0f}" for x in med)]
    print("\n".join(rows), flush=True)
    print(f"{'':<8} SEARCH hits {hits}, server CPU for the {repeat + 1} rounds {cpu_s:.1f} s",
          flush=True)
    return rows


def fill_dovecot(dc: Dovecot, n: int, size: int) -> None:
    """Maildir files in cur/ (as Dovecot would store them), then doveadm force-resync."""
    box = dc.maildir(USER)
    for sub in ("cur", "new", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    stamp = int(time.time()) - 3600
    for i in range(n):
        raw = message(i, size)
        lf = raw.replace(b"\r\n", b"\n")
        name = f"{stamp + i // 1000}.M{i}P{os.getpid()}.bench,S={len(lf)},W={len(raw)}:2,"
        (box / "cur" / name).write_bytes(lf)
    subprocess.run(["chown", "-R", f"{MAIL_USER}:nogroup", str(dc.mail)], check=True, timeout=600)
    subprocess.run(["/usr/bin/doveadm", "-c", str(dc.conf), "force-resync", "-u", USER, "INBOX"],
                   check=True, timeout=900)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=SIZE, help="bytes per message (about)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-dovecot", action="store_true")
    parser.add_argument("--postier-commit", default="", metavar="REV",
                        help="run postier from this commit (git archive), not the working tree")
    args = parser.parse_args()
    install_sigterm_handler()
    tmp = Path(tempfile.mkdtemp(prefix="bench-imap-mailbox-"))
    try:
        src = postier_source(args.postier_commit, tmp)
        if args.postier_commit:
            repo = Path(__file__).resolve().parents[1]
            rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", args.postier_commit],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
            os.environ["POSTIER_SRC"] = str(src)
            os.environ["POSTIER_COMMIT"] = rev or args.postier_commit
        sys.path.insert(0, str(src))
        run(args, src)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, src: Path) -> None:
    n = args.messages
    print(f"IMAP big mailbox, {time.strftime('%Y-%m-%d %H:%M %Z')}; {machine()}")
    print(versions())
    with ExitStack() as stack:
        servers: list[tuple[str, int, Callable[[], float]]] = []
        setup = []
        if not args.no_dovecot:
            dc = stack.enter_context(Dovecot({USER: PASSWORD}))
            t0 = time.monotonic()
            fill_dovecot(dc, n, args.size)
            setup.append(f"Dovecot Maildir files + doveadm force-resync {time.monotonic() - t0:.0f} s")
            servers.append(("dovecot", dc.imap_port, dc.cpu_seconds))
        postier = ImapPostier(free_ports(1)[0], src=src)
        t0 = time.monotonic()
        postier.prepare(Path(__file__), str(n), str(args.size), timeout=3600)
        setup.append(f"postier store API {time.monotonic() - t0:.0f} s")
        stack.enter_context(postier)
        servers.append(("postier", postier.imap_port, postier.cpu_seconds))
        print(f"setup: 1 mailbox of {n:,} messages of ~{args.size:,} bytes ({n // 100:,} contain "
              f"{WORD!r}); " + ", ".join(setup))
        print()
        print(f"{'server':<8} {'round':<7} " + " ".join(f"{h:>12}" for h in
              ("SELECT ms", "FETCH 1:* ms", "UID FETCH ms", "SEARCH ms")))
        for name, port, cpu in servers:
            bench(name, port, n, args.repeat, cpu)
    print("\nFETCH 1:* (UID FLAGS) of all messages; UID FETCH: 1,000 consecutive UIDs from the "
          "middle,\n(ENVELOPE BODYSTRUCTURE); SEARCH TEXT over headers and bodies (Dovecot: no FTS "
          "plugin, Debian default).")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--prepare"]:  # child: fill postier's store with $POSTIER_SRC
        count, size = int(sys.argv[3]), int(sys.argv[4])
        asyncio.run(fill_store(Path(sys.argv[2]), {USER: count}, PASSWORD,
                               lambda _a, i: message(i, size)))
    else:
        main()
