"""The one entry point for logins, used by SMTP submission, IMAP, POP3 (and ManageSieve).

* :meth:`Authenticator.check_password` — IMAP ``LOGIN`` (RFC 9051 §6.2.3), POP3
  ``USER``/``PASS`` (RFC 1939 §7), and the PLAIN/LOGIN SASL mechanisms.
* :meth:`Authenticator.authenticate` — runs a whole SASL exchange (RFC 4422) given a
  callback that sends a challenge and returns the client's decoded answer; SMTP AUTH
  (RFC 4954), IMAP AUTHENTICATE (RFC 9051 §6.2.2), POP3 AUTH (RFC 5034).

Order of a password check: failed-login limiter (refuse early) → credential lookup →
credential cache → argon2id in a worker thread (never on the event loop, at most
``hash_concurrency`` at a time so a flood of guesses cannot take all memory).  Unknown and
disabled accounts still pay one argon2 verification against a dummy hash, so response time
does not tell whether an account exists.  Failures are never cached.

Transport policy (PLAIN/LOGIN only over TLS, RFC 4954 §4 / RFC 9051 §6.2.3) is the
protocols' job: they decide which :data:`postier.auth.sasl.MECHANISMS` to advertise.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from postier.auth.cache import CredentialCache
from postier.auth.limiter import Clock, LimiterSettings, LoginAttempt, LoginLimiter
from postier.auth.passwords import (
    DEFAULT_ARGON2,
    Argon2Params,
    generate_password,
    hash_password,
    needs_rehash,
    verify_password,
)
from postier.auth.sasl import (
    Cancelled,
    Challenge,
    Credentials,
    Failure,
    Malformed,
    NeedScramCredentials,
    Success,
    new_mechanism,
)

log = logging.getLogger("postier.auth")

# RFC 5321 §4.5.3.1: 64-octet local part + "@" + 255-octet domain.
MAX_LOGIN_CHARS = 320
MAX_PASSWORD_CHARS = 1024  # argon2 accepts more; nobody types more, and it bounds CPU


@dataclass(frozen=True, slots=True)
class AccountCredentials:
    account_id: int
    address: str  # canonical full address, lower-case
    password_hash: str  # argon2id PHC string
    scram: str | None  # RFC 5803 SCRAM-SHA-256 stored credentials, or None
    enabled: bool = True


class CredentialSource(Protocol):
    """Where credentials come from (the store).  ``login`` is already normalised."""

    async def get_credentials(self, login: str) -> AccountCredentials | None: ...


# Called after a successful login whose hash was made with other argon2 parameters, with
# the account id and a fresh hash of the same password; the store saves it.
RehashHook = Callable[[int, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AuthSettings:
    default_domain: str = ""  # "bob" logs in as "bob@<default_domain>" when set
    cache_ttl_s: float = 300.0
    cache_max_entries: int = 10_000
    limiter: LimiterSettings = field(default_factory=LimiterSettings)
    argon2: Argon2Params = DEFAULT_ARGON2  # for the dummy hash and needs_rehash
    # argon2id verifications at once (each needs argon2.memory_cost_kib of RAM).
    hash_concurrency: int = max(2, os.cpu_count() or 2)


@dataclass(frozen=True, slots=True)
class Ok:
    account_id: int
    address: str
    final_data: bytes | None = None  # SASL additional data with success (SCRAM server-final)


@dataclass(frozen=True, slots=True)
class Failed:
    delay_s: float  # wait this long before answering the client
    reason: str = ""  # for the log, never for the client


@dataclass(frozen=True, slots=True)
class Refused:
    retry_after_s: float  # too many failures: refuse without checking until then


AuthResult = Ok | Failed | Refused
SaslOutcome = AuthResult | Cancelled | Malformed
# Sends a challenge (raw bytes; the protocol base64-encodes and frames it) and returns the
# client's decoded reply — see postier.auth.sasl.decode_client_data.
ChallengeFn = Callable[[bytes], Awaitable[bytes | Cancelled | Malformed]]


def normalize_login(login: str, default_domain: str = "") -> str | None:
    """Lower-case; a bare local part gets ``@default_domain`` when one is set.

    None for names that can never be valid (empty, too long, control characters)."""
    name = login.strip().lower()
    if not name or len(name) > MAX_LOGIN_CHARS:
        return None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return None
    if "@" not in name and default_domain:
        name = f"{name}@{default_domain.lower()}"
    return name


class Authenticator:
    """Verifies logins against a :class:`CredentialSource`; one per process, shared."""

    def __init__(
        self,
        source: CredentialSource,
        settings: AuthSettings | None = None,
        clock: Clock | None = None,
        on_rehash: RehashHook | None = None,
    ) -> None:
        self.settings = settings if settings is not None else AuthSettings()
        self._source = source
        self._on_rehash = on_rehash
        self.limiter = LoginLimiter(self.settings.limiter, clock)
        # Told every outcome the limiter counts (the other worker processes: app.py).
        self.on_attempt: Callable[[LoginAttempt], None] | None = None
        self.cache = CredentialCache(
            self.settings.cache_ttl_s, self.settings.cache_max_entries, clock
        )
        # Same parameters as real hashes, so an unknown user costs what a known one does.
        self._dummy_hash = hash_password(generate_password(), self.settings.argon2)
        self._hash_slots: asyncio.Semaphore | None = None

    def normalize_login(self, login: str) -> str:
        """The key used for lookup, cache and limiter ("" for impossible names)."""
        return normalize_login(login, self.settings.default_domain) or ""

    async def _verify(self, password_hash: str, password: str) -> bool:
        if self._hash_slots is None:
            self._hash_slots = asyncio.Semaphore(self.settings.hash_concurrency)
        async with self._hash_slots:
            return await asyncio.to_thread(verify_password, password_hash, password)

    async def check_password(self, login: str, password: str, remote_ip: str) -> AuthResult:
        """Verify a login name and password from ``remote_ip``."""
        name = self.normalize_login(login)
        retry = self.limiter.retry_after_s(remote_ip, name or None)
        if retry is not None:
            log.info("login refused: too many failures ip=%s login=%r", remote_ip, name)
            return Refused(retry)
        creds = await self._source.get_credentials(name) if name else None
        usable = creds is not None and creds.enabled
        if len(password) > MAX_PASSWORD_CHARS or not password:
            usable = False
        if creds is not None and usable:
            if self.cache.lookup(name, password, creds.password_hash):
                return self._succeeded(remote_ip, name, creds)
            if await self._verify(creds.password_hash, password):
                self.cache.store(name, password, creds.password_hash)
                await self._maybe_rehash(creds, password)
                return self._succeeded(remote_ip, name, creds)
            reason = "wrong password"
        else:
            # No user-enumeration timing oracle: pay one verification anyway.
            await self._verify(self._dummy_hash, password[:MAX_PASSWORD_CHARS])
            if creds is None:
                reason = "unknown user"
            elif not creds.enabled:
                reason = "account disabled"
            else:
                reason = "empty or oversized password"
        return self._failed(remote_ip, name, reason)

    async def authenticate(
        self,
        mechanism: str,
        initial_response: bytes | None,
        remote_ip: str,
        exchange: ChallengeFn,
    ) -> SaslOutcome:
        """Run one SASL exchange end to end.

        ``mechanism`` must be one of :data:`postier.auth.sasl.MECHANISMS` (case-insensitive;
        check before calling, an unknown name raises ``UnknownMechanism``).  Returns
        ``Cancelled``/``Malformed`` as the exchange callback gave them, else an AuthResult.
        """
        retry = self.limiter.retry_after_s(remote_ip)
        if retry is not None:
            log.info("login refused: too many failures ip=%s", remote_ip)
            return Refused(retry)
        mech = new_mechanism(mechanism, normalize=self.normalize_login)
        step = mech.start(initial_response)
        name: str | None = None
        creds: AccountCredentials | None = None
        while True:
            match step:
                case Challenge(data=data):
                    reply = await exchange(data)
                    if isinstance(reply, Cancelled | Malformed):
                        return reply
                    step = mech.respond(reply)
                case Credentials(authcid=authcid, password=password):
                    return await self.check_password(authcid, password, remote_ip)
                case NeedScramCredentials(username=username):
                    name = self.normalize_login(username)
                    retry = self.limiter.retry_after_s(remote_ip, name or None)
                    if retry is not None:
                        return Refused(retry)
                    creds = await self._source.get_credentials(name) if name else None
                    usable = creds is not None and creds.enabled
                    step = mech.provide_scram(creds.scram if creds and usable else None)
                case Success(final_data=final_data):
                    if creds is None or not name:  # pragma: no cover - provide_scram(None) fails
                        return self._failed(remote_ip, name, "internal: success without account")
                    self._record_success(remote_ip, name)
                    return Ok(creds.account_id, creds.address, final_data)
                case Failure(reason=reason):
                    return self._failed(remote_ip, name, f"{mech.name}: {reason}")

    def invalidate(self, login: str) -> None:
        """Forget cached verifications of ``login`` (password changed, account disabled)."""
        self.cache.invalidate(self.normalize_login(login))

    # -------------------------------------------------------------- internals

    def _succeeded(self, remote_ip: str, name: str, creds: AccountCredentials) -> Ok:
        self._record_success(remote_ip, name)
        return Ok(creds.account_id, creds.address)

    def _record_success(self, remote_ip: str, name: str) -> None:
        self.limiter.record_success(remote_ip, name)
        if self.on_attempt is not None:
            self.on_attempt(LoginAttempt(remote_ip, name, True))

    def _failed(self, remote_ip: str, name: str | None, reason: str) -> Failed:
        delay = self.limiter.record_failure(remote_ip, name or None)
        if self.on_attempt is not None:
            self.on_attempt(LoginAttempt(remote_ip, name or "", False))
        log.info(
            "login failed ip=%s login=%r reason=%s delay_s=%.1f", remote_ip, name, reason, delay
        )
        return Failed(delay, reason)

    async def _maybe_rehash(self, creds: AccountCredentials, password: str) -> None:
        if self._on_rehash is None or not needs_rehash(creds.password_hash, self.settings.argon2):
            return
        new_hash = await asyncio.to_thread(hash_password, password, self.settings.argon2)
        try:
            await self._on_rehash(creds.account_id, new_hash)
        except Exception:  # a failed upgrade must not fail the login; log and go on
            log.exception("password rehash failed for account %d", creds.account_id)
