"""DSNs are RFC 3464 multipart/report messages the stdlib email package reads back."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage, Message

import pytest

from postier.queue.dsn import (
    Action,
    Outcome,
    RecipientReport,
    build_dsn,
    notify_wants,
    outcome_text,
)

ORIGINAL = (
    b"From: alice@example.org\r\nTo: bob@example.net\r\nSubject: hello\r\n"
    b"Message-ID: <m1@example.org>\r\n\r\nbody line\r\n.dot line\r\n"
)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg

def groups_of(part: Message) -> list[Message]:
    """The field groups of a message/delivery-status part (or the message of a
    message/rfc822 part), as the stdlib parses them."""
    payload = part.get_payload()
    assert isinstance(payload, list)
    return [m for m in payload if isinstance(m, Message)]



def test_notify_rules() -> None:
    assert notify_wants("", Action.FAILED) and notify_wants("", Action.DELAYED)
    assert not notify_wants("", Action.RELAYED)
    assert not notify_wants("NEVER", Action.FAILED)
    assert notify_wants("SUCCESS,DELAY", Action.DELIVERED)
    assert not notify_wants("SUCCESS", Action.FAILED)
    assert notify_wants("failure", Action.FAILED)


def test_outcome_round_trip() -> None:
    line = outcome_text("5.1.1", "550 5.1.1 no such user", "mx.example.net")
    assert line == "5.1.1 mx.example.net said: 550 5.1.1 no such user"
    assert Outcome.parse(line) == Outcome("5.1.1", "550 5.1.1 no such user", "mx.example.net")
    assert Outcome.parse("4.4.1 connection refused") == Outcome("4.4.1", "connection refused")
    assert Outcome.parse("garbage") == Outcome("4.0.0", "garbage")


def test_failure_dsn_parses_back() -> None:
    reports = [
        RecipientReport("carol@example.net", Action.FAILED, "5.1.1", "rfc822;carol@example.net",
                        "mx.example.net", "550 5.1.1 no such user", True),
    ]
    dsn = build_dsn(reporting_mta="mail.example.org", sender="alice@example.org",
                    reports=reports, original=ORIGINAL, arrival=1_700_000_000,
                    now=1_700_000_100, envid="env-1", ret="FULL")
    assert dsn.recipient == "alice@example.org"
    msg = parse(dsn.message)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["To"] == "alice@example.org"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "message/rfc822",
    ]
    assert "carol@example.net" in parts[0].get_content()
    # message/delivery-status: the stdlib gives one block per field group.
    groups = groups_of(parts[1])
    assert len(groups) == 2
    assert groups[0]["Reporting-MTA"] == "dns; mail.example.org"
    assert groups[0]["Original-Envelope-Id"] == "env-1"
    rcpt = groups[1]
    assert rcpt["Final-Recipient"] == "rfc822; carol@example.net"
    assert rcpt["Original-Recipient"] == "rfc822;carol@example.net"
    assert rcpt["Action"] == "failed"
    assert rcpt["Status"] == "5.1.1"
    assert rcpt["Remote-MTA"] == "dns; mx.example.net"
    assert rcpt["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    returned = groups_of(parts[2])[0]
    assert returned["Message-ID"] == "<m1@example.org>"
    assert ORIGINAL in dsn.message  # the whole original, byte for byte


def test_hdrs_returns_headers_only() -> None:
    reports = [RecipientReport("c@example.net", Action.FAILED, "5.0.0")]
    dsn = build_dsn(reporting_mta="m", sender="a@example.org", reports=reports,
                    original=ORIGINAL, arrival=0, now=0, ret="HDRS")
    parts = list(parse(dsn.message).iter_parts())
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert b"body line" not in dsn.message
    assert b"Subject: hello" in dsn.message


def test_delay_dsn_has_will_retry_until_and_headers_only() -> None:
    reports = [RecipientReport("c@example.net", Action.DELAYED, "4.4.1",
                               will_retry_until=1_700_400_000)]
    dsn = build_dsn(reporting_mta="m", sender="a@example.org", reports=reports,
                    original=ORIGINAL, arrival=0, now=0, ret="FULL")
    msg = parse(dsn.message)
    assert "Delayed" in msg["Subject"]
    parts = list(msg.iter_parts())
    assert groups_of(parts[1])[1]["Action"] == "delayed"
    assert groups_of(parts[1])[1]["Will-Retry-Until"]
    assert parts[2].get_content_type() == "text/rfc822-headers"


def test_never_to_null_sender() -> None:
    with pytest.raises(ValueError):
        build_dsn(reporting_mta="m", sender="", reports=[
            RecipientReport("c@example.net", Action.FAILED, "5.0.0")],
            original=ORIGINAL, arrival=0, now=0)


def test_no_header_injection_from_remote_text() -> None:
    reports = [RecipientReport("c@example.net", Action.FAILED, "5.0.0",
                               diagnostic="550 bad\r\nBcc: victim@example.com")]
    dsn = build_dsn(reporting_mta="m", sender="a@example.org", reports=reports,
                    original=ORIGINAL, arrival=0, now=0)
    assert b"\r\nBcc:" not in dsn.message
