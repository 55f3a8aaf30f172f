"""DMARC: policy discovery and evaluation (RFC 7489), async, over `mailauth.dns.Resolver`.

Implements:

- §3.2: the Organizational Domain, from the Public Suffix List (`publicsuffixlist`, which
  ships its own copy of the list: no network);
- §3.1: identifier alignment of the SPF-authenticated domain and of DKIM d= with the
  RFC5322.From domain, relaxed or strict (adkim, aspf);
- §6.3, §6.4: the record format (v, p, sp, pct, adkim, aspf, rua, ruf, fo, rf, ri);
  unknown tags are ignored;
- §6.6.1: missing From (permerror, the message breaks RFC 5322 §3.6) and several From
  domains (each evaluated, the strictest failing policy applies);
- §6.6.2, §6.6.3: record discovery at _dmarc.<From domain>, then at the Organizational
  Domain, "sp" for subdomains, several records → no policy, invalid "p" → p=none when a
  valid rua is present, else no policy;
- §6.6.4: the "pct" sampling (next less strict policy when not sampled), with an
  injectable random source.

Reports (rua/ruf) are parsed but not sent.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cache
from typing import Protocol

from publicsuffixlist import PublicSuffixList

from postier.mailauth.dns import DnsTempError, Resolver


class DmarcStatus(StrEnum):
    """The DMARC result (RFC 7489 §11.2, Authentication-Results values)."""

    PASS = "pass"
    FAIL = "fail"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


class Policy(StrEnum):
    """Requested Mail Receiver policy (RFC 7489 §6.3 "p")."""

    NONE = "none"
    QUARANTINE = "quarantine"
    REJECT = "reject"


class Alignment(StrEnum):
    """Identifier alignment mode (RFC 7489 §3.1, "adkim"/"aspf")."""

    RELAXED = "r"
    STRICT = "s"


_NEXT_LESS_STRICT = {  # RFC 7489 §6.6.4: a message not selected by pct
    Policy.REJECT: Policy.QUARANTINE,
    Policy.QUARANTINE: Policy.NONE,
    Policy.NONE: Policy.NONE,
}
_STRICTNESS = {Policy.NONE: 0, Policy.QUARANTINE: 1, Policy.REJECT: 2}


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """A parsed DMARC record (RFC 7489 §6.3); defaults as the RFC gives them."""

    p: Policy
    sp: Policy | None = None
    pct: int = 100
    adkim: Alignment = Alignment.RELAXED
    aspf: Alignment = Alignment.RELAXED
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    fo: str = "0"
    rf: str = "afrf"
    ri: int = 86400


class DkimOutcome(Protocol):
    """What DMARC needs of one DKIM verification (`dkim.DkimResult` fits)."""

    @property
    def domain(self) -> str: ...

    @property
    def result(self) -> str: ...  # "pass" counts; anything else does not


@dataclass(frozen=True, slots=True)
class DkimVerdict:
    """A plain `DkimOutcome`, for callers without a `dkim.DkimResult`."""

    domain: str
    result: str


@dataclass(frozen=True, slots=True)
class DmarcResult:
    """The evaluation of one message.

    `policy` is what to apply (after "pct" sampling: none when the message passes or no
    policy exists); `requested` is what the domain asked for (p or sp).  `domain` is the
    From domain, `policy_domain` where the record was found.
    """

    result: DmarcStatus
    policy: Policy = Policy.NONE
    requested: Policy = Policy.NONE
    domain: str = ""
    policy_domain: str = ""
    record: DmarcRecord | None = None
    spf_aligned: bool = False
    dkim_aligned: bool = False
    sampled: bool = True
    problem: str = ""
    others: tuple[DmarcResult, ...] = field(default=())  # the other From domains, if several


class _NoPolicy(Exception):
    pass


_URI = re.compile(r"[a-zA-Z][a-zA-Z0-9+.\-]*:\S+")  # RFC 3986 §3.1 scheme ":" …


def _uris(value: str) -> tuple[str, ...]:
    # RFC 7489 §6.4: dmarc-uri *(*WSP "," *WSP dmarc-uri), each with an optional "!size"
    return tuple(u for u in (part.strip() for part in value.split(",")) if _URI.fullmatch(u))


def parse_record(text: str) -> DmarcRecord | None:
    """Parse a DMARC record; None when it must be discarded (RFC 7489 §6.6.3 steps 2, 6)."""
    tags: dict[str, str] = {}
    for i, part in enumerate(text.split(";")):
        name, eq, value = part.partition("=")
        name, value = name.strip(" \t"), value.strip(" \t")
        if i == 0 and (name != "v" or value != "DMARC1"):
            return None  # RFC 7489 §6.3: v MUST be first and MUST be exactly "DMARC1"
        if not eq:
            if part.strip(" \t\r\n"):
                return None  # not tag=value: not a valid tag-list
            continue
        tags.setdefault(name.lower(), value)
    rua = _uris(tags.get("rua", ""))
    try:
        p = Policy(tags["p"].lower())
        sp = Policy(tags["sp"].lower()) if "sp" in tags else None
    except (KeyError, ValueError):
        if not rua:  # RFC 7489 §6.6.3 step 6: no valid p and no rua → discard
            return None
        p, sp = Policy.NONE, None  # … with a valid rua: act as if p=none
    pct = 100
    if tags.get("pct", "").isdigit():
        pct = min(int(tags["pct"]), 100)
    adkim = Alignment.STRICT if tags.get("adkim", "r").lower() == "s" else Alignment.RELAXED
    aspf = Alignment.STRICT if tags.get("aspf", "r").lower() == "s" else Alignment.RELAXED
    ri = int(tags["ri"]) if tags.get("ri", "").isdigit() else 86400
    return DmarcRecord(
        p=p,
        sp=sp,
        pct=pct,
        adkim=adkim,
        aspf=aspf,
        rua=rua,
        ruf=_uris(tags.get("ruf", "")),
        fo=tags.get("fo", "0"),
        rf=tags.get("rf", "afrf"),
        ri=ri,
    )


@cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label (the domain itself if it is one)."""
    domain = domain.lower().rstrip(".")
    return _psl().privatesuffix(domain) or domain


