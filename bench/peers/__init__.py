"""Real peers from Debian (Postfix, Dovecot) and postier itself, run privately on loopback.

The comparison scripts (bench/compare_smtp.py, bench/compare_pop3.py) start each server
as its own process tree on 127.0.0.1 with ports chosen here, and measure the CPU time of
that tree from /proc, the same way for every server:

- every live process of the tree counts its own utime+stime plus the cutime+cstime of the
  children it has reaped;
- the root (Dovecot's or Postfix's master, postier's process) counts the same way, so a
  short-lived child (a Dovecot login process, a Postfix smtpd that reached max_use) that
  exits between two samples is still counted, through its parent's cutime/cstime.

Sample before and after a run; the difference is the server's CPU time for that run.
Everything here is bounded in time and stops what it started, even on error.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "CLK_TCK",
    "DirectoryCounter",
    "PostierProcess",
    "apt_install",
    "count_files",
    "free_ports",
    "install_sigterm_handler",
    "machine",
    "pid_alive",
    "postier_source",
    "process_tree_cpu",
    "stop_process",
    "use_postier_source",
    "versions",
    "wait_for_port",
]

CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- processes and CPU


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, own ticks utime+stime, reaped children's ticks cutime+cstime) of pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14-17.
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def process_tree_cpu(roots: Iterable[int]) -> float:
    """CPU seconds (user+system) used so far by the process trees under ``roots``."""
    parents: dict[int, int] = {}
    stats: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st is not None:
            parents[int(entry.name)] = st[0]
            stats[int(entry.name)] = (st[1], st[2])
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    ticks = 0
    seen: set[int] = set()
    todo = [pid for pid in roots if pid in stats]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        own, reaped = stats[pid]
        ticks += own + reaped
        todo.extend(children.get(pid, ()))
    return ticks / CLK_TCK


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL; only this process."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def pid_alive(pid: int) -> bool:
    st = _stat(pid)
    if st is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so that ``with`` blocks stop the servers."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# ---------------------------------------------------------------- network, files, apt


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (bound together, then released)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for_port(port: int, timeout: float, alive: Iterable[object] = ()) -> None:
    """Wait until 127.0.0.1:port accepts a connection; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        for proc in alive:
            if isinstance(proc, subprocess.Popen) and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")
        time.sleep(0.05)


def count_files(directory: Path) -> int:
    try:
        return len(os.listdir(directory))
    except FileNotFoundError:
        return 0


class DirectoryCounter:
    """The number of files in a directory, kept from inotify events instead of a listing.

    A listing of Maildir/new every 20 ms grew to several ms per call as a run's messages
    piled up (thousands of files), CPU taken from the server under test on the same two
    cores; the events cost a read of a few bytes per message.  Start it while nothing is
    being added to the directory (the first count is a listing).  Linux only."""

    _IN_CREATE, _IN_MOVED_TO, _IN_DELETE, _IN_MOVED_FROM, _IN_Q_OVERFLOW = (
        0x100, 0x80, 0x200, 0x40, 0x4000)
    _HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (+ name)

    def __init__(self, directory: Path) -> None:
        import ctypes

        self.directory = directory
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        mask = self._IN_CREATE | self._IN_MOVED_TO | self._IN_DELETE | self._IN_MOVED_FROM
        if libc.inotify_add_watch(self._fd, str(directory).encode(), mask) < 0:
            errno = ctypes.get_errno()
            os.close(self._fd)
            raise OSError(errno, f"inotify_add_watch {directory}")
        self._count = count_files(directory)

    def __call__(self) -> int:
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return self._count
            pos = 0
            while pos < len(data):
                _wd, mask, _cookie, length = self._HEADER.unpack_from(data, pos)
                pos += self._HEADER.size + length
                if mask & self._IN_Q_OVERFLOW:  # events lost: list once
                    self._count = count_files(self.directory)
                elif mask & (self._IN_CREATE | self._IN_MOVED_TO):
                    self._count += 1
                elif mask & (self._IN_DELETE | self._IN_MOVED_FROM):
                    self._count -= 1

    def close(self) -> None:
        os.close(self._fd)


def apt_install(packages: Iterable[str], probes: Iterable[str], preseed: str = "") -> None:
    """``apt-get install -y`` the packages when one of ``probes`` (files) is missing."""
    if all(Path(p).exists() for p in probes):
        return
    packages = list(packages)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if preseed:
        subprocess.run(["debconf-set-selections"], input=preseed.encode(), check=True, timeout=60)
    print(f"installing {' '.join(packages)} with apt-get …", file=sys.stderr)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", *packages], env=env, check=True, timeout=900,
        stdout=subprocess.DEVNULL,
    )

