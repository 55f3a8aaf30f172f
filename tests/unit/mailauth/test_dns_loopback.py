"""The dnspython `Resolver` against a real DNS server on 127.0.0.1 (dnslib), then SPF and
DMARC through it.  Nothing leaves 127.0.0.0/8: the resolver is given only the loopback
server and search lists are off.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord  # type: ignore[import-untyped]
from dnslib.server import BaseResolver, DNSLogger, DNSServer  # type: ignore[import-untyped]
from dnslib.zoneresolver import ZoneResolver  # type: ignore[import-untyped]

from postier.mailauth.dmarc import DkimVerdict, DmarcStatus, Policy, evaluate
from postier.mailauth.dns import DnsPythonResolver, DnsTempError, MxRecord
from postier.mailauth.spf import Spf, check_host

ZONE = """
example.test.            60 IN TXT  "v=spf1 mx ip6:2001:db8::/32 " "-all"
example.test.            60 IN TXT  "unrelated"
example.test.            60 IN MX   10 mx1.example.test.
example.test.            60 IN MX   20 mx2.example.test.
mx1.example.test.        60 IN A    127.0.0.10
mx2.example.test.        60 IN A    127.0.0.11
mx2.example.test.        60 IN AAAA 2001:db8::25
_dmarc.example.test.     60 IN TXT  "v=DMARC1; p=reject; sp=quarantine"
10.0.0.127.in-addr.arpa. 60 IN PTR  mx1.example.test.
nullmx.test.             60 IN MX   0 .
"""


class _Resolver(BaseResolver):  # type: ignore[misc]
    """The zone above; names under servfail.test answer SERVFAIL."""

    def __init__(self) -> None:
        self.zone = ZoneResolver(ZONE)

    def resolve(self, request: Any, handler: Any) -> Any:
        if str(request.q.qname).endswith("servfail.test."):
            reply = request.reply()
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        return self.zone.resolve(request, handler)


@pytest.fixture(scope="module")
def dns_port() -> Iterator[int]:
    server = DNSServer(
        _Resolver(),
        address="127.0.0.1",
        port=0,
        logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"),
    )
    server.start_thread()
    try:
        yield int(server.server.server_address[1])
    finally:
        server.stop()


@pytest.fixture
def resolver(dns_port: int) -> DnsPythonResolver:
    return DnsPythonResolver(["127.0.0.1"], port=dns_port, timeout_s=2.0)


async def test_server_is_really_on_loopback(dns_port: int) -> None:
    reply = DNSRecord.parse(
        DNSRecord.question("mx1.example.test", "A").send("127.0.0.1", dns_port, timeout=2)
    )
    assert QTYPE[reply.rr[0].rtype] == "A"


async def test_txt_strings_are_joined_per_record(resolver: DnsPythonResolver) -> None:
    assert sorted(await resolver.txt("example.test")) == [
        b"unrelated",
        b"v=spf1 mx ip6:2001:db8::/32 -all",
    ]


async def test_address_mx_ptr_lookups(resolver: DnsPythonResolver) -> None:
    assert await resolver.a("MX1.example.test.") == [IPv4Address("127.0.0.10")]
    assert await resolver.aaaa("mx2.example.test") == [IPv6Address("2001:db8::25")]
    assert sorted(await resolver.mx("example.test"), key=lambda m: m.preference) == [
        MxRecord(10, "mx1.example.test"),
        MxRecord(20, "mx2.example.test"),
    ]
    assert await resolver.mx("nullmx.test") == [MxRecord(0, "")]
    assert await resolver.ptr(IPv4Address("127.0.0.10")) == ["mx1.example.test"]


async def test_nxdomain_nodata_and_impossible_names_are_empty(resolver: DnsPythonResolver) -> None:
    assert await resolver.txt("nowhere.example.test") == []
    assert await resolver.aaaa("mx1.example.test") == []
    assert await resolver.a("a" * 64 + ".example.test") == []
    assert await resolver.a("empty..example.test") == []


async def test_servfail_is_temperror(resolver: DnsPythonResolver) -> None:
    with pytest.raises(DnsTempError):
        await resolver.txt("x.servfail.test")


async def test_silent_server_is_temperror() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # bound, never answers
        resolver = DnsPythonResolver(["127.0.0.1"], port=silent.getsockname()[1], timeout_s=0.3)
        with pytest.raises(DnsTempError):
            await resolver.a("example.test")


async def test_spf_and_dmarc_through_real_dns(resolver: DnsPythonResolver) -> None:
    ok = await check_host(
        "127.0.0.11", "example.test", "a@example.test", "mx2.example.test", resolver
    )
    assert ok.result is Spf.PASS and ok.mechanism == "mx"
    v6 = await check_host(
        "2001:db8::1", "example.test", "a@example.test", "h.example.test", resolver
    )
    assert v6.result is Spf.PASS
    bad = await check_host(
        "127.0.0.99", "example.test", "a@example.test", "h.example.test", resolver
    )
    assert bad.result is Spf.FAIL
    dmarc = await evaluate(
        "news.example.test", "fail", "example.test", [DkimVerdict("example.test", "fail")], resolver
    )
    assert dmarc.result is DmarcStatus.FAIL and dmarc.policy is Policy.QUARANTINE
