"""A DNS server on 127.0.0.1 (dnslib) holding the zones an integration test needs.

Tests point postier at it with `[dns] nameservers = ["127.0.0.1:<port>"]`; nothing is
ever asked of another resolver.  Records can be added while it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import RCODE, RR  # type: ignore[import-untyped]
from dnslib.server import BaseResolver, DNSLogger, DNSServer  # type: ignore[import-untyped]


class _Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: list[Any] = []
        self.lock = threading.Lock()

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        qname, qtype = request.q.qname, request.q.qtype
        with self.lock:
            matches = [r for r in self.records if r.rname == qname]
        for rr in matches:
            if rr.rtype == qtype:
                reply.add_answer(rr)
        if not matches:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class LoopbackDns:
    def __init__(self, zone: _Zone, port: int) -> None:
        self._zone = zone
        self.port = port

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add(self, zone_text: str) -> None:
        """Add records given in zone-file syntax (one per line)."""
        records = RR.fromZone(zone_text)
        with self._zone.lock:
            self._zone.records.extend(records)


@contextmanager
def loopback_dns(zone_text: str = "") -> Iterator[LoopbackDns]:
    zone = _Zone()
    server = DNSServer(zone, address="127.0.0.1", port=0,
                       logger=DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data"))
    server.start_thread()
    dns = LoopbackDns(zone, int(server.server.server_address[1]))
    if zone_text:
        dns.add(zone_text)
    try:
        yield dns
    finally:
        server.stop()
