"""Helpers for tests that run `postier serve` as a real process."""

from __future__ import annotations

import subprocess
import time

READY = "Press Ctrl-C"  # the last line `postier serve` prints once it listens


def wait_ready(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> str:
    """What the server printed on stdout until it was ready (or ended, or timed out)."""
    assert proc.stdout is not None
    out = ""
    deadline = time.monotonic() + timeout_s
    while READY not in out and time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        out += line
    return out
