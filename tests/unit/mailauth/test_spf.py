"""SPF (RFC 7208) unit tests with the fake resolver: one per mechanism, macro and limit."""

from __future__ import annotations

from postier.mailauth.dns import FakeResolver, FakeValue
from postier.mailauth.spf import Spf, check_helo, check_host, check_mail_from

Zone = dict[str, list[tuple[str, FakeValue]]]


async def _check(zone: Zone, ip: str = "192.0.2.1", domain: str = "example.com", **kw: str) -> Spf:
    sender = kw.get("sender", f"user@{domain}")
    result = await check_host(
        ip, domain, sender, kw.get("helo", "mail.example.net"), FakeResolver(zone)
    )
    return result.result


def _spf(record: str, **extra: list[tuple[str, FakeValue]]) -> Zone:
    zone: Zone = {"example.com": [("TXT", record)]}
    for name, records in extra.items():
        zone[name.replace("_", ".")] = records
    return zone


async def test_all_with_each_qualifier() -> None:
    for qualifier, expected in [
        ("", Spf.PASS),
        ("+", Spf.PASS),
        ("-", Spf.FAIL),
        ("~", Spf.SOFTFAIL),
        ("?", Spf.NEUTRAL),
    ]:
        assert await _check(_spf(f"v=spf1 {qualifier}all")) is expected


async def test_no_match_is_neutral_and_no_record_is_none() -> None:
    result = await check_host(
        "192.0.2.1", "example.com", "a@example.com", "h", FakeResolver(_spf("v=spf1 ip4:10.0.0.1"))
    )
    assert (result.result, result.mechanism) == (Spf.NEUTRAL, "default")
    assert await _check({}) is Spf.NONE


async def test_ip4_ip6_cidr() -> None:
    zone = _spf("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all")
    assert await _check(zone, "192.0.2.200") is Spf.PASS
    assert await _check(zone, "192.0.3.1") is Spf.FAIL
    assert await _check(zone, "2001:db8:ffff::1") is Spf.PASS
    assert await _check(zone, "2001:db9::1") is Spf.FAIL


async def test_ipv4_mapped_ipv6_client_is_ipv4() -> None:
    assert await _check(_spf("v=spf1 ip4:192.0.2.1 -all"), "::ffff:192.0.2.1") is Spf.PASS


async def test_a_with_domain_and_dual_cidr() -> None:
    hosts: list[tuple[str, FakeValue]] = [("A", "198.51.100.7"), ("AAAA", "2001:db8:1::7")]
    zone = _spf("v=spf1 a:hosts.example.com/24//48 -all", hosts_example_com=hosts)
    assert await _check(zone, "198.51.100.99") is Spf.PASS
    assert await _check(zone, "2001:db8:1:ffff::1") is Spf.PASS
    assert await _check(zone, "2001:db8:2::1") is Spf.FAIL
    own = {"example.com": [("TXT", "v=spf1 a -all"), ("A", "192.0.2.1")]}
    assert await _check(own, "192.0.2.1") is Spf.PASS  # type: ignore[arg-type]


async def test_mx_and_mx_limit() -> None:
    zone = _spf("v=spf1 mx -all", mx1_example_com=[("A", "192.0.2.9")])
    zone["example.com"].append(("MX", (10, "mx1.example.com")))
    assert await _check(zone, "192.0.2.9") is Spf.PASS
    assert await _check(zone, "192.0.2.10") is Spf.FAIL
    many = _spf("v=spf1 mx -all")
    many["example.com"] += [("MX", (i, f"mx{i}.example.com")) for i in range(11)]
    assert await _check(many, "192.0.2.9") is Spf.PERMERROR  # RFC 7208 §4.6.4


async def test_ptr_validated_name() -> None:
    zone = _spf("v=spf1 ptr -all")
    zone["1.2.0.192.in-addr.arpa"] = [("PTR", "mail.example.com")]
    zone["mail.example.com"] = [("A", "192.0.2.1")]
    assert await _check(zone, "192.0.2.1") is Spf.PASS
    zone["mail.example.com"] = [("A", "192.0.2.200")]  # forward does not confirm the PTR
    assert await _check(zone, "192.0.2.1") is Spf.FAIL


async def test_exists_and_include() -> None:
    zone = _spf("v=spf1 include:_spf.example.net exists:%{i}.allow.example.com -all")
    zone["192.0.2.5.allow.example.com"] = [("A", "127.0.0.2")]
    zone["_spf.example.net"] = [("TXT", "v=spf1 ip4:198.51.100.0/24 -all")]
    assert await _check(zone, "198.51.100.1") is Spf.PASS
    assert await _check(zone, "192.0.2.5") is Spf.PASS
    assert await _check(zone, "192.0.2.6") is Spf.FAIL


async def test_include_of_domain_without_record_is_permerror() -> None:
    assert await _check(_spf("v=spf1 include:nothing.example.org -all")) is Spf.PERMERROR


async def test_redirect_and_exp() -> None:
    zone: Zone = {
        "example.com": [("TXT", "v=spf1 redirect=_spf.example.org")],
        "_spf.example.org": [("TXT", "v=spf1 -all exp=why.example.org")],
        "why.example.org": [("TXT", "%{i} may not send for %{d} (%{s}), says %{r}")],
    }
    result = await check_host(
        "192.0.2.1",
        "example.com",
        "bob@example.com",
        "h",
        FakeResolver(zone),
        receiver="mx.postier.test",
    )
    assert result.result is Spf.FAIL
    assert (
        result.explanation
        == "192.0.2.1 may not send for _spf.example.org (bob@example.com), says mx.postier.test"
    )


