"""Typed IMAP client commands, as produced by :mod:`postier.imap.parser`.

Every command of IMAP4rev2 (RFC 9051 §6) and IMAP4rev1 (RFC 3501 §6), plus the
extensions the server implements, is a frozen slotted dataclass.  The parser decodes
wire syntax (RFC 9051 §9) into these values; the session never sees raw bytes except
where the grammar keeps them opaque (passwords, message literals, SASL data).

Extensions covered:

- CONDSTORE / QRESYNC (RFC 7162): SELECT/EXAMINE parameters, FETCH CHANGEDSINCE and
  VANISHED, STORE UNCHANGEDSINCE, SEARCH MODSEQ, UID EXPUNGE.
- LIST-EXTENDED (RFC 5258), LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154),
  CREATE-SPECIAL-USE.
- MULTIAPPEND (RFC 3502), BINARY (RFC 3516), ESEARCH (RFC 4731), SEARCHRES (RFC 5182),
  SORT / THREAD (RFC 5256), ESORT (RFC 5267), WITHIN (RFC 5032),
  SAVEDATE (RFC 8514), QUOTA (RFC 9208), ID (RFC 2971), COMPRESS (RFC 4978),
  ENABLE (RFC 5161), MOVE (RFC 6851), UNSELECT (RFC 3691), IDLE (RFC 2177),
  NAMESPACE (RFC 2342).
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

# --------------------------------------------------------------------------- sequence sets

STAR: Final = None
"""The value of ``*`` in a :class:`SeqRange` (RFC 9051 §9 ``seq-number``)."""


@dataclass(frozen=True, slots=True)
class SeqRange:
    """``a:b`` (or a single number when ``start == end``); ``None`` stands for ``*``."""

    start: int | None
    end: int | None

    def bounds(self, max_value: int) -> tuple[int, int]:
        """The range as ``(low, high)`` once ``*`` is resolved to *max_value*.

        RFC 9051 §9 ``seq-range``: ``a:b`` and ``b:a`` are the same range, and ``*`` is
        the largest number in use (so ``559:*`` contains *max_value* even when 559 is
        larger, RFC 9051 §6.4.9).
        """
        a = max_value if self.start is None else self.start
        b = max_value if self.end is None else self.end
        return (a, b) if a <= b else (b, a)


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """An IMAP ``sequence-set`` (RFC 9051 §9), or ``$`` (SEARCHRES, RFC 5182).

    The same type serves message sequence numbers and UIDs: whether it is one or the other
    is a property of the command (``uid=True``).
    """

    ranges: tuple[SeqRange, ...] = ()
    saved: bool = False
    """``$``: the result saved by the last ``SEARCH RETURN (SAVE)`` (RFC 5182 §2.1)."""

    @property
    def uses_star(self) -> bool:
        return any(r.start is None or r.end is None for r in self.ranges)

    def normalized(self, max_value: int) -> list[tuple[int, int]]:
        """Sorted, merged, inclusive ranges clipped to ``1..max_value``.

        Raises :class:`ValueError` for ``$``: the session resolves it first.
        """
        if self.saved:
            raise ValueError("'$' must be resolved by the session before expansion")
        spans = sorted(r.bounds(max_value) for r in self.ranges)
        merged: list[tuple[int, int]] = []
        for low, high in spans:
            low, high = max(low, 1), min(high, max_value)
            if low > high:
                continue
            if merged and low <= merged[-1][1] + 1:
                if high > merged[-1][1]:
                    merged[-1] = (merged[-1][0], high)
            else:
                merged.append((low, high))
        return merged

    def iter(self, max_value: int) -> Iterator[int]:
        """Every number of the set within ``1..max_value``, ascending, once."""
        for low, high in self.normalized(max_value):
            yield from range(low, high + 1)

    def expand(self, max_value: int) -> list[int]:
        """:meth:`iter` as a list; *max_value* is the message count or the highest UID."""
        return list(self.iter(max_value))

    def contains(self, number: int, max_value: int) -> bool:
        """Whether *number* is in the set (``*`` being *max_value*)."""
        if self.saved:
            raise ValueError("'$' must be resolved by the session before expansion")
        for r in self.ranges:
            low, high = r.bounds(max_value)
            if low <= number <= high:
                return True
        return False

    def max_explicit(self) -> int:
        """The largest number written in the set (0 if only ``*``): for the BAD check of
        RFC 9051 §6.4.5 ("a sequence number greater than the number of messages")."""
        values = [v for r in self.ranges for v in (r.start, r.end) if v is not None]
        return max(values, default=0)


# --------------------------------------------------------------------------- flags


SYSTEM_FLAGS: Final = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\Recent")
"""System flags (RFC 9051 §2.3.2); ``\\Recent`` only exists in IMAP4rev1 (RFC 3501)."""

# --------------------------------------------------------------------------- search keys


class DateField(enum.Enum):
    """Which date a date search key compares (RFC 9051 §6.4.4, RFC 8514)."""

    INTERNAL = "internal"  # BEFORE / ON / SINCE
    SENT = "sent"  # SENTBEFORE / SENTON / SENTSINCE: the Date: header
    SAVED = "saved"  # SAVEDBEFORE / SAVEDON / SAVEDSINCE (RFC 8514)


class DateOp(enum.Enum):
    BEFORE = "before"
    ON = "on"
    SINCE = "since"


@dataclass(frozen=True, slots=True)
class SearchAll:
    """ALL."""


@dataclass(frozen=True, slots=True)
class SearchFlag:
    """ANSWERED, SEEN, KEYWORD x, UNSEEN, UNKEYWORD x, ... (``present=False`` for UN*)."""

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchHeader:
    """HEADER field value; BCC/CC/FROM/SUBJECT/TO are HEADER with that field name.

    *field* is lower-case.  An empty *value* matches every message with the field.
    """

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchBody:
    """BODY string: substring of the body."""

    value: str


@dataclass(frozen=True, slots=True)
class SearchText:
    """TEXT string: substring of header or body."""

    value: str


@dataclass(frozen=True, slots=True)
class SearchDate:
    """BEFORE/ON/SINCE, SENT*, SAVED* (dates disregard time and timezone)."""

    field: DateField
    op: DateOp
    date: datetime.date


@dataclass(frozen=True, slots=True)
class SearchSize:
    """LARGER n (``larger=True``) or SMALLER n."""

    larger: bool
    size: int


@dataclass(frozen=True, slots=True)
class SearchSeq:
    """A bare sequence set: messages by sequence number."""

    seqset: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchUid:
    """UID sequence-set."""

    seqset: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchModSeq:
    """MODSEQ [entry-name entry-type] value (RFC 7162 §3.1.5)."""

    modseq: int
    entry_name: str | None = None
    entry_type: str | None = None  # "priv" / "shared" / "all"


@dataclass(frozen=True, slots=True)
class SearchAge:
    """OLDER n / YOUNGER n, in seconds against the internal date (RFC 5032)."""

    older: bool
    seconds: int


@dataclass(frozen=True, slots=True)
class SearchObjectId:
    """EMAILID x / THREADID x (OBJECTID, RFC 8474 §6)."""

    kind: str  # "EMAILID" / "THREADID"
    value: str


@dataclass(frozen=True, slots=True)
class SearchSaveDateSupported:
    """SAVEDATESUPPORTED (RFC 8514)."""


@dataclass(frozen=True, slots=True)
class SearchNot:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr:
    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """A parenthesised list, or the top-level list of keys: all must match."""

    keys: tuple[SearchKey, ...]


SearchKey = (
    SearchAll
    | SearchFlag
    | SearchHeader
    | SearchBody
    | SearchText
    | SearchDate
    | SearchSize
    | SearchSeq
    | SearchUid
    | SearchModSeq
    | SearchAge
    | SearchObjectId
    | SearchSaveDateSupported
    | SearchNot
    | SearchOr
    | SearchAnd
)


class SearchReturn(enum.Enum):
    """ESEARCH result options (RFC 4731 §3.1, RFC 5182 SAVE, RFC 9051 §6.4.4)."""

    MIN = "MIN"
    MAX = "MAX"
    ALL = "ALL"
    COUNT = "COUNT"
    SAVE = "SAVE"


# --------------------------------------------------------------------------- fetch items


class FetchAttr(enum.Enum):
    """FETCH data items without a section (RFC 9051 §6.4.5, RFC 7162, RFC 8474, RFC 8514)."""

    ENVELOPE = "ENVELOPE"
    FLAGS = "FLAGS"
    INTERNALDATE = "INTERNALDATE"
    RFC822_SIZE = "RFC822.SIZE"
    RFC822 = "RFC822"  # = BODY[] (RFC 3501)
    RFC822_HEADER = "RFC822.HEADER"  # = BODY.PEEK[HEADER] (RFC 3501)
    RFC822_TEXT = "RFC822.TEXT"  # = BODY[TEXT] (RFC 3501)
    BODY = "BODY"  # non-extensible BODYSTRUCTURE
    BODYSTRUCTURE = "BODYSTRUCTURE"
    UID = "UID"
    MODSEQ = "MODSEQ"
    EMAILID = "EMAILID"
    THREADID = "THREADID"
    SAVEDATE = "SAVEDATE"


FETCH_MACROS: Final[dict[str, tuple[FetchAttr, ...]]] = {
    # RFC 9051 §6.4.5
    "ALL": (FetchAttr.FLAGS, FetchAttr.INTERNALDATE, FetchAttr.RFC822_SIZE, FetchAttr.ENVELOPE),
    "FAST": (FetchAttr.FLAGS, FetchAttr.INTERNALDATE, FetchAttr.RFC822_SIZE),
    "FULL": (
        FetchAttr.FLAGS,
        FetchAttr.INTERNALDATE,
        FetchAttr.RFC822_SIZE,
        FetchAttr.ENVELOPE,
        FetchAttr.BODY,
    ),
}


class SectionText(enum.Enum):
    HEADER = "HEADER"
    HEADER_FIELDS = "HEADER.FIELDS"
    HEADER_FIELDS_NOT = "HEADER.FIELDS.NOT"
    TEXT = "TEXT"
    MIME = "MIME"


@dataclass(frozen=True, slots=True)
class Section:
    """``section-spec`` (RFC 9051 §9): ``BODY[1.2.HEADER.FIELDS (From To)]`` is
    ``Section(part=(1, 2), text=SectionText.HEADER_FIELDS, fields=("From", "To"))``.
    ``BODY[]`` is ``Section()``."""

    part: tuple[int, ...] = ()
    text: SectionText | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Partial:
    """``<offset.length>`` of a FETCH BODY/BINARY item."""

    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class FetchBody:
    """BODY[section]<partial> or BODY.PEEK[...] (``peek`` leaves \\Seen alone)."""

    section: Section
    partial: Partial | None = None
    peek: bool = False


@dataclass(frozen=True, slots=True)
class FetchBinary:
    """BINARY[part]<partial> / BINARY.PEEK[part] (RFC 3516 §4.2, RFC 9051 §6.4.5)."""

    part: tuple[int, ...]
    partial: Partial | None = None
    peek: bool = False


@dataclass(frozen=True, slots=True)
class FetchBinarySize:
    """BINARY.SIZE[part]."""

    part: tuple[int, ...]


FetchItem = FetchAttr | FetchBody | FetchBinary | FetchBinarySize


# --------------------------------------------------------------------------- other values


class StoreMode(enum.Enum):
    REPLACE = "FLAGS"
    ADD = "+FLAGS"
    REMOVE = "-FLAGS"


class StatusItem(enum.Enum):
    """STATUS data items (RFC 9051 §6.3.11, RFC 7162, RFC 8438, RFC 8474, RFC 7889)."""

    MESSAGES = "MESSAGES"
    UIDNEXT = "UIDNEXT"
    UIDVALIDITY = "UIDVALIDITY"
    UNSEEN = "UNSEEN"
    DELETED = "DELETED"
    SIZE = "SIZE"
    RECENT = "RECENT"
    HIGHESTMODSEQ = "HIGHESTMODSEQ"
    APPENDLIMIT = "APPENDLIMIT"
    MAILBOXID = "MAILBOXID"


class ListSelect(enum.Enum):
    """LIST selection options (RFC 5258 §3.1, RFC 6154 §5.1)."""

    SUBSCRIBED = "SUBSCRIBED"
    REMOTE = "REMOTE"
    RECURSIVEMATCH = "RECURSIVEMATCH"
    SPECIAL_USE = "SPECIAL-USE"


class ListReturn(enum.Enum):
    """LIST return options (RFC 5258 §3.2, RFC 5819, RFC 6154)."""

    SUBSCRIBED = "SUBSCRIBED"
    CHILDREN = "CHILDREN"
    SPECIAL_USE = "SPECIAL-USE"
    STATUS = "STATUS"


@dataclass(frozen=True, slots=True)
class QResync:
    """``QRESYNC (uidvalidity modseq [known-uids] [(seqs uids)])`` (RFC 7162 §3.2.5)."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    known_seqs: SequenceSet | None = None
    known_seq_uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class SortCriterion:
    """One SORT key (RFC 5256 §3, RFC 5957 DISPLAYFROM/DISPLAYTO)."""

    key: str  # ARRIVAL CC DATE FROM SIZE SUBJECT TO DISPLAYFROM DISPLAYTO
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of APPEND (several with MULTIAPPEND, RFC 3502)."""

    flags: tuple[str, ...]
    internal_date: datetime.datetime | None
    data: bytes
    binary: bool = False  # sent as literal8 ``~{n}`` (RFC 3516 §4.4)
    utf8: bool = False  # the ``UTF8 (~{n})`` data item (RFC 6855 §4)


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Capability:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class StartTLS:
    pass


@dataclass(frozen=True, slots=True)
class Authenticate:
    """AUTHENTICATE mechanism [initial-response] (SASL-IR, RFC 4959).

    ``initial_response`` is the base64-decoded data, ``b""`` for ``=``, ``None`` if absent.
    """

    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class Login:
    user: bytes
    password: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Enable:
    capabilities: tuple[str, ...]  # upper-cased


@dataclass(frozen=True, slots=True)
class Select:
    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Examine:
    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Create:
    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename:
    mailbox: str
    new_name: str


@dataclass(frozen=True, slots=True)
class Subscribe:
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    mailbox: str


@dataclass(frozen=True, slots=True)
class List:
    """LIST, with LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819).

    ``extended`` is true when the command used selection options, several patterns or
    return options (the reply then follows RFC 5258 rules).
    """

    reference: str
    patterns: tuple[str, ...]
    select: frozenset[ListSelect] = frozenset()
    returns: frozenset[ListReturn] = frozenset()
    status_items: tuple[StatusItem, ...] = ()
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub:
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Namespace:
    pass


@dataclass(frozen=True, slots=True)
class Status:
    mailbox: str
    items: tuple[StatusItem, ...]


@dataclass(frozen=True, slots=True)
class Append:
    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Idle:
    """IDLE: the session sends "+ idling" and calls ``parser.expect_line()`` for DONE."""


@dataclass(frozen=True, slots=True)
class Check:
    pass


@dataclass(frozen=True, slots=True)
class Close:
    pass


@dataclass(frozen=True, slots=True)
class Unselect:
    pass


@dataclass(frozen=True, slots=True)
class Expunge:
    pass


@dataclass(frozen=True, slots=True)
class UidExpunge:
    seqset: SequenceSet


@dataclass(frozen=True, slots=True)
class Search:
    """SEARCH / UID SEARCH.

    ``returns`` is ``None`` for a plain SEARCH (untagged SEARCH reply) and a frozenset
    for ESEARCH (``RETURN ()`` means ``RETURN (ALL)``, RFC 4731 §3.1).
    """

    criteria: SearchKey
    charset: str | None = None
    returns: frozenset[SearchReturn] | None = None
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Fetch:
    seqset: SequenceSet
    items: tuple[FetchItem, ...]
    changedsince: int | None = None
    vanished: bool = False
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Store:
    seqset: SequenceSet
    mode: StoreMode
    flags: tuple[str, ...]
    silent: bool = False
    unchangedsince: int | None = None
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Copy:
    seqset: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Move:
    seqset: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Sort:
    criteria: tuple[SortCriterion, ...]
    charset: str
    search: SearchKey
    returns: frozenset[SearchReturn] | None = None
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Thread:
    algorithm: str  # ORDEREDSUBJECT / REFERENCES (upper-cased)
    charset: str
    search: SearchKey
    uid: bool = False


@dataclass(frozen=True, slots=True)
class GetQuota:
    root: str


@dataclass(frozen=True, slots=True)
class GetQuotaRoot:
    mailbox: str


@dataclass(frozen=True, slots=True)
class SetQuota:
    root: str
    limits: tuple[tuple[str, int], ...]  # (resource name upper-cased, limit)


@dataclass(frozen=True, slots=True)
class Id:
    """ID (RFC 2971): ``None`` for ``ID NIL``."""

    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class Compress:
    mechanism: str  # upper-cased; DEFLATE is the only one defined (RFC 4978)


@dataclass(frozen=True, slots=True)
class Unknown:
    """A command name the parser does not know (→ tagged BAD)."""

    name: str


ImapCommand = (
    Capability
    | Noop
    | Logout
    | StartTLS
    | Authenticate
    | Login
    | Enable
    | Select
    | Examine
    | Create
    | Delete
    | Rename
    | Subscribe
    | Unsubscribe
    | List
    | Lsub
    | Namespace
    | Status
    | Append
    | Idle
    | Check
    | Close
    | Unselect
    | Expunge
    | UidExpunge
    | Search
    | Fetch
    | Store
    | Copy
    | Move
    | Sort
    | Thread
    | GetQuota
    | GetQuotaRoot
    | SetQuota
    | Id
    | Compress
    | Unknown
)
