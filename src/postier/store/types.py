"""Typed records exchanged with the store (see interface.py for the operations)."""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import NamedTuple, NewType

AccountId = NewType("AccountId", int)
MailboxId = NewType("MailboxId", int)
BodyId = NewType("BodyId", int)
Uid = NewType("Uid", int)
ModSeq = NewType("ModSeq", int)

# RFC 9051 §2.3.2 system flags, stored as a bit mask so that counts and searches on them
# are index-friendly integer tests.
SYSTEM_FLAGS: dict[str, int] = {
    "\\Seen": 1,
    "\\Answered": 2,
    "\\Flagged": 4,
    "\\Deleted": 8,
    "\\Draft": 16,
}
_SYSTEM_BY_LOWER = {name.lower(): bit for name, bit in SYSTEM_FLAGS.items()}
FLAG_SEEN = 1
FLAG_DELETED = 8

# Mailboxes every new account gets, with their RFC 6154 SPECIAL-USE attribute.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)
HIERARCHY_SEPARATOR = "/"


def flags_to_mask(flags: frozenset[str] | set[str] | tuple[str, ...]) -> tuple[int, str]:
    """Split flags into (system flag mask, space-separated sorted keywords)."""
    mask = 0
    keywords: set[str] = set()
    for flag in flags:
        bit = _SYSTEM_BY_LOWER.get(flag.lower()) if flag.startswith("\\") else None
        if bit is not None:
            mask |= bit
        elif not flag.startswith("\\"):
            keywords.add(flag)
    return mask, " ".join(sorted(keywords))


@functools.lru_cache(maxsize=4096)
def mask_to_flags(mask: int, keywords: str) -> frozenset[str]:
    """Flag sets repeat endlessly across a mailbox: one shared frozenset per combination."""
    flags = {name for name, bit in SYSTEM_FLAGS.items() if mask & bit}
    if keywords:
        flags.update(keywords.split(" "))
    return frozenset(flags)


@dataclass(frozen=True, slots=True)
class Domain:
    name: str
    created: int


@dataclass(frozen=True, slots=True)
class Account:
    id: AccountId
    address: str
    domain: str
    password_hash: str
    scram: str | None
    quota_bytes: int  # 0 = unlimited
    used_bytes: int
    enabled: bool
    created: int


@dataclass(frozen=True, slots=True)
class Alias:
    source: str  # "local@domain", or "@domain" for a catch-all
    target: str


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: MailboxId
    account_id: AccountId
    name: str
    uidvalidity: int
    uidnext: Uid
    highestmodseq: ModSeq
    special_use: str | None
    subscribed: bool


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    mailbox: Mailbox
    messages: int
    unseen: int
    deleted: int
    size: int


class MessageInfo(NamedTuple):
    """What listing a mailbox needs (IMAP SELECT, POP3 STAT/LIST/UIDL).

    A NamedTuple rather than a frozen dataclass: a 100,000-message mailbox is listed in
    ~150 ms less (tuple construction); change fields with ``info._replace(...)``.
    """

    uid: Uid
    modseq: ModSeq
    flags: frozenset[str]
    internal_date: int  # epoch seconds
    size: int  # octets of prefix + body, i.e. RFC822.SIZE
    body_id: BodyId


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """A message with its parse-once metadata (IMAP FETCH of ENVELOPE/BODYSTRUCTURE/parts).

    The stored message is ``prefix + body``: ``prefix`` holds the per-recipient trace
    fields (Return-Path, Delivered-To) so one body serves every recipient; the offsets in
    ``parts`` are relative to the body and must be shifted by ``len(prefix)``.
    """

    info: MessageInfo
    prefix: bytes
    envelope: bytes
    body: bytes
    bodystructure: bytes
    parts: bytes  # postier.mail.parse.encode_parts() of the body's MIME tree
    save_date: int


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to add to a mailbox; the body was prepared with Store.prepare_body()."""

    mailbox_id: MailboxId
    body: PreparedBody
    prefix: bytes = b""
    flags: frozenset[str] = frozenset()
    internal_date: int | None = None  # None: now


@dataclass(frozen=True, slots=True)
class LocalCopy:
    """One account's copy of a delivered message (Store.deliver)."""

    account: str  # the account's address
    prefix: bytes = b""  # Return-Path, Delivered-To
    junk: bool = False  # into the account's \Junk mailbox (RFC 6154); INBOX if it has none


@dataclass(frozen=True, slots=True)
class PreparedBody:
    """A body written durably to the blob store and parsed once, not yet referenced."""

    sha256: str
    size: int
    parsed: object  # postier.mail.parsed.ParsedMessage (kept opaque to avoid a cycle)
    inline: bytes | None = None  # small bodies live in the database row, not in a file


@dataclass(frozen=True, slots=True)
class Appended:
    mailbox_id: MailboxId
    uidvalidity: int
    uid: Uid
    modseq: ModSeq


class FlagMode(enum.Enum):
    ADD = "+"
    REMOVE = "-"
    REPLACE = ""


@dataclass(frozen=True, slots=True)
class FlagUpdate:
    uid: Uid
    modseq: ModSeq
    flags: frozenset[str]


@dataclass(frozen=True, slots=True)
class StoreResult:
    updated: tuple[FlagUpdate, ...]
    failed: tuple[Uid, ...]  # RFC 7162 UNCHANGEDSINCE conflicts (MODIFIED response code)


@dataclass(frozen=True, slots=True)
class CopyResult:
    uidvalidity: int
    source_uids: tuple[Uid, ...]
    dest_uids: tuple[Uid, ...]


@dataclass(frozen=True, slots=True)
class Changes:
    """RFC 7162 CONDSTORE/QRESYNC: what changed in a mailbox since a MODSEQ."""

    highestmodseq: ModSeq
    changed: tuple[MessageInfo, ...]
    vanished: tuple[Uid, ...]


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    address: str
    notify: str = ""  # RFC 3461 NOTIFY value as given, "" = default
    orcpt: str = ""


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: int
    sender: str
    recipients: tuple[QueuedRecipient, ...]
    body_sha256: str
    size: int
    created: int
    envid: str
    ret: str
    next_attempt: int
    attempts: int
    last_error: str


@dataclass(frozen=True, slots=True)
class DkimKeyRecord:
    domain: str
    selector: str
    algorithm: str  # "rsa-sha256" | "ed25519-sha256"
    private_key_pem: str
    created: int
    active: bool
