"""Delivery status notifications (RFC 3464 multipart/report) to the sender of a message.

RFC 3461 rules honoured here: NOTIFY=NEVER gets nothing; an empty NOTIFY means
FAILURE,DELAY (§4.1: "the default … is NOTIFY=FAILURE or NOTIFY=FAILURE,DELAY"); SUCCESS
is reported as "relayed" when the next hop did not take the DSN request over; RET=HDRS
returns only the header section, RET=FULL the whole message (§4.3); ENVID and ORCPT are
echoed (§6.3).  A DSN is never sent to the null reverse-path <> (RFC 5321 §4.5.5,
RFC 3461 §6.2); the caller checks the sender, ``build_dsn`` refuses an empty one.

Recipient outcomes are kept in the queue as one readable line, ``"<status> <text>"``,
where text is ``"<host> said: <reply>"`` for a remote reply (see ``outcome_text``).
"""

from __future__ import annotations

import email.utils
import enum
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_SAID = " said: "


class Action(enum.Enum):
    """RFC 3464 §2.3.3."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"


def notify_wants(notify: str, action: Action) -> bool:
    """Whether a recipient's NOTIFY parameter asks for a DSN of this kind."""
    values = {v.strip().upper() for v in notify.split(",") if v.strip()}
    if not values:
        values = {"FAILURE", "DELAY"}
    if "NEVER" in values:
        return False
    if action is Action.FAILED:
        return "FAILURE" in values
    if action is Action.DELAYED:
        return "DELAY" in values
    return "SUCCESS" in values


def outcome_text(status: str, text: str, remote_mta: str = "") -> str:
    """The queue's one-line record of an outcome: ``"5.1.1 mx.example said: 550 …"``."""
    return f"{status} {remote_mta}{_SAID}{text}" if remote_mta else f"{status} {text}"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # RFC 3463 x.y.z
    text: str
    remote_mta: str = ""

    @classmethod
    def parse(cls, line: str, default_status: str = "4.0.0") -> Outcome:
        status, _, rest = line.partition(" ")
        if not _STATUS.match(status):
            return cls(default_status, line)
        host, said, reply = rest.partition(_SAID)
        if said and host and " " not in host:
            return cls(status, reply, host)
        return cls(status, rest)


@dataclass(frozen=True, slots=True)
class RecipientReport:
    address: str
    action: Action
    status: str  # RFC 3463 x.y.z
    orcpt: str = ""  # "rfc822;addr" from the submission
    remote_mta: str = ""
    diagnostic: str = ""  # the remote's reply ("550 5.1.1 no such user") or our reason
    diagnostic_is_smtp: bool = False
    will_retry_until: float | None = None


@dataclass(frozen=True, slots=True)
class Dsn:
    recipient: str  # the original sender; the DSN's envelope sender is always <>
    message: bytes


def _header_section(original: bytes) -> bytes:
    end = original.find(b"\r\n\r\n")
    return original if end < 0 else original[: end + 2]


def _fold_safe(value: str) -> str:
    """A header value with no line breaks (they would inject fields)."""
    return " ".join(value.split())


def _date(ts: float) -> str:
    return email.utils.formatdate(ts, localtime=False)


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    reports: Sequence[RecipientReport],
    original: bytes,
    arrival: float,
    now: float,
    envid: str = "",
    ret: str = "",
    full_max_bytes: int = 1024 * 1024,
) -> Dsn:
    """One RFC 3464 report covering ``reports`` (all for one queued message)."""
    if not sender:
        raise ValueError("no DSN to the null reverse-path (RFC 3461 §6.2)")
    if not reports:
        raise ValueError("a DSN needs at least one recipient report")
    actions = {r.action for r in reports}
    failed = Action.FAILED in actions
    if failed:
        subject = "Undelivered Mail Returned to Sender"
        intro = "Your message could not be delivered to one or more recipients."
    elif Action.DELAYED in actions:
        subject = "Delayed Mail (still being retried)"
        intro = "Your message has not been delivered yet to one or more recipients.\r\n" \
                "Delivery will be retried; you do not need to resend it."
    else:
        subject = "Successful Mail Delivery Report"
        intro = "Your message was delivered (or relayed onwards) to the recipients below."
    boundary = f"=_postier_dsn_{secrets.token_hex(12)}"
    mailer_daemon = f"MAILER-DAEMON@{reporting_mta}"

    human = [intro, ""]
    for r in reports:
        line = f"<{r.address}>: {r.action.value}"
        if r.diagnostic:
            line += f" ({r.remote_mta + ' said: ' if r.remote_mta else ''}{_fold_safe(r.diagnostic)})"
        human.append(line)

    fields = [f"Reporting-MTA: dns; {reporting_mta}"]
    if envid:
        fields.append(f"Original-Envelope-Id: {_fold_safe(envid)}")
    fields.append(f"Arrival-Date: {_date(arrival)}")
    groups = ["\r\n".join(fields)]
    for r in reports:
        g = []
        if r.orcpt:
            g.append(f"Original-Recipient: {_fold_safe(r.orcpt)}")
        g.append(f"Final-Recipient: rfc822; {r.address}")
        g.append(f"Action: {r.action.value}")
        g.append(f"Status: {r.status}")
        if r.remote_mta:
            g.append(f"Remote-MTA: dns; {r.remote_mta}")
        if r.diagnostic:
            kind = "smtp" if r.diagnostic_is_smtp else "x-postier"
            g.append(f"Diagnostic-Code: {kind}; {_fold_safe(r.diagnostic)}")
        g.append(f"Last-Attempt-Date: {_date(now)}")
        if r.will_retry_until is not None:
            g.append(f"Will-Retry-Until: {_date(r.will_retry_until)}")
        groups.append("\r\n".join(g))
    status_part = "\r\n\r\n".join(groups) + "\r\n"

    # RFC 3461 §4.3: RET=FULL returns the message (failures only; delays and successes
    # get the headers, like every MTA does); without RET we choose FULL for failures.
    full = failed and ret.upper() != "HDRS" and len(original) <= full_max_bytes
    returned = original if full else _header_section(original)
    eight_bit = not returned.isascii()
    returned_type = "message/rfc822" if full else "text/rfc822-headers"
    cte = "Content-Transfer-Encoding: 8bit\r\n" if eight_bit else ""

    head = (
        f"From: Mail Delivery System <{mailer_daemon}>\r\n"
        f"To: <{sender}>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {_date(now)}\r\n"
        f"Message-ID: <dsn.{secrets.token_hex(12)}@{reporting_mta}>\r\n"
        "Auto-Submitted: auto-replied\r\n"  # RFC 3834 §5
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n boundary="{boundary}"\r\n'
    )
    body = (
        "\r\n"
        "This is a MIME-encapsulated message.\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
        + "\r\n".join(human) + "\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        + status_part + "\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: {returned_type}\r\n{cte}\r\n"
    )
    tail = f"\r\n--{boundary}--\r\n".encode("ascii")
    if not returned.endswith(b"\r\n"):
        returned += b"\r\n"
    message = head.encode("utf-8") + body.encode("utf-8") + returned + tail
    return Dsn(sender, message)