async def test_two_redirects_or_exps_are_permerror() -> None:
    assert (
        await _check(_spf("v=spf1 redirect=a.example.org redirect=b.example.org")) is Spf.PERMERROR
    )
    assert await _check(_spf("v=spf1 -all exp=a.example.org exp=b.example.org")) is Spf.PERMERROR


async def test_macro_transformers_and_delimiters() -> None:
    # l = c-b-a: split on "-", reversed (a, b, c), rightmost two → "b.c" (RFC 7208 §7.3)
    target = "b.c.com.1.2.0.192.in-addr.example.com.check.example.com"
    zone = _spf("v=spf1 exists:%{l2r-}.%{d1}.%{ir}.%{v}.%{o}.check.example.com -all")
    zone[target] = [("A", "127.0.0.2")]
    result = await check_host(
        "192.0.2.1", "example.com", "c-b-a@example.com", "h", FakeResolver(zone)
    )
    assert result.result is Spf.PASS


async def test_macro_url_escape_and_literals() -> None:
    zone = _spf("v=spf1 -all exp=e.example.com")
    zone["e.example.com"] = [("TXT", "%{L} %% %_%-x %{h}")]
    result = await check_host(
        "192.0.2.1", "example.com", "a b&c@example.com", "helo.example", FakeResolver(zone)
    )
    assert result.explanation == "a%20b%26c %  %20x helo.example"


async def test_macro_ipv6_nibbles_and_c() -> None:
    zone = _spf("v=spf1 -all exp=e.example.com")
    zone["e.example.com"] = [("TXT", "%{c} %{i}")]
    result = await check_host(
        "2001:db8::cb01", "example.com", "a@example.com", "h", FakeResolver(zone)
    )
    assert result.explanation == "2001:db8::cb01 2.0.0.1.0.D.B.8." + "0." * 20 + "C.B.0.1"


async def test_macro_syntax_errors_are_permerror() -> None:
    for bad in [
        "exists:%{x}.example.com",
        "exists:%{l0}.example.com",
        "exists:%{c}.example.com",
        "a:%z.example.com",
        "a:50%.example.com",
    ]:
        assert await _check(_spf(f"v=spf1 {bad} -all")) is Spf.PERMERROR, bad


async def test_macro_expanded_name_truncated_to_253() -> None:
    long_local = ".".join(["abcdefghi"] * 30)  # 299 characters
    zone = _spf("v=spf1 exists:%{l}.example.com -all")
    resolver = FakeResolver(zone)
    await check_host("192.0.2.1", "example.com", f"{long_local}@example.com", "h", resolver)
    queried = resolver.queries[-1][0]
    assert len(queried) <= 253 and queried.endswith("abcdefghi.example.com")


async def test_ten_dns_terms_limit() -> None:
    terms = " ".join(f"a:h{i}.example.com" for i in range(10))
    zone = _spf(f"v=spf1 {terms} a:h10.example.com -all")
    for i in range(11):
        zone[f"h{i}.example.com"] = [("A", "10.0.0.1")]
    assert await _check(zone) is Spf.PERMERROR  # RFC 7208 §4.6.4
    ok = _spf(f"v=spf1 {terms} ip4:192.0.2.1 -all")
    for i in range(10):
        ok[f"h{i}.example.com"] = [("A", "10.0.0.1")]
    assert await _check(ok) is Spf.PASS


async def test_two_void_lookups_allowed_third_is_permerror() -> None:
    assert await _check(_spf("v=spf1 a:n1.example.com a:n2.example.com ip4:192.0.2.1")) is Spf.PASS
    zone = _spf("v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com ip4:192.0.2.1")
    assert await _check(zone) is Spf.PERMERROR


async def test_include_loop_is_permerror() -> None:
    assert await _check(_spf("v=spf1 include:example.com -all")) is Spf.PERMERROR


async def test_syntax_errors_anywhere_are_permerror() -> None:
    for record in [
        "v=spf1 -all foo",
        "v=spf1 ip4:192.0.2.300",
        "v=spf1 ip4:192.0.2.0/33",
        "v=spf1 a:foo",
        "v=spf1 -all\tmx",
    ]:
        assert await _check(_spf(record)) is Spf.PERMERROR, record


async def test_multiple_records_and_case_insensitivity() -> None:
    zone: Zone = {"example.com": [("TXT", "v=spf1 -all"), ("TXT", "V=SPF1 +all")]}
    assert await _check(zone) is Spf.PERMERROR
    assert await _check(_spf("V=Spf1 IP4:192.0.2.1 -ALL")) is Spf.PASS


async def test_dns_failure_is_temperror() -> None:
    assert await _check({"example.com": [("TIMEOUT", None)]}) is Spf.TEMPERROR
    zone = _spf("v=spf1 a:slow.example.org -all", slow_example_org=[("SERVFAIL", None)])
    assert await _check(zone) is Spf.TEMPERROR


async def test_helo_and_null_sender() -> None:
    zone: Zone = {"mail.example.net": [("TXT", "v=spf1 a -all"), ("A", "192.0.2.1")]}
    assert (
        await check_helo("192.0.2.1", "mail.example.net", FakeResolver(zone))
    ).result is Spf.PASS
    null = await check_mail_from("192.0.2.2", "", "mail.example.net", FakeResolver(zone))
    assert null.result is Spf.FAIL and null.domain == "mail.example.net"
    assert (await check_helo("192.0.2.1", "localhost", FakeResolver(zone))).result is Spf.NONE
