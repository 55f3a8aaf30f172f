"""The result of parsing a message once, at delivery (RFC 9051 §7.5.2, RFC 2045/2046).

Everything IMAP FETCH/SEARCH/SORT/THREAD, POP3 and the webmail need is computed here a
single time and stored beside the body; nothing re-parses a whole message later.
Offsets are byte offsets into the raw message exactly as stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class MimePart:
    """One MIME entity with the byte ranges of its header and body.

    ``header_start``..``body_start`` is the header section including the blank line that
    ends it (empty range when the entity has no header); ``body_start``..``body_end`` is the
    body.  ``children`` holds the parts of a multipart; ``message`` holds the encapsulated
    message of a message/rfc822 (or message/global) part.
    """

    header_start: int
    body_start: int
    body_end: int
    content_type: str  # lower case "type/subtype"; defaults per RFC 2045 §5.2
    params: tuple[tuple[str, str], ...] = ()  # lower-case names, decoded values (RFC 2231)
    encoding: str = "7bit"  # lower-case Content-Transfer-Encoding
    lines: int = 0  # body line count (text/* and message/rfc822)
    children: tuple[MimePart, ...] = ()
    message: MimePart | None = None

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """Parse-once metadata of a message."""

    envelope: bytes  # IMAP ENVELOPE, wire form "(date subject from ...)"
    body: bytes  # IMAP BODY (non-extensible BODYSTRUCTURE), wire form
    bodystructure: bytes  # IMAP BODYSTRUCTURE with extension data, wire form
    root: MimePart
    subject: str = ""  # RFC 2047 decoded, unfolded
    from_: str = ""  # decoded "Name <addr>, ..." for SEARCH FROM and SORT
    to: str = ""
    cc: str = ""
    bcc: str = ""
    sender: str = ""
    reply_to: str = ""
    date: int | None = None  # Date: header as UTC epoch seconds, None if absent/invalid
    message_id: str = ""
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    has_attachment: bool = False
    text: str = ""  # searchable text of the body (decoded text parts, HTML tags stripped)
    headers_text: str = field(default="")  # all header fields decoded, for SEARCH TEXT
