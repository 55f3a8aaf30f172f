"""The Authentication-Results header field (RFC 8601): formatting, and parsing for tests.

Implements:

- §2.2 the field syntax: authserv-id, one resinfo per method ("method=result"), an
  optional reason, and "ptype.property=value" properties, or "none" when there are none;
- §2.7.1 (DKIM: header.d, header.s, header.b — the first 8 characters, RFC 6008 §2),
  §2.7.2 (SPF: smtp.mailfrom or smtp.helo), RFC 7489 §11.2 (DMARC: header.from),
  RFC 8617 §10.1 (ARC: arc=pass|fail|none, header.oldest-pass is not reported);
- quoting: a value that is not an RFC 2045 token (nor, for properties, a domain name or
  local-part@domain) is a quoted-string (RFC 5322 §3.2.4); comments are RFC 5322 §3.2.2
  comments with "(", ")" and "\\" escaped.

Policy decisions are not made here: this module only renders what the evaluators decided.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from postier.mailauth.arc import ArcResult
from postier.mailauth.dmarc import DmarcResult
from postier.mailauth.spf import SpfResult

FIELD_NAME = "Authentication-Results"
DKIM_HEADER_B_CHARS = 8  # RFC 6008 §2: enough of b= to tell signatures apart


@dataclass(frozen=True, slots=True)
class AuthResult:
    """One resinfo: "method=result (comment) reason=… ptype.property=value …"."""

    method: str
    result: str
    reason: str = ""
    properties: tuple[tuple[str, str], ...] = ()  # (("smtp.mailfrom", "example.com"), …)
    comment: str = ""


class DkimReport(Protocol):
    """What the DKIM resinfo needs (`dkim.DkimResult` fits)."""

    @property
    def domain(self) -> str: ...

    @property
    def selector(self) -> str: ...

    @property
    def result(self) -> str: ...

    @property
    def header_b(self) -> str: ...


# RFC 2045 §5.1: token := 1*<any CHAR except SPACE, CTLs, or tspecials>
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+"
# RFC 8601 §2.2: pvalue = value / [ [ local-part ] "@" ] domain-name
_PVALUE_ADDR = re.compile(
    rf"(?:(?:{_ATOM}(?:\.{_ATOM})*)?@)?[A-Za-z0-9\-_]+(?:\.[A-Za-z0-9\-_]+)*\.?\Z"
)


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _value(value: str) -> str:
    return value if _TOKEN.match(value) else _quote(value)


def _pvalue(value: str) -> str:
    return value if _TOKEN.match(value) or _PVALUE_ADDR.match(value) else _quote(value)


def _comment(text: str) -> str:
    return "(" + re.sub(r"([()\\])", r"\\\1", text) + ")"


def _resinfo(result: AuthResult) -> str:
    parts = [f"{result.method}={result.result}"]
    if result.comment:
        parts.append(_comment(result.comment))
    if result.reason:
        parts.append(f"reason={_value(result.reason)}")
    parts.extend(f"{name}={_pvalue(value)}" for name, value in result.properties)
    return " ".join(parts)


def format_value(authserv_id: str, results: Sequence[AuthResult]) -> str:
    """The field body, folded with CRLF TAB before each resinfo (RFC 5322 §2.2.3)."""
    if not results:
        return f"{_value(authserv_id)}; none"  # RFC 8601 §2.2: no-result
    return _value(authserv_id) + "".join(f";\r\n\t{_resinfo(r)}" for r in results)


def header_field(authserv_id: str, results: Sequence[AuthResult]) -> bytes:
    """The whole header field, CRLF-terminated, ready to prepend to a message (§5)."""
    return f"{FIELD_NAME}: {format_value(authserv_id, results)}\r\n".encode()


def spf_resinfo(result: SpfResult, *, mail_from: str = "", helo: str = "") -> AuthResult:
    """RFC 8601 §2.7.2: spf=… smtp.mailfrom=… (or smtp.helo=… for a HELO check)."""
    props: list[tuple[str, str]] = []
    if mail_from:
        props.append(("smtp.mailfrom", mail_from))
    elif helo:
        props.append(("smtp.helo", helo))
    elif result.domain:
        props.append(("smtp.mailfrom", result.domain))
    comment = result.problem or (f"mechanism {result.mechanism}" if result.mechanism else "")
    return AuthResult("spf", str(result.result), properties=tuple(props), comment=comment)


def dkim_resinfo(result: DkimReport) -> AuthResult:
    """RFC 8601 §2.7.1: dkim=… header.d=… header.s=… header.b=<first 8 chars> (RFC 6008)."""
    props: list[tuple[str, str]] = []
    if result.domain:
        props.append(("header.d", result.domain))
    if result.selector:
        props.append(("header.s", result.selector))
    if result.header_b:
        props.append(("header.b", result.header_b[:DKIM_HEADER_B_CHARS]))
    return AuthResult("dkim", str(result.result), properties=tuple(props))


def dmarc_resinfo(result: DmarcResult) -> AuthResult:
    """RFC 7489 §11.2: dmarc=… (p=… dis=…) header.from=…."""
    comment = ""
    if result.record is not None:
        comment = f"p={result.requested} dis={result.policy}"
    props = (("header.from", result.domain),) if result.domain else ()
    return AuthResult("dmarc", str(result.result), properties=props, comment=comment)


def arc_resinfo(result: ArcResult) -> AuthResult:
    """RFC 8617: arc=pass (i=2 d=sealer) / arc=fail reason="…" / arc=none."""
    comment = ""
    if result.instances:
        comment = f"i={result.instances}" + (f" d={result.sealer}" if result.sealer else "")
    reason = result.reason if str(result.result) != "pass" else ""
    return AuthResult("arc", str(result.result), reason=reason, comment=comment)


# ---- parsing (for tests and for reading our own headers back) --------------------------------

_SPECIALS = frozenset(';=()"')


def _tokens(text: str) -> list[tuple[str, str]]:
    """("word"|"qstring"|"comment"|";"|"=", text) tokens; CFWS is dropped except comments."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
        elif ch in ";=":
            out.append((ch, ch))
            i += 1
        elif ch == "(":
            depth, buf, i = 1, [], i + 1
            while i < n and depth:
                c = text[i]
                if c == "\\" and i + 1 < n:
                    buf.append(text[i + 1])
                    i += 2
                    continue
                depth += {"(": 1, ")": -1}.get(c, 0)
                if depth:
                    buf.append(c)
                i += 1
            out.append(("comment", "".join(buf)))
        elif ch == '"':
            buf, i = [], i + 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            i += 1
            out.append(("qstring", "".join(buf)))
        else:
            j = i
            while j < n and text[j] not in _SPECIALS and text[j] not in " \t\r\n":
                j += 1
            out.append(("word", text[i:j]))
            i = j
    return out


