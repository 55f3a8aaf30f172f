"""The queue runner: takes due entries from the durable queue and delivers them.

One round: claim due entries (leased so that nothing takes them twice), group their
recipients by destination domain, open at most ``max_connections_per_domain`` connections
per domain (and ``max_connections`` in all), each carrying every message and recipient
for that domain it can take, and record each recipient's outcome durably *as soon as the
remote has answered* — a recipient the remote accepted is never sent again, whatever
happens next.  When every domain of an entry is done the entry is settled: DSNs owed are
delivered (failures, "relayed", delay warnings), then the entry is deleted when nothing
is left, or rescheduled with back-off.

Outcomes (RFC 5321 §4.2.1, §4.5.4.1): 2xx delivered; 4xx, connection failures, timeouts
and DNS failures retried later; 5xx failed at once; still undelivered after ``max_age_s``
→ failed with 4.4.7 (RFC 3463 "delivery time expired").
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from postier.errors import TemporaryError
from postier.queue.client import (
    Envelope,
    Recipient,
    Reply,
    SmtpClient,
    SmtpClientError,
    canonical,
    envelope_needs_smtputf8,
    headers_need_smtputf8,
)
from postier.queue.dsn import (
    Action,
    Dsn,
    Outcome,
    RecipientReport,
    build_dsn,
    notify_wants,
    outcome_text,
)
from postier.queue.mtasts import MtaSts, StsPolicy, StsResolver
from postier.queue.mx import MxHost, MxResolver, NoRoute, NullMx, host_addresses, mx_hosts
from postier.queue.settings import QueueSettings
from postier.queue.sevenbit import to_7bit
from postier.store.sqlite.queue import (
    OutEntry,
    OutRecipient,
    RcptStatus,
    RcptUpdate,
    SqliteQueue,
)
from postier.store.sqlite.store import SqliteStore

log = logging.getLogger("postier.queue")

# (envelope sender, canonical message) -> header lines to prepend (b"" for none), e.g. a
# DKIM-Signature field from postier.mailauth.dkim.
Signer = Callable[[str, bytes], Awaitable[bytes]]
# Hands a DSN over for delivery (local mailbox or the queue); must be durable on return.
BounceDeliverer = Callable[[Dsn], Awaitable[None]]
Clock = Callable[[], float]

E_NULL_MX = "5.1.10"  # RFC 7505 §4.2
E_EXPIRED = "4.4.7"  # RFC 3463: delivery time expired (with Action: failed)
E_TOO_BIG = "5.3.4"  # RFC 3463: message too big for system
E_NEEDS_8BIT = "5.6.3"  # RFC 6152 §3: conversion required and not supported
E_NEEDS_UTF8 = "5.6.7"  # RFC 6531 §3.2: non-ASCII addresses not permitted
E_DNS = "4.4.3"  # RFC 3463: directory server failure
E_LOCAL = "4.3.0"
E_STS_MX = "4.7.0"  # RFC 8461 §5: no MX host matches an enforced policy (temporary)
E_STS_NO_TLS = "4.7.4"  # RFC 3463: security features not supported (no STARTTLS)
E_TLS = "4.7.5"  # RFC 3463: cryptographic failure (handshake, certificate)

# How a session secures itself: "verify" (MTA-STS: STARTTLS required, certificate checked
# against the MX name), "opportunistic" (RFC 7435: unverified when offered), "plain".
TlsMode = str


def opportunistic_tls_context() -> ssl.SSLContext:
    """RFC 7435: encrypt when offered, without certificate verification (MTA-STS and
    DANE, when they come, will ask for a verifying context per destination)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class _Job:
    """One claimed entry while its domains are delivered."""

    entry: OutEntry
    pending_domains: int
    done: asyncio.Future[None]
    data: bytes | None = None
    data_7bit: bytes | None = None  # converted for peers without 8BITMIME (then signed)
    data_7bit_done: bool = False  # conversion attempted (data_7bit None: not feasible)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_error: str = ""
    attempted: bool = False


@dataclass
class _Item:
    job: _Job
    rcpts: list[OutRecipient]


class _NoConnection(Exception):
    def __init__(self, outcome: str, permanent: bool = False) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.permanent = permanent


