"""SASL mechanisms fed plain bytes: RFC 4616 PLAIN, LOGIN, RFC 7677 SCRAM-SHA-256."""

import base64

import pytest
import scramp

from postier.auth.passwords import scram_credentials
from postier.auth.sasl import (
    LOGIN_PASSWORD_CHALLENGE,
    LOGIN_USERNAME_CHALLENGE,
    MAX_CLIENT_MESSAGE_BYTES,
    MECHANISMS,
    Cancelled,
    Challenge,
    Credentials,
    Failure,
    Malformed,
    MechanismMisuse,
    NeedScramCredentials,
    ScramSha256Mechanism,
    Success,
    UnknownMechanism,
    decode_client_data,
    decode_initial_response,
    encode_server_data,
    new_mechanism,
)

# ------------------------------------------------------------------ framing


def test_mechanism_list():
    assert MECHANISMS == ("PLAIN", "LOGIN", "SCRAM-SHA-256")
    assert "SCRAM-SHA-256-PLUS" not in MECHANISMS


def test_decode_client_data():
    assert decode_client_data(b"*\r\n") == Cancelled()
    assert decode_client_data(b"\r\n") == b""
    assert decode_client_data(b"dGVzdA==\r\n") == b"test"
    assert decode_client_data(b"dGVzdA==") == b"test"
    assert isinstance(decode_client_data(b"dGVzdA"), Malformed)  # missing padding
    assert isinstance(decode_client_data(b"d GVzdA=="), Malformed)
    assert isinstance(decode_client_data(b"**"), Malformed)


def test_decode_initial_response():
    assert decode_initial_response(b"=") == b""  # RFC 4954 §4
    assert decode_initial_response(b"AHRpbQB0YW5zdGFhZnRhbnN0YWFm") == b"\0tim\0tanstaaftanstaaf"
    assert isinstance(decode_initial_response(b""), Malformed)
    assert isinstance(decode_initial_response(b"@@@"), Malformed)


def test_encode_server_data():
    assert encode_server_data(b"") == b""
    assert encode_server_data(LOGIN_USERNAME_CHALLENGE) == b"VXNlcm5hbWU6"


def test_unknown_mechanism_raises():
    with pytest.raises(UnknownMechanism):
        new_mechanism("CRAM-MD5")
    with pytest.raises(UnknownMechanism):
        new_mechanism("SCRAM-SHA-256-PLUS")


def test_mechanism_names_case_insensitive():
    assert new_mechanism("plain").name == "PLAIN"
    assert new_mechanism("scram-sha-256").name == "SCRAM-SHA-256"


# ------------------------------------------------------------------ PLAIN (RFC 4616)


def test_plain_rfc4616_example_initial_response():
    # RFC 4616 §4 example 1: "tim" with password "tanstaaftanstaaf", empty authzid.
    mech = new_mechanism("PLAIN")
    assert mech.start(b"\0tim\0tanstaaftanstaaf") == Credentials("tim", "tanstaaftanstaaf")


def test_plain_rfc4616_proxy_example_is_refused():
    # RFC 4616 §4 example 2: Kurt authenticates to act as Ursel — no proxy authorization here.
    step = new_mechanism("PLAIN").start(b"Ursel\0Kurt\0xipj3plmq")
    assert isinstance(step, Failure)


def test_plain_authzid_equal_to_authcid_accepted_case_insensitively():
    step = new_mechanism("PLAIN").start(b"Tim@Example.org\0tim@example.org\0pw")
    assert step == Credentials("tim@example.org", "pw")


def test_plain_authzid_uses_given_normalizer():
    mech = new_mechanism("PLAIN", normalize=lambda s: s.lower().removesuffix("@example.org"))
    assert mech.start(b"tim@example.org\0tim\0pw") == Credentials("tim", "pw")


def test_plain_without_initial_response_sends_empty_challenge():
    mech = new_mechanism("PLAIN")
    assert mech.start(None) == Challenge(b"")
    assert mech.respond(b"\0tim\0secret") == Credentials("tim", "secret")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"tim",
        b"\0tim",
        b"\0tim\0pw\0extra",
        b"\0\0pw",  # empty authcid
        b"\0tim\0",  # empty password
        b"\0t\xffm\0pw",  # not UTF-8
        b"\0tim\0" + b"x" * MAX_CLIENT_MESSAGE_BYTES,
    ],
)
def test_plain_malformed_fails(data):
    assert isinstance(new_mechanism("PLAIN").start(data), Failure)


