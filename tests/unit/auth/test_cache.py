"""Credential cache: hits need the same password and the same stored hash."""

from postier.auth.cache import CredentialCache

from .fakes import FakeClock


def test_hit_after_store():
    cache = CredentialCache(clock=FakeClock())
    cache.store("bob", "pw", "$hash1")
    assert cache.lookup("bob", "pw", "$hash1")


def test_wrong_password_misses():
    cache = CredentialCache(clock=FakeClock())
    cache.store("bob", "pw", "$hash1")
    assert not cache.lookup("bob", "pW", "$hash1")
    assert not cache.lookup("alice", "pw", "$hash1")


def test_password_change_invalidates():
    cache = CredentialCache(clock=FakeClock())
    cache.store("bob", "old", "$hash-old")
    assert not cache.lookup("bob", "old", "$hash-new")  # stored hash changed
    assert not cache.lookup("bob", "new", "$hash-new")


def test_explicit_invalidate():
    cache = CredentialCache(clock=FakeClock())
    cache.store("bob", "pw", "$h")
    cache.invalidate("bob")
    assert not cache.lookup("bob", "pw", "$h")
    cache.invalidate("nobody")  # no error


def test_expiry():
    clock = FakeClock()
    cache = CredentialCache(ttl_s=300, clock=clock)
    cache.store("bob", "pw", "$h")
    clock.advance(299)
    assert cache.lookup("bob", "pw", "$h")
    clock.advance(2)
    assert not cache.lookup("bob", "pw", "$h")
    assert len(cache) == 0


def test_bounded_lru():
    cache = CredentialCache(max_entries=3, clock=FakeClock())
    for name in "abc":
        cache.store(name, "pw", "$h")
    assert cache.lookup("a", "pw", "$h")  # a is now most recent
    cache.store("d", "pw", "$h")
    assert len(cache) == 3
    assert not cache.lookup("b", "pw", "$h")
    assert cache.lookup("a", "pw", "$h")


def test_password_not_kept_in_clear():
    cache = CredentialCache(clock=FakeClock())
    cache.store("bob", "hunter2-secret", "$h")
    assert "hunter2-secret" not in repr(cache._entries)


def test_disabled_by_zero_ttl():
    cache = CredentialCache(ttl_s=0, clock=FakeClock())
    cache.store("bob", "pw", "$h")
    assert not cache.lookup("bob", "pw", "$h")