def aligned(identifier: str, author_domain: str, mode: Alignment) -> bool:
    """RFC 7489 §3.1.1, §3.1.2: strict → same name; relaxed → same Organizational Domain."""
    a, b = identifier.lower().rstrip("."), author_domain.lower().rstrip(".")
    if not a or not b:
        return False
    if mode is Alignment.STRICT:
        return a == b
    return a == b or organizational_domain(a) == organizational_domain(b)


async def _lookup(resolver: Resolver, name: str) -> list[DmarcRecord | None]:
    txts = await resolver.txt(f"_dmarc.{name}")
    out: list[DmarcRecord | None] = []
    for txt in txts:
        text = txt.decode("utf-8", "replace")
        if re.match(r"v[ \t]*=[ \t]*DMARC1[ \t]*(;|\Z)", text):  # §6.6.3 step 2
            out.append(parse_record(text))
    return out


async def find_policy(resolver: Resolver, domain: str) -> tuple[DmarcRecord, str, bool]:
    """RFC 7489 §6.6.3: (record, where it was found, whether it is the org-domain fallback).

    Raises `DnsTempError`, or `_NoPolicy` when DMARC does not apply.
    """
    records = await _lookup(resolver, domain)  # step 1
    where, fallback = domain, False
    if not records:  # step 3: the Organizational Domain
        org = organizational_domain(domain)
        if org != domain:
            records = await _lookup(resolver, org)
            where, fallback = org, True
    if len(records) != 1:  # step 5: several records or none → no DMARC
        raise _NoPolicy(f"{len(records)} DMARC records for {domain}")
    record = records[0]
    if record is None:  # step 6: invalid p and no rua
        raise _NoPolicy(f"invalid DMARC record for {domain}")
    return record, where, fallback


async def _evaluate_one(
    domain: str,
    spf_result: str,
    spf_domain: str,
    dkim: Sequence[DkimOutcome],
    resolver: Resolver,
    rand: Callable[[], float],
) -> DmarcResult:
    domain = domain.lower().rstrip(".")
    try:
        record, where, fallback = await find_policy(resolver, domain)
    except DnsTempError as exc:
        return DmarcResult(DmarcStatus.TEMPERROR, domain=domain, problem=str(exc))
    except _NoPolicy as exc:
        return DmarcResult(DmarcStatus.NONE, domain=domain, problem=str(exc))
    # RFC 7489 §6.3 "sp": the policy for subdomains, found at the Organizational Domain
    requested = record.sp if fallback and record.sp is not None else record.p
    # RFC 7489 §4.2: DMARC passes if SPF or DKIM passes *and* is aligned
    spf_ok = spf_result == "pass" and aligned(spf_domain, domain, record.aspf)
    dkim_ok = any(d.result == "pass" and aligned(d.domain, domain, record.adkim) for d in dkim)
    base = DmarcResult(
        DmarcStatus.PASS, Policy.NONE, requested, domain, where, record, spf_ok, dkim_ok
    )
    if spf_ok or dkim_ok:
        return base
    # RFC 7489 §6.6.4: pct sampling; not selected → the next less strict policy
    sampled = record.pct >= 100 or rand() * 100 < record.pct
    policy = requested if sampled else _NEXT_LESS_STRICT[requested]
    return replace(base, result=DmarcStatus.FAIL, policy=policy, sampled=sampled)


async def evaluate(
    from_domains: str | Sequence[str],
    spf_result: str,
    spf_domain: str,
    dkim: Sequence[DkimOutcome],
    resolver: Resolver,
    *,
    rand: Callable[[], float] = random.random,
) -> DmarcResult:
    """Evaluate DMARC for a message.

    `from_domains`: the domain(s) of the RFC5322.From address(es); `spf_result` and
    `spf_domain`: the SPF result ("pass", …) and the domain it was checked for (MAIL FROM
    domain, or HELO for a null sender — RFC 7489 §4.1 allows only MAIL FROM, so pass the
    HELO result only if MAIL FROM was null); `dkim`: every verified signature;
    `rand`: a source in [0, 1) for "pct" sampling.
    """
    domains = [from_domains] if isinstance(from_domains, str) else list(from_domains)
    unique = list(dict.fromkeys(d.lower().rstrip(".") for d in domains))
    if not unique or not all(unique):
        # RFC 7489 §6.6.1: no usable RFC5322.From; RFC 5322 §3.6 requires exactly one
        return DmarcResult(DmarcStatus.PERMERROR, problem="no RFC5322.From domain")
    results = [await _evaluate_one(d, spf_result, spf_domain, dkim, resolver, rand) for d in unique]
    if len(results) == 1:
        return results[0]
    # RFC 7489 §6.6.1: check each From domain and apply the strictest policy of those failing
    order = [DmarcStatus.TEMPERROR, DmarcStatus.FAIL, DmarcStatus.PERMERROR, DmarcStatus.PASS]
    worst = sorted(
        results,
        key=lambda r: (
            -_STRICTNESS[r.policy],
            order.index(r.result) if r.result in order else len(order),
        ),
    )[0]
    return replace(worst, others=tuple(r for r in results if r is not worst))
