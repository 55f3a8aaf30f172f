"""Local delivery: recipient resolution and storing a message into INBOXes.

Resolution order for ``local[+tag]@domain`` in a hosted domain (first that matches):
an alias for the exact address; the account; the same two for ``local@domain`` without the
``+tag`` (plus-addressing); ``postmaster@`` (RFC 5321 §4.5.1) falls back to the domain's
first account; the catch-all alias ``@domain``.  Alias targets are resolved again (depth
limit, loops ignored); targets outside our domains are forwarded through the outbound queue.

A message is parsed once and written once, whatever the number of recipients: each
recipient's copy is the shared body plus a small per-recipient prefix (Return-Path,
Delivered-To).  Per-recipient appends run concurrently so they share one group commit.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from postier.errors import QuotaExceeded, TemporaryError, UserError
from postier.store.interface import Store
from postier.store.types import NewMessage, PreparedBody, QueuedRecipient

log = logging.getLogger("postier.delivery")

MAX_ALIAS_DEPTH = 10


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

    async def is_local_domain(self, domain: str) -> bool:
        return await self.store.get_domain(domain.lower().rstrip(".")) is not None

    async def resolve(self, address: str) -> Resolution | None:
        """Where mail for ``address`` goes; None when the domain is hosted but nobody is there.

        Raises UserError for a domain that is not hosted here.
        """
        address = canonical(address)
        _local, domain = split_address(address)
        if not domain or not await self.is_local_domain(domain):
            raise UserError(f"{domain or address} is not a local domain")
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
        if not domain_is_local and not await self.is_local_domain(domain):
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
    ) -> list[RecipientResult]:
        """Store ``raw`` for each recipient; a result per recipient, in order.

        Each DELIVERED result is durable (fsync'd body, committed row) when this returns.
        ``junk``: into each account's \\Junk mailbox (RFC 6154) instead of INBOX.
        ``resolved``: what resolve() just returned for some of ``recipients`` (the SMTP
        server's quota check resolves them right before; not resolving twice saves the
        lookups on the hot path).
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
        if not wanted:
            return [r for r in resolutions if isinstance(r, RecipientResult)]
        body = prepared or await self.store.prepare_body(raw)

        # One append per distinct account (duplicates eliminated, as Postfix does).
        accounts = list(dict.fromkeys(a for r in wanted for a in r.local))
        outcomes = await asyncio.gather(
            *(self._store_one(body, sender, account, junk) for account in accounts)
        )
        by_account = dict(zip(accounts, outcomes, strict=True))
        remotes = list(dict.fromkeys(a for r in wanted for a in r.remote))
        forward_error: RecipientResult | None = None
        if remotes:
            try:
                await self.store.enqueue(sender, [QueuedRecipient(a) for a in remotes], body)
            except Exception as exc:
                log.error("queueing forward to %s failed: %s", ", ".join(remotes), exc)
                forward_error = RecipientResult("", Status.TEMPORARY, "forwarding queue unavailable")

        results: list[RecipientResult] = []
        for rcpt, item in zip(recipients, resolutions, strict=True):
            if isinstance(item, RecipientResult):
                results.append(item)
                continue
            res = item
            failures = [f for a in res.local if (f := by_account[a]) is not None]
            if res.remote and forward_error is not None:
                failures.append(forward_error)
            if failures:
                worst = next((f for f in failures if f.status is Status.TEMPORARY), failures[0])
                results.append(RecipientResult(rcpt, worst.status, worst.detail))
            else:
                status = Status.FORWARDED if res.remote and not res.local else Status.DELIVERED
                results.append(RecipientResult(rcpt, status))
        return results

    async def _store_one(
        self, body: PreparedBody, sender: str, address: str, junk: bool = False
    ) -> RecipientResult | None:
        account = await self.store.get_account(address)
        if account is None:
            return RecipientResult(address, Status.UNKNOWN_USER, f"no such user: {address}")
        inbox = None
        if junk:
            boxes = await self.store.list_mailboxes(account.id)
            inbox = next((b for b in boxes if b.special_use == "\\Junk"), None)
        if inbox is None:
            inbox = await self.store.get_mailbox(account.id, "INBOX")
        if inbox is None:
            inbox = await self.store.create_mailbox(account.id, "INBOX")
        prefix = trace_prefix(sender, address) if self.add_delivered_to else (
            f"Return-Path: <{sender}>\r\n".encode()
        )
        try:
            await self.store.append([NewMessage(inbox.id, body, prefix)])
        except QuotaExceeded as exc:
            return RecipientResult(address, Status.OVER_QUOTA, str(exc))
        except TemporaryError as exc:
            return RecipientResult(address, Status.TEMPORARY, str(exc))
        except UserError as exc:
            return RecipientResult(address, Status.TEMPORARY, str(exc))
        except Exception:
            log.exception("delivery to %s failed", address)
            return RecipientResult(address, Status.TEMPORARY, "internal error")
        return None