def versions() -> str:
    """Versions of the servers compared (for the printed report)."""

    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except OSError:
            return "?"

    from postier import __version__

    postfix = out(["/usr/sbin/postconf", "-dh", "mail_version"]) or "?"
    dovecot = (out(["/usr/sbin/dovecot", "--version"]) or "?").split(" ")[0]
    src = os.environ.get("POSTIER_SRC", "")
    if src and Path(src).resolve() != (REPO / "src").resolve():
        tree = f"{os.environ.get('POSTIER_COMMIT', '?')} (git archive)"
    else:
        head = out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "?"
        dirty = out(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
        tree = f"{head}{' + uncommitted changes in src/' if dirty else ''} (working tree)"
    return (f"Postfix {postfix}, Dovecot {dovecot} (Debian), postier {__version__} at {tree}, "
            f"Python {platform.python_version()}")


def machine() -> str:
    """nproc, CPU model and load average (other work on the machine skews the figures)."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"nproc {os.cpu_count()}, {model}, load average {load}"


def postier_source(commit: str | None, into: Path) -> Path:
    """The postier sources to run: the working tree's src/, or ``commit``'s (git archive).

    Other engineers edit src/ while benchmarks run; ``commit`` makes the figures
    reproducible.  Use it through the POSTIER_SRC environment variable (see below).
    """
    if not commit:
        return REPO / "src"
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "src"],
                             capture_output=True, check=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True, timeout=60)
    return into / "src"


def use_postier_source() -> Path:
    """Put $POSTIER_SRC (default: the working tree's src/) first on sys.path."""
    src = Path(os.environ.get("POSTIER_SRC") or REPO / "src")
    sys.path.insert(0, str(src))
    return src


# ---------------------------------------------------------------- postier as a process


class ManagedServer:
    """A benchmark peer as a context manager: ``start()`` on entry, ``stop()`` on exit even
    on error, and the tail of its log printed when the block failed."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def print_log(self) -> None:
        """Print the tail of the server's log to stderr (nothing by default)."""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.print_log()
            self.stop()
            raise
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if t is not None:
            self.print_log()
        self.stop()


class PostierProcess(ManagedServer):
    """``postier serve --data D --config C`` as a subprocess with loopback listeners.

    ``prepare`` (optional) is called with the data folder before the server starts, to
    create domains, accounts and mail directly in the store (closed again before serving).
    """

    def __init__(self, smtp_port: int = 0, pop3_port: int = 0, *,
                 pop3_delete_mode: str = "keep", workdir: Path | None = None,
                 src: Path | None = None, workers: int = 1, event_loop: str = "",
                 indexer: str = "") -> None:
        self.src = src or REPO / "src"
        self.workers = workers
        self.indexer = indexer  # "" : the server's default ([store] indexer)
        self.event_loop = event_loop  # "" : the server's default ([server] event_loop)
        self.smtp_port = smtp_port
        self.pop3_port = pop3_port
        self.pop3_delete_mode = pop3_delete_mode
        self._own_dir = workdir is None
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="bench-postier-"))
        self.data = self.dir / "data"
        self.config = self.dir / "postier.toml"
        self.log = self.dir / "postier.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def prepare(self, script: Path, *args: str, timeout: float = 300) -> None:
        """Run ``script --prepare DATA ARGS…`` with this server's sources (fills the store)."""
        env = dict(os.environ, PYTHONPATH=str(self.src), POSTIER_SRC=str(self.src),
                   POSTIER_LOOPBACK_ONLY="1")
        subprocess.run([sys.executable, str(script), "--prepare", str(self.data), *args],
                       env=env, check=True, timeout=timeout)

    def write_config(self) -> None:
        def listen(port: int) -> str:
            return f'["127.0.0.1:{port}"]' if port else "[]"

        # Logs at the default level ("info": a line per message, as Postfix's maillog and
        # Dovecot's log have), into self.log.
        loop = f'event_loop = "{self.event_loop}"\n' if self.event_loop else ""
        self.config.write_text(
            "[server]\n"
            'hostname = "bench.example.org"\n'
            "max_connections = 5000\n"
            "max_connections_per_ip = 5000\n"
            f"workers = {self.workers}\n"
            f"{loop}"
            # Benchmarks measure the store path and never leave loopback: no SPF/DKIM/DMARC
            # lookups, no outbound queue, and a loopback-only resolver (net/guard.py).
            "[dns]\nnameservers = [\"127.0.0.1:9\"]\n"
            "[queue]\nenabled = false\n"
            "[smtp]\n"
            "check_spf = false\ncheck_dkim = false\ncheck_dmarc = false\ncheck_arc = false\n"
            f"listen = {listen(self.smtp_port)}\n"
            "submission_listen = []\nsubmissions_listen = []\n"
            "max_connections_per_ip = 5000\n"
            + (f'[store]\nindexer = "{self.indexer}"\n' if self.indexer else "")
            + "[imap]\nlisten = []\ntls_listen = []\n"
            "[pop3]\n"
            f"listen = {listen(self.pop3_port)}\n"
            "tls_listen = []\n"
            f'delete_mode = "{self.pop3_delete_mode}"\n'
        )

    def start(self) -> None:
        self.write_config()
        exe = Path(sys.executable).with_name("postier")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "postier.cli"]
        env = dict(os.environ, PYTHONPATH=str(self.src), POSTIER_SRC=str(self.src),
                   POSTIER_LOOPBACK_ONLY="1")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [*cmd, "serve", "--data", str(self.data), "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        for port in (self.smtp_port, self.pop3_port):
            if port:
                wait_for_port(port, 60, [self.proc])

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return process_tree_cpu([self.proc.pid])

    def indexed(self) -> int:
        """Bodies in the full-text index (marked indexed), read from the database.

        Bodies are never removed during a run, so their number is the span of their ids
        (an index lookup); the unindexed ones are few (partial index).  A count(*) of the
        marked rows read the whole table, several ms per call as a run's messages piled
        up, CPU taken from the server under test."""
        import sqlite3

        conn = sqlite3.connect(f"file:{self.data / 'postier.db'}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute(
                "SELECT coalesce(max(id) - min(id) + 1, 0)"
                " - (SELECT count(*) FROM bodies WHERE indexed = 0) FROM bodies"
            ).fetchone()
            return int(row[0])
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def print_log(self) -> None:
        if self.log.exists():
            tail = self.log.read_text(errors="replace")[-2000:]
            if tail.strip():
                print(f"--- postier log (tail)\n{tail}", file=sys.stderr)

