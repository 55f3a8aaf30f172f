"""Authenticator with an in-memory credential source and cheap argon2 parameters."""

import asyncio
import base64
import time

import pytest
import scramp

from postier.auth.authenticator import (
    AccountCredentials,
    Authenticator,
    AuthSettings,
    Failed,
    Ok,
    Refused,
    normalize_login,
)
from postier.auth.limiter import LimiterSettings, LoginAttempt
from postier.auth.passwords import CHEAP_ARGON2, Argon2Params, hash_password, scram_credentials
from postier.auth.sasl import Cancelled, Malformed, UnknownMechanism, decode_client_data

from .fakes import FakeClock, MemorySource

IP = "192.0.2.10"


def make(default_domain="example.org", **limiter):
    source = MemorySource()
    source.add(
        AccountCredentials(
            1,
            "bob@example.org",
            hash_password("bob-pw", CHEAP_ARGON2),
            scram_credentials("bob-pw"),
        )
    )
    source.add(
        AccountCredentials(
            2, "off@example.org", hash_password("off-pw", CHEAP_ARGON2), None, enabled=False
        )
    )
    source.add(
        AccountCredentials(3, "noscram@example.org", hash_password("ns-pw", CHEAP_ARGON2), None)
    )
    clock = FakeClock()
    settings = AuthSettings(
        default_domain=default_domain,
        argon2=CHEAP_ARGON2,
        limiter=LimiterSettings(**limiter),
    )
    return Authenticator(source, settings, clock), source, clock


def run(coro):
    return asyncio.run(coro)


# ------------------------------------------------------------------ normalisation


def test_normalize_login():
    assert normalize_login("Bob@Example.ORG") == "bob@example.org"
    assert normalize_login("Bob", "Example.org") == "bob@example.org"
    assert normalize_login("bob") == "bob"
    assert normalize_login("") is None
    assert normalize_login("bo\x00b") is None
    assert normalize_login("x" * 400) is None


# ------------------------------------------------------------------ check_password


def test_correct_password_ok():
    auth, _, _ = make()
    assert run(auth.check_password("bob@example.org", "bob-pw", IP)) == Ok(1, "bob@example.org")


def test_bare_local_part_and_case_normalised():
    auth, source, _ = make()
    assert run(auth.check_password("BOB", "bob-pw", IP)) == Ok(1, "bob@example.org")
    assert source.lookups == ["bob@example.org"]


def test_wrong_password_fails_without_delay_at_first():
    auth, _, _ = make()
    res = run(auth.check_password("bob", "nope", IP))
    assert isinstance(res, Failed) and res.delay_s == 0


def test_unknown_and_disabled_accounts_fail_the_same_way():
    auth, _, _ = make()
    unknown = run(auth.check_password("ghost", "x", IP))
    disabled = run(auth.check_password("off", "off-pw", IP))
    assert isinstance(unknown, Failed) and isinstance(disabled, Failed)
    assert unknown.delay_s == disabled.delay_s == 0


def test_unknown_user_still_pays_an_argon2_verification():
    # Real (costly) parameters make the difference measurable: an unknown user must take
    # about as long as a wrong password for a known one.
    params = Argon2Params(time_cost=1, memory_cost_kib=16 * 1024, parallelism=1)
    source = MemorySource()
    source.add(AccountCredentials(1, "bob@x.org", hash_password("pw", params), None))
    auth = Authenticator(source, AuthSettings(argon2=params), FakeClock())

    def timed(login):  # CPU time of the process: steady when the machine is loaded
        t = time.process_time()
        run(auth.check_password(login, "wrong", IP))
        return time.process_time() - t

    known = min(timed("bob@x.org") for _ in range(3))
    unknown = min(timed("ghost@x.org") for _ in range(3))
    assert unknown > known * 0.5


def test_empty_password_fails():
    auth, _, _ = make()
    assert isinstance(run(auth.check_password("bob", "", IP)), Failed)


