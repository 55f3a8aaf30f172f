"""Fuzz invariant of the POP3 core (STYLE.md): any input, whole or in pieces, gives events
and well-formed replies or a clean close, never an exception; splitting never matters."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postier.pop3.core import MAX_COMMAND_LINE_BYTES
from tests.unit.pop3.driver import GOOD_PASSWORD, GOOD_USER, new_session

COMMANDS = [
    b"USER " + GOOD_USER.encode(), b"PASS " + GOOD_PASSWORD.encode(), b"PASS wrong",
    b"STAT", b"LIST", b"LIST 1", b"LIST 9", b"UIDL", b"UIDL 2", b"RETR 1", b"RETR 2",
    b"RETR 3", b"RETR 0", b"TOP 2 1", b"TOP 1 0", b"DELE 1", b"DELE 2", b"RSET", b"NOOP",
    b"CAPA", b"STLS", b"AUTH", b"AUTH PLAIN", b"AUTH LOGIN", b"AUTH PLAIN =", b"*",
    b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==", b"QUIT", b"APOP a b", b"",
]

line = st.one_of(
    st.sampled_from(COMMANDS),
    st.binary(max_size=40),
    st.binary(min_size=MAX_COMMAND_LINE_BYTES - 5, max_size=MAX_COMMAND_LINE_BYTES + 20),
)
script = st.lists(
    st.tuples(line, st.sampled_from([b"\r\n", b"\n", b""])), max_size=25
).map(lambda items: b"".join(a + b for a, b in items))


def run(data: bytes, cuts: list[int]) -> tuple[bytes, object]:
    a = new_session()
    pos = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        if a.closed is not None:
            break
        if cut == pos:
            continue  # b"" would mean EOF
        a.feed(data[pos:cut])
        pos = cut
    if a.closed is None:
        a.feed(b"")  # EOF
    return bytes(a.out), a.closed


def well_formed(out: bytes) -> None:
    assert out.endswith(b"\r\n")
    for raw in out.split(b"\r\n")[:-1]:
        assert b"\n" not in raw and b"\r" not in raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script, st.lists(st.integers(min_value=0, max_value=10_000), max_size=8))
def test_any_input_any_split_same_output(data: bytes, cuts: list[int]) -> None:
    whole_out, whole_closed = run(data, [])
    split_out, split_closed = run(data, cuts)
    if b"STLS" not in data.upper():
        # With STLS, what arrived in the same segment is discarded on purpose (RFC 2595
        # §4), so only STLS-free scripts must be split-invariant.
        assert whole_out == split_out
        assert whole_closed == split_closed
    well_formed(split_out)
    assert whole_closed is not None  # EOF or QUIT or too many errors: always a clean close
    well_formed(whole_out)
    # Every reply line is a status, a challenge or part of a multi-line body.
    assert whole_out.startswith(b"+OK ")
