"""DMARC (RFC 7489) against the fake resolver: discovery, alignment, sp, pct, From cases."""

from __future__ import annotations

from postier.mailauth.dmarc import (
    Alignment,
    DkimVerdict,
    DmarcStatus,
    Policy,
    aligned,
    evaluate,
    organizational_domain,
    parse_record,
)
from postier.mailauth.dns import FakeResolver

PASS_EXAMPLE = [DkimVerdict("example.com", "pass")]


def _zone(zone: dict[str, str | list[str]]) -> FakeResolver:
    r = FakeResolver()
    for name, value in zone.items():
        for txt in [value] if isinstance(value, str) else value:
            r.add(name, "TXT", txt)
    return r


def test_parse_record_defaults_and_tags() -> None:
    rec = parse_record(
        "v=DMARC1; p=reject; sp=quarantine; pct=20; adkim=s; aspf=s; rua=mailto:d@example.com, mailto:e@example.com!10m; fo=1"
    )
    assert rec is not None
    assert (rec.p, rec.sp, rec.pct, rec.adkim, rec.aspf) == (
        Policy.REJECT,
        Policy.QUARANTINE,
        20,
        Alignment.STRICT,
        Alignment.STRICT,
    )
    assert rec.rua == ("mailto:d@example.com", "mailto:e@example.com!10m")
    default = parse_record("v=DMARC1;p=none")
    assert default is not None
    assert (default.pct, default.adkim, default.aspf, default.sp) == (100, "r", "r", None)


def test_parse_record_version_must_be_first_and_exact() -> None:
    assert parse_record("p=reject; v=DMARC1") is None
    assert parse_record("v=dmarc1; p=reject") is None  # RFC 7489 §6.4: MUST match precisely


def test_invalid_p_with_rua_acts_as_none_without_rua_is_discarded() -> None:
    rec = parse_record("v=DMARC1; p=bogus; rua=mailto:r@example.com")
    assert rec is not None and rec.p is Policy.NONE
    assert parse_record("v=DMARC1; p=bogus") is None
    assert parse_record("v=DMARC1") is None


def test_unknown_tags_are_ignored() -> None:
    rec = parse_record("v=DMARC1; p=quarantine; future=yes")
    assert rec is not None and rec.p is Policy.QUARANTINE


def test_organizational_domain_uses_public_suffix_list() -> None:
    assert organizational_domain("a.b.example.co.uk") == "example.co.uk"
    assert organizational_domain("Mail.Example.COM.") == "example.com"
    assert organizational_domain("co.uk") == "co.uk"


def test_alignment_relaxed_and_strict() -> None:
    assert aligned("mail.example.com", "example.com", Alignment.RELAXED)
    assert aligned("example.com", "news.example.com", Alignment.RELAXED)
    assert not aligned("mail.example.com", "example.com", Alignment.STRICT)
    assert aligned("EXAMPLE.com", "example.com.", Alignment.STRICT)
    assert not aligned("example.co.uk", "other.co.uk", Alignment.RELAXED)
    assert not aligned("", "example.com", Alignment.RELAXED)


async def test_pass_by_aligned_dkim() -> None:
    r = _zone({"_dmarc.example.com": "v=DMARC1; p=reject"})
    result = await evaluate("example.com", "fail", "other.net", PASS_EXAMPLE, r)
    assert result.result is DmarcStatus.PASS and result.policy is Policy.NONE
    assert result.dkim_aligned and not result.spf_aligned
    assert result.requested is Policy.REJECT


async def test_pass_by_aligned_spf_relaxed() -> None:
    r = _zone({"_dmarc.example.com": "v=DMARC1; p=reject"})
    result = await evaluate("example.com", "pass", "bounces.example.com", [], r)
    assert result.result is DmarcStatus.PASS and result.spf_aligned


async def test_strict_spf_alignment_fails_on_subdomain() -> None:
    r = _zone({"_dmarc.example.com": "v=DMARC1; p=reject; aspf=s"})
    result = await evaluate("example.com", "pass", "bounces.example.com", [], r)
    assert result.result is DmarcStatus.FAIL and result.policy is Policy.REJECT


async def test_strict_dkim_alignment() -> None:
    r = _zone({"_dmarc.example.com": "v=DMARC1; p=quarantine; adkim=s"})
    sub = [DkimVerdict("mail.example.com", "pass")]
    assert (await evaluate("example.com", "none", "", sub, r)).result is DmarcStatus.FAIL
    assert (await evaluate("example.com", "none", "", PASS_EXAMPLE, r)).result is DmarcStatus.PASS


