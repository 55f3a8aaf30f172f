"""The DNS records a hosted domain needs, and a check of what DNS really says.

MX (RFC 5321 §5), SPF (RFC 7208), DKIM (RFC 6376 §3.6.1, RFC 8463), DMARC (RFC 7489 §6),
TLS reporting (RFC 8460), MTA-STS (RFC 8461; needs the HTTPS policy file, so it is printed
commented out until the web server lands) and client autoconfiguration SRV records
(RFC 6186, RFC 8314).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from postier.config import Config
from postier.mailauth.dkim import Algorithm, DkimKey, dns_name, dns_record
from postier.mailauth.dns import DnsPythonResolver
from postier.store.types import DkimKeyRecord

TTL_S = 3600
TXT_CHUNK = 255  # RFC 1035 §3.3.14: character-strings of at most 255 octets


@dataclass(frozen=True, slots=True)
class Record:
    name: str  # fully qualified, no trailing dot
    rtype: str  # "MX", "TXT", "SRV"
    value: str  # MX/SRV: zone text without the final dot; TXT: the joined text
    comment: str = ""
    optional: bool = False  # printed commented out, not checked

    def zone_line(self) -> str:
        if self.rtype == "TXT":
            chunks = [self.value[i:i + TXT_CHUNK] for i in range(0, len(self.value), TXT_CHUNK)]
            data = " ".join('"' + c.replace('"', '\\"') + '"' for c in chunks or [""])
        else:
            data = self.value + "."
        line = f"{self.name}. {TTL_S} IN {self.rtype} {data}"
        if self.optional:
            line = "; " + line
        return f"{line}  ; {self.comment}" if self.comment else line


def required_records(domain: str, hostname: str, keys: Sequence[DkimKeyRecord]) -> list[Record]:
    records = [
        Record(domain, "MX", f"10 {hostname}", "mail for the domain goes to this server"),
        Record(domain, "TXT", "v=spf1 mx -all", "SPF: only the MX hosts send for the domain"),
    ]
    for k in keys:
        key = DkimKey(k.selector, k.domain, cast(Algorithm, k.algorithm), k.private_key_pem.encode())
        records.append(Record(dns_name(key), "TXT", dns_record(key), f"DKIM {k.algorithm}"))
    records += [
        Record(f"_dmarc.{domain}", "TXT",
               f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}", "DMARC policy"),
        Record(f"_smtp._tls.{domain}", "TXT",
               f"v=TLSRPTv1; rua=mailto:postmaster@{domain}", "TLS reporting (RFC 8460)"),
        Record(f"_mta-sts.{domain}", "TXT", "v=STSv1; id=1",
               "publish once https://mta-sts.<domain>/.well-known/mta-sts.txt is served",
               optional=True),
        Record(f"_submissions._tcp.{domain}", "SRV", f"0 1 465 {hostname}", "clients: submission (TLS)"),
        Record(f"_submission._tcp.{domain}", "SRV", f"0 1 587 {hostname}", "clients: submission (STARTTLS)"),
        Record(f"_imaps._tcp.{domain}", "SRV", f"0 1 993 {hostname}", "clients: IMAP (TLS)"),
        Record(f"_pop3s._tcp.{domain}", "SRV", f"0 1 995 {hostname}", "clients: POP3 (TLS)"),
    ]
    return records


@dataclass(frozen=True, slots=True)
class CheckResult:
    record: Record
    found: tuple[str, ...]
    ok: bool


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().rstrip(".").lower())


def _txt_text(zone_text: str) -> str:
    """'"v=DKIM1; k=rsa; " "p=..."' → the joined string."""
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', zone_text)
    return "".join(p.replace('\\"', '"') for p in parts) if parts else zone_text


async def check_records(records: Sequence[Record], resolver: DnsPythonResolver) -> list[CheckResult]:
    results: list[CheckResult] = []
    for record in records:
        if record.optional:
            continue
        found = await resolver.records(record.name, record.rtype)
        if record.rtype == "TXT":
            texts = [_txt_text(f) for f in found]
            prefix = record.value.split(";")[0].split(" ")[0]  # v=spf1, v=DKIM1, ...
            texts = [t for t in texts if t.lower().startswith(prefix.lower())] or texts
            ok = any(_norm(t) == _norm(record.value) for t in texts)
            results.append(CheckResult(record, tuple(texts), ok))
        else:
            ok = any(_norm(f) == _norm(record.value) for f in found)
            results.append(CheckResult(record, tuple(found), ok))
    return results


def resolver_from_config(config: Config) -> DnsPythonResolver:
    servers: list[str] = []
    port = 53
    for entry in config.dns.nameservers:
        host, sep, port_text = entry.rpartition(":")
        if sep and port_text.isdigit() and (host.count(":") == 0 or host.startswith("[")):
            servers.append(host.strip("[]"))
            port = int(port_text)
        else:
            servers.append(entry.strip("[]"))
    return DnsPythonResolver(servers or None, port=port, timeout_s=float(config.dns.timeout_s))
