"""MTA-STS policy parsing, MX matching and the in-memory cache (RFC 8461)."""

from __future__ import annotations

import pytest

from postier.mailauth.dns import FakeResolver
from postier.queue.mtasts import MtaSts, PolicyError, mx_matches, parse_policy, parse_txt


def test_parse_policy_crlf_and_lf() -> None:
    p = parse_policy("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
                     "mx: *.example.net\nmax_age: 604800\nextension: ignored\n", "id1", 10.0)
    assert p.mode == "enforce" and p.mx == ("mail.example.com", "*.example.net")
    assert p.max_age == 604800 and p.id == "id1" and p.expires == 604810.0


@pytest.mark.parametrize("text", [
    "version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n",
    "version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\nmx: a.b\nmax_age: -1\n",
    "version: STSv1\nmode: enforce\nmx: a.b\n",
    "version STSv1\n",
])
def test_parse_policy_rejects(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_mode_none_needs_no_mx_and_max_age_is_capped() -> None:
    p = parse_policy("version: STSv1\nmode: none\nmax_age: 9999999999\n")
    assert p.mode == "none" and p.max_age == 31557600


@pytest.mark.parametrize(("pattern", "host", "ok"), [
    ("mx.example.com", "mx.example.com", True),
    ("mx.example.com", "MX.Example.COM.", True),
    ("*.example.com", "mx1.example.com", True),
    ("*.example.com", "example.com", False),
    ("*.example.com", "a.b.example.com", False),
    ("mx.example.com", "mx2.example.com", False),
])
def test_mx_matches(pattern: str, host: str, ok: bool) -> None:
    assert mx_matches(pattern, host) is ok


def test_parse_txt() -> None:
    assert parse_txt([b"v=STSv1; id=20160831085700Z;"]) == "20160831085700Z"
    assert parse_txt([b"v=spf1 -all", b"v=STSv1; id=abc"]) == "abc"
    assert parse_txt([]) is None
    assert parse_txt([b"v=STSv1; id=a", b"v=STSv1; id=b"]) is None  # several: none
    assert parse_txt([b"v=STSv1;"]) is None
    assert parse_txt([b"v=STSv1; id=not-alnum!"]) is None


class FakeSts(MtaSts):
    def __init__(self, resolver: FakeResolver, now: list[float]) -> None:
        super().__init__(resolver, clock=lambda: now[0])
        self.fetches = 0
        self.text = "version: STSv1\nmode: enforce\nmx: mx.d.test\nmax_age: 100\n"
        self.fail = False

    async def fetch(self, domain: str) -> str:
        self.fetches += 1
        if self.fail:
            raise OSError("connection refused")
        return self.text


async def test_cache_refetch_on_new_id_and_expiry_and_failure_keeps_cache() -> None:
    res = FakeResolver()
    res.add("_mta-sts.d.test", "TXT", "v=STSv1; id=one")
    now = [1000.0]
    sts = FakeSts(res, now)
    assert (p := await sts.policy("d.test")) is not None and p.mode == "enforce"
    assert await sts.policy("D.test") is p and sts.fetches == 1
    res2 = FakeResolver()
    res2.add("_mta-sts.d.test", "TXT", "v=STSv1; id=two")
    sts.resolver = res2
    sts.fail = True
    assert await sts.policy("d.test") is p  # fetch failed: the cached policy applies
    sts.fail = False
    sts.text = sts.text.replace("enforce", "testing")
    assert (q := await sts.policy("d.test")) is not None and q.mode == "testing"
    assert sts.fetches == 3
    sts.resolver = FakeResolver()  # TXT gone: cached until it expires
    assert await sts.policy("d.test") is q
    now[0] += 101
    assert await sts.policy("d.test") is None


async def test_no_txt_no_fetch() -> None:
    sts = FakeSts(FakeResolver(), [0.0])
    assert await sts.policy("plain.test") is None and sts.fetches == 0


def test_http_response_parsing() -> None:
    ok = MtaSts._parse_response(
        "h", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nversi\r\n3\r\non:\r\n0\r\n\r\n")
    assert ok == "version:"
    with pytest.raises(PolicyError, match="HTTP 301"):
        MtaSts._parse_response("h", b"HTTP/1.1 301 Moved\r\nLocation: x\r\n\r\n")
