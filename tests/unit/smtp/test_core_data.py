"""DATA in the sans-IO core, bytes only: the chunk-at-a-time scanner against a plain
reference, long lines (no per-line limit, only the message size), and linear work on a
10 MB DATA blob without a single CRLF."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier import compiled
from postier.smtp import core
from postier.smtp.core import Message, ProtocolError

from .feeding import Session, codes, new_session

EHLO = b"EHLO client.example.net\r\n"
TXN = b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n"


def reference(stream: bytes, normalize: bool, limit: int) -> tuple[str, bytes, bytes]:
    """What DATA means (RFC 5321 §4.1.1.4, §4.5.2, §2.3.8), the slow and obvious way:
    (reply code, message, bytes left after the end mark)."""
    full = b"\r\n" + stream
    end = full.find(b"\r\n.\r\n")
    assert end >= 0
    raw, rest = full[2 : end + 2], full[end + 5 :]
    if len(raw) > limit:
        return "552 5.3.4", b"", rest
    crlf = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf:
        if not normalize:
            return "500 5.5.2", b"", rest
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    lines = raw.split(b"\r\n")
    return "250 2.0.0", b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines), rest


def feed_in_pieces(s: Session, data: bytes, rng: random.Random, largest: int) -> bytes:
    start = len(s.out)
    i = 0
    while i < len(data):
        n = rng.randint(1, largest)
        s.feed(data[i : i + n])
        i += n
    return bytes(s.out[start:])


ATOMS = [b"a", b"word ", b"\r\n", b".", b"..", b"\r\n.", b"\r\n..", b"\r", b"\n", b"\r\n\r\n", b"x" * 40,
         b"\r.\n", b"\ra\n"]  # a bare CR and a bare LF apart: no CR LF pair


@pytest.mark.parametrize("normalize", [False, True])
def test_chunked_scanner_matches_reference(normalize: bool) -> None:
    """Random bodies full of dots, CRs and LFs, cut at random places (end marks, CRLFs
    and "<CRLF>." split between reads): the same reply and message as the reference."""
    rng = random.Random(5321)
    for case in range(400):
        clean = case % 2 == 0  # half without a bare CR or LF: they are stored
        atoms = [a for a in ATOMS if not clean or a.count(b"\r") == a.count(b"\n") == a.count(b"\r\n")]
        body = b"".join(rng.choice(atoms) for _ in range(rng.randint(0, 60)))
        if clean and body.endswith(b"\r"):
            body += b"\n"
        body += b"" if not body or body.endswith(b"\r\n") else b"\r\n"
        wire = (b"\r\n" + body).replace(b"\r\n.", b"\r\n..")[2:]  # stuffed as a client does
        stream = wire + b".\r\nNOOP\r\n"
        limit = rng.choice([10_000, 10_000, 40])
        s = new_session(normalize_bare_lf=normalize, max_message_bytes=limit)
        s.feed(EHLO + TXN)
        out = feed_in_pieces(s, stream, rng, rng.choice([1, 3, 7, 64]))
        code, message, rest = reference(stream, normalize, limit)
        assert rest == b"NOOP\r\n"
        assert codes(out) == [code, "250 2.0.0"], (case, stream)  # then NOOP's 250
        got = s.of(Message)
        if code.startswith("250"):
            assert len(got) == 1 and isinstance(got[0], Message), (case, stream)
            assert got[0].data == message, (case, stream)
            if clean:
                assert message == body
        else:
            assert got == [], (case, stream)


@pytest.mark.parametrize("length", [999, 1001, 64 * 1024, 3 * 1024 * 1024])
def test_long_lines_are_accepted_as_received(length: int) -> None:
    """RFC 5321 §4.5.3.1.6 says 1000 octets; real mail has longer lines and Postfix takes
    them: no per-line limit in DATA, the message is stored unchanged (no folding)."""
    line = (b"x<a href=3D.>" * (length // 13 + 1))[:length]  # not a dot line
    body = b"Subject: long\r\n\r\n" + line + b"\r\nshort\r\n" + line + b"\r\n"
    s = new_session()
    s.feed(EHLO + TXN)
    assert codes(s.feed(body + b".\r\n")) == ["250 2.0.0"]
    (m,) = s.of(Message)
    assert isinstance(m, Message) and m.data == body
    # commands keep their 1000-octet limit (RFC 5321 §4.5.3.1.4)
    assert codes(s.feed(b"NOOP " + b"x" * 1000 + b"\r\n")) == ["500 5.5.2"]


def test_ten_megabytes_without_crlf_in_small_reads_is_linear() -> None:
    """A 10 MB DATA "line" fed 1 KB at a time: every read is scanned once with a few
    carried bytes, never the whole message again (quadratic would take minutes)."""
    blob = bytes(range(32, 127)) * (10 * 1024 * 1024 // 95)
    s = new_session(max_message_bytes=20 * 1024 * 1024)
    s.feed(EHLO + TXN)
    started = time.process_time()
    for i in range(0, len(blob), 1024):
        assert s.feed(blob[i : i + 1024]) == b""
    out = s.feed(b"\r\n.\r\n")
    elapsed = time.process_time() - started
    assert codes(out) == ["250 2.0.0"]
    (m,) = s.of(Message)
    assert isinstance(m, Message) and m.data == blob + b"\r\n"
    assert elapsed < 10, elapsed  # ~0.1 s


def test_ten_megabytes_over_the_limit_is_refused_after_the_end_mark() -> None:
    """Over max_message_bytes nothing more is kept, the rest is read up to the end mark
    (never as commands) and refused with 552; the session goes on."""
    s = new_session(max_message_bytes=1024 * 1024)
    s.feed(EHLO + TXN)
    chunk = b"MAIL FROM:<evil@example.net>" * 2340  # ~64 KB, no CRLF
    for _ in range(160):
        assert s.feed(chunk) == b""
    assert codes(s.feed(b"\r\n.\r\nNOOP\r\n")) == ["552 5.3.4", "250 2.0.0"]
    assert s.of(Message) == []
    assert [e for e in s.of(ProtocolError) if isinstance(e, ProtocolError) and e.reply.code == 552]
    assert codes(s.feed(TXN + b"ok\r\n.\r\n")) == ["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"]


def test_end_mark_split_at_every_position() -> None:
    body = b"Subject: x\r\n\r\nline\r\n.dot\r\nend\r\n"
    wire = body.replace(b"\r\n.", b"\r\n..") + b".\r\nQUIT\r\n"
    for cut in range(len(wire) + 1):
        for cut2 in (cut, min(len(wire), cut + 1), min(len(wire), cut + 3)):
            s = new_session()
            s.feed(EHLO + TXN)
            s.feed(wire[:cut])
            s.feed(wire[cut:cut2])
            out = s.feed(wire[cut2:])
            assert codes(bytes(s.out).split(b"354")[-1]) == ["250 2.0.0", "221 2.0.0"], (cut, cut2, out)
            (m,) = s.of(Message)
            assert isinstance(m, Message) and m.data == body


# A bare CR and a bare LF apart in one line are no CR LF pair.  Session 11 found the
# core taking these: it read the line ends with every other byte deleted, "\r\n".
APART = [b"a\r.\nb\r\n", b"a\rz\nb\r\n", b"\rx\n", b"line\r\n\r.\n.\r\n", b"x\r\r\n\n"]


@pytest.mark.parametrize("body", APART)
def test_bare_cr_and_bare_lf_apart_are_refused_at_every_cut(body: bytes) -> None:
    wire = b"Subject: x\r\n\r\n" + body + b"\r\n.\r\nNOOP\r\n"
    for cut in range(len(wire) + 1):
        s = new_session()
        s.feed(EHLO + TXN)
        out = s.feed(wire[:cut]) + s.feed(wire[cut:])
        assert codes(out) == ["500 5.5.2", "250 2.0.0"], (cut, out)
        assert s.of(Message) == []
    s = new_session()
    s.feed(EHLO + TXN)
    assert codes(s.feed_bytewise(wire)) == ["500 5.5.2", "250 2.0.0"]
    # by BDAT too, and normalised where the setting asks for it
    data = b"Subject: x\r\n\r\n" + body
    s = new_session()
    s.feed(EHLO)
    out = s.feed(b"MAIL FROM:<bob@example.net>\r\nRCPT TO:<alice@example.org>\r\n"
                 b"BDAT %d LAST\r\n" % len(data) + data)
    assert codes(out)[-1] == "500 5.5.2"
    s = new_session(normalize_bare_lf=True)
    s.feed(EHLO + TXN)
    assert codes(s.feed(wire)) == ["250 2.0.0", "250 2.0.0"]
    (m,) = s.of(Message)
    assert isinstance(m, Message) and b"\r" not in m.data.replace(b"\r\n", b"")


TEXTSCAN = compiled.c_module("postier._textscan")
needs_c = pytest.mark.skipif(TEXTSCAN is None, reason="_textscan not built or POSTIER_COMPILED=0")
LINE_BYTES = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b".", b"a", b"\r\n.", b"\x00", b"\xff"]),
                      max_size=40).map(b"".join) | st.binary(max_size=300)


@needs_c
@settings(max_examples=600, deadline=None)
@given(LINE_BYTES, st.data())
def test_line_ends_in_c_is_its_twin(data: bytes, draw: st.DataObject) -> None:
    start = draw.draw(st.integers(0, len(data)))
    end = draw.draw(st.integers(start, len(data)))
    cr_open = draw.draw(st.booleans())
    assert TEXTSCAN is not None
    assert TEXTSCAN.line_ends(data, start, end, cr_open) == core.python_line_ends(data, start, end, cr_open)
    assert TEXTSCAN.find_dot_line(data, start) == core.python_find_dot_line(data, start) \
        == data.find(b"\n.", start)


def test_line_ends_twin_reads_pairs_only() -> None:
    """The twin against the definition: every CR followed by an LF, every LF after a CR."""
    for data, cr_open, want in [
        (b"", False, 0), (b"", True, 1), (b"\n", True, 0), (b"a", True, core.BARE),
        (b"a\r\nb\r\n", False, 0), (b"a\r\nb\r", False, 1), (b"a\r.\n", False, core.BARE),
        (b"\n\r", False, core.BARE), (b"\r\r\n", False, core.BARE), (b"\r", False, 1),
    ]:
        assert core.python_line_ends(data, 0, len(data), cr_open) == want, (data, cr_open)
        if TEXTSCAN is not None:
            assert TEXTSCAN.line_ends(data, 0, len(data), cr_open) == want, (data, cr_open)


@pytest.mark.parametrize("twin", [True, False])
def test_line_end_scans_refuse_bad_arguments(twin: bool) -> None:
    if not twin and TEXTSCAN is None:
        pytest.skip("_textscan not built or POSTIER_COMPILED=0")
    line_ends = core.python_line_ends if twin else TEXTSCAN.line_ends  # type: ignore[union-attr]
    find = core.python_find_dot_line if twin else TEXTSCAN.find_dot_line  # type: ignore[union-attr]
    for start, end in [(-1, 2), (3, 2), (0, 9), (9, 9)]:
        with pytest.raises(ValueError):
            line_ends(b"abcd", start, end, False)
    with pytest.raises(ValueError):
        find(b"abcd", 5)
    if not twin:
        with pytest.raises(TypeError):
            line_ends(bytearray(b"ab"), 0, 1, False)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            find(b"ab", "0")  # type: ignore[arg-type]
