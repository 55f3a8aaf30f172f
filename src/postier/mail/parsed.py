"""The result of parsing a message once, at delivery (RFC 9051 §7.5.2, RFC 2045/2046).

Everything IMAP FETCH/SEARCH/SORT/THREAD, POP3 and the webmail need is computed here a
single time and stored beside the body; nothing re-parses a whole message later.
Offsets are byte offsets into the raw message exactly as stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, init=False)
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

    def __init__(
        self, header_start: int, body_start: int, body_end: int, content_type: str,
        params: tuple[tuple[str, str], ...] = (), encoding: str = "7bit", lines: int = 0,
        children: tuple[MimePart, ...] = (), message: MimePart | None = None,
    ) -> None:
        # not the decorator's: compiled.py, "Frozen dataclasses"
        object.__setattr__(self, "header_start", header_start)
        object.__setattr__(self, "body_start", body_start)
        object.__setattr__(self, "body_end", body_end)
        object.__setattr__(self, "content_type", content_type)
        object.__setattr__(self, "params", params)
        object.__setattr__(self, "encoding", encoding)
        object.__setattr__(self, "lines", lines)
        object.__setattr__(self, "children", children)
        object.__setattr__(self, "message", message)

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True, init=False)
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

    def __init__(
        self, envelope: bytes, body: bytes, bodystructure: bytes, root: MimePart,
        subject: str = "", from_: str = "", to: str = "", cc: str = "", bcc: str = "",
        sender: str = "", reply_to: str = "", date: int | None = None, message_id: str = "",
        in_reply_to: str = "", references: tuple[str, ...] = (), has_attachment: bool = False,
        text: str = "", headers_text: str = "",
    ) -> None:
        # not the decorator's: compiled.py, "Frozen dataclasses"
        object.__setattr__(self, "envelope", envelope)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "bodystructure", bodystructure)
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "subject", subject)
        object.__setattr__(self, "from_", from_)
        object.__setattr__(self, "to", to)
        object.__setattr__(self, "cc", cc)
        object.__setattr__(self, "bcc", bcc)
        object.__setattr__(self, "sender", sender)
        object.__setattr__(self, "reply_to", reply_to)
        object.__setattr__(self, "date", date)
        object.__setattr__(self, "message_id", message_id)
        object.__setattr__(self, "in_reply_to", in_reply_to)
        object.__setattr__(self, "references", references)
        object.__setattr__(self, "has_attachment", has_attachment)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "headers_text", headers_text)
