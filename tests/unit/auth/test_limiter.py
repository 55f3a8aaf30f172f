"""Failed-login limiter with a fake clock."""

import pytest

from postier.auth.limiter import LimiterSettings, LoginAttempt, LoginLimiter, address_key

from .fakes import FakeClock


def make(**kw):
    clock = FakeClock()
    return LoginLimiter(LimiterSettings(**kw), clock), clock


def test_free_failures_then_exponential_delay_capped():
    lim, _ = make(max_failures_per_ip=100, max_failures_per_account=100)
    delays = [lim.record_failure("192.0.2.1", "bob") for _ in range(9)]
    assert delays == [0, 0, 0, 1, 2, 4, 8, 15, 15]


def test_refused_after_ip_limit_until_window_passes():
    lim, clock = make()
    for i in range(10):
        assert lim.retry_after_s("192.0.2.1") is None
        lim.record_failure("192.0.2.1", f"user{i}")  # different accounts: per-IP limit
        clock.advance(1)
    retry = lim.retry_after_s("192.0.2.1")
    assert retry is not None and retry == pytest.approx(15 * 60 - 10)
    assert lim.retry_after_s("192.0.2.2") is None  # other addresses unaffected
    clock.advance(retry - 0.5)
    assert lim.retry_after_s("192.0.2.1") is not None
    clock.advance(1)
    assert lim.retry_after_s("192.0.2.1") is None  # oldest failure left the window


def test_refused_after_account_limit_from_many_addresses():
    lim, _ = make()
    for i in range(20):
        lim.record_failure(f"198.51.100.{i}", "bob@example.org")
    assert lim.retry_after_s("203.0.113.9", "bob@example.org") is not None
    assert lim.retry_after_s("203.0.113.9", "alice@example.org") is None
    assert lim.retry_after_s("203.0.113.9") is None


def test_success_resets_that_accounts_failures_from_that_ip():
    lim, _ = make()
    for _ in range(5):
        lim.record_failure("192.0.2.1", "bob")
    lim.record_failure("192.0.2.1", "eve")
    lim.record_failure("198.51.100.7", "bob")
    lim.record_success("192.0.2.1", "bob")
    assert lim.failures("192.0.2.1") == 1  # eve's failure stays
    assert lim.failures("198.51.100.7", "bob") == 1  # bob's failure from elsewhere stays
    assert lim.record_failure("192.0.2.1", "bob") == 0  # back in the free allowance


def test_failures_expire_after_window():
    lim, clock = make()
    for _ in range(5):
        lim.record_failure("192.0.2.1", "bob")
    clock.advance(15 * 60 + 1)
    assert lim.failures("192.0.2.1", "bob") == 0
    assert lim.record_failure("192.0.2.1", "bob") == 0
    assert len(lim) == 2


def test_memory_bounded_oldest_evicted():
    lim, clock = make(max_tracked=50)
    for i in range(500):
        lim.record_failure(f"10.0.{i // 256}.{i % 256}", f"user{i}")
        clock.advance(0.01)
    assert len(lim) <= 100
    assert lim.failures("10.0.0.0") == 0  # evicted
    assert lim.failures("10.0.1.243") == 1  # the most recent is kept


def test_per_key_history_bounded():
    lim, _ = make()
    for _ in range(10_000):
        lim.record_failure("192.0.2.1", "bob")
    assert lim.failures("192.0.2.1") == 10
    assert lim.failures("192.0.2.1", "bob") == 20


def test_ipv6_grouped_by_prefix():
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:1")
    assert address_key("2001:db8::1") != address_key("2001:db8:0:1::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("unix-socket") == "unix-socket"
    lim, _ = make()
    for i in range(10):
        lim.record_failure(f"2001:db8::{i + 1:x}")
    assert lim.retry_after_s("2001:db8::abcd") is not None


def test_invalid_settings_rejected():
    with pytest.raises(ValueError):
        LimiterSettings(max_failures_per_ip=0)
    with pytest.raises(ValueError):
        LimiterSettings(window_s=0)


def test_outcomes_told_by_another_worker_count_here():
    lim, _ = make(max_failures_per_ip=3, free_failures=10)
    lim.apply(LoginAttempt("192.0.2.1", "bob", False))
    lim.apply(LoginAttempt("192.0.2.1", "", False))
    assert lim.retry_after_s("192.0.2.1") is None
    lim.record_failure("192.0.2.1", "bob")  # the third, seen here
    assert lim.retry_after_s("192.0.2.1") is not None
    other, _ = make(max_failures_per_ip=3, free_failures=10)
    other.apply(LoginAttempt("192.0.2.7", "bob", False))
    other.apply(LoginAttempt("192.0.2.7", "bob", True))  # a good login clears bob's
    assert other.failures("192.0.2.7", "bob") == 0
