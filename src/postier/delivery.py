"""Local delivery: recipient resolution and storing a message into INBOXes.

Resolution order for ``local[+tag]@domain`` in a hosted domain (first that matches):
an alias for the exact address; the account; the same two for ``local@domain`` without the
``+tag`` (plus-addressing); ``postmaster@`` (RFC 5321 §4.5.1) falls back to the domain's
first account; the catch-all alias ``@domain``.  Alias targets are resolved again (depth
limit, loops ignored); targets outside our domains are forwarded through the outbound queue.
Answers are cached until the store's directory generation changes (a counter bumped by
triggers on domains, accounts and aliases, from any process): one lookup per recipient
instead of three to six.

A message is parsed once and written once, whatever the number of recipients: each
recipient's copy is the shared body plus a small per-recipient prefix (Return-Path,
Delivered-To).  All copies (and forwards) of a message are one job of the store's writer:
accounts and mailboxes are looked up inside the transaction, and with ``atomic`` a
failing copy (over quota) leaves nothing stored.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from postier.errors import (
    CopyFailed,
    PostierError,
    QuotaExceeded,
    TemporaryError,
    UnknownAccount,
    UserError,
)
from postier.store.interface import Store
from postier.store.types import Appended, LocalCopy, PreparedBody, QueuedRecipient

log = logging.getLogger("postier.delivery")

MAX_ALIAS_DEPTH = 10
RESOLUTION_CACHE_SIZE = 10_000  # addresses; cleared whole when full (spam to random names)
# How long a found recipient may be served from the cache before the directory counter is
# read again, when the change was made by another process (our own changes are seen at
# once; a recipient not found is always checked again at once).  Within this window a
# removed account gets a temporary error at delivery, a changed alias its old targets.
RECHECK_S = 1.0
_NOT_LOCAL = object()  # cached: the domain is not ours


class Status(enum.Enum):
    DELIVERED = "delivered"
    FORWARDED = "forwarded"  # (also) queued for a remote alias target
    UNKNOWN_USER = "unknown user"  # RFC 3463 5.1.1
    NOT_LOCAL = "not a local domain"  # relaying is the SMTP layer's decision
    OVER_QUOTA = "over quota"  # RFC 3463 5.2.2
    TEMPORARY = "temporary failure"  # 4.x.x: try again later


@dataclass(frozen=True, slots=True)
class Resolution:
    local: tuple[str, ...]  # account addresses
    remote: tuple[str, ...]  # forwarding targets outside our domains


@dataclass(frozen=True, slots=True)
class RecipientResult:
    recipient: str
    status: Status
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in (Status.DELIVERED, Status.FORWARDED)


def split_address(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return local, domain.lower().rstrip(".")


def canonical(address: str) -> str:
    local, domain = split_address(address.strip().strip("<>"))
    return f"{local.lower()}@{domain}" if domain else local.lower()


def trace_prefix(sender: str, recipient: str) -> bytes:
    """RFC 5321 §4.4 Return-Path and the Delivered-To loop-detection field."""
    return f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode()


class Delivery:
    def __init__(self, store: Store, add_delivered_to: bool = True) -> None:
        self.store = store
        self.add_delivered_to = add_delivered_to
        self._generation = -1
        self._resolved: dict[str, Resolution | object | None] = {}
        self._domains: dict[str, bool] = {}

    async def _current(self, max_age_s: float | None = None) -> bool:
        """Forget cached answers when domains, accounts or aliases have changed since;
        True when they had."""
        generation = await self.store.directory_generation(
            RECHECK_S if max_age_s is None else max_age_s
        )
        if generation == self._generation:
            return False
        self._resolved.clear()
        self._domains.clear()
        self._generation = generation
        return True

    async def is_local_domain(self, domain: str) -> bool:
        await self._current()
        local = await self._is_local_domain(domain)
        if not local and await self._current(0.0):  # a refusal is always checked again
            local = await self._is_local_domain(domain)
        return local

    async def _is_local_domain(self, domain: str) -> bool:
        domain = domain.lower().rstrip(".")
        known = self._domains.get(domain)
        if known is None:
            known = await self.store.get_domain(domain) is not None
            if len(self._domains) >= RESOLUTION_CACHE_SIZE:
                self._domains.clear()
            self._domains[domain] = known
        return known

    async def resolve(self, address: str) -> Resolution | None:
        """Where mail for ``address`` goes; None when the domain is hosted but nobody is there.

        Raises UserError for a domain that is not hosted here.
        """
        address = canonical(address)
        await self._current()
        cached = self._resolved.get(address, self._resolved)
        # A refusal from the cache is checked again at once: mail for an account created a
        # moment ago by `postier user add` must not get a 550.
        refused = cached is not self._resolved and not isinstance(cached, Resolution)
        if refused and await self._current(0.0):
            cached = self._resolved
        if cached is self._resolved:  # not cached
            cached = await self._resolve(address)
            if len(self._resolved) >= RESOLUTION_CACHE_SIZE:
                self._resolved.clear()
            self._resolved[address] = cached
        if cached is _NOT_LOCAL:
            _local, domain = split_address(address)
            raise UserError(f"{domain or address} is not a local domain")
        assert cached is None or isinstance(cached, Resolution)
        return cached

    async def _resolve(self, address: str) -> Resolution | object | None:
        _local, domain = split_address(address)
        if not domain or not await self._is_local_domain(domain):
            return _NOT_LOCAL
        locals_: list[str] = []
        remotes: list[str] = []
        found = await self._resolve_into(address, locals_, remotes, set(), 0, domain_is_local=True)
        if not found:
            return None
        return Resolution(tuple(dict.fromkeys(locals_)), tuple(dict.fromkeys(remotes)))

    async def _resolve_into(
        self,
        address: str,
        locals_: list[str],
        remotes: list[str],
        seen: set[str],
        depth: int,
        *,
        domain_is_local: bool = False,  # the caller has just checked (no second lookup)
    ) -> bool:
        if address in seen or depth > MAX_ALIAS_DEPTH:
            return True  # a loop or chain too deep: what was found so far stands
        seen.add(address)
        local, domain = split_address(address)
        if not domain_is_local and not await self._is_local_domain(domain):
            remotes.append(address)
            return True
        base = local.split("+", 1)[0] if "+" in local else None
        candidates = [address] + ([f"{base}@{domain}"] if base else [])
        for candidate in candidates:
            targets = await self.store.alias_targets(candidate)
            if targets:
                for target in targets:
                    await self._resolve_into(target, locals_, remotes, seen, depth + 1)
                return True
            account = await self.store.get_account(candidate)
            if account is not None:
                locals_.append(account.address)
                return True
        if (base or local) == "postmaster":
            accounts = await self.store.list_accounts(domain)
            if accounts:
                locals_.append(min(accounts, key=lambda a: a.id).address)
                return True
        targets = await self.store.alias_targets(f"@{domain}")
        if targets:
            for target in targets:
                await self._resolve_into(target, locals_, remotes, seen, depth + 1)
            return True
        return False

    async def check_recipient(self, address: str) -> RecipientResult:
        """What deliver() would say about ``address``, without storing anything."""
        try:
            resolution = await self.resolve(address)
        except UserError as exc:
            return RecipientResult(address, Status.NOT_LOCAL, str(exc))
        if resolution is None:
            return RecipientResult(address, Status.UNKNOWN_USER, f"no such user: {address}")
        return RecipientResult(address, Status.DELIVERED)

    async def deliver(
        self,
        raw: bytes,
        sender: str,
        recipients: Sequence[str],
        *,
        prepared: PreparedBody | None = None,
        junk: bool = False,
        resolved: Mapping[str, Resolution | None] | None = None,
        atomic: bool = False,
        relay: Sequence[QueuedRecipient] = (),
        envid: str = "",
        ret: str = "",
    ) -> list[RecipientResult]:
        """Store ``raw`` for each recipient; a result per recipient, in order.

        Each DELIVERED result is durable (fsync'd body, committed row) when this returns.
        ``junk``: into each account's \\Junk mailbox (RFC 6154) instead of INBOX.
        ``resolved``: what resolve() just returned for some of ``recipients``.
        ``atomic``: every copy or none (SMTP must not half-deliver: one failing copy and
        every recipient gets that failure).  ``relay``: recipients outside our domains
        (authenticated submission) queued in the same transaction, with ``envid``/``ret``
        (RFC 3461).
        """
        resolutions: list[Resolution | RecipientResult] = []
        for rcpt in recipients:
            try:
                if resolved is not None and rcpt in resolved:
                    found = resolved[rcpt]
                else:
                    found = await self.resolve(rcpt)
            except UserError as exc:
                resolutions.append(RecipientResult(rcpt, Status.NOT_LOCAL, str(exc)))
                continue
            if found is None:
                resolutions.append(RecipientResult(rcpt, Status.UNKNOWN_USER, f"no such user: {rcpt}"))
            else:
                resolutions.append(found)
        wanted = [r for r in resolutions if isinstance(r, Resolution)]
        if not wanted and not relay:
            return [r for r in resolutions if isinstance(r, RecipientResult)]
        body = prepared or await self.store.prepare_body(raw)

        # One copy per distinct account (duplicates eliminated, as Postfix does).
        accounts = list(dict.fromkeys(a for r in wanted for a in r.local))
        copies = [LocalCopy(a, self._prefix(sender, a), junk) for a in accounts]
        forward = {q.address: q for q in relay}
        for r in wanted:
            for address in r.remote:
                forward.setdefault(address, QueuedRecipient(address))
        by_account: dict[str, RecipientResult | None] = {}
        failed: RecipientResult | None = None  # every copy and forward failed with this
        try:
            outcomes = await self.store.deliver(
                body, copies, atomic=atomic, forward_from=sender, forward=list(forward.values()),
                envid=envid, ret=ret,
            )
        except CopyFailed as exc:
            cause = self._failure(accounts[exc.index], exc.cause)
            failed = RecipientResult(
                cause.recipient, cause.status, f"nothing stored: {cause.recipient}: {cause.detail}"
            )
            log.info("delivery refused whole: %s: %s", cause.recipient, cause.detail)
        except Exception:
            log.exception("delivery to %s failed", ", ".join(accounts) or "the queue")
            failed = RecipientResult("", Status.TEMPORARY, "internal error")
        else:
            for account, outcome in zip(accounts, outcomes, strict=True):
                by_account[account] = (
                    None if isinstance(outcome, Appended) else self._failure(account, outcome)
                )

        results: list[RecipientResult] = []
        for rcpt, item in zip(recipients, resolutions, strict=True):
            if isinstance(item, RecipientResult):
                results.append(item)
            elif failed is not None:
                results.append(RecipientResult(rcpt, failed.status, failed.detail))
            else:
                failures = [f for a in item.local if (f := by_account[a]) is not None]
                if failures:
                    worst = next((f for f in failures if f.status is Status.TEMPORARY), failures[0])
                    results.append(RecipientResult(rcpt, worst.status, worst.detail))
                else:
                    status = Status.FORWARDED if item.remote and not item.local else Status.DELIVERED
                    results.append(RecipientResult(rcpt, status))
        if failed is not None and relay and not wanted:
            raise TemporaryError(failed.detail)
        return results

    def _prefix(self, sender: str, account: str) -> bytes:
        if self.add_delivered_to:
            return trace_prefix(sender, account)
        return f"Return-Path: <{sender}>\r\n".encode()

    @staticmethod
    def _failure(account: str, error: PostierError) -> RecipientResult:
        if isinstance(error, QuotaExceeded):
            return RecipientResult(account, Status.OVER_QUOTA, str(error))
        if isinstance(error, UnknownAccount):
            # Resolved a moment ago, gone now: let the sender try again.
            return RecipientResult(account, Status.TEMPORARY, str(error))
        if isinstance(error, TemporaryError | UserError):
            return RecipientResult(account, Status.TEMPORARY, str(error))
        log.error("delivery to %s failed: %s", account, error)
        return RecipientResult(account, Status.TEMPORARY, "internal error")
