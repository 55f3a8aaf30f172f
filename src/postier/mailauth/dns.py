"""The DNS seam of mail authentication: a small async `Resolver` Protocol and two backends.

SPF (RFC 7208), DMARC (RFC 7489) and DKIM key lookups (RFC 6376 §3.6.2) need only five
query kinds.  Each method returns typed data or raises `DnsTempError`:

- NXDOMAIN and NOERROR-with-no-data both give an empty list (RFC 7208 §4.6.4 counts both
  as a "void lookup"; RFC 7489 §6.6.3 and RFC 6376 §6.1.2 treat both as "no record");
- a name that cannot exist on the wire (a label over 63 octets, an empty label, over 255
  octets — RFC 1035 §2.3.4) also gives an empty list: no server could hold it;
- SERVFAIL, REFUSED, timeouts and every other failure raise `DnsTempError`
  (RFC 7208 §2.6.6 "temperror", RFC 7489 §6.6.3, RFC 6376 §6.1.2 TEMPFAIL).

`DnsPythonResolver` asks real servers through `dns.asyncresolver` (nameservers and port
configurable, so tests can point it at 127.0.0.1).  `FakeResolver` answers from a dict of
zone data, for unit tests.

Names are `str`, with or without the trailing dot, case-insensitive (RFC 4343); names in
answers are returned without the trailing dot.  TXT answers are `bytes`: the
character-strings of one record concatenated with nothing between them (RFC 7208 §3.3,
RFC 6376 §3.6.2.2).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol, TypeAlias

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import dns.reversename

from postier.errors import TemporaryError
from postier.net.guard import ENV, check_destination

IPAddress: TypeAlias = IPv4Address | IPv6Address

DEFAULT_TIMEOUT_S = (
    5.0  # per query, all retries included; RFC 7208 §4.6.4 suggests ≥ 20 s per check_host
)


class DnsTempError(TemporaryError):
    """SERVFAIL, timeout, refused or unreachable servers: the answer may come later."""


@dataclass(frozen=True, slots=True)
class MxRecord:
    """One MX record (RFC 1035 §3.3.9)."""

    preference: int
    exchange: str  # without the trailing dot; "" for the null MX "." (RFC 7505)


class Resolver(Protocol):
    """The DNS queries mail authentication needs.  See the module docstring for errors."""

    async def txt(self, name: str) -> list[bytes]:
        """Each TXT record of `name`, its strings concatenated."""
        ...

    async def a(self, name: str) -> list[IPv4Address]: ...

    async def aaaa(self, name: str) -> list[IPv6Address]: ...

    async def mx(self, name: str) -> list[MxRecord]: ...

    async def ptr(self, address: IPAddress) -> list[str]:
        """The names of `address` (its in-addr.arpa / ip6.arpa PTR records)."""
        ...


def _strip_dot(name: str) -> str:
    return name[:-1] if name.endswith(".") and name != "." else name


def _valid_name(name: str) -> bool:
    """Whether `name` can exist in the DNS (RFC 1035 §2.3.4: labels ≤ 63, name ≤ 255)."""
    try:
        dns.name.from_text(name)
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return False
    return True


CACHE_ENTRIES = 20_000


def _loopback_allowed(nameserver: str) -> bool:
    try:
        check_destination(nameserver)
    except PermissionError:
        return False
    return True


class DnsPythonResolver:
    """`Resolver` on dnspython's asyncio resolver.

    `nameservers=None` reads /etc/resolv.conf; otherwise the given addresses are asked on
    `port`.  Truncated UDP answers are retried over TCP by dnspython.
    """

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        *,
        port: int = 53,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if nameservers is None:
            self._resolver = dns.asyncresolver.Resolver()
        else:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = list(nameservers)
        self._resolver.port = port
        self._resolver.lifetime = timeout_s
        self._resolver.timeout = min(timeout_s, 2.0)
        # Answers are cached for their TTL (dnspython also caches NXDOMAIN/no-data by the
        # SOA minimum): a burst of mail from one domain asks DNS once, not per message.
        self._resolver.cache = dns.resolver.LRUCache(CACHE_ENTRIES)
        self._forbidden = next(
            (ns for ns in self._resolver.nameservers if not _loopback_allowed(str(ns))), None
        )

    async def _query(
        self, name: str, rdtype: dns.rdatatype.RdataType
    ) -> dns.resolver.Answer | None:
        if self._forbidden is not None:
            raise DnsTempError(f"{ENV}=1: refusing to ask nameserver {self._forbidden}")
        try:
            qname = dns.name.from_text(name)
        except (dns.exception.DNSException, UnicodeError, ValueError):
            return None  # RFC 1035 §2.3.4: such a name cannot exist
        try:
            return await self._resolver.resolve(qname, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.YXDOMAIN):
            return None
        except dns.exception.Timeout as exc:
            raise DnsTempError(f"DNS timeout for {name} {rdtype.name}") from exc
        except dns.resolver.NoNameservers as exc:
            raise DnsTempError(f"DNS servers failed for {name} {rdtype.name}") from exc
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"DNS error for {name} {rdtype.name}: {exc}") from exc

    async def records(self, name: str, rtype: str) -> list[str]:
        """Any record type in its zone-file text form (for `postier dns check`)."""
        answer = await self._query(name, dns.rdatatype.from_text(rtype))
        return [] if answer is None else [r.to_text() for r in answer]

    async def txt(self, name: str) -> list[bytes]:
        answer = await self._query(name, dns.rdatatype.TXT)
        if answer is None:
            return []
        return [b"".join(rdata.strings) for rdata in answer]

    async def a(self, name: str) -> list[IPv4Address]:
        answer = await self._query(name, dns.rdatatype.A)
        if answer is None:
            return []
        return [IPv4Address(rdata.address) for rdata in answer]

    async def aaaa(self, name: str) -> list[IPv6Address]:
        answer = await self._query(name, dns.rdatatype.AAAA)
        if answer is None:
            return []
        return [IPv6Address(rdata.address) for rdata in answer]

    async def mx(self, name: str) -> list[MxRecord]:
        answer = await self._query(name, dns.rdatatype.MX)
        if answer is None:
            return []
        return [
            MxRecord(
                rdata.preference,
                _strip_dot(rdata.exchange.to_text()) if rdata.exchange != dns.name.root else "",
            )
            for rdata in answer
        ]

    async def ptr(self, address: IPAddress) -> list[str]:
        name = dns.reversename.from_address(str(address)).to_text()
        answer = await self._query(name, dns.rdatatype.PTR)
        if answer is None:
            return []
        return [_strip_dot(rdata.target.to_text()) for rdata in answer]


FakeValue: TypeAlias = str | bytes | tuple[int, str] | tuple[str | bytes, ...] | None
"""TXT: str, bytes or a tuple of strings (one record of several strings); A, AAAA, PTR,
CNAME: str; MX: (preference, exchange); TIMEOUT / SERVFAIL: None."""

_TYPES = frozenset({"TXT", "A", "AAAA", "MX", "PTR", "CNAME", "TIMEOUT", "SERVFAIL"})
_MAX_CNAME_CHAIN = 8


@dataclass
class FakeResolver:
    """`Resolver` answering from zone data, for unit tests.

    ``FakeResolver({"example.com": [("TXT", "v=spf1 mx -all"), ("MX", (10, "mx.example.com"))],
    "mx.example.com": [("A", "192.0.2.1")], "slow.example": [("TIMEOUT", None)]})``

    A name holding ("TIMEOUT", None) or ("SERVFAIL", None) raises `DnsTempError` for every
    query type it has no records of (the convention of the RFC 7208 test suite).  CNAMEs are
    followed; a loop raises `DnsTempError`.  Every query is logged in `queries`
    as (name, type).
    """

    zones: Mapping[str, Sequence[tuple[str, FakeValue]]] = field(default_factory=dict)
    queries: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._zones: dict[str, list[tuple[str, FakeValue]]] = {}
        for name, records in self.zones.items():
            for rtype, value in records:
                self.add(name, rtype, value)

    def add(self, name: str, rtype: str, value: FakeValue = None) -> None:
        """Add one record (or a TIMEOUT/SERVFAIL marker) to `name`."""
        rtype = rtype.upper()
        if rtype not in _TYPES:
            raise ValueError(f"unknown record type {rtype}")
        self._zones.setdefault(_strip_dot(name).lower(), []).append((rtype, value))

    def _lookup(self, name: str, rtype: str) -> list[FakeValue]:
        self.queries.append((name, rtype))
        if not _valid_name(name):
            return []
        key = _strip_dot(name).lower()
        for _ in range(_MAX_CNAME_CHAIN):
            records = self._zones.get(key, [])
            found = [value for t, value in records if t == rtype]
            if found:
                return found
            cnames = [value for t, value in records if t == "CNAME"]
            if any(t in ("TIMEOUT", "SERVFAIL") for t, _ in records):
                raise DnsTempError(f"DNS timeout for {name} {rtype}")
            if not cnames:
                return []
            assert isinstance(cnames[0], str)
            key = _strip_dot(cnames[0]).lower()
        raise DnsTempError(f"CNAME loop at {name}")

    async def txt(self, name: str) -> list[bytes]:
        out = []
        for value in self._lookup(name, "TXT"):
            if isinstance(value, str):
                out.append(value.encode("utf-8"))
            elif isinstance(value, bytes):
                out.append(value)
            elif isinstance(value, tuple):
                out.append(
                    b"".join(
                        s.encode("utf-8") if isinstance(s, str) else s
                        for s in value
                        if not isinstance(s, int)
                    )
                )
        return out

    async def a(self, name: str) -> list[IPv4Address]:
        return [IPv4Address(str(v)) for v in self._lookup(name, "A")]

    async def aaaa(self, name: str) -> list[IPv6Address]:
        return [IPv6Address(str(v)) for v in self._lookup(name, "AAAA")]

    async def mx(self, name: str) -> list[MxRecord]:
        out = []
        for value in self._lookup(name, "MX"):
            assert (
                isinstance(value, tuple) and isinstance(value[0], int) and isinstance(value[1], str)
            )
            out.append(MxRecord(value[0], _strip_dot(value[1]) if value[1] != "." else ""))
        return out

    async def ptr(self, address: IPAddress) -> list[str]:
        name = ipaddress.ip_address(address).reverse_pointer
        return [_strip_dot(str(v)) for v in self._lookup(name, "PTR")]
