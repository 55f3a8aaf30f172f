"""SPF: the Sender Policy Framework evaluator (RFC 7208), async, over `mailauth.dns.Resolver`.

Implements:

- §2.3, §2.4: the HELO and MAIL FROM identities (`check_helo`, `check_mail_from`);
- §4 `check_host()`: initial processing (§4.3), record lookup and selection (§4.4, §4.5),
  record syntax (§4.6, §12 ABNF) with every syntax error found before evaluation, the
  processing limits (§4.6.4: 10 DNS-querying terms, 2 void lookups, 10 MX and PTR names),
  the default result (§4.7);
- §5: the mechanisms all, include, a, mx, ptr, ip4, ip6 and exists, with dual CIDR lengths
  and IPv4-mapped IPv6 clients (§5, "ip" is compared as IPv4);
- §6: the modifiers redirect and exp, each at most once; unknown modifiers are ignored;
- §7: macro expansion with transformers, delimiters and URL escaping, the exp-only macros
  c, r and t, and the 253-octet truncation of expanded domain names (§7.3).

The evaluator is pure apart from the resolver: no clock except `%{t}` (injectable `now`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
import urllib.parse
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from postier.mailauth.dns import DnsTempError, IPAddress, Resolver

MAX_DNS_TERMS = 10  # RFC 7208 §4.6.4: include, a, mx, ptr, exists and redirect
MAX_VOID_LOOKUPS = 2  # RFC 7208 §4.6.4: NXDOMAIN or empty answers
MAX_MX_NAMES = 10  # RFC 7208 §4.6.4: more MX records is a permerror
MAX_PTR_NAMES = 10  # RFC 7208 §4.6.4: further PTR names are ignored
MAX_DOMAIN_CHARS = 253  # RFC 7208 §7.3: expanded names are truncated on the left
DEFAULT_TIMEOUT_S = 20.0  # RFC 7208 §4.6.4: "at least 20 seconds" for the whole evaluation


class Spf(StrEnum):
    """The results of check_host() (RFC 7208 §2.6)."""

    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


@dataclass(frozen=True, slots=True)
class SpfResult:
    """What check_host() decided and why.

    `mechanism` is the term that matched ("-all", "include:_spf.example.com"), "default"
    when none did (§4.7), "" for none; `explanation` is the expanded exp= text of a fail
    (§6.2), "" when there is none; `problem` says why for temperror/permerror/none.
    `domain` is the domain that was checked (for Authentication-Results).
    """

    result: Spf
    explanation: str = ""
    mechanism: str = ""
    problem: str = ""
    domain: str = ""


class _PermError(Exception):
    pass


class _TempError(Exception):
    pass


# ---- macros (§7) ---------------------------------------------------------------------------

_MACRO_LETTERS = frozenset("slodiphv")
_EXP_ONLY_LETTERS = frozenset("crt")  # RFC 7208 §7.2: only in an explanation string
_DELIMITERS = frozenset(".-+,/_=")


@dataclass(frozen=True, slots=True)
class _Macro:
    letter: str  # lower case
    escape: bool  # upper-case letter → URL-escape (§7.3)
    digits: int | None
    reverse: bool
    delimiters: str


_Token = str | _Macro


def _parse_macro_string(text: str, *, explain: bool) -> list[_Token]:
    """Tokens of a macro-string (§7.1 ABNF); `explain` allows SP and c, r, t (§6.2, §7.2)."""
    tokens: list[_Token] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "%":
            # macro-literal = %x21-24 / %x26-7E; SP only in an explain-string (§6.2)
            if not ("\x21" <= ch <= "\x7e" or (explain and ch == " ")):
                raise _PermError(f"invalid character {ch!r} in {text!r}")
            literal.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            raise _PermError(f"lone '%' in {text!r}")
        nxt = text[i + 1]
        if nxt in "%_-":
            literal.append({"%": "%", "_": " ", "-": "%20"}[nxt])
            i += 2
            continue
        if nxt != "{":
            raise _PermError(f"invalid macro '%{nxt}' in {text!r}")
        end = text.find("}", i + 2)
        if end < 0:
            raise _PermError(f"unterminated macro in {text!r}")
        m = re.fullmatch(r"([a-zA-Z])([0-9]*)([rR]?)([.\-+,/_=]*)", text[i + 2 : end])
        if m is None:
            raise _PermError(f"invalid macro {text[i : end + 1]!r}")
        letter = m.group(1).lower()
        if letter not in _MACRO_LETTERS and not (explain and letter in _EXP_ONLY_LETTERS):
            raise _PermError(f"invalid macro letter in {text[i : end + 1]!r}")
        digits = int(m.group(2)) if m.group(2) else None
        if digits == 0:  # RFC 7208 §7.3: "If a DIGIT is specified, the value MUST be nonzero"
            raise _PermError(f"zero digit transformer in {text[i : end + 1]!r}")
        if literal:
            tokens.append("".join(literal))
            literal = []
        tokens.append(
            _Macro(letter, m.group(1).isupper(), digits, bool(m.group(3)), m.group(4) or ".")
        )
        i = end + 1
    if literal:
        tokens.append("".join(literal))
    return tokens


_TOPLABEL_END = re.compile(
    r"\.(?:[a-z0-9]*[a-z][a-z0-9]*|[a-z0-9]+-[a-z0-9-]*[a-z0-9])\.?\Z", re.IGNORECASE
)


def _parse_domain_spec(text: str) -> list[_Token]:
    """A domain-spec: a macro-string ending in "." toplabel ["."] or a macro (§7.1)."""
    if not text:
        raise _PermError("empty domain-spec")
    tokens = _parse_macro_string(text, explain=False)
    last = tokens[-1]
    # RFC 7208 §7.1: domain-end = ( "." toplabel [ "." ] ) / macro-expand
    ends_in_macro = isinstance(last, _Macro) or text.endswith(("%%", "%_", "%-"))
    if isinstance(last, str) and not ends_in_macro and not _TOPLABEL_END.search(last):
        raise _PermError(f"invalid domain-spec {text!r}")
    return tokens


def _ip_labels(ip: IPAddress) -> str:
    if isinstance(ip, IPv4Address):
        return str(ip)
    # RFC 7208 §7.3: dot-format nibbles.  Upper-case hex, as the RFC 7208 test suite
    # (v-macro-ip6) and pyspf expect; the §7.4 example is lower-case: DNS does not care.
    return ".".join(ip.exploded.replace(":", "").upper())


# ---- records (§4.5, §4.6, §5, §6) ----------------------------------------------------------

_MODIFIER = re.compile(r"([a-zA-Z][a-zA-Z0-9\-_.]*)=(.*)\Z", re.DOTALL)
_MECHANISM = re.compile(r"([+\-~?]?)([a-zA-Z][a-zA-Z0-9\-_.]*)(.*)\Z", re.DOTALL)
_CIDR_SUFFIX = re.compile(r"(?:/([0-9]+))?(?://([0-9]+))?\Z")
_QUALIFIERS = {"+": Spf.PASS, "": Spf.PASS, "-": Spf.FAIL, "~": Spf.SOFTFAIL, "?": Spf.NEUTRAL}
_DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})


@dataclass(frozen=True, slots=True)
class _Mechanism:
    text: str
    qualifier: Spf
    name: str
    domain_spec: list[_Token] | None = None
    network: IPv4Network | IPv6Network | None = None
    cidr4: int = 32
    cidr6: int = 128


@dataclass(frozen=True, slots=True)
class _Record:
    mechanisms: list[_Mechanism]
    redirect: list[_Token] | None
    exp: list[_Token] | None


def _cidr(text: str | None, maximum: int) -> int:
    if text is None:
        return maximum
    # RFC 7208 §12: ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT), no leading zeros
    if (len(text) > 1 and text[0] == "0") or int(text) > maximum:
        raise _PermError(f"invalid CIDR length /{text}")
    return int(text)


def _parse_mechanism(term: str) -> _Mechanism:
    m = _MECHANISM.match(term)
    if m is None:
        raise _PermError(f"invalid term {term!r}")
    qualifier = _QUALIFIERS[m.group(1)]
    name = m.group(2).lower()  # RFC 7208 §4.6.1: mechanism names are case-insensitive
    rest = m.group(3)
    if name == "all":
        if rest:
            raise _PermError(f"invalid term {term!r}")
        return _Mechanism(term, qualifier, name)
    if name in ("ip4", "ip6"):
        if not rest.startswith(":"):
            raise _PermError(f"{name} needs an address: {term!r}")
        addr, _, length = rest[1:].partition("/")
        try:
            if "%" in addr:  # no IPv6 zone ids in ip6-network
                raise ValueError(addr)
            if name == "ip4":
                ip4 = IPv4Address(addr)
                n4 = _cidr(length if "/" in rest else None, 32)
                return _Mechanism(
                    term, qualifier, name, network=IPv4Network((ip4, n4), strict=False)
                )
            ip6 = IPv6Address(addr)
            n6 = _cidr(length if "/" in rest else None, 128)
            return _Mechanism(term, qualifier, name, network=IPv6Network((ip6, n6), strict=False))
        except ValueError as exc:
            raise _PermError(f"invalid {name} network {term!r}") from exc
    if name in ("a", "mx"):
        cidr = _CIDR_SUFFIX.search(rest)
        assert cidr is not None
        spec_text = rest[: cidr.start()]
        cidr4 = _cidr(cidr.group(1), 32)
        cidr6 = _cidr(cidr.group(2), 128)
        if spec_text and not spec_text.startswith(":"):
            raise _PermError(f"invalid term {term!r}")
        spec = _parse_domain_spec(spec_text[1:]) if spec_text else None
        return _Mechanism(term, qualifier, name, spec, cidr4=cidr4, cidr6=cidr6)
    if name in ("include", "exists", "ptr"):
        if not rest:
            if name == "ptr":
                return _Mechanism(term, qualifier, name)
            raise _PermError(f"{name} needs a domain: {term!r}")
        if not rest.startswith(":"):
            raise _PermError(f"invalid term {term!r}")
        return _Mechanism(term, qualifier, name, _parse_domain_spec(rest[1:]))
    raise _PermError(f"unknown mechanism {term!r}")  # RFC 7208 §5: unknown → permerror


def parse_record(text: str) -> _Record:
    """Parse one SPF record; a syntax error anywhere is a permerror (RFC 7208 §4.6)."""
    terms = text.split(" ")  # RFC 7208 §4.6.1: terms are separated by 1*SP, nothing else
    if terms[0].lower() != "v=spf1":
        raise _PermError("not an SPF record")
    mechanisms: list[_Mechanism] = []
    redirect: list[_Token] | None = None
    exp: list[_Token] | None = None
    for term in terms[1:]:
        if not term:
            continue
        mod = _MODIFIER.match(term)
        if mod is None:
            mechanisms.append(_parse_mechanism(term))
            continue
        name, value = mod.group(1).lower(), mod.group(2)
        if name == "redirect":
            if redirect is not None:  # RFC 7208 §6: MUST NOT appear more than once
                raise _PermError("two redirect modifiers")
            redirect = _parse_domain_spec(value)
        elif name == "exp":
            if exp is not None:  # RFC 7208 §6: MUST NOT appear more than once
                raise _PermError("two exp modifiers")
            exp = _parse_domain_spec(value)
        else:
            _parse_macro_string(value, explain=False)  # RFC 7208 §6: unknown ones are ignored
    return _Record(mechanisms, redirect, exp)


def _is_spf_record(txt: bytes) -> bool:
    # RFC 7208 §4.5: "v=spf1" (case-insensitively) followed by SP or the end of the record
    return txt[:6].lower() == b"v=spf1" and (len(txt) == 6 or txt[6:7] == b" ")


def _valid_domain(domain: str) -> bool:
    """RFC 7208 §4.3: well-formed labels (1..63 octets) and at least two of them."""
    if domain.endswith("."):
        domain = domain[:-1]
    labels = domain.split(".")
    return (
        len(labels) >= 2
        and len(domain) <= MAX_DOMAIN_CHARS
        and all(0 < len(label) <= 63 for label in labels)
        and not domain.startswith("[")
    )


# ---- evaluation ----------------------------------------------------------------------------


@dataclass
class _Context:
    ip: IPAddress
    sender: str
    local_part: str
    sender_domain: str
    helo: str
    resolver: Resolver
    receiver: str
    now: float | None
    dns_terms: int = 0
    void_lookups: int = 0
    _validated: list[str] | None = None

    def count_term(self) -> None:
        self.dns_terms += 1
        if self.dns_terms > MAX_DNS_TERMS:  # RFC 7208 §4.6.4: MUST permerror past 10
            raise _PermError(f"more than {MAX_DNS_TERMS} DNS-querying terms")

    def count_void(self) -> None:
        self.void_lookups += 1
        if self.void_lookups > MAX_VOID_LOOKUPS:  # RFC 7208 §4.6.4
            raise _PermError(f"more than {MAX_VOID_LOOKUPS} void lookups")

    async def addresses(self, name: str) -> list[IPAddress]:
        """The addresses of `name` in the client's family (§5.3); DNS failure → temperror."""
        try:
            if isinstance(self.ip, IPv4Address):
                return list(await self.resolver.a(name))
            return list(await self.resolver.aaaa(name))
        except DnsTempError as exc:
            raise _TempError(str(exc)) from exc

    async def validated_names(self) -> list[str]:
        """RFC 7208 §5.5: PTR names of the client whose addresses include it."""
        if self._validated is not None:
            return self._validated
        try:
            names = await self.resolver.ptr(self.ip)
        except DnsTempError:
            return []  # RFC 7208 §5.5: a DNS error on the PTR lookup → no match
        validated: list[str] = []
        for name in names[:MAX_PTR_NAMES]:  # RFC 7208 §4.6.4: ignore names past 10
            try:
                if self.ip in await self.addresses(name):
                    validated.append(name)
            except _TempError:
                continue  # RFC 7208 §5.5: an A/AAAA error skips that name
        self._validated = validated
        return validated

    async def expand(self, tokens: list[_Token], domain: str, *, explain: bool = False) -> str:
        out: list[str] = []
        for token in tokens:
            if isinstance(token, str):
                out.append(token)
                continue
            value = await self._macro_value(token.letter, domain)
            parts = re.split("[" + re.escape(token.delimiters) + "]", value)
            if token.reverse:
                parts.reverse()
            if token.digits is not None:
                parts = parts[-token.digits :]
            value = ".".join(parts)
            if token.escape:  # RFC 7208 §7.3: upper-case macro letters are URL-escaped
                value = urllib.parse.quote(value, safe="-._~")
            out.append(value)
        result = "".join(out)
        if not explain:
            result = _truncate(result)
        return result

    async def _macro_value(self, letter: str, domain: str) -> str:
        match letter:
            case "s":
                return self.sender
            case "l":
                return self.local_part
            case "o":
                return self.sender_domain
            case "d":
                return domain
            case "i":
                return _ip_labels(self.ip)
            case "c":
                return str(self.ip)
            case "v":
                return "in-addr" if isinstance(self.ip, IPv4Address) else "ip6"
            case "h":
                return self.helo
            case "r":
                return self.receiver
            case "t":
                return str(int(self.now if self.now is not None else time.time()))
            case "p":
                names = await self.validated_names()
                d = domain.lower().rstrip(".")
                for name in names:
                    if name.lower() == d:
                        return name
                for name in names:
                    if name.lower().endswith("." + d):
                        return name
                return names[0] if names else "unknown"
        raise AssertionError(letter)


