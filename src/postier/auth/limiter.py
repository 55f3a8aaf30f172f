"""Failed-login limiter, per remote address and per account.

Two defences against password guessing (RFC 4954 §9 and RFC 9051 §11.1 leave the policy to
the server; this follows what Dovecot's auth penalty and Postfix's anvil do):

* **Delay.**  After ``free_failures`` failures in the window, each further failure is
  answered only after ``base_delay_s * 2**k`` seconds, capped at ``max_delay_s``.  The
  protocol waits; the limiter only says how long.
* **Refusal.**  After ``max_failures_per_ip`` failures from one address (or
  ``max_failures_per_account`` for one login name, from anywhere) inside ``window_s``,
  further attempts are refused without checking the password until the window has passed.

A successful login is never slowed, and clears that account's failures recorded from that
address (a user who mistyped twice is not punished further).  With several worker
processes each tells the others every outcome (``LoginAttempt``, over store/relay.py), so
a guesser gets the same number of tries whichever worker the kernel hands a connection.  IPv6 addresses are grouped by
``ipv6_prefix_len`` (a /64 is one subscriber).  Memory is bounded: at most
``max_tracked`` addresses and as many accounts, least recently updated evicted first, and at
most the last *M* failures per key.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds.  ``time.monotonic`` in production, a fake in tests."""

    def __call__(self) -> float: ...


@dataclass(frozen=True, slots=True)
class LimiterSettings:
    free_failures: int = 3
    base_delay_s: float = 1.0
    max_delay_s: float = 15.0
    window_s: float = 15 * 60.0
    max_failures_per_ip: int = 10
    max_failures_per_account: int = 20
    max_tracked: int = 100_000  # per table (addresses, accounts); oldest evicted
    ipv6_prefix_len: int = 64

    def __post_init__(self) -> None:
        if self.free_failures < 0 or self.max_failures_per_ip < 1:
            raise ValueError("free_failures must be >= 0 and max_failures_per_ip >= 1")
        if self.max_failures_per_account < 1 or self.max_tracked < 1:
            raise ValueError("max_failures_per_account and max_tracked must be >= 1")
        if self.window_s <= 0 or self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError("window_s must be > 0, delays >= 0")
        if not 0 <= self.ipv6_prefix_len <= 128:
            raise ValueError("ipv6_prefix_len must be in 0..128")


def address_key(remote_ip: str, ipv6_prefix_len: int = 64) -> str:
    """The limiter key of an address: IPv4 as is, IPv6 as its /``ipv6_prefix_len`` network.

    IPv4-mapped IPv6 addresses count as the IPv4 address.  Unparsable strings (unix sockets,
    tests) are used verbatim."""
    try:
        addr = ipaddress.ip_address(remote_ip)
    except ValueError:
        return remote_ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        net = ipaddress.IPv6Network((addr, ipv6_prefix_len), strict=False)
        return str(net)
    return str(addr)


# A failure: when, and the other key (the account for an address entry, the address for an
# account entry), so a success can clear exactly the failures of that pair.
_Entry = tuple[float, str]


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """A login's outcome as another worker process of the same server tells it (the
    limiter's counts are shared that way: store/relay.py).  ``account`` "" when unknown."""

    remote_ip: str
    account: str
    ok: bool


