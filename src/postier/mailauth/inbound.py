"""Checks of mail received on port 25: SPF, DKIM, ARC, DMARC → Authentication-Results.

RFC 7208 (SPF of the MAIL FROM identity, or of the HELO name for the null sender),
RFC 6376 (every DKIM signature), RFC 7489 (DMARC of the RFC 5322 From domain, with the
policy the domain asks for), RFC 8617 (the ARC chain, when the message carries ARC sets:
reported as arc=…, no policy acts on it yet), RFC 8601 (the result header, and §5: fields claiming our own
authserv-id that arrive with the message are removed, so they cannot be forged).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass

from postier.mail.headers import parse_addresses, parse_fields
from postier.mailauth import authres
from postier.mailauth.arc import ArcResult, ArcStatus
from postier.mailauth.arc import verify as arc_verify
from postier.mailauth.dkim import DkimResult
from postier.mailauth.dkim import verify as dkim_verify
from postier.mailauth.dmarc import DmarcResult, DmarcStatus, Policy
from postier.mailauth.dmarc import evaluate as dmarc_evaluate
from postier.mailauth.dns import Resolver
from postier.mailauth.spf import Spf, SpfResult, check_mail_from

log = logging.getLogger("postier.mailauth")

CHECK_TIMEOUT_S = 30.0  # all lookups of one message together


class Action(enum.Enum):
    ACCEPT = "accept"
    JUNK = "junk"  # deliver into the Junk mailbox (DMARC p=quarantine)
    REJECT = "reject"  # 550 5.7.1 (DMARC p=reject)


@dataclass(frozen=True, slots=True)
class InboundVerdict:
    header: bytes  # Authentication-Results field, CRLF-terminated ("" if nothing was checked)
    action: Action
    reason: str = ""
    spf: SpfResult | None = None
    dkim: tuple[DkimResult, ...] = ()
    dmarc: DmarcResult | None = None
    arc: ArcResult | None = None


@dataclass(frozen=True, slots=True)
class InboundSettings:
    authserv_id: str
    check_spf: bool = True
    check_dkim: bool = True
    check_dmarc: bool = True
    check_arc: bool = True  # reported only (arc=…), when the message carries ARC sets
    dmarc_reject: bool = True
    dmarc_quarantine_to_junk: bool = True


def from_domains(message: bytes) -> list[str]:
    end = message.find(b"\r\n\r\n")
    domains: list[str] = []
    for name, value in parse_fields(message, 0, end if end >= 0 else len(message)):
        if name == b"from":
            domains += [a.host.decode("utf-8", "replace").lower().rstrip(".")
                        for a in parse_addresses(value) if a.host]
    return domains


class InboundChecker:
    def __init__(self, settings: InboundSettings, resolver: Resolver) -> None:
        self.settings = settings
        self.resolver = resolver

    async def check(self, peer_ip: str, helo: str, mail_from: str, message: bytes) -> InboundVerdict:
        try:
            return await asyncio.wait_for(
                self._check(peer_ip, helo, mail_from, message), CHECK_TIMEOUT_S
            )
        except TimeoutError:
            log.warning("authentication checks timed out for message from %s", peer_ip)
            header = authres.header_field(self.settings.authserv_id, [
                authres.AuthResult("spf", "temperror", comment="checks timed out")
            ])
            return InboundVerdict(header, Action.ACCEPT, "checks timed out")

    async def _check(self, peer_ip: str, helo: str, mail_from: str, message: bytes) -> InboundVerdict:
        s = self.settings
        results: list[authres.AuthResult] = []
        spf: SpfResult | None = None
        dkim: list[DkimResult] = []
        spf_task = (
            asyncio.ensure_future(check_mail_from(peer_ip, mail_from, helo, self.resolver))
            if s.check_spf else None
        )
        arc_task = (asyncio.ensure_future(arc_verify(message, self.resolver))
                    if s.check_arc else None)
        if s.check_dkim:
            dkim = await dkim_verify(message, self.resolver)
        arc: ArcResult | None = await arc_task if arc_task is not None else None
        if spf_task is not None:
            spf = await spf_task
            results.append(authres.spf_resinfo(spf, mail_from=mail_from, helo=helo if not mail_from else ""))
        if s.check_dkim:
            results += [authres.dkim_resinfo(r) for r in dkim] or [authres.AuthResult("dkim", "none")]
        if arc is not None and arc.result is not ArcStatus.NONE:
            results.append(authres.arc_resinfo(arc))
        dmarc: DmarcResult | None = None
        action, reason = Action.ACCEPT, ""
        if s.check_dmarc:
            spf_domain = spf.domain if spf is not None else ""
            spf_result = str(spf.result) if spf is not None else str(Spf.NONE)
            dmarc = await dmarc_evaluate(from_domains(message), spf_result, spf_domain, dkim, self.resolver)
            results.append(authres.dmarc_resinfo(dmarc))
            if dmarc.result is DmarcStatus.FAIL:
                if dmarc.policy is Policy.REJECT and s.dmarc_reject:
                    action, reason = Action.REJECT, f"DMARC policy of {dmarc.domain} rejects it"
                elif dmarc.policy in (Policy.REJECT, Policy.QUARANTINE) and s.dmarc_quarantine_to_junk:
                    action, reason = Action.JUNK, f"DMARC policy of {dmarc.domain}: quarantine"
        header = authres.header_field(s.authserv_id, results) if results else b""
        return InboundVerdict(header, action, reason, spf, tuple(dkim), dmarc, arc)


def strip_forged_results(message: bytes, authserv_id: str) -> bytes:
    """Remove Authentication-Results fields naming our authserv-id (RFC 8601 §5)."""
    end = message.find(b"\r\n\r\n")
    head = message[: end + 2] if end >= 0 else message
    if b"authentication-results" not in head.lower():
        return message
    lines = head.split(b"\r\n")
    out: list[bytes] = []
    skipping = False
    ours = authserv_id.lower().encode()
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                out.append(line)
            continue
        name, _, value = line.partition(b":")
        skipping = (
            name.strip().lower() == b"authentication-results"
            and value.strip().lower().split(b";", 1)[0].split()[:1] == [ours]
        )
        if not skipping:
            out.append(line)
    return b"\r\n".join(out) + (message[end + 2:] if end >= 0 else b"")