def test_plain_password_hidden_from_repr():
    assert "tanstaaf" not in repr(Credentials("tim", "tanstaaf"))


def test_plain_misuse_raises():
    mech = new_mechanism("PLAIN")
    with pytest.raises(MechanismMisuse):
        mech.respond(b"\0a\0b")  # before start
    mech.start(b"\0a\0b")
    with pytest.raises(MechanismMisuse):
        mech.respond(b"\0a\0b")  # after the end
    with pytest.raises(MechanismMisuse):
        mech.provide_scram(None)


# ------------------------------------------------------------------ LOGIN


def test_login_two_challenges():
    mech = new_mechanism("LOGIN")
    assert mech.start(None) == Challenge(b"Username:")
    assert mech.respond(b"tim") == Challenge(b"Password:")
    assert mech.respond(b"tanstaaf") == Credentials("tim", "tanstaaf")


def test_login_username_as_initial_response():
    mech = new_mechanism("LOGIN")
    assert mech.start(b"tim") == Challenge(LOGIN_PASSWORD_CHALLENGE)
    assert mech.respond(b"pw") == Credentials("tim", "pw")


@pytest.mark.parametrize(
    "user,pw", [(b"", b"pw"), (b"tim", b""), (b"t\xff", b"pw"), (b"t\0m", b"pw")]
)
def test_login_bad_input_fails(user, pw):
    mech = new_mechanism("LOGIN")
    mech.start(None)
    step = mech.respond(user)
    if isinstance(step, Challenge):
        step = mech.respond(pw)
    assert isinstance(step, Failure)


# ------------------------------------------------------------------ SCRAM-SHA-256

RFC7677_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC7677_STORED = scram_credentials("pencil", iterations=4096, salt=RFC7677_SALT)
RFC7677_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC7677_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC7677_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC7677_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC7677_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_scram_rfc7677_example_exchange():
    mech = ScramSha256Mechanism(server_nonce=RFC7677_SERVER_NONCE)
    assert mech.start(None) == Challenge(b"")
    assert mech.respond(RFC7677_CLIENT_FIRST) == NeedScramCredentials("user")
    assert mech.provide_scram(RFC7677_STORED) == Challenge(RFC7677_SERVER_FIRST)
    assert mech.respond(RFC7677_CLIENT_FINAL) == Success("user", RFC7677_SERVER_FINAL)


def test_scram_rfc7677_wrong_proof_fails():
    mech = ScramSha256Mechanism(server_nonce=RFC7677_SERVER_NONCE)
    mech.start(RFC7677_CLIENT_FIRST)
    mech.provide_scram(RFC7677_STORED)
    bad = RFC7677_CLIENT_FINAL.replace(b"p=dHzb", b"p=dHzc")
    assert isinstance(mech.respond(bad), Failure)


def test_scram_wrong_password_stored_fails():
    mech = ScramSha256Mechanism(server_nonce=RFC7677_SERVER_NONCE)
    mech.start(RFC7677_CLIENT_FIRST)
    mech.provide_scram(scram_credentials("not pencil", salt=RFC7677_SALT))
    assert isinstance(mech.respond(RFC7677_CLIENT_FINAL), Failure)


def run_scram_client(mech, username, password, stored, initial=True):
    client = scramp.ScramClient(["SCRAM-SHA-256"], username, password)
    first = client.get_client_first().encode()
    if initial:
        step = mech.start(first)
    else:
        assert mech.start(None) == Challenge(b"")
        step = mech.respond(first)
    assert isinstance(step, NeedScramCredentials)
    step = mech.provide_scram(stored)
    assert isinstance(step, Challenge)
    client.set_server_first(step.data.decode())
    step = mech.respond(client.get_client_final().encode())
    if isinstance(step, Success):
        assert step.final_data is not None
        client.set_server_final(step.final_data.decode())  # verifies the server signature
    return step