class LoginLimiter:
    """Counts failed logins; see the module docstring for the policy."""

    def __init__(self, settings: LimiterSettings | None = None, clock: Clock | None = None) -> None:
        self.settings = settings if settings is not None else LimiterSettings()
        self._clock: Clock = clock if clock is not None else time.monotonic
        self._by_ip: OrderedDict[str, deque[_Entry]] = OrderedDict()
        self._by_account: OrderedDict[str, deque[_Entry]] = OrderedDict()

    # -------------------------------------------------------------- queries

    def retry_after_s(self, remote_ip: str, account: str | None = None) -> float | None:
        """Seconds until attempts from ``remote_ip`` (for ``account``) are accepted again, or
        None when they are accepted now.  Check this before verifying any password."""
        now = self._clock()
        s = self.settings
        waits = [
            self._refusal(self._by_ip, self._ip_key(remote_ip), s.max_failures_per_ip, now),
        ]
        if account is not None:
            waits.append(self._refusal(self._by_account, account, s.max_failures_per_account, now))
        worst = max(waits)
        return worst if worst > 0 else None

    def failures(self, remote_ip: str, account: str | None = None) -> int:
        """Failures in the window for the address, or the larger of address and account."""
        now = self._clock()
        n = self._count(self._by_ip, self._ip_key(remote_ip), now)
        if account is not None:
            n = max(n, self._count(self._by_account, account, now))
        return n

    # -------------------------------------------------------------- updates

    def record_failure(self, remote_ip: str, account: str | None = None) -> float:
        """Record a failed attempt; return the delay (seconds) to wait before answering."""
        now = self._clock()
        s = self.settings
        ip = self._ip_key(remote_ip)
        self._push(self._by_ip, ip, (now, account or ""), s.max_failures_per_ip, now)
        if account is not None:
            self._push(self._by_account, account, (now, ip), s.max_failures_per_account, now)
        return self.delay_for(self.failures(remote_ip, account))

    def record_success(self, remote_ip: str, account: str) -> None:
        """A good login: forget ``account``'s failures from this address (both tables)."""
        ip = self._ip_key(remote_ip)
        self._remove_pairs(self._by_ip, ip, account)
        self._remove_pairs(self._by_account, account, ip)

    def apply(self, attempt: LoginAttempt) -> None:
        """Count a login another worker process saw, as if it had been seen here."""
        if attempt.ok:
            self.record_success(attempt.remote_ip, attempt.account)
        else:
            self.record_failure(attempt.remote_ip, attempt.account or None)

    def delay_for(self, failures: int) -> float:
        """The answer delay after ``failures`` failures in the window."""
        s = self.settings
        excess = failures - s.free_failures
        if excess <= 0:
            return 0.0
        # 2**excess grows without bound: cap the exponent before computing.
        return min(s.max_delay_s, s.base_delay_s * 2.0 ** min(excess - 1, 62))

    def __len__(self) -> int:
        """Tracked keys (addresses + accounts), for tests and metrics."""
        return len(self._by_ip) + len(self._by_account)

    # -------------------------------------------------------------- internals

    def _ip_key(self, remote_ip: str) -> str:
        return address_key(remote_ip, self.settings.ipv6_prefix_len)

    def _prune(self, entries: deque[_Entry], now: float) -> None:
        horizon = now - self.settings.window_s
        while entries and entries[0][0] <= horizon:
            entries.popleft()

    def _count(self, table: OrderedDict[str, deque[_Entry]], key: str, now: float) -> int:
        entries = table.get(key)
        if entries is None:
            return 0
        self._prune(entries, now)
        if not entries:
            del table[key]
            return 0
        return len(entries)

    def _refusal(
        self, table: OrderedDict[str, deque[_Entry]], key: str, limit: int, now: float
    ) -> float:
        if self._count(table, key, now) < limit:
            return 0.0
        entries = table[key]
        # The deque holds at most ``limit`` entries: refusal lasts until the oldest expires.
        return entries[-limit][0] + self.settings.window_s - now

    def _push(
        self,
        table: OrderedDict[str, deque[_Entry]],
        key: str,
        entry: _Entry,
        limit: int,
        now: float,
    ) -> None:
        entries = table.get(key)
        if entries is None:
            entries = deque(maxlen=max(limit, self.settings.free_failures + 1, 1))
            table[key] = entries
        else:
            self._prune(entries, now)
            table.move_to_end(key)
        entries.append(entry)
        while len(table) > self.settings.max_tracked:
            table.popitem(last=False)

    def _remove_pairs(self, table: OrderedDict[str, deque[_Entry]], key: str, other: str) -> None:
        entries = table.get(key)
        if entries is None:
            return
        kept = [e for e in entries if e[1] != other]
        if not kept:
            del table[key]
            return
        entries.clear()
        entries.extend(kept)
