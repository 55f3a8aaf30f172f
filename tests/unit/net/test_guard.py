"""Loopback-only mode (set for the whole test suite in tests/conftest.py)."""

from __future__ import annotations

import os

import pytest

from postier.mailauth.dns import DnsPythonResolver, DnsTempError
from postier.net.guard import ENV, check_destination
from postier.queue.client import SmtpClient, SmtpClientError


def test_the_suite_runs_in_loopback_only_mode() -> None:
    assert os.environ.get(ENV) == "1"


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1"])
def test_loopback_destinations_are_allowed(address: str) -> None:
    check_destination(address)


@pytest.mark.parametrize("address", ["10.255.255.53", "192.168.1.1", "8.8.8.8", "2001:db8::1"])
def test_other_destinations_are_refused(address: str) -> None:
    with pytest.raises(PermissionError):
        check_destination(address)


async def test_resolver_refuses_a_non_loopback_nameserver() -> None:
    resolver = DnsPythonResolver(["192.0.2.53"], timeout_s=1)
    with pytest.raises(DnsTempError, match="refusing"):
        await resolver.txt("example.org")


async def test_outbound_client_refuses_a_non_loopback_mx() -> None:
    with pytest.raises(SmtpClientError, match="refusing"):
        await SmtpClient.connect("192.0.2.25", 25, "mx.example.org", connect_timeout_s=1)