async def test_failing_or_unaligned_signatures_do_not_count() -> None:
    r = _zone({"_dmarc.example.com": "v=DMARC1; p=reject"})
    dkim = [DkimVerdict("example.com", "fail"), DkimVerdict("evil.example", "pass")]
    result = await evaluate("example.com", "softfail", "example.com", dkim, r)
    assert result.result is DmarcStatus.FAIL and result.policy is Policy.REJECT


async def test_org_domain_fallback_uses_sp_for_subdomains() -> None:
    r = _zone({"_dmarc.example.com": "v=DMARC1; p=reject; sp=quarantine"})
    result = await evaluate("news.example.com", "none", "", [], r)
    assert result.result is DmarcStatus.FAIL
    assert result.policy is Policy.QUARANTINE and result.policy_domain == "example.com"
    assert ("_dmarc.news.example.com", "TXT") in r.queries


async def test_org_domain_fallback_without_sp_uses_p() -> None:
    r = _zone({"_dmarc.example.co.uk": "v=DMARC1; p=reject"})
    result = await evaluate("a.b.example.co.uk", "none", "", [], r)
    assert result.policy is Policy.REJECT and result.policy_domain == "example.co.uk"


async def test_subdomain_own_record_wins_over_sp() -> None:
    r = _zone(
        {
            "_dmarc.example.com": "v=DMARC1; p=reject; sp=none",
            "_dmarc.news.example.com": "v=DMARC1; p=quarantine",
        }
    )
    result = await evaluate("news.example.com", "none", "", [], r)
    assert result.policy is Policy.QUARANTINE and result.policy_domain == "news.example.com"


async def test_no_record_is_none() -> None:
    result = await evaluate("example.com", "pass", "example.com", [], FakeResolver())
    assert result.result is DmarcStatus.NONE and result.policy is Policy.NONE


async def test_multiple_records_is_none() -> None:
    r = _zone({"_dmarc.example.com": ["v=DMARC1; p=reject", "v=DMARC1; p=none"]})
    result = await evaluate("example.com", "fail", "example.com", [], r)
    assert result.result is DmarcStatus.NONE  # RFC 7489 §6.6.3 step 5


async def test_non_dmarc_txt_records_are_discarded() -> None:
    r = _zone({"_dmarc.example.com": ["v=spf1 -all", "v=DMARC1; p=reject"]})
    assert (await evaluate("example.com", "fail", "", [], r)).result is DmarcStatus.FAIL


async def test_pct_sampling_uses_next_less_strict_policy() -> None:
    r = _zone({"_dmarc.example.com": "v=DMARC1; p=reject; pct=30"})
    selected = await evaluate("example.com", "fail", "", [], r, rand=lambda: 0.29)
    assert selected.policy is Policy.REJECT and selected.sampled
    spared = await evaluate("example.com", "fail", "", [], r, rand=lambda: 0.30)
    assert spared.policy is Policy.QUARANTINE and not spared.sampled
    q = _zone({"_dmarc.example.com": "v=DMARC1; p=quarantine; pct=0"})
    assert (
        await evaluate("example.com", "fail", "", [], q, rand=lambda: 0.0)
    ).policy is Policy.NONE


async def test_dns_failure_is_temperror() -> None:
    r = FakeResolver({"_dmarc.example.com": [("SERVFAIL", None)]})
    result = await evaluate("example.com", "pass", "example.com", [], r)
    assert result.result is DmarcStatus.TEMPERROR


async def test_missing_from_is_permerror() -> None:
    assert (
        await evaluate([], "pass", "example.com", [], FakeResolver())
    ).result is DmarcStatus.PERMERROR
    assert (
        await evaluate("", "pass", "example.com", [], FakeResolver())
    ).result is DmarcStatus.PERMERROR


async def test_several_from_domains_strictest_failing_policy_applies() -> None:
    r = _zone(
        {
            "_dmarc.example.com": "v=DMARC1; p=none",
            "_dmarc.example.org": "v=DMARC1; p=reject",
        }
    )
    result = await evaluate(["example.com", "example.org"], "pass", "example.com", [], r)
    assert result.result is DmarcStatus.FAIL and result.policy is Policy.REJECT
    assert result.domain == "example.org"
    assert [o.result for o in result.others] == [DmarcStatus.PASS]


async def test_same_from_domain_twice_is_evaluated_once() -> None:
    r = _zone({"_dmarc.example.com": "v=DMARC1; p=reject"})
    result = await evaluate(["example.com", "EXAMPLE.com"], "pass", "example.com", [], r)
    assert result.result is DmarcStatus.PASS and result.others == ()