def _truncate(name: str) -> str:
    """RFC 7208 §7.3: drop labels on the left until the name fits in 253 characters."""
    while len(name.rstrip(".")) > MAX_DOMAIN_CHARS and "." in name:
        name = name.split(".", 1)[1]
    return name


async def _find_record(ctx: _Context, domain: str) -> str | None:
    """RFC 7208 §4.4, §4.5: the one SPF record of `domain`, None when there is none."""
    try:
        txts = await ctx.resolver.txt(domain)
    except DnsTempError as exc:
        raise _TempError(str(exc)) from exc  # RFC 7208 §4.4: DNS failure → temperror
    records = [txt for txt in txts if _is_spf_record(txt)]
    if len(records) > 1:  # RFC 7208 §4.5: more than one record → permerror
        raise _PermError(f"{len(records)} SPF records at {domain}")
    if not records:
        return None
    try:
        return records[0].decode("ascii")  # RFC 7208 §3.1: records are 7-bit ASCII
    except UnicodeDecodeError as exc:
        raise _PermError(f"non-ASCII SPF record at {domain}") from exc


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: Spf
    mechanism: str = ""
    explanation: str = ""


async def _evaluate(ctx: _Context, domain: str) -> _Outcome:
    """check_host() on `domain`; raises _PermError/_TempError. NONE when no record."""
    text = await _find_record(ctx, domain)
    if text is None:
        return _Outcome(Spf.NONE)
    record = parse_record(text)  # RFC 7208 §4.6: syntax errors before any evaluation
    for mech in record.mechanisms:
        if await _matches(ctx, mech, domain):
            explanation = ""
            if mech.qualifier is Spf.FAIL and record.exp is not None:
                explanation = await _explain(ctx, record.exp, domain)
            return _Outcome(mech.qualifier, mech.text, explanation)
    if record.redirect is not None:
        ctx.count_term()
        target = await ctx.expand(record.redirect, domain)
        outcome = await _evaluate(ctx, target) if _valid_domain(target) else _Outcome(Spf.NONE)
        if outcome.result is Spf.NONE:  # RFC 7208 §6.1: no record at the target → permerror
            raise _PermError(f"redirect to {target}: no SPF record")
        return outcome
    return _Outcome(Spf.NEUTRAL, "default")  # RFC 7208 §4.7


