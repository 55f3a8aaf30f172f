"""Fuzz invariant of the SASL mechanisms: any client bytes give steps, never an exception."""

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from postier.auth.passwords import scram_credentials
from postier.auth.sasl import (
    MECHANISMS,
    Challenge,
    Credentials,
    Failure,
    Malformed,
    NeedScramCredentials,
    Success,
    decode_client_data,
    decode_initial_response,
    new_mechanism,
)

STORED = scram_credentials("pencil", salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))

# Bytes that look like the mechanisms' grammar, to reach deeper than random noise.
FRAGMENTS = st.sampled_from(
    [
        b"\0",
        b"n,",
        b"y,",
        b"p=",
        b",",
        b"=",
        b"n=",
        b"r=",
        b"c=biws",
        b"p=",
        b"a=",
        b"=2C",
        b"=3D",
        b"user",
        b"\xff",
        b"m=",
        b"i=4096",
        b"s=",
    ]
)
CLIENT_BYTES = st.one_of(
    st.binary(max_size=200),
    st.lists(st.one_of(FRAGMENTS, st.binary(max_size=8)), max_size=12).map(b"".join),
)


def drive(name, initial, replies, stored):
    mech = new_mechanism(name)
    step = mech.start(initial)
    replies = list(replies)
    for _ in range(10):
        if isinstance(step, Challenge):
            if not replies:
                return step
            step = mech.respond(replies.pop(0))
        elif isinstance(step, NeedScramCredentials):
            step = mech.provide_scram(stored)
        else:
            assert isinstance(step, Credentials | Success | Failure)
            return step
    raise AssertionError("exchange did not end")


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(MECHANISMS),
    initial=st.one_of(st.none(), CLIENT_BYTES),
    replies=st.lists(CLIENT_BYTES, max_size=4),
    stored=st.sampled_from([STORED, None, "garbage"]),
)
def test_arbitrary_bytes_never_raise(name, initial, replies, stored):
    step = drive(name, initial, replies, stored)
    if isinstance(step, Success):
        raise AssertionError("random bytes authenticated")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_framing_helpers_never_raise(line):
    out = decode_client_data(line)
    assert isinstance(out, bytes | Malformed) or type(out).__name__ == "Cancelled"
    assert isinstance(decode_initial_response(line), bytes | Malformed)
