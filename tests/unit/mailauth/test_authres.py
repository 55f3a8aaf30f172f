"""Authentication-Results (RFC 8601): formatting, quoting, parsing back."""

from __future__ import annotations

from dataclasses import dataclass

from postier.mailauth.authres import (
    AuthResult,
    dkim_resinfo,
    dmarc_resinfo,
    format_value,
    header_field,
    parse_value,
    spf_resinfo,
)
from postier.mailauth.dmarc import DmarcRecord, DmarcResult, DmarcStatus, Policy
from postier.mailauth.spf import Spf, SpfResult


@dataclass(frozen=True)
class _Dkim:
    domain: str
    selector: str
    result: str
    header_b: str


def test_full_header_from_all_three_evaluators() -> None:
    spf = SpfResult(Spf.PASS, mechanism="ip4:192.0.2.0/24", domain="example.com")
    dkim = _Dkim("example.com", "sel1", "pass", "abc/+=defghijk")
    dmarc = DmarcResult(
        DmarcStatus.PASS,
        Policy.NONE,
        Policy.REJECT,
        "example.com",
        "example.com",
        DmarcRecord(Policy.REJECT),
    )
    results = [
        spf_resinfo(spf, mail_from="bob@example.com"),
        dkim_resinfo(dkim),
        dmarc_resinfo(dmarc),
    ]
    field = header_field("mx.postier.test", results)
    assert field == (
        b"Authentication-Results: mx.postier.test;\r\n"
        b"\tspf=pass (mechanism ip4:192.0.2.0/24) smtp.mailfrom=bob@example.com;\r\n"
        b'\tdkim=pass header.d=example.com header.s=sel1 header.b="abc/+=de";\r\n'
        b"\tdmarc=pass (p=reject dis=none) header.from=example.com\r\n"
    )
    authserv, parsed = parse_value(field.decode())
    assert authserv == "mx.postier.test"
    assert parsed == results
    assert parsed[1].properties[2] == ("header.b", "abc/+=de")


def test_no_results_is_none() -> None:
    assert format_value("mx.postier.test", []) == "mx.postier.test; none"
    assert parse_value("mx.postier.test; none") == ("mx.postier.test", [])


def test_values_that_are_not_tokens_are_quoted() -> None:
    r = AuthResult(
        "spf",
        "fail",
        reason='bad "thing"; really',
        properties=(("smtp.mailfrom", 'we ird"@example.com'),),
    )
    value = format_value("mx.postier.test", [r])
    assert 'reason="bad \\"thing\\"; really"' in value
    assert 'smtp.mailfrom="we ird\\"@example.com"' in value
    assert parse_value(value) == ("mx.postier.test", [r])


def test_comments_are_escaped_and_nested_comments_parse() -> None:
    r = AuthResult("spf", "permerror", comment="bad term (a:foo) \\ here")
    value = format_value("mx.postier.test", [r])
    assert "(bad term \\(a:foo\\) \\\\ here)" in value
    assert parse_value(value)[1] == [r]
    assert parse_value("mx (x (nested)); spf=pass (ok) smtp.mailfrom=example.net")[1] == [
        AuthResult("spf", "pass", properties=(("smtp.mailfrom", "example.net"),), comment="ok")
    ]


def test_helo_identity_and_version() -> None:
    r = spf_resinfo(SpfResult(Spf.NONE, domain="mail.example.org"), helo="mail.example.org")
    assert r.properties == (("smtp.helo", "mail.example.org"),)
    authserv, parsed = parse_value(
        "Authentication-Results: mx.example 1; spf=none smtp.helo=mail.example.org"
    )
    assert authserv == "mx.example" and parsed[0].properties == r.properties