async def _matches(ctx: _Context, mech: _Mechanism, domain: str) -> bool:
    ip = ctx.ip
    name = mech.name
    if name == "all":
        return True
    if name in ("ip4", "ip6"):
        return (
            mech.network is not None and ip.version == mech.network.version and ip in mech.network
        )
    ctx.count_term()  # RFC 7208 §4.6.4: counted before the query
    target = await ctx.expand(mech.domain_spec, domain) if mech.domain_spec else domain
    if name == "include":
        if not _valid_domain(target):
            raise _PermError(f"include of invalid domain {target!r}")
        outcome = await _evaluate(ctx, target)
        match outcome.result:  # RFC 7208 §5.2 table
            case Spf.PASS:
                return True
            case Spf.FAIL | Spf.SOFTFAIL | Spf.NEUTRAL:
                return False
            case Spf.TEMPERROR:
                raise _TempError(f"include:{target}")
            case _:
                raise _PermError(f"include:{target} gave {outcome.result}")
    prefix = mech.cidr4 if isinstance(ip, IPv4Address) else mech.cidr6
    if name == "a":
        addresses = await ctx.addresses(target)
        if not addresses:
            ctx.count_void()
        return any(_in_prefix(ip, addr, prefix) for addr in addresses)
    if name == "mx":
        try:
            mxs = await ctx.resolver.mx(target)
        except DnsTempError as exc:
            raise _TempError(str(exc)) from exc
        if not mxs:
            ctx.count_void()
        if len(mxs) > MAX_MX_NAMES:  # RFC 7208 §4.6.4: MUST permerror past 10 MX names
            raise _PermError(f"more than {MAX_MX_NAMES} MX records at {target}")
        for mx in sorted(mxs, key=lambda r: r.preference):
            if not mx.exchange:
                continue  # null MX (RFC 7505)
            if any(_in_prefix(ip, addr, prefix) for addr in await ctx.addresses(mx.exchange)):
                return True
        return False
    if name == "ptr":
        names = await ctx.validated_names()
        if not names:
            ctx.count_void()
        t = target.lower().rstrip(".")
        return any(n.lower() == t or n.lower().endswith("." + t) for n in names)
    if name == "exists":
        try:
            found = await ctx.resolver.a(target)  # RFC 7208 §5.7: always an A query
        except DnsTempError as exc:
            raise _TempError(str(exc)) from exc
        if not found:
            ctx.count_void()
        return bool(found)
    raise AssertionError(name)


