"""Loopback-only mode: with POSTIER_LOOPBACK_ONLY=1 nothing may contact another address.

The test suite and the benchmarks set it (tests/conftest.py, bench/peers), and every
subprocess they start inherits it, so a missing `[dns] nameservers` in a test
configuration fails loudly instead of asking the machine's resolver, and the outbound
queue cannot connect outside 127.0.0.0/8 and ::1.
"""

from __future__ import annotations

import os

from postier.net.addresses import is_loopback

ENV = "POSTIER_LOOPBACK_ONLY"


def loopback_only() -> bool:
    return os.environ.get(ENV, "") == "1"


def check_destination(address: str) -> None:
    """Raise PermissionError (an OSError) if loopback-only mode forbids ``address``."""
    if loopback_only() and not is_loopback(address):
        raise PermissionError(f"{ENV}=1: refusing to contact {address}")