def parse_value(value: str) -> tuple[str, list[AuthResult]]:
    """Parse a field body (or a whole field) into (authserv-id, results). ValueError if bad."""
    if value[: len(FIELD_NAME) + 1].lower() == FIELD_NAME.lower() + ":":
        value = value[len(FIELD_NAME) + 1 :]
    tokens = _tokens(value)
    segments: list[list[tuple[str, str]]] = [[]]
    for token in tokens:
        if token[0] == ";":
            segments.append([])
        else:
            segments[-1].append(token)
    head = [t for t in segments[0] if t[0] != "comment"]
    if not head or head[0][0] not in ("word", "qstring"):
        raise ValueError("missing authserv-id")
    authserv_id = head[0][1]
    results: list[AuthResult] = []
    for segment in segments[1:]:
        words = [t for t in segment if t[0] != "comment"]
        comments = [t[1] for t in segment if t[0] == "comment"]
        if len(words) == 1 and words[0] == ("word", "none") and len(segments) == 2:
            break  # RFC 8601 §2.2: no-result
        if len(words) < 3 or words[1][0] != "=":
            raise ValueError(f"bad resinfo {segment!r}")
        method, result = words[0][1], words[2][1]
        reason = ""
        props: list[tuple[str, str]] = []
        rest = words[3:]
        while rest:
            if len(rest) < 3 or rest[1][0] != "=":
                raise ValueError(f"bad property in {segment!r}")
            name, val = rest[0][1], rest[2][1]
            if name.lower() == "reason" and not props:
                reason = val
            else:
                props.append((name, val))
            rest = rest[3:]
        results.append(AuthResult(method, result, reason, tuple(props), " ".join(comments)))
    return authserv_id, results
