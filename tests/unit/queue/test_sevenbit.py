"""8-bit → 7-bit conversion for peers without 8BITMIME (RFC 6152 §3)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from postier.queue.sevenbit import to_7bit


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_ascii_unchanged() -> None:
    raw = b"Subject: x\r\n\r\nhello\r\n"
    assert to_7bit(raw) is raw


def test_plain_text_becomes_quoted_printable() -> None:
    text = "Grüße aus Köln — ça va?\r\nline two with trailing space \r\n" + "é" * 60 + "\r\n"
    raw = (b"From: a@example.org\r\nSubject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + text.encode())
    out = to_7bit(raw)
    assert out is not None and out.isascii()
    assert all(len(line) <= 76 for line in out.split(b"\r\n"))
    assert b"\r\n" in out and b"\n" not in out.replace(b"\r\n", b"")
    msg = parse(out)
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg["MIME-Version"] is None or msg["MIME-Version"] == "1.0"
    assert msg.get_content().replace("\r\n", "\n") == text.replace("\r\n", "\n")
    assert out.startswith(b"From: a@example.org\r\nSubject: hi\r\n")


def test_no_mime_headers_get_mime_version() -> None:
    out = to_7bit("Subject: x\r\n\r\nnaïve\r\n".encode())
    assert out is not None
    msg = parse(out)
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_payload(decode=True) == "naïve\r\n".encode()  # the same octets


def test_multipart_with_text_and_binary_attachment() -> None:
    blob = bytes(range(256))
    raw = (b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
           b"preamble\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "café\r\n.dot".encode() +
           b"\r\n--b1\r\nContent-Type: application/octet-stream\r\n\r\n" + blob.replace(
               b"\r", b"").replace(b"\n", b"") +
           b"\r\n--b1\r\nContent-Type: text/plain\r\n\r\nascii part\r\n--b1--\r\nepilogue\r\n")
    out = to_7bit(raw)
    assert out is not None and out.isascii()
    assert b"preamble\r\n--b1\r\n" in out and out.endswith(b"--b1--\r\nepilogue\r\n")
    assert b"ascii part" in out
    parts = list(parse(out).iter_parts())
    assert [p["Content-Transfer-Encoding"] for p in parts] == [
        "quoted-printable", "base64", None]
    assert parts[0].get_content() == "café\r\n.dot"
    assert parts[1].get_content() == blob.replace(b"\r", b"").replace(b"\n", b"")


def test_embedded_message_converted_inside() -> None:
    inner = "Subject: inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nüber\r\n"
    raw = (b"Subject: outer\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n"
           + inner.encode())
    out = to_7bit(raw)
    assert out is not None and out.isascii()
    assert b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n" in out
    assert b"Content-Transfer-Encoding: quoted-printable" in out
    assert b"MIME-Version" not in out.split(b"Subject: inner")[1]


def test_not_convertible() -> None:
    assert to_7bit("Subject: Grüße\r\n\r\nbody\r\n".encode()) is None  # UTF-8 header
    assert to_7bit(b"Content-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\n"
                   b"\xff\r\n") is None
    assert to_7bit(b"Content-Type: multipart/mixed\r\n\r\n\xff\r\n") is None  # no boundary
    assert to_7bit(b"Content-Type: message/global\r\n\r\nSubject: x\r\n\r\n\xff\r\n") is None
    assert to_7bit(b'Content-Type: multipart/mixed; boundary=b\r\n\r\n\xffpre\r\n--b\r\n'
                   b"\r\nx\r\n--b--\r\n") is None  # 8-bit preamble
