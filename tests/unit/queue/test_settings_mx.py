"""Back-off schedule and MX selection (RFC 5321 §5.1, RFC 7505) with a fake resolver."""

from __future__ import annotations

import random

import pytest

from postier.errors import TemporaryError
from postier.mailauth.dns import FakeResolver
from postier.queue.mx import (
    MxHost,
    NoRoute,
    NullMx,
    domain_literal,
    host_addresses,
    mx_hosts,
    order_mx,
)
from postier.queue.settings import QueueSettings


def test_default_backoff_schedule() -> None:
    s = QueueSettings()
    assert [s.backoff_s(n) for n in range(1, 10)] == [
        300, 600, 1800, 3600, 7200, 14400, 14400, 14400, 14400,
    ]
    assert s.max_age_s == 5 * 86400


def test_custom_backoff_last_step_repeats() -> None:
    s = QueueSettings(retry_schedule_s=(1, 2))
    assert [s.backoff_s(n) for n in (0, 1, 2, 3)] == [1, 1, 2, 2]


def test_mx_sorted_by_preference_and_shuffled_within() -> None:
    records = [(20, "c.example."), (10, "a.example."), (10, "b.example."), (30, "d.example.")]
    seen = set()
    for seed in range(40):
        hosts = order_mx(records, random.Random(seed))
        assert [h.preference for h in hosts] == [10, 10, 20, 30]
        assert {h.name for h in hosts[:2]} == {"a.example", "b.example"}
        assert [h.name for h in hosts[2:]] == ["c.example", "d.example"]
        seen.add(hosts[0].name)
    assert seen == {"a.example", "b.example"}  # both come first sometimes


def test_null_mx_alone_is_permanent() -> None:
    with pytest.raises(NullMx):
        order_mx([(0, ".")])


def test_dot_among_other_mx_is_ignored() -> None:
    assert [h.name for h in order_mx([(0, "."), (10, "mx.example")])] == ["mx.example"]


def test_domain_literals() -> None:
    assert domain_literal("[192.0.2.1]") == "192.0.2.1"
    assert domain_literal("[IPv6:2001:db8::1]") == "2001:db8::1"
    assert domain_literal("[nonsense]") is None
    assert domain_literal("example.org") is None


async def test_mx_lookup_uses_resolver() -> None:
    r = FakeResolver({"example.org": [("MX", (10, "mx1.example.org")), ("MX", (5, "mx0.example.org"))]})
    hosts = await mx_hosts(r, "example.org")
    assert [h.name for h in hosts] == ["mx0.example.org", "mx1.example.org"]


async def test_implicit_mx_falls_back_to_address_records() -> None:
    r = FakeResolver({"example.net": [("A", "192.0.2.7"), ("AAAA", "2001:db8::7")]})
    hosts = await mx_hosts(r, "example.net")
    assert hosts == [MxHost("example.net", 0, implicit=True)]
    assert await host_addresses(r, hosts[0]) == ["192.0.2.7", "2001:db8::7"]
    assert await host_addresses(r, hosts[0], prefer_ipv6=True) == ["2001:db8::7", "192.0.2.7"]


async def test_no_mx_no_address_is_permanent() -> None:
    r = FakeResolver({})
    hosts = await mx_hosts(r, "nowhere.example")
    with pytest.raises(NoRoute):
        await host_addresses(r, hosts[0])


async def test_null_mx_via_resolver() -> None:
    r = FakeResolver({"nomail.example": [("MX", (0, "."))]})
    with pytest.raises(NullMx):
        await mx_hosts(r, "nomail.example")


async def test_dns_failure_is_temporary() -> None:
    r = FakeResolver({"broken.example": [("SERVFAIL", None)]})
    with pytest.raises(TemporaryError):
        await mx_hosts(r, "broken.example")
    with pytest.raises(TemporaryError):
        await host_addresses(r, MxHost("broken.example", 10))


async def test_mx_host_without_address_gives_nothing() -> None:
    r = FakeResolver({})
    assert await host_addresses(r, MxHost("gone.example", 10)) == []
