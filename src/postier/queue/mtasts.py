"""MTA-STS (RFC 8461) for outbound delivery: discover, fetch, parse and cache a domain's
policy.

Discovery: TXT ``_mta-sts.<domain>`` = "v=STSv1; id=…" (§3.1).  Policy: HTTPS GET
``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (§3.3): certificate verified against
``mta-sts.<domain>``, status 200 only (no redirects), text/plain, at most 64 KiB.  The
policy host is resolved with our own resolver (A then AAAA), so tests point it at
127.0.0.x.

Cache (§5.1): in memory, per domain, for the policy's max_age; a policy is re-fetched
when the TXT id changes or it expired.  A failed fetch or DNS lookup keeps a still-valid
cached policy; with none cached the domain is treated as having no policy (§5: "continue
with delivery as though the domain has not implemented MTA-STS").  The cache does not
survive a restart (a store-backed cache is future work): after a restart the first
delivery re-fetches, which an attacker able to block the fetch could downgrade — the
window §10.2 accepts for a first contact.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from postier.net.guard import check_destination

log = logging.getLogger("postier.queue.mtasts")

MAX_POLICY_BYTES = 64 * 1024  # §3.3: senders MAY limit; 64 KiB is generous
MAX_MAX_AGE = 31557600  # §3.2: max_age up to 31557600 seconds (about 1 year)
WELL_KNOWN = "/.well-known/mta-sts.txt"
_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")
_TXT_FIELD = re.compile(r"^\s*([A-Za-z0-9_.-]+)=([\x21-\x3a\x3c-\x7e]*)\s*$")


class StsResolver(Protocol):
    async def txt(self, name: str) -> list[bytes]: ...
    async def a(self, name: str) -> list[IPv4Address]: ...
    async def aaaa(self, name: str) -> list[IPv6Address]: ...


class PolicyError(Exception):
    """The policy (or its TXT record, or the HTTPS answer) is not valid."""


@dataclass(frozen=True, slots=True)
class StsPolicy:
    id: str  # from the TXT record the policy was fetched under
    mode: str  # "enforce" | "testing" | "none"
    mx: tuple[str, ...]  # patterns: "mx.example.com" or "*.example.com"
    max_age: int
    fetched: float

    @property
    def expires(self) -> float:
        return self.fetched + self.max_age

    def matches(self, host: str) -> bool:
        return any(mx_matches(p, host) for p in self.mx)


def mx_matches(pattern: str, host: str) -> bool:
    """§4.1: a pattern matches the MX host name exactly, or "*." + parent matches a name
    with exactly one more label in front (not the parent itself)."""
    pattern = pattern.rstrip(".").lower()
    host = host.rstrip(".").lower()
    if pattern.startswith("*."):
        label, dot, parent = host.partition(".")
        return bool(label) and bool(dot) and parent == pattern[2:]
    return host == pattern


def parse_txt(records: list[bytes]) -> str | None:
    """§3.1: the id of the one "v=STSv1" TXT record; None when there is none or several
    (several → "as though no policy", like none)."""
    found: list[str] = []
    for raw in records:
        text = raw.decode("ascii", "replace")
        if not text.startswith("v=STSv1"):
            continue
        fields: dict[str, str] = {}
        for part in text.split(";"):
            if not part.strip():
                continue
            m = _TXT_FIELD.match(part)
            if m is None:
                break
            fields.setdefault(m.group(1), m.group(2))
        else:
            if fields.get("v") == "STSv1" and _ID.match(fields.get("id", "")):
                found.append(fields["id"])
                continue
        found.append("")  # a malformed STSv1 record
    if len(found) != 1 or not found[0]:
        return None
    return found[0]


def parse_policy(text: str, policy_id: str = "", fetched: float = 0.0) -> StsPolicy:
    """§3.2: "key: value" lines (CRLF or LF); version, mode, max_age, mx (repeated)."""
    fields: dict[str, str] = {}
    mx: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise PolicyError(f"malformed policy line {line[:80]!r}")
        key, value = key.strip(), value.strip()
        if key == "mx":
            mx.append(value.lower())
        else:
            fields.setdefault(key, value)  # unknown keys are ignored (§3.2)
    if fields.get("version") != "STSv1":
        raise PolicyError("policy version is not STSv1")
    mode = fields.get("mode", "")
    if mode not in ("enforce", "testing", "none"):
        raise PolicyError(f"invalid policy mode {mode!r}")
    max_age_text = fields.get("max_age", "")
    if not max_age_text.isdigit() or len(max_age_text) > 10:
        raise PolicyError(f"invalid max_age {max_age_text!r}")
    max_age = min(int(max_age_text), MAX_MAX_AGE)
    if mode != "none" and not mx:
        raise PolicyError("policy has no mx")
    return StsPolicy(policy_id, mode, tuple(mx), max_age, fetched)


def _decode_chunked(body: bytes) -> bytes:
    out = bytearray()
    while True:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            raise PolicyError("truncated chunked body")
        size = int(size_line.split(b";")[0].strip() or b"x", 16)
        if size == 0:
            return bytes(out)
        out += rest[:size]
        body = rest[size + 2:]
        if len(out) > MAX_POLICY_BYTES:
            raise PolicyError("policy too large")


class MtaSts:
    """Policy lookups with an in-memory cache; one per QueueRunner."""

    def __init__(
        self,
        resolver: StsResolver,
        ssl_context: ssl.SSLContext | None = None,
        *,
        port: int = 443,
        timeout_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.resolver = resolver
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.port = port
        self.timeout_s = timeout_s
        self.clock = clock
        self._cache: dict[str, StsPolicy] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def cached(self, domain: str) -> StsPolicy | None:
        policy = self._cache.get(domain.lower())
        if policy is not None and policy.expires <= self.clock():
            del self._cache[domain.lower()]
            return None
        return policy

    async def policy(self, domain: str) -> StsPolicy | None:
        """The policy to apply to ``domain`` now, or None (no MTA-STS)."""
        domain = domain.lower().rstrip(".")
        lock = self._locks.setdefault(domain, asyncio.Lock())
        async with lock:
            return await self._policy(domain)

    async def _policy(self, domain: str) -> StsPolicy | None:
        cached = self.cached(domain)
        try:
            policy_id = parse_txt(await self.resolver.txt(f"_mta-sts.{domain}"))
        except Exception as exc:  # DNS failure: keep what we have (§5.1)
            log.info("mta-sts %s: TXT lookup failed (%s)", domain, exc)
            return cached
        if policy_id is None:
            return cached  # §5.1: no TXT, a cached policy still applies until it expires
        if cached is not None and cached.id == policy_id:
            return cached
        try:
            text = await self.fetch(domain)
            policy = parse_policy(text, policy_id, self.clock())
        except (PolicyError, OSError, TimeoutError, ssl.SSLError, ValueError) as exc:
            log.warning("mta-sts %s: policy fetch failed: %s", domain, exc)
            return cached
        if policy.max_age > 0:
            self._cache[domain] = policy
        else:
            self._cache.pop(domain, None)
        log.info("mta-sts %s: policy id=%s mode=%s mx=%s max_age=%d", domain, policy.id,
                 policy.mode, ",".join(policy.mx), policy.max_age)
        return policy

    async def _addresses(self, host: str) -> list[str]:
        out: list[str] = []
        for lookup in (self.resolver.a, self.resolver.aaaa):
            try:
                out.extend(str(a) for a in await lookup(host))
            except Exception as exc:
                log.info("mta-sts: resolving %s: %s", host, exc)
        return out

    async def fetch(self, domain: str) -> str:
        """GET the policy over HTTPS (HTTP/1.1, Connection: close); its text."""
        host = f"mta-sts.{domain}"
        addresses = await self._addresses(host)
        if not addresses:
            raise PolicyError(f"{host} has no address")
        last: Exception = PolicyError(f"cannot connect to {host}")
        async with asyncio.timeout(self.timeout_s):
            for address in addresses:
                try:
                    check_destination(address)
                    reader, writer = await asyncio.open_connection(
                        address, self.port, ssl=self.ssl_context, server_hostname=host)
                except (OSError, ssl.SSLError) as exc:
                    last = exc
                    continue
                try:
                    writer.write(
                        f"GET {WELL_KNOWN} HTTP/1.1\r\nHost: {host}\r\n"
                        "User-Agent: postier\r\nAccept: text/plain\r\n"
                        "Connection: close\r\n\r\n".encode("ascii"))
                    await writer.drain()
                    raw = await reader.read(MAX_POLICY_BYTES + 16384)
                    while raw and len(raw) <= MAX_POLICY_BYTES + 16384:
                        more = await reader.read(MAX_POLICY_BYTES + 16384)
                        if not more:
                            break
                        raw += more
                finally:
                    writer.close()
                    try:
                        await asyncio.wait_for(writer.wait_closed(), 2.0)
                    except (OSError, TimeoutError, ssl.SSLError):
                        pass
                return self._parse_response(host, raw)
        raise last

    @staticmethod
    def _parse_response(host: str, raw: bytes) -> str:
        head, sep, body = raw.partition(b"\r\n\r\n")
        if not sep:
            raise PolicyError(f"{host}: malformed HTTP response")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise PolicyError(f"{host}: malformed HTTP status line")
        if parts[1] != "200":  # §3.3: redirects MUST NOT be followed
            raise PolicyError(f"{host}: HTTP {' '.join(parts[1:])}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "text/plain":
            raise PolicyError(f"{host}: Content-Type {ctype or 'missing'}, not text/plain")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = _decode_chunked(body)
        elif headers.get("content-length", "").isdigit():
            length = int(headers["content-length"])
            if len(body) < length:
                raise PolicyError(f"{host}: truncated policy")
            body = body[:length]
        if len(body) > MAX_POLICY_BYTES:
            raise PolicyError(f"{host}: policy larger than {MAX_POLICY_BYTES} bytes")
        return body.decode("utf-8")