def _in_prefix(ip: IPAddress, addr: IPAddress, prefix: int) -> bool:
    if ip.version != addr.version:
        return False
    return ip in ipaddress.ip_network((addr, prefix), strict=False)


async def _explain(ctx: _Context, exp: list[_Token], domain: str) -> str:
    """RFC 7208 §6.2: any failure to build the explanation gives no explanation."""
    try:
        target = await ctx.expand(exp, domain)
        if not _valid_domain(target):
            return ""
        txts = await ctx.resolver.txt(target)
        if len(txts) != 1:
            return ""
        text = txts[0].decode("ascii")
        return await ctx.expand(_parse_macro_string(text, explain=True), domain, explain=True)
    except (_PermError, _TempError, DnsTempError, UnicodeDecodeError):
        return ""


async def check_host(
    ip: IPAddress | str,
    domain: str,
    sender: str,
    helo: str,
    resolver: Resolver,
    *,
    receiver: str = "unknown",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    now: float | None = None,
) -> SpfResult:
    """RFC 7208 §4: is `ip` allowed to send mail for `domain`?

    `sender` is the MAIL FROM address (or "postmaster@" + HELO), `helo` the HELO/EHLO
    domain, `receiver` our host name (the %{r} macro), `now` the %{t} timestamp.
    """
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # RFC 7208 §5: an IPv4-mapped client is an IPv4 client
    local, at, sender_domain = sender.rpartition("@")
    if not at:
        local, sender_domain = "postmaster", sender
    if not local:
        local = "postmaster"  # RFC 7208 §4.3: no local-part → "postmaster"
        sender = f"postmaster@{sender_domain}"
    domain = domain.rstrip(".") if domain != "." else domain
    if not _valid_domain(domain):  # RFC 7208 §4.3: malformed domain → none
        return SpfResult(Spf.NONE, problem=f"invalid domain {domain!r}", domain=domain)
    ctx = _Context(addr, sender, local, sender_domain, helo, resolver, receiver, now)
    try:
        async with asyncio.timeout(timeout_s):
            outcome = await _evaluate(ctx, domain)
    except _PermError as exc:
        return SpfResult(Spf.PERMERROR, problem=str(exc), domain=domain)
    except (_TempError, TimeoutError) as exc:
        return SpfResult(Spf.TEMPERROR, problem=str(exc) or "timeout", domain=domain)
    if outcome.result is Spf.NONE:
        return SpfResult(Spf.NONE, problem=f"no SPF record at {domain}", domain=domain)
    return SpfResult(outcome.result, outcome.explanation, outcome.mechanism, domain=domain)


async def check_helo(
    ip: IPAddress | str, helo: str, resolver: Resolver, *, receiver: str = "unknown"
) -> SpfResult:
    """RFC 7208 §2.3: check the HELO identity, with "postmaster@<helo>" as sender."""
    return await check_host(ip, helo, f"postmaster@{helo}", helo, resolver, receiver=receiver)


async def check_mail_from(
    ip: IPAddress | str, mail_from: str, helo: str, resolver: Resolver, *, receiver: str = "unknown"
) -> SpfResult:
    """RFC 7208 §2.4: check MAIL FROM; a null reverse-path checks "postmaster@<helo>"."""
    if not mail_from:
        return await check_helo(ip, helo, resolver, receiver=receiver)
    domain = mail_from.rpartition("@")[2]
    return await check_host(ip, domain, mail_from, helo, resolver, receiver=receiver)
