"""Run several `postier serve` worker processes on one data folder and keep them running.

Python runs protocol code on one core per process; on a machine with N cores, N workers
share the listening ports (SO_REUSEPORT: the kernel spreads new connections over them)
and the SQLite data folder (WAL; each worker group-commits its own writes).  Changes are
relayed between workers (store/relay.py); worker 0 alone runs the outbound queue and the
garbage collector.  The supervisor forwards SIGINT/SIGTERM, and restarts a worker that
dies (at most MAX_RESTARTS within RESTART_WINDOW_S, then it stops everything).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

log = logging.getLogger("postier.supervisor")

READY_MARK = "Press Ctrl-C"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


class Supervisor:
    def __init__(self, command: Callable[[int], Sequence[str]], workers: int) -> None:
        self.command = command
        self.workers = workers
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._stopping = threading.Event()
        self._restarts: list[float] = []

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(self.command(index)), stdout=subprocess.PIPE)
        self.procs[index] = proc
        return proc

    @staticmethod
    def _read_ready(proc: subprocess.Popen[bytes]) -> list[str]:
        """A worker's start-up lines, up to the ready mark ([] if it died first)."""
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            raw = proc.stdout.readline()
            if not raw:
                return []
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            if READY_MARK in line:
                threading.Thread(target=_drain, args=(proc,), daemon=True).start()
                return lines
        return []

    def start(self) -> list[str]:
        """Start every worker; return worker 0's start-up lines.  Raises if one fails."""
        first: list[str] = []
        for index in range(self.workers):
            proc = self._spawn(index)
            lines = self._read_ready(proc)
            if not lines:
                self.stop()
                raise RuntimeError(f"worker {index} failed to start (exit {proc.poll()})")
            if index == 0:
                first = lines
        return first

    def run(self) -> int:
        """Supervise until a signal; returns the exit status."""
        def on_signal(signum: int, frame: FrameType | None) -> None:
            self._stopping.set()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        try:
            while not self._stopping.wait(0.2):
                for index, proc in list(self.procs.items()):
                    code = proc.poll()
                    if code is None:
                        continue
                    now = time.monotonic()
                    self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S]
                    if len(self._restarts) >= MAX_RESTARTS:
                        log.error("workers keep dying; stopping")
                        self._stopping.set()
                        status = 1
                        break
                    self._restarts.append(now)
                    log.warning("worker %d exited with %s; restarting it", index, code)
                    if not self._read_ready(self._spawn(index)):
                        log.error("worker %d did not restart", index)
        finally:
            self.stop()
            for s, handler in old.items():
                signal.signal(s, handler)
        return status

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _drain(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    for _line in proc.stdout:
        pass
