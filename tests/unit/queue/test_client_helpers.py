"""Pure pieces of the SMTP client: replies, xtext, canonical form, dot-stuffing."""

from __future__ import annotations

from postier.queue.client import (
    Reply,
    canonical,
    dot_stuff,
    envelope_needs_smtputf8,
    headers_need_smtputf8,
    xtext,
)


def test_reply_enhanced_status() -> None:
    assert Reply(550, ("5.1.1 no such user",)).enhanced == "5.1.1"
    assert Reply(550, ("no such user",)).status() == "5.0.0"
    assert Reply(451, ("5.1.1 mismatched class",)).enhanced is None  # class must match
    assert str(Reply(250, ("2.0.0 ok", "queued"))) == "250 2.0.0 ok queued"
    assert Reply(421, ("bye",)).temporary and not Reply(250, ("x",)).temporary


def test_xtext() -> None:
    assert xtext("abc+=d e") == "abc+2B+3Dd+20e"
    assert xtext("é") == "+C3+A9"


def test_canonical_line_ends() -> None:
    assert canonical(b"a\nb\r\nc\rd") == b"a\r\nb\r\nc\r\nd\r\n"
    assert canonical(b"a\r\n") == b"a\r\n"


def test_dot_stuffing() -> None:
    assert dot_stuff(b".a\r\nb\r\n..c\r\n") == b"..a\r\nb\r\n...c\r\n.\r\n"


def test_smtputf8_needs() -> None:
    assert envelope_needs_smtputf8("ä@example.org", ["b@example.net"])
    assert not envelope_needs_smtputf8("a@example.org", ["b@example.net"])
    assert headers_need_smtputf8("Subject: é\r\n\r\nbody".encode())
    assert not headers_need_smtputf8("Subject: e\r\n\r\nbodé".encode())