class QueueRunner:
    def __init__(
        self,
        store: SqliteStore,
        settings: QueueSettings,
        resolver: MxResolver,
        signer: Signer | None = None,
        deliver_bounce: BounceDeliverer | None = None,
        *,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        tls_context: ssl.SSLContext | None = None,
        verify_tls_context: ssl.SSLContext | None = None,
        mta_sts: MtaSts | None = None,
    ) -> None:
        self.store = store
        self.queue = SqliteQueue(store)
        self.settings = settings
        self.resolver = resolver
        self.signer = signer
        self.deliver_bounce = deliver_bounce
        self.clock = clock
        self.rng = rng or random.Random()
        self.tls_context = tls_context or opportunistic_tls_context()
        # Verified TLS (MTA-STS): the system trust store unless a test injects its own CA.
        self._verify_tls_context = verify_tls_context
        if mta_sts is None and settings.mta_sts and hasattr(resolver, "txt"):
            sts_resolver: StsResolver = resolver  # type: ignore[assignment]
            mta_sts = MtaSts(sts_resolver, timeout_s=settings.mta_sts_fetch_timeout_s,
                             clock=clock)
        self.mta_sts = mta_sts if settings.mta_sts else None
        self._inflight: dict[int, _Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._global = asyncio.Semaphore(settings.max_connections)
        self._per_domain: weakref.WeakValueDictionary[str, asyncio.Semaphore] = (
            weakref.WeakValueDictionary()
        )
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._stopping = False
        self._loop_task = asyncio.create_task(self._run(), name="postier-queue")

    async def stop(self) -> None:
        """Stop claiming; let running transactions finish for ``stop_grace_s``, then cancel.
        Entries cancelled half-way are made due again at once (for the next start)."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
            self._loop_task = None
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=self.settings.stop_grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        left = list(self._inflight)
        self._inflight.clear()
        if left:
            await self.queue.retry(left, int(self.clock()))

    def wake(self) -> None:
        """Look for due entries now (call after enqueueing)."""
        self._wake.set()

    async def flush(self) -> int:
        """Make every entry due now and attempt it; returns when those attempts are over."""
        await self.queue.retry(None, int(self.clock()))
        return await self.run_once()

    async def run_once(self) -> int:
        """Claim what is due and deliver it; returns the number of entries attempted."""
        jobs = await self._dispatch()
        if jobs:
            await asyncio.gather(*(j.done for j in jobs), return_exceptions=True)
        return len(jobs)

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._dispatch()
            except Exception:
                log.exception("queue: claiming due entries failed")
            timeout = self.settings.poll_interval_s
            try:
                nxt = await self.queue.next_due()
            except Exception:
                nxt = None
            if nxt is not None:
                timeout = max(0.05, min(timeout, nxt - self.clock()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
            self._wake.clear()

    # dispatch ----------------------------------------------------------------------------

    async def _dispatch(self) -> list[_Job]:
        now = int(self.clock())
        entries = await self.queue.claim(
            now, self.settings.lease_s, self.settings.claim_batch, exclude=self._inflight
        )
        loop = asyncio.get_running_loop()
        jobs: list[_Job] = []
        by_domain: dict[str, list[_Item]] = {}
        for entry in entries:
            groups: dict[str, list[OutRecipient]] = {}
            for rcpt in entry.to_deliver():
                groups.setdefault(rcpt.domain, []).append(rcpt)
            job = _Job(entry, len(groups), loop.create_future())
            self._inflight[entry.id] = job
            jobs.append(job)
            for domain, rcpts in groups.items():
                by_domain.setdefault(domain, []).append(_Item(job, rcpts))
            if not groups:  # only DSNs owed: settle without connecting
                self._spawn(self._settle(job))
        for domain, items in by_domain.items():
            self._spawn(self._deliver_domain(domain, items))
        return jobs

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def wrapped() -> None:
            await coro

        task = asyncio.create_task(wrapped())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # one domain --------------------------------------------------------------------------

    async def _deliver_domain(self, domain: str, items: list[_Item]) -> None:
        try:
            try:
                hosts = await mx_hosts(self.resolver, domain, self.rng)
            except NullMx as exc:
                await self._fail_all(items, outcome_text(E_NULL_MX, str(exc)))
                return
            except NoRoute as exc:
                await self._fail_all(items, outcome_text(exc.status, str(exc)))
                return
            except TemporaryError as exc:
                await self._defer_all(items, outcome_text(E_DNS, str(exc)))
                return
            policy = await self._sts_policy(domain)
            sts_mode = policy.mode if policy is not None else "none"
            if policy is not None and sts_mode != "none":
                matching = [h for h in hosts if policy.matches(h.name)]
                if sts_mode == "enforce":
                    if not matching:
                        await self._defer_all(items, outcome_text(E_STS_MX, (
                            f"MTA-STS: no MX host of {domain} ("
                            + ", ".join(h.name for h in hosts)
                            + ") matches the policy (mx: " + ", ".join(policy.mx) + ")")))
                        return
                    hosts = matching
                elif len(matching) != len(hosts):
                    log.warning("mta-sts testing %s: MX hosts %s do not match the policy "
                                "(mx: %s); delivering anyway", domain,
                                ", ".join(h.name for h in hosts if h not in matching),
                                ", ".join(policy.mx))
            work = deque(items)
            workers = min(self.settings.max_connections_per_domain, len(items))
            await asyncio.gather(*(self._connection(domain, hosts, work, sts_mode)
                                   for _ in range(workers)))
        except Exception as exc:
            log.exception("queue: delivery to %s failed", domain)
            await self._defer_all(items, outcome_text(E_LOCAL, f"local error: {exc}"))
        finally:
            for item in items:
                item.job.pending_domains -= 1
                if item.job.pending_domains == 0:
                    await self._settle(item.job)

    async def _sts_policy(self, domain: str) -> StsPolicy | None:
        if self.mta_sts is None or domain.startswith("["):
            return None
        try:
            return await self.mta_sts.policy(domain)
        except Exception:
            log.exception("mta-sts %s: policy lookup failed", domain)
            return None

    @property
    def verify_tls_context(self) -> ssl.SSLContext:
        if self._verify_tls_context is None:
            self._verify_tls_context = ssl.create_default_context()
        return self._verify_tls_context

    def _domain_semaphore(self, domain: str) -> asyncio.Semaphore:
        sem = self._per_domain.get(domain)
        if sem is None:
            sem = asyncio.Semaphore(self.settings.max_connections_per_domain)
            self._per_domain[domain] = sem
        return sem

    async def _connection(self, domain: str, hosts: list[MxHost], work: deque[_Item],
                          sts_mode: str = "none") -> None:
        """One connection at a time, carrying items from ``work`` until it is empty."""
        sem = self._domain_semaphore(domain)
        async with sem, self._global:
            failures = 0
            while work and not self._stopping:
                try:
                    client = await self._open(hosts, sts_mode)
                except _NoConnection as exc:
                    rest = list(work)
                    work.clear()
                    if exc.permanent:
                        await self._fail_all(rest, exc.outcome)
                    else:
                        await self._defer_all(rest, exc.outcome)
                    return
                sent = 0
                try:
                    while work and sent < self.settings.max_messages_per_connection:
                        item = work.popleft()
                        try:
                            await self._send(client, item)
                        except SmtpClientError as exc:
                            await self._defer_all(
                                [item], outcome_text(exc.status, str(exc), client.peer_name)
                            )
                            failures += 1
                            break
                        sent += 1
                        failures = 0
                    else:
                        await client.quit()
                        continue
                finally:
                    await client.close()
                if failures >= 2:  # the host keeps failing: leave the rest for later
                    rest = list(work)
                    work.clear()
                    await self._defer_all(rest, f"4.4.2 {client.peer_name}: repeated connection failures")
                    return

    async def _open(self, hosts: list[MxHost], sts_mode: str = "none") -> SmtpClient:
        """Connect to the first host that answers (RFC 5321 §5.1: try the next MX host on
        connection failure or a 4xx/5xx greeting); EHLO, then STARTTLS when offered.

        MTA-STS enforce: verified TLS or nothing (a failure tries the next host and at
        last defers, RFC 8461 §5).  Testing: verified TLS first; on a TLS failure log it
        and fall back to opportunistic TLS, then plain text."""
        s = self.settings
        modes: tuple[TlsMode, ...]
        if sts_mode == "enforce":
            modes = ("verify",)
        elif sts_mode == "testing":
            modes = ("verify", "opportunistic", "plain")
        else:
            modes = ("opportunistic", "plain") if s.starttls else ("plain",)
        last = "4.4.1 no answer from any MX host"
        for host in hosts[: s.max_mx_hosts]:
            try:
                addresses = await host_addresses(self.resolver, host, s.prefer_ipv6)
            except NoRoute as exc:
                raise _NoConnection(outcome_text(exc.status, str(exc)), permanent=True) from None
            except TemporaryError as exc:
                last = outcome_text(E_DNS, str(exc))
                continue
            for address in addresses:
                for mode in modes:
                    try:
                        return await self._session(host, address, mode)
                    except SmtpClientError as exc:
                        last = outcome_text(exc.status, str(exc))
                        log.info("queue: %s [%s]: %s", host.name, address, exc)
                        if mode == "verify" and sts_mode == "testing" and exc.status in (
                                E_STS_NO_TLS, E_TLS):
                            log.warning("mta-sts testing: %s [%s] would fail under enforce: "
                                        "%s", host.name, address, exc)
                            continue
                        # only a TLS failure retries without TLS
                        if mode != "opportunistic" or exc.status != E_TLS:
                            break
        raise _NoConnection(last)

    async def _session(self, host: MxHost, address: str, mode: TlsMode) -> SmtpClient:
        s = self.settings
        client = await SmtpClient.connect(
            address, s.port, host.name, s.connect_timeout_s, s.command_timeout_s,
            s.data_timeout_s, s.source_address,
        )
        try:
            greeting = client.greeting
            if greeting is None or greeting.code != 220:
                raise SmtpClientError(f"{host.name} greeted with {greeting}", _status(greeting))
            reply = await client.ehlo(s.hostname)
            if reply.code != 250:
                raise SmtpClientError(f"{host.name} refused EHLO/HELO: {reply}", _status(reply))
            if mode == "verify" and not client.offers("STARTTLS"):
                raise SmtpClientError(f"{host.name} does not offer STARTTLS, required by "
                                      "MTA-STS", E_STS_NO_TLS)
            if mode != "plain" and client.offers("STARTTLS"):
                if mode == "verify":
                    # RFC 8461 §4.2: a certificate valid for the MX host name (SNI).
                    tls = await client.starttls(self.verify_tls_context, host.name)
                    if tls.code != 220:
                        raise SmtpClientError(f"{host.name} refused STARTTLS ({tls}), "
                                              "required by MTA-STS", E_STS_NO_TLS)
                else:
                    server_name = (None if host.implicit and host.name[:1].isdigit()
                                   else host.name)
                    tls = await client.starttls(self.tls_context, server_name)
                if tls.code == 220:
                    reply = await client.ehlo(s.hostname)  # RFC 3207 §4.2: EHLO again
                    if reply.code != 250:
                        raise SmtpClientError(f"{host.name} refused EHLO after TLS: {reply}",
                                              _status(reply))
            return client
        except BaseException:
            await client.close()
            raise

    # one message on an open connection ------------------------------------------------

    async def _message_data(self, job: _Job) -> bytes:
        async with job.lock:
            if job.data is None:
                raw = canonical(await self.queue.read_body(job.entry))
                if self.signer is not None:
                    raw = await self.signer(job.entry.sender, raw) + raw
                job.data = raw
            return job.data

    async def _message_data_7bit(self, job: _Job) -> bytes | None:
        """RFC 6152 §3: the message with 8-bit bodies re-encoded (quoted-printable or
        base64), signed after conversion (RFC 6376 §5.3); None when not convertible."""
        async with job.lock:
            if not job.data_7bit_done:
                job.data_7bit_done = True
                raw = to_7bit(canonical(await self.queue.read_body(job.entry)))
                if raw is not None and self.signer is not None:
                    raw = await self.signer(job.entry.sender, raw) + raw
                job.data_7bit = raw
            return job.data_7bit

    async def _send(self, client: SmtpClient, item: _Item) -> None:
        job, entry = item.job, item.job.entry
        job.attempted = True
        data = await self._message_data(job)
        addresses = [r.address for r in item.rcpts]
        needs_utf8 = envelope_needs_smtputf8(entry.sender, addresses)
        eight_bit = not data.isascii()
        if eight_bit and not client.offers("8BITMIME"):
            converted = await self._message_data_7bit(job)
            if converted is not None and converted.isascii():
                log.info("queue %d: %s does not offer 8BITMIME: converted to 7 bit",
                         entry.id, client.peer_name)
                data, eight_bit = converted, False
        refusal = ""
        if client.max_size and len(data) > client.max_size:
            refusal = outcome_text(E_TOO_BIG, f"message of {len(data)} bytes exceeds the "
                                   f"{client.max_size} bytes {client.peer_name} accepts")
        elif needs_utf8 and not client.offers("SMTPUTF8"):
            refusal = outcome_text(E_NEEDS_UTF8, f"{client.peer_name} does not offer SMTPUTF8")
        elif eight_bit and not client.offers("8BITMIME"):
            # RFC 6152 §3: convert or bounce; conversion was not feasible.
            refusal = outcome_text(E_NEEDS_8BIT, f"8-bit message and {client.peer_name} "
                                   "does not offer 8BITMIME; it cannot be converted to 7 bit "
                                   "(8-bit header fields or a part that cannot be re-encoded)")
        if refusal:
            await self._fail_all([item], refusal)
            return
        env = Envelope(
            entry.sender,
            tuple(Recipient(r.address, r.notify, r.orcpt) for r in item.rcpts),
            ret=entry.ret,
            envid=entry.envid,
            smtputf8=needs_utf8 or headers_need_smtputf8(data),
            eight_bit=eight_bit,
        )
        tx = await client.send(env, data)
        updates: list[RcptUpdate] = []
        for i, rcpt in enumerate(item.rcpts):
            reply = tx.final(i)
            text = outcome_text(reply.status(), str(reply), client.peer_name)
            if reply.ok:
                owed = (not client.offers("DSN") and entry.sender != ""
                        and notify_wants(rcpt.notify, Action.RELAYED))
                status = RcptStatus.DELIVERED if owed else RcptStatus.SENT
                log.info("queue %d <%s>: delivered to %s%s: %s", entry.id, rcpt.address,
                         client.peer_name, " (TLS)" if client.tls else "", reply)
            elif reply.temporary:
                status = rcpt.status
                job.last_error = text
                log.info("queue %d <%s>: deferred: %s", entry.id, rcpt.address, text)
            else:
                status = self._failed_status(entry, rcpt)
                log.info("queue %d <%s>: failed: %s", entry.id, rcpt.address, text)
            updates.append(RcptUpdate(rcpt.address, status, text))
        await self.queue.mark(entry.id, updates)

    def _failed_status(self, entry: OutEntry, rcpt: OutRecipient) -> RcptStatus:
        if entry.sender and notify_wants(rcpt.notify, Action.FAILED):
            return RcptStatus.FAILED
        return RcptStatus.BOUNCED

    async def _fail_all(self, items: Sequence[_Item], text: str) -> None:
        for item in items:
            item.job.attempted = True
            log.info("queue %d: failed %s: %s", item.job.entry.id,
                     ", ".join(f"<{r.address}>" for r in item.rcpts), text)
            await self.queue.mark(item.job.entry.id, [
                RcptUpdate(r.address, self._failed_status(item.job.entry, r), text)
                for r in item.rcpts
            ])

    async def _defer_all(self, items: Sequence[_Item], text: str) -> None:
        for item in items:
            item.job.attempted = True
            item.job.last_error = text
            log.info("queue %d: deferred %s: %s", item.job.entry.id,
                     ", ".join(f"<{r.address}>" for r in item.rcpts), text)
            await self.queue.mark(item.job.entry.id, [
                RcptUpdate(r.address, r.status, text) for r in item.rcpts
            ])

    # settling an entry ------------------------------------------------------------------

    async def _settle(self, job: _Job) -> None:
        try:
            await self._settle_entry(job)
        except Exception:
            log.exception("queue %d: settling failed", job.entry.id)
        finally:
            self._inflight.pop(job.entry.id, None)
            job.data = None
            job.data_7bit, job.data_7bit_done = None, False
            if not job.done.done():
                job.done.set_result(None)

    async def _settle_entry(self, job: _Job) -> None:
        s = self.settings
        entry = await self.queue.get(job.entry.id)
        if entry is None:  # deleted meanwhile (postier queue delete)
            return
        now = self.clock()
        expires = entry.created + s.max_age_s
        open_ = entry.to_deliver()
        if open_ and now >= expires:
            updates = []
            for r in open_:
                last = Outcome.parse(r.last_error or entry.last_error or job.last_error)
                reason = f"delivery time expired after {s.max_age_s // 3600} hours"
                text = outcome_text(E_EXPIRED, f"{reason}; last error: {last.text}"
                                    if last.text else reason, last.remote_mta)
                updates.append(RcptUpdate(r.address, self._failed_status(entry, r), text))
            await self.queue.mark(entry.id, updates)
            entry = await self.queue.get(entry.id)
            if entry is None:
                return
            open_ = entry.to_deliver()

        # DSNs owed: failures, "relayed" successes, and a first delay warning.
        reports: list[RecipientReport] = []
        after: list[RcptUpdate] = []
        for r in entry.recipients:
            if r.status is RcptStatus.FAILED:
                reports.append(self._report(r, Action.FAILED, "5.0.0"))
                after.append(RcptUpdate(r.address, RcptStatus.BOUNCED, r.last_error))
            elif r.status is RcptStatus.DELIVERED:
                reports.append(self._report(r, Action.RELAYED, "2.0.0"))
                after.append(RcptUpdate(r.address, RcptStatus.SENT, r.last_error))
            elif (r.status is RcptStatus.PENDING and s.delay_warning_after_s
                  and now - entry.created >= s.delay_warning_after_s and entry.sender
                  and notify_wants(r.notify, Action.DELAYED)):
                report = self._report(r, Action.DELAYED, "4.0.0")
                reports.append(RecipientReport(
                    report.address, report.action, report.status, report.orcpt,
                    report.remote_mta, report.diagnostic, report.diagnostic_is_smtp,
                    will_retry_until=expires,
                ))
                after.append(RcptUpdate(r.address, RcptStatus.WARNED, r.last_error))
        dsn_failed = False
        if reports:
            try:
                await self._send_dsn(entry, reports, now)
            except Exception:
                log.exception("queue %d: delivering the DSN failed; will try again", entry.id)
                dsn_failed = True
            else:
                await self.queue.mark(entry.id, after)

        if not open_ and not dsn_failed and await self.queue.finish_if_done(entry.id):
            log.info("queue %d: done", entry.id)
            return
        attempts = entry.attempts + (1 if job.attempted else 0)
        if dsn_failed or not open_:
            delay = s.backoff_s(1)
        elif not job.attempted:  # stopped before its turn: due again at once
            delay = 0
        else:
            delay = s.backoff_s(attempts)
        next_attempt = min(int(now) + delay, max(int(expires), int(now) + 1))
        await self.queue.reschedule(entry.id, next_attempt, job.last_error or entry.last_error,
                                    count_attempt=job.attempted)

    def _report(self, r: OutRecipient, action: Action, default_status: str) -> RecipientReport:
        outcome = Outcome.parse(r.last_error, default_status) if r.last_error else Outcome(
            default_status, "")
        status = outcome.status
        if action is Action.FAILED and status.startswith("2"):
            status = default_status
        return RecipientReport(
            r.address, action, status, r.orcpt, outcome.remote_mta, outcome.text,
            diagnostic_is_smtp=bool(outcome.remote_mta) and outcome.text[:3].isdigit(),
        )

    async def _send_dsn(self, entry: OutEntry, reports: list[RecipientReport], now: float) -> None:
        if not entry.sender or self.deliver_bounce is None:
            if self.deliver_bounce is None:
                log.warning("queue %d: no DSN deliverer configured; DSN dropped", entry.id)
            return
        original = await self.queue.read_body(entry)
        dsn = build_dsn(
            reporting_mta=self.settings.hostname, sender=entry.sender, reports=reports,
            original=canonical(original), arrival=entry.created, now=now, envid=entry.envid,
            ret=entry.ret, full_max_bytes=self.settings.dsn_full_max_bytes,
        )
        await self.deliver_bounce(dsn)
        log.info("queue %d: DSN (%s) sent to <%s>", entry.id,
                 ", ".join(sorted({r.action.value for r in reports})), entry.sender)


def _status(reply: Reply | None) -> str:
    if reply is None:
        return "4.4.2"
    # Greeting/EHLO refusals are connection-level: retried later, other MX first.
    return "4.4.1" if reply.code >= 500 else reply.status()
