"""argon2id hashing and RFC 5803 SCRAM stored credentials."""

import base64

import pytest

from postier.auth.passwords import (
    CHEAP_ARGON2,
    DEFAULT_ARGON2,
    READABLE_ALPHABET,
    ScramStored,
    generate_password,
    hash_password,
    needs_rehash,
    parse_scram_credentials,
    scram_credentials,
    verify_password,
)


def test_hash_is_argon2id_and_verifies():
    h = hash_password("correct horse", CHEAP_ARGON2)
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "correct horsE")


def test_hashes_are_salted():
    assert hash_password("pw", CHEAP_ARGON2) != hash_password("pw", CHEAP_ARGON2)


def test_unicode_password_round_trips():
    h = hash_password("pässwörd ☃", CHEAP_ARGON2)
    assert verify_password(h, "pässwörd ☃")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plaintext",
        "$argon2id$",
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$",
        "$argon2id$v=19$m=8,t=1,p=1$!!!$!!!",
        "{SHA512-CRYPT}$6$abc$def",
        "$2b$12$abcdefghijklmnopqrstuv",
        "$argon2id$v=19$m=99999999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
        # valid syntax, but 4 GiB of memory: refused before argon2 allocates it
        "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNo",
    ],
)
def test_verify_never_raises_on_malformed_hash(bad):
    assert verify_password(bad, "pw") is False


def test_needs_rehash_follows_parameters():
    cheap = hash_password("pw", CHEAP_ARGON2)
    assert not needs_rehash(cheap, CHEAP_ARGON2)
    assert needs_rehash(cheap, DEFAULT_ARGON2)
    assert needs_rehash("not a hash", CHEAP_ARGON2)


def test_generate_password_is_long_readable_and_random():
    pws = {generate_password() for _ in range(50)}
    assert len(pws) == 50
    for pw in pws:
        assert len(pw) == 20
        assert set(pw) <= set(READABLE_ALPHABET)
    assert not set("0O1lI") & set(READABLE_ALPHABET)


def test_scram_credentials_match_rfc7677_example():
    # RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, i=4096.
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    stored = scram_credentials("pencil", iterations=4096, salt=salt)
    assert stored.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$")
    parsed = parse_scram_credentials(stored)
    assert parsed is not None
    assert parsed.iterations == 4096 and parsed.salt == salt
    assert parsed.serialize() == stored


def test_scram_credentials_random_salt():
    a, b = scram_credentials("pw"), scram_credentials("pw")
    assert a != b
    assert parse_scram_credentials(a) is not None


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "SCRAM-SHA-1$4096:c2FsdHNhbHRzYWx0$a:b",
        "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0",
        "SCRAM-SHA-256$100:c2FsdHNhbHRzYWx0$" + "A" * 44 + ":" + "A" * 44,
        "SCRAM-SHA-256$4096:c2FsdA==$" + "A" * 44 + ":" + "A" * 44,  # salt too short
        "SCRAM-SHA-256$4096:!!!!$" + "A" * 44 + ":" + "A" * 44,
        "SCRAM-SHA-256$x:c2FsdHNhbHRzYWx0$" + "A" * 44 + ":" + "A" * 44,
        "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$QUFB:QUFB",  # keys not 32 bytes
    ],
)
def test_parse_scram_rejects_malformed(bad):
    assert parse_scram_credentials(bad) is None


def test_scram_stored_serialize_parse_round_trip():
    s = ScramStored(5000, b"s" * 16, b"k" * 32, b"K" * 32)
    assert parse_scram_credentials(s.serialize()) == s