def test_every_counted_outcome_is_told_to_the_other_workers():
    """on_attempt hears each failure and success the limiter counts (app.py forwards them
    to the other worker processes); a refusal, never checked, is not an attempt."""
    auth, _, _ = make(max_failures_per_ip=2)
    told: list[LoginAttempt] = []
    auth.on_attempt = told.append
    run(auth.check_password("bob", "nope", IP))
    run(auth.check_password("bob", "bob-pw", IP))
    run(auth.check_password("ghost", "x", IP))
    run(auth.check_password("bob", "nope", IP))
    assert isinstance(run(auth.check_password("bob", "bob-pw", IP)), Refused)
    assert told == [
        LoginAttempt(IP, "bob@example.org", False), LoginAttempt(IP, "bob@example.org", True),
        LoginAttempt(IP, "ghost@example.org", False), LoginAttempt(IP, "bob@example.org", False),
    ]


def test_delay_grows_then_refused():
    auth, _, _ = make()
    results = [run(auth.check_password("bob", "bad", IP)) for _ in range(10)]
    assert [r.delay_s for r in results] == [0, 0, 0, 1, 2, 4, 8, 15, 15, 15]
    res = run(auth.check_password("bob", "bob-pw", IP))  # even the right password
    assert isinstance(res, Refused) and res.retry_after_s > 0


def test_refusal_ends_after_window():
    auth, _, clock = make()
    for _ in range(10):
        run(auth.check_password("bob", "bad", IP))
    clock.advance(15 * 60 + 1)
    assert run(auth.check_password("bob", "bob-pw", IP)) == Ok(1, "bob@example.org")


def test_success_resets_account_counter_for_ip():
    auth, _, _ = make()
    for _ in range(3):
        run(auth.check_password("bob", "bad", IP))
    assert isinstance(run(auth.check_password("bob", "bob-pw", IP)), Ok)
    res = run(auth.check_password("bob", "bad", IP))
    assert res == Failed(0, "wrong password")


# ------------------------------------------------------------------ cache


def test_cache_warm_after_success_and_not_on_failure():
    auth, _, _ = make()
    run(auth.check_password("bob", "bad", IP))
    assert len(auth.cache) == 0  # negatives never cached
    run(auth.check_password("bob", "bob-pw", IP))
    assert len(auth.cache) == 1
    assert auth.cache.lookup(
        "bob@example.org", "bob-pw", auth._source.accounts["bob@example.org"].password_hash
    )


def test_password_change_in_store_invalidates_cache():
    auth, source, _ = make()
    assert isinstance(run(auth.check_password("bob", "bob-pw", IP)), Ok)
    old = source.accounts["bob@example.org"]
    source.add(AccountCredentials(1, old.address, hash_password("new-pw", CHEAP_ARGON2), None))
    assert isinstance(run(auth.check_password("bob", "bob-pw", IP)), Failed)
    assert isinstance(run(auth.check_password("bob", "new-pw", IP)), Ok)


def test_disabling_account_wins_over_cache():
    auth, source, _ = make()
    run(auth.check_password("bob", "bob-pw", IP))
    old = source.accounts["bob@example.org"]
    source.add(AccountCredentials(1, old.address, old.password_hash, old.scram, enabled=False))
    assert isinstance(run(auth.check_password("bob", "bob-pw", IP)), Failed)


def test_explicit_invalidate():
    auth, _, _ = make()
    run(auth.check_password("bob", "bob-pw", IP))
    auth.invalidate("BOB")
    assert len(auth.cache) == 0


def test_rehash_hook_called_when_parameters_change():
    source = MemorySource()
    old_params = Argon2Params(time_cost=1, memory_cost_kib=8, parallelism=1)
    new_params = Argon2Params(time_cost=2, memory_cost_kib=8, parallelism=1)
    source.add(AccountCredentials(7, "a@x.org", hash_password("pw", old_params), None))
    saved = []

    async def on_rehash(account_id, new_hash):
        saved.append((account_id, new_hash))

    auth = Authenticator(source, AuthSettings(argon2=new_params), FakeClock(), on_rehash)
    assert isinstance(run(auth.check_password("a@x.org", "pw", IP)), Ok)
    assert len(saved) == 1 and saved[0][0] == 7 and "t=2" in saved[0][1]


# ------------------------------------------------------------------ SASL end to end


