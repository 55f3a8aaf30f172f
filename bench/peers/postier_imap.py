"""postier with its IMAP listener on loopback, for the IMAP benchmarks (issue 4).

``PostierProcess`` (bench/peers/__init__.py) configures SMTP and POP3 only and keeps its
behaviour; ``ImapPostier`` is the same subprocess with ``[imap] listen`` set, connection
limits raised (``[server] max_connections``, ``max_connections_per_ip``), an optional
``[server] workers`` and an optional open-file limit for the server (``ulimit -n`` through
``preexec_fn``), plus the resident memory of its process tree from /proc.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from . import PostierProcess, wait_for_port

__all__ = ["ImapPostier", "fill_store", "raise_nofile", "rss_kib", "tree_pids"]


async def fill_store(data: Path, accounts: Mapping[str, int], password: str,
                     message: Callable[[str, int], bytes], batch: int = 500) -> None:
    """Create the accounts (cheap argon2 hash) and append ``accounts[address]`` messages
    ``message(address, n)`` to each INBOX through the store API, in batches (durable, as
    bench/store.py's fill).  Run with the server's sources on sys.path, before it starts."""
    from postier.auth.passwords import CHEAP_ARGON2, hash_password
    from postier.store.sqlite import SqliteStore
    from postier.store.types import NewMessage

    store = await SqliteStore.open(data)
    try:
        pw_hash = hash_password(password, CHEAP_ARGON2)
        for address, count in accounts.items():
            domain = address.partition("@")[2]
            if not await store.get_domain(domain):
                await store.add_domain(domain)
            account = await store.create_account(address, pw_hash, None)
            box = await store.get_mailbox(account.id, "INBOX")
            assert box is not None, address
            t0 = time.monotonic()
            for start in range(0, count, batch):
                end = min(count, start + batch)
                bodies = await asyncio.gather(
                    *(store.prepare_body(message(address, n)) for n in range(start, end)))
                await store.append([NewMessage(box.id, b) for b in bodies])
                if count >= 10 * batch and time.monotonic() - t0 > 10:
                    print(f"  {address}: {end:,} / {count:,}", file=sys.stderr, flush=True)
                    t0 = time.monotonic()
    finally:
        await store.close()


def raise_nofile(n: int) -> int:
    """Raise this process's RLIMIT_NOFILE (soft and, as root, hard) to at least n."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, max(n, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def tree_pids(root: int) -> list[int]:
    """root and every live process under it."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ImapPostier(PostierProcess):
    """``postier serve`` with IMAP (no TLS) on 127.0.0.1:``imap_port``."""

    def __init__(self, imap_port: int, *, src: Path | None = None, workdir: Path | None = None,
                 max_connections: int = 5000, workers: int = 1, nofile: int = 0) -> None:
        super().__init__(src=src, workdir=workdir)
        self.imap_port = imap_port
        self.max_connections = max_connections
        self.workers = workers
        self.nofile = nofile

    def write_config(self) -> None:
        n = self.max_connections
        self.config.write_text(
            "[server]\n"
            'hostname = "bench.example.org"\n'
            'log_level = "warning"\n'
            f"max_connections = {n}\n"
            f"max_connections_per_ip = {n}\n"
            f"workers = {self.workers}\n"
            # Benchmarks measure the store path and never leave loopback: no SPF/DKIM/DMARC
            # lookups, no outbound queue, and a loopback-only resolver (net/guard.py).
            "[dns]\nnameservers = [\"127.0.0.1:9\"]\n"
            "[queue]\nenabled = false\n"
            "[smtp]\n"
            "check_spf = false\ncheck_dkim = false\ncheck_dmarc = false\ncheck_arc = false\n"
            "listen = []\nsubmission_listen = []\nsubmissions_listen = []\n"
            f"max_connections_per_ip = {n}\n"
            "[imap]\n"
            f'listen = ["127.0.0.1:{self.imap_port}"]\n'
            "tls_listen = []\n"
            "[pop3]\nlisten = []\ntls_listen = []\n"
        )

    def start(self) -> None:
        self.write_config()
        exe = Path(sys.executable).with_name("postier")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "postier.cli"]
        env = dict(os.environ, PYTHONPATH=str(self.src), POSTIER_SRC=str(self.src),
                   POSTIER_LOOPBACK_ONLY="1")
        nofile = self.nofile

        def preexec() -> None:  # `ulimit -n` for the server only
            if nofile:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*cmd, "serve", "--data", str(self.data), "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                preexec_fn=preexec,
            )
        wait_for_port(self.imap_port, 60, [self.proc])

    def rss_kib(self) -> int:
        """Resident memory of the server's whole process tree (workers included), KiB."""
        assert self.proc is not None
        return sum(rss_kib(p) for p in tree_pids(self.proc.pid))

