"""In-memory cache of verified passwords, like Dovecot's auth cache.

argon2id is deliberately slow (tens of ms); a mail client that reconnects every minute, or
opens five IMAP connections at once, should not pay it each time.  An entry remembers, for a
login name:

* HMAC-SHA256 of the password under a random key made at start-up (never the password; the
  key never leaves the process, so a memory dump gives no offline-guessable digest without it),
* the stored hash the password was verified against,
* an expiry (``ttl_s``, 300 s by default).

A hit needs the same password *and* the same stored hash, so changing the password in the
store invalidates at once on every node; :meth:`CredentialCache.invalidate` also drops an
entry explicitly (e.g. account disabled).  Failed verifications are never cached.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from postier.auth.limiter import Clock


@dataclass(frozen=True, slots=True)
class _Entry:
    password_mac: bytes
    stored_hash: str
    expires_at: float


class CredentialCache:
    """Bounded LRU of successful (login, password, stored hash) verifications."""

    def __init__(
        self, ttl_s: float = 300.0, max_entries: int = 10_000, clock: Clock | None = None
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock: Clock = clock if clock is not None else time.monotonic
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _mac(self, login: str, password: str) -> bytes:
        # The login is in the MAC too, so equal passwords of two users give different MACs.
        msg = (
            login.encode("utf-8", "surrogatepass")
            + b"\x00"
            + password.encode("utf-8", "surrogatepass")
        )
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def lookup(self, login: str, password: str, stored_hash: str) -> bool:
        """True when this password was verified against this very stored hash recently."""
        entry = self._entries.get(login)
        if entry is None:
            return False
        if entry.expires_at <= self._clock():
            del self._entries[login]
            return False
        same_password = hmac.compare_digest(entry.password_mac, self._mac(login, password))
        if not same_password or entry.stored_hash != stored_hash:
            return False
        self._entries.move_to_end(login)
        return True

    def store(self, login: str, password: str, stored_hash: str) -> None:
        """Remember a *successful* verification."""
        if self.ttl_s <= 0 or self.max_entries <= 0:
            return
        self._entries[login] = _Entry(
            self._mac(login, password), stored_hash, self._clock() + self.ttl_s
        )
        self._entries.move_to_end(login)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, login: str) -> None:
        self._entries.pop(login, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