class Client:
    """Scripted client side of an exchange: replies to challenges in order."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.challenges = []

    async def __call__(self, challenge):
        self.challenges.append(challenge)
        return self.replies.pop(0)


def test_sasl_plain():
    auth, _, _ = make()
    client = Client([b"\0bob\0bob-pw"])
    assert run(auth.authenticate("PLAIN", None, IP, client)) == Ok(1, "bob@example.org")
    assert client.challenges == [b""]


def test_sasl_plain_initial_response_wrong_password():
    auth, _, _ = make()
    res = run(auth.authenticate("plain", b"\0bob\0nope", IP, Client([])))
    assert isinstance(res, Failed)


def test_sasl_login():
    auth, _, _ = make()
    client = Client([b"bob@example.org", b"bob-pw"])
    assert run(auth.authenticate("LOGIN", None, IP, client)) == Ok(1, "bob@example.org")
    assert client.challenges == [b"Username:", b"Password:"]


def test_sasl_cancel_and_malformed_pass_through():
    auth, _, _ = make()
    assert run(auth.authenticate("LOGIN", None, IP, Client([Cancelled()]))) == Cancelled()
    res = run(auth.authenticate("LOGIN", None, IP, Client([decode_client_data(b"!!")])))
    assert isinstance(res, Malformed)


def test_sasl_unknown_mechanism_raises():
    auth, _, _ = make()
    with pytest.raises(UnknownMechanism):
        run(auth.authenticate("CRAM-MD5", None, IP, Client([])))


def scram_exchange(auth, username, password, ip=IP):
    sc = scramp.ScramClient(["SCRAM-SHA-256"], username, password)

    async def exchange(challenge):
        sc.set_server_first(challenge.decode())
        return sc.get_client_final().encode()

    res = run(auth.authenticate("SCRAM-SHA-256", sc.get_client_first().encode(), ip, exchange))
    if isinstance(res, Ok):
        assert res.final_data is not None
        sc.set_server_final(res.final_data.decode())  # client verifies the server
    return res


def test_sasl_scram_ok_with_server_final():
    auth, _, _ = make()
    res = scram_exchange(auth, "Bob", "bob-pw")
    assert isinstance(res, Ok) and res.account_id == 1
    assert res.final_data is not None and res.final_data.startswith(b"v=")


def test_sasl_scram_wrong_password_counts_as_failure():
    auth, _, _ = make()
    res = scram_exchange(auth, "bob", "nope")
    assert isinstance(res, Failed)
    assert auth.limiter.failures(IP, "bob@example.org") == 1


@pytest.mark.parametrize("user,pw", [("ghost", "x"), ("off", "off-pw"), ("noscram", "ns-pw")])
def test_sasl_scram_unknown_disabled_or_no_scram_fail(user, pw):
    auth, _, _ = make()
    assert isinstance(scram_exchange(auth, user, pw), Failed)


def test_sasl_refused_when_ip_over_limit():
    auth, _, _ = make()
    for _ in range(10):
        run(auth.check_password("bob", "bad", IP))
    res = run(auth.authenticate("PLAIN", b"\0bob\0bob-pw", IP, Client([])))
    assert isinstance(res, Refused)


def test_sasl_garbage_counts_against_ip():
    auth, _, _ = make()
    res = run(auth.authenticate("PLAIN", b"garbage", IP, Client([])))
    assert isinstance(res, Failed)
    assert auth.limiter.failures(IP) == 1


def test_scram_base64_round_trip_helpers():
    # The protocols' framing: base64 challenges, decode_client_data on replies.
    auth, _, _ = make()
    sc = scramp.ScramClient(["SCRAM-SHA-256"], "bob", "bob-pw")

    async def exchange(challenge):
        sc.set_server_first(base64.b64decode(base64.b64encode(challenge)).decode())
        line = base64.b64encode(sc.get_client_final().encode()) + b"\r\n"
        return decode_client_data(line)

    res = run(auth.authenticate("SCRAM-SHA-256", None, IP, _first_then(sc, exchange)))
    assert isinstance(res, Ok)


def _first_then(sc, rest):
    state = {"first": True}

    async def exchange(challenge):
        if state["first"]:
            state["first"] = False
            assert challenge == b""
            return sc.get_client_first().encode()
        return await rest(challenge)

    return exchange
