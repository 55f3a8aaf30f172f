"""The ``\\Recent`` flag of IMAP4rev1 (RFC 3501 §2.3.2), which IMAP4rev2 removed.

RFC 3501 §2.3.2: a message is ``\\Recent`` in the one session that is the first to be told
about it; read-write sessions take that from every later session, read-only ones (EXAMINE,
RFC 3501 §6.3.2) do not.  The store keeps no per-mailbox "recent" state, so this is a
*per-process*, in-memory watermark per mailbox: the highest UID some read-write session has
claimed.  UIDs above it are recent for the next session that claims them.  After a restart
(or in another worker process) the watermark starts at 0, so what is there is recent once
more — RFC 3501 §2.3.2 allows that: "If it is not possible to determine whether or not this
session is the first session to be notified about a message, then that message SHOULD be
considered recent."
"""

from __future__ import annotations

from typing import Final

RECENT_FLAG: Final = "\\Recent"

_Key = tuple[int, int]  # (mailbox id, UIDVALIDITY): a recreated mailbox starts afresh


class RecentWatermarks:
    """Highest claimed UID per mailbox, shared by the sessions of one process."""

    def __init__(self) -> None:
        self._claimed: dict[_Key, int] = {}

    def peek(self, mailbox_id: int, uidvalidity: int) -> int:
        """The watermark: UIDs above it are recent for whoever claims them next."""
        return self._claimed.get((mailbox_id, uidvalidity), 0)

    def claim(self, mailbox_id: int, uidvalidity: int, top_uid: int) -> int:
        """Claim every UID up to *top_uid*; the previous watermark (recent: above it)."""
        key = (mailbox_id, uidvalidity)
        previous = self._claimed.get(key, 0)
        if top_uid > previous:
            self._claimed[key] = top_uid
        return previous

    def forget(self, mailbox_id: int, uidvalidity: int) -> None:
        self._claimed.pop((mailbox_id, uidvalidity), None)