@pytest.mark.parametrize("initial", [True, False])
def test_scram_full_exchange_with_scramp_client(initial):
    stored = scram_credentials("s3cret pässword")
    step = run_scram_client(
        new_mechanism("SCRAM-SHA-256"), "bob@example.org", "s3cret pässword", stored, initial
    )
    assert isinstance(step, Success) and step.username == "bob@example.org"


def test_scram_username_with_comma_and_equals_unescaped():
    stored = scram_credentials("pw")
    mech = new_mechanism("SCRAM-SHA-256")
    client = scramp.ScramClient(["SCRAM-SHA-256"], "a,b=c", "pw")
    first = client.get_client_first()
    assert "n=a=2Cb=3Dc" in first
    assert mech.start(first.encode()) == NeedScramCredentials("a,b=c")
    step = mech.provide_scram(stored)
    assert isinstance(step, Challenge)
    client.set_server_first(step.data.decode())
    assert isinstance(mech.respond(client.get_client_final().encode()), Success)


def test_scram_unknown_user_gets_a_plausible_challenge_then_fails():
    mech = new_mechanism("SCRAM-SHA-256")
    client = scramp.ScramClient(["SCRAM-SHA-256"], "nobody", "pw")
    mech.start(client.get_client_first().encode())
    step = mech.provide_scram(None)
    assert isinstance(step, Challenge)
    client.set_server_first(step.data.decode())  # looks like a real server-first
    assert isinstance(mech.respond(client.get_client_final().encode()), Failure)


def test_scram_unknown_user_salt_is_stable():
    def salt_for(user):
        mech = new_mechanism("SCRAM-SHA-256")
        mech.start(f"n,,n={user},r=abcdefgh".encode())
        step = mech.provide_scram(None)
        assert isinstance(step, Challenge)
        fields = [kv.split("=", 1) for kv in step.data.decode().split(",")]
        return {k: v for k, v in fields}["s"]

    assert salt_for("ghost") == salt_for("ghost")
    assert salt_for("ghost") != salt_for("phantom")


def test_scram_malformed_stored_credentials_treated_as_unknown():
    mech = new_mechanism("SCRAM-SHA-256")
    client = scramp.ScramClient(["SCRAM-SHA-256"], "user", "pw")
    mech.start(client.get_client_first().encode())
    step = mech.provide_scram("garbage")
    assert isinstance(step, Challenge)
    client.set_server_first(step.data.decode())
    assert isinstance(mech.respond(client.get_client_final().encode()), Failure)


@pytest.mark.parametrize(
    "first",
    [
        b"",
        b"n,,",
        b"x,,n=user,r=abc",
        b"p=tls-unique,,n=user,r=abc",  # RFC 5802 §6: channel binding not offered
        b"n,,n=,r=abc",
        b"n,,r=abc",
        b"n,,n=us=er,r=abc",  # bad saslname escape
        b"n,a=other,n=user,r=abc",  # proxy authorization
        b"n,,n=user,r=a,bc",
        b"n,,n=us\xffer,r=abc",
        b"n,,n=user,r=abc" + b"x" * MAX_CLIENT_MESSAGE_BYTES,
    ],
)
def test_scram_malformed_client_first_fails(first):
    assert isinstance(new_mechanism("SCRAM-SHA-256").start(first), Failure)


def test_scram_y_flag_accepted_without_channel_binding():
    # RFC 5802 §6: "y" = client supports binding but thinks the server does not — true here.
    step = new_mechanism("SCRAM-SHA-256").start(b"y,,n=user,r=abcdef")
    assert step == NeedScramCredentials("user")


def test_scram_nonce_mismatch_fails():
    mech = ScramSha256Mechanism(server_nonce=RFC7677_SERVER_NONCE)
    mech.start(RFC7677_CLIENT_FIRST)
    mech.provide_scram(RFC7677_STORED)
    bad = RFC7677_CLIENT_FINAL.replace(b"hNlF$k0", b"hNlF$k1")
    assert isinstance(mech.respond(bad), Failure)


def test_scram_misuse_raises():
    mech = new_mechanism("SCRAM-SHA-256")
    with pytest.raises(MechanismMisuse):
        mech.provide_scram(None)
    mech.start(RFC7677_CLIENT_FIRST)
    with pytest.raises(MechanismMisuse):
        mech.respond(b"c=biws")  # credentials not provided yet
