"""Where to deliver a domain's mail: MX lookup and the hosts/addresses to try, in order.

RFC 5321 §5.1: MX records in preference order, equal preferences in random order; no MX
record → the domain itself is the implicit MX (its A/AAAA records); a domain literal
``[192.0.2.1]`` is the address itself.  RFC 7505: a single "0 ." MX (null MX) means the
domain accepts no mail → permanent failure 556 5.1.10 without connecting.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from postier.errors import TemporaryError, UserError
from postier.mailauth.dns import MxRecord


class MxResolver(Protocol):
    """The part of postier.mailauth.dns.Resolver outbound delivery needs (any Resolver
    fits): [] for NXDOMAIN and for no data, DnsTempError (a TemporaryError) otherwise."""

    async def mx(self, name: str) -> list[MxRecord]: ...
    async def a(self, name: str) -> list[IPv4Address]: ...
    async def aaaa(self, name: str) -> list[IPv6Address]: ...


class NullMx(UserError):
    """RFC 7505: the domain publishes a null MX and accepts no mail."""


class NoRoute(UserError):
    """The domain does not exist or has no host to deliver to (permanent)."""

    def __init__(self, message: str, status: str = "5.1.2") -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class MxHost:
    name: str  # host name as in DNS (or the literal), for logs, TLS SNI and Remote-MTA
    preference: int
    implicit: bool = False  # the domain itself (no MX record)


def order_mx(
    records: Sequence[tuple[int, str]], rng: random.Random | None = None
) -> list[MxHost]:
    """Sort by preference, shuffling hosts of equal preference (RFC 5321 §5.1).

    A lone "0 ." is a null MX (NullMx); a "." among other records is ignored.
    """
    cleaned = [(pref, host.rstrip(".").lower()) for pref, host in records]
    if len(cleaned) == 1 and cleaned[0][1] == "":
        raise NullMx("domain accepts no mail (null MX, RFC 7505)")
    rng = rng or random.Random()
    by_pref: dict[int, list[str]] = {}
    for pref, host in cleaned:
        if host and host not in by_pref.setdefault(pref, []):
            by_pref[pref].append(host)
    out: list[MxHost] = []
    for pref in sorted(by_pref):
        hosts = by_pref[pref]
        rng.shuffle(hosts)
        out.extend(MxHost(h, pref) for h in hosts)
    return out


def domain_literal(domain: str) -> str | None:
    """The IP address of an RFC 5321 §4.1.3 address literal ``[1.2.3.4]``/``[IPv6:…]``."""
    if not (domain.startswith("[") and domain.endswith("]")):
        return None
    inner = domain[1:-1]
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


async def mx_hosts(
    resolver: MxResolver, domain: str, rng: random.Random | None = None
) -> list[MxHost]:
    """The hosts to try for ``domain``, best first.  Raises NullMx / NoRoute (permanent)
    or TemporaryError (DNS failure: try again later)."""
    literal = domain_literal(domain)
    if literal is not None:
        return [MxHost(literal, 0, implicit=True)]
    try:
        records = await resolver.mx(domain)
    except TemporaryError:
        raise
    except Exception as exc:
        raise TemporaryError(f"MX lookup for {domain} failed: {exc}") from exc
    if records:
        return order_mx([(r.preference, r.exchange or ".") for r in records], rng)
    # RFC 5321 §5.1: no MX record → the domain itself, if it has an address.
    return [MxHost(domain.lower(), 0, implicit=True)]


async def host_addresses(
    resolver: MxResolver, host: MxHost, prefer_ipv6: bool = False
) -> list[str]:
    """Addresses of one host; [] when it has none.  Raises TemporaryError on DNS failure,
    NoRoute when an implicit MX (the domain itself) has no address at all."""
    literal = domain_literal(f"[{host.name}]") if _is_ip(host.name) else None
    if literal is not None:
        return [literal]
    v4: list[str] = []
    v6: list[str] = []
    errors: list[str] = []
    try:
        v4 = [str(a) for a in await resolver.a(host.name)]
    except Exception as exc:
        errors.append(f"A {host.name}: {exc}")
    try:
        v6 = [str(a) for a in await resolver.aaaa(host.name)]
    except Exception as exc:
        errors.append(f"AAAA {host.name}: {exc}")
    addresses = v6 + v4 if prefer_ipv6 else v4 + v6
    if not addresses and errors:
        raise TemporaryError("; ".join(errors))
    if not addresses and host.implicit:
        # NXDOMAIN lands here too: the resolver gives [] for it and for "no MX".
        raise NoRoute(f"{host.name} has no MX and no address record", "5.1.2")
    return addresses


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
