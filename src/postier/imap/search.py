"""SEARCH evaluation (RFC 9051 §6.4.4) over the session's message listing.

Two steps, so the evaluation stays pure:

1. :func:`text_queries` lists the full-text keys (SUBJECT, FROM, BODY, TEXT, HEADER ...);
   the server answers each from the store's index (``Store.search_text``), never by
   reading messages (ARCHITECTURE principle 3).
2. :func:`matches` evaluates the program for one message from its ``MessageInfo``, its
   sequence number and those answers.

Dates compare disregarding time (RFC 9051 §6.4.4): the internal date in UTC; SENT* keys the
Date: header's day, read from the stored ENVELOPE; SAVED* keys the save date (RFC 8514).
"""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from postier.imap import commands as c
from postier.store.types import MessageInfo

# Header fields the index keeps as columns; any other HEADER key searches all headers.
_INDEXED_HEADERS: Final = frozenset({"subject", "from", "to", "cc", "bcc"})

TextQuery = tuple[str, str]  # (store search field, needle)


def text_query(key: c.SearchHeader | c.SearchBody | c.SearchText) -> TextQuery:
    if isinstance(key, c.SearchBody):
        return ("body", key.value)
    if isinstance(key, c.SearchText):
        return ("text", key.value)
    field = key.field.lower()
    return (field if field in _INDEXED_HEADERS else "headers", key.value)


def text_queries(key: c.SearchKey) -> set[TextQuery]:
    found: set[TextQuery] = set()
    stack: list[c.SearchKey] = [key]
    while stack:
        k = stack.pop()
        if isinstance(k, c.SearchHeader | c.SearchBody | c.SearchText):
            if k.value:
                found.add(text_query(k))
        elif isinstance(k, c.SearchNot):
            stack.append(k.key)
        elif isinstance(k, c.SearchOr):
            stack += [k.left, k.right]
        elif isinstance(k, c.SearchAnd):
            stack += list(k.keys)
    return found


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a search needs besides the message itself."""

    max_seq: int
    max_uid: int
    now_s: int
    text_hits: Mapping[TextQuery, frozenset[int]]
    saved: frozenset[int] = frozenset()
    sent_dates: Mapping[int, datetime.date] = field(default_factory=dict)
    """UID → the day of its Date: header, in the header's own zone (SENT* keys)."""
    save_dates: Mapping[int, datetime.date] = field(default_factory=dict)
    """UID → the day it was saved in this mailbox (SAVED* keys, RFC 8514)."""


def uses_save_date(key: c.SearchKey) -> bool:
    return _any_key(key, lambda k: isinstance(k, c.SearchDate) and k.field is c.DateField.SAVED)


def uses_sent_date(key: c.SearchKey) -> bool:
    return _any_key(key, lambda k: isinstance(k, c.SearchDate) and k.field is c.DateField.SENT)


def uses_modseq(key: c.SearchKey) -> bool:
    return _any_key(key, lambda k: isinstance(k, c.SearchModSeq))


def _any_key(key: c.SearchKey, test: Callable[[c.SearchKey], bool]) -> bool:
    stack: list[c.SearchKey] = [key]
    while stack:
        k = stack.pop()
        if test(k):
            return True
        if isinstance(k, c.SearchNot):
            stack.append(k.key)
        elif isinstance(k, c.SearchOr):
            stack += [k.left, k.right]
        elif isinstance(k, c.SearchAnd):
            stack += list(k.keys)
    return False


_ENVELOPE_DATE: Final = re.compile(rb'\(\s*"[^"]*?(\d{1,2})\s+([A-Za-z]{3})[a-z]*\s+(\d{2,4})')
_MONTHS: Final = {m: i for i, m in enumerate(
    (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"), 1
)}


def envelope_date(envelope: bytes) -> datetime.date | None:
    """The day of the ENVELOPE's date field (RFC 9051 §6.4.4: time and zone disregarded)."""
    m = _ENVELOPE_DATE.match(envelope)
    if m is None:
        return None
    month = _MONTHS.get(m.group(2).lower())
    year = int(m.group(3))
    if year < 100:  # RFC 5322 §4.3 obsolete two-digit years
        year += 2000 if year < 50 else 1900
    try:
        return datetime.date(year, month, int(m.group(1))) if month else None
    except ValueError:
        return None


def _date_of(epoch_s: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(epoch_s, datetime.UTC).date()


def _has_flag(info: MessageInfo, flag: str) -> bool:
    # \Recent is in the flags of the session's view when it is recent there (IMAP4rev1,
    # RFC 3501 §2.3.2; never in IMAP4rev2 sessions, RFC 9051 §2.3.2).
    wanted = flag.lower()
    return any(f.lower() == wanted for f in info.flags)


def matches(key: c.SearchKey, seq: int, info: MessageInfo, ctx: Context) -> bool:
    """Whether message *seq* (with *info*) satisfies *key*."""
    match key:
        case c.SearchAll():
            return True
        case c.SearchFlag(flag=flag, present=present):
            return _has_flag(info, flag) == present
        case c.SearchHeader() | c.SearchBody() | c.SearchText():
            if not key.value:
                return True  # empty string: every message has it (approximation for HEADER)
            return int(info.uid) in ctx.text_hits.get(text_query(key), frozenset())
        case c.SearchDate(field=which, op=op, date=date):
            if which is c.DateField.SENT or which is c.DateField.SAVED:
                dates = ctx.sent_dates if which is c.DateField.SENT else ctx.save_dates
                known = dates.get(int(info.uid))
                if known is None:
                    return False
                day = known
            else:
                day = _date_of(info.internal_date)
            if op is c.DateOp.BEFORE:
                return day < date
            if op is c.DateOp.ON:
                return day == date
            return day >= date
        case c.SearchSize(larger=larger, size=size):
            return info.size > size if larger else info.size < size
        case c.SearchSeq(seqset=seqset):
            if seqset.saved:
                return int(info.uid) in ctx.saved
            return seqset.contains(seq, ctx.max_seq)
        case c.SearchUid(seqset=seqset):
            if seqset.saved:
                return int(info.uid) in ctx.saved
            return seqset.contains(int(info.uid), ctx.max_uid)
        case c.SearchModSeq(modseq=modseq):
            return int(info.modseq) >= modseq
        case c.SearchAge(older=older, seconds=seconds):
            age = ctx.now_s - info.internal_date
            return age >= seconds if older else age <= seconds
        case c.SearchObjectId():
            return False
        case c.SearchSaveDateSupported():
            return True  # RFC 8514 §4.3: this mailbox keeps save dates
        case c.SearchNot(key=inner):
            return not matches(inner, seq, info, ctx)
        case c.SearchOr(left=left, right=right):
            return matches(left, seq, info, ctx) or matches(right, seq, info, ctx)
        case c.SearchAnd(keys=keys):
            return all(matches(k, seq, info, ctx) for k in keys)
    return False  # pragma: no cover - every key is handled above


def run(
    key: c.SearchKey, messages: Iterable[tuple[int, MessageInfo]], ctx: Context
) -> list[tuple[int, int]]:
    """``[(seq, uid)]`` of the matching messages, ascending."""
    return [(seq, int(info.uid)) for seq, info in messages if matches(key, seq, info, ctx)]


# --------------------------------------------------------------------------- SORT / THREAD
# RFC 5256.  Sort keys come from the stored ENVELOPE (parse once at delivery): no message
# is read.


def _sexp(data: bytes) -> object:
    """Read one IMAP value (NIL, number, quoted, literal, parenthesised list) from *data*."""
    pos = 0

    def value() -> object:
        nonlocal pos
        while pos < len(data) and data[pos] == 0x20:
            pos += 1
        if pos >= len(data):
            raise ValueError("truncated")
        ch = data[pos]
        if ch == 0x28:  # (
            pos += 1
            items: list[object] = []
            while True:
                while pos < len(data) and data[pos] == 0x20:
                    pos += 1
                if pos >= len(data):
                    raise ValueError("unclosed list")
                if data[pos] == 0x29:
                    pos += 1
                    return items
                items.append(value())
        if ch == 0x22:  # "
            pos += 1
            out = bytearray()
            while pos < len(data) and data[pos] != 0x22:
                if data[pos] == 0x5C:
                    pos += 1
                out.append(data[pos])
                pos += 1
            pos += 1
            return bytes(out)
        if ch == 0x7B:  # {n}CRLF
            end = data.index(b"}", pos)
            size = int(data[pos + 1 : end])
            start = end + 3
            pos = start + size
            return data[start:pos]
        end = pos
        while end < len(data) and data[end] not in b" ()":
            end += 1
        atom = data[pos:end]
        pos = end
        return None if atom.upper() == b"NIL" else atom

    return value()


@dataclass(frozen=True, slots=True)
class SortFields:
    """What SORT and THREAD need of one message, from its ENVELOPE."""

    date: datetime.date | None
    date_text: bytes
    subject: str  # RFC 5256 §2.1 base subject
    is_reply: bool
    from_: str
    to: str
    cc: str
    display_from: str
    display_to: str
    message_id: str
    in_reply_to: str


_REPLY_PREFIX: Final = re.compile(r"^\s*((re|fwd?)\s*(\[[^\]]*\])?\s*:|\[[^\]]*\]\s*)", re.IGNORECASE)
_FWD_TRAILER: Final = re.compile(r"\s*\(fwd\)\s*$", re.IGNORECASE)


def base_subject(raw: bytes) -> tuple[str, bool]:
    """RFC 5256 §2.1: the subject without Re:/Fwd:/[tag] prefixes and (fwd) trailers."""
    from postier.mail.headers import decode_header_value

    text = decode_header_value(raw)
    reply = False
    while True:
        before = text
        text = _FWD_TRAILER.sub("", text)
        m = _REPLY_PREFIX.match(text)
        if m and text[m.end():].strip():
            reply |= m.group(2) is not None
            text = text[m.end():]
        if text.startswith("[fwd:") and text.endswith("]"):
            text, reply = text[5:-1], True
        if text == before:
            break
    return " ".join(text.split()).upper(), reply


def _first_address(value: object, display: bool) -> str:
    if not isinstance(value, list) or not value or not isinstance(value[0], list):
        return ""
    name, _adl, mailbox, host = (list(value[0]) + [None] * 4)[:4]
    if display and isinstance(name, bytes) and name:
        from postier.mail.headers import decode_header_value

        return decode_header_value(name).upper()
    local = mailbox.decode("utf-8", "replace") if isinstance(mailbox, bytes) else ""
    if display:
        dom = host.decode("utf-8", "replace") if isinstance(host, bytes) else ""
        return f"{local}@{dom}".upper() if dom else local.upper()
    return local.upper()  # RFC 5256 §3: the mailbox part of the first address


def sort_fields(envelope: bytes) -> SortFields:
    try:
        env = _sexp(envelope)
    except (ValueError, IndexError):
        env = []
    items = env if isinstance(env, list) else []
    items = items + [None] * (10 - len(items))

    def text(i: int) -> bytes:
        v = items[i]
        return v if isinstance(v, bytes) else b""

    subject, reply = base_subject(text(1))
    return SortFields(
        date=envelope_date(envelope),
        date_text=text(0),
        subject=subject,
        is_reply=reply,
        from_=_first_address(items[2], False),
        to=_first_address(items[5], False),
        cc=_first_address(items[6], False),
        display_from=_first_address(items[2], True),
        display_to=_first_address(items[5], True),
        message_id=text(9).decode("utf-8", "replace").strip(),
        in_reply_to=text(8).decode("utf-8", "replace").strip(),
    )


def sort_messages(
    criteria: Iterable[c.SortCriterion],
    messages: list[tuple[int, MessageInfo]],
    fields: Mapping[int, SortFields],
) -> list[tuple[int, int]]:
    """RFC 5256 §3: sort by the criteria, ties broken by sequence number."""

    def sent(seq_info: tuple[int, MessageInfo]) -> str:
        # RFC 5256 §2.2: date and time in UTC (INTERNALDATE when Date: is missing or bad),
        # offset so that dates before 1970 still sort as text.
        return f"{sent_epoch(fields.get(int(seq_info[1].uid)), seq_info[1].internal_date) + 1e12:024.3f}"

    ordered = sorted(messages, key=lambda m: m[0])
    for crit in reversed(list(criteria)):
        key = crit.key

        def k(m: tuple[int, MessageInfo], key: str = key) -> str:
            info = m[1]
            f = fields.get(int(info.uid))
            match key:
                case "ARRIVAL":
                    return f"{info.internal_date:020d}"
                case "SIZE":
                    return f"{info.size:020d}"
                case "DATE":
                    return sent(m)
                case _:
                    if f is None:
                        return ""
                    return {
                        "SUBJECT": f.subject, "FROM": f.from_, "TO": f.to, "CC": f.cc,
                        "DISPLAYFROM": f.display_from, "DISPLAYTO": f.display_to,
                    }.get(key, "")

        ordered.sort(key=k, reverse=crit.reverse)
    return [(seq, int(info.uid)) for seq, info in ordered]


Tree = list["ThreadNode"]


@dataclass
class ThreadNode:
    number: int | None  # None: a dummy parent
    children: list[ThreadNode] = field(default_factory=list)


def render_threads(roots: Tree) -> bytes:
    """RFC 5256 §4 thread-list: ``(3 6 (4 23)(44 7 96))``."""

    def node(n: ThreadNode) -> bytes:
        parts = [] if n.number is None else [b"%d" % n.number]
        if len(n.children) == 1 and n.number is not None:
            parts.append(node(n.children[0]))
        elif n.children:
            parts.append(b"".join(b"(" + node(k) + b")" for k in n.children))
        return b" ".join(parts)

    return b"".join(b"(" + node(r) + b")" for r in roots)


def thread_orderedsubject(
    messages: list[tuple[int, MessageInfo]], fields: Mapping[int, SortFields], uid: bool
) -> Tree:
    """RFC 5256 §4 ORDEREDSUBJECT: group by base subject, sorted by sent date within;
    threads ordered by the date of their first message."""
    groups: dict[str, list[tuple[float, int, int]]] = {}
    for seq, info in messages:
        f = fields.get(int(info.uid))
        subject = f.subject if f else ""
        sent = sent_epoch(f, info.internal_date)  # RFC 5256 §2.2: date and time
        groups.setdefault(subject, []).append((sent, seq, int(info.uid) if uid else seq))
    threads = sorted((sorted(items) for items in groups.values()), key=lambda g: g[0][:2])
    roots: Tree = []
    for items in threads:
        first = ThreadNode(items[0][2])
        first.children = [ThreadNode(n) for _, _, n in items[1:]]
        roots.append(first)
    return roots


@dataclass(frozen=True, slots=True)
class ThreadInput:
    """What RFC 5256 §4 REFERENCES needs of one message."""

    number: int  # sequence number or UID, as reported
    seq: int  # the tie-break of the sent-date sort (RFC 5256 §2.2)
    message_id: str  # "" when missing or invalid
    references: tuple[str, ...]  # References:, else the first In-Reply-To msg-id (§4 (1)(A))
    sent: float  # RFC 5256 §2.2 sent date (Date:, else INTERNALDATE), epoch seconds
    subject: str  # §2.1 base subject
    is_reply: bool  # the subject had Re:/Fwd:/… stripped (§2.1)


_MSG_ID: Final = re.compile(r"<[^<>\s]+>")


def message_ids(value: bytes) -> tuple[str, ...]:
    """The msg-ids of a References: / In-Reply-To: value, in order (RFC 5322 §3.6.4)."""
    return tuple(_MSG_ID.findall(value.decode("utf-8", "replace")))


_REFERENCES_FIELD: Final = re.compile(rb"^references[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


def references_of(header: bytes) -> tuple[str, ...]:
    """The msg-ids of the first References: field of a message header (RFC 5322 §3.6.4)."""
    m = _REFERENCES_FIELD.search(header)
    return message_ids(m.group(1)) if m else ()


def sent_epoch(fields: SortFields | None, internal_date: int) -> float:
    """RFC 5256 §2.2 sent date: the Date: header, else the INTERNALDATE."""
    if fields is not None and fields.date_text:
        try:
            return email.utils.parsedate_to_datetime(fields.date_text.decode("ascii", "replace")).timestamp()
        except (ValueError, TypeError, IndexError, OverflowError):
            pass
    return float(internal_date)


def thread_input(
    seq: int, info: MessageInfo, fields: SortFields | None, header: bytes, *, uid: bool
) -> ThreadInput:
    """RFC 5256 §4 (1)(A): References:, else the first msg-id of In-Reply-To:."""
    refs = references_of(header)
    if not refs and fields is not None:
        refs = message_ids(fields.in_reply_to.encode())[:1]
    own = message_ids(fields.message_id.encode())[:1] if fields is not None else ()
    return ThreadInput(
        number=int(info.uid) if uid else seq,
        seq=seq,
        message_id=own[0] if own else "",
        references=refs,
        sent=sent_epoch(fields, info.internal_date),
        subject=fields.subject if fields is not None else "",
        is_reply=fields.is_reply if fields is not None else False,
    )


def thread_references(messages: Sequence[ThreadInput]) -> Tree:
    """RFC 5256 §4 REFERENCES (Jamie Zawinski's algorithm), steps (1)–(6)."""

    @dataclass(eq=False)
    class Box:  # a "container": a message, or a dummy for an id only referenced
        msg: ThreadInput | None = None
        parent: Box | None = None
        children: list[Box] = field(default_factory=list)

    def reaches(start: Box | None, target: Box) -> bool:
        while start is not None:
            if start is target:
                return True
            start = start.parent
        return False

    def link(parent: Box, child: Box) -> None:
        if child.parent is not None:
            child.parent.children.remove(child)
        child.parent = parent
        parent.children.append(child)

    table: dict[str, Box] = {}
    unique = 0
    for msg in messages:
        # (1)(B) first, so the message's own container exists (a duplicate or missing
        # Message-ID gets a unique one).
        mid = msg.message_id
        if not mid or (mid in table and table[mid].msg is not None):
            unique += 1
            mid = f"\0{unique}"
        box = table.setdefault(mid, Box())
        box.msg = msg
        # (1)(A) link the references in order, never over an existing parent or a loop.
        prev: Box | None = None
        for ref in msg.references:
            cur = table.setdefault(ref, Box())
            if prev is not None and cur.parent is None and cur is not prev and not reaches(prev, cur):
                link(prev, cur)
            prev = cur
        # (1)(C) the parent is the last reference, replacing any earlier one, unless a loop.
        if box.parent is not None:
            box.parent.children.remove(box)
            box.parent = None
        if prev is not None and prev is not box and not reaches(prev, box):
            link(prev, box)

    # (2) the root set; (3) prune dummies.
    def prune(boxes: list[Box], root_level: bool) -> list[Box]:
        out: list[Box] = []
        for b in boxes:
            b.children = prune(b.children, False)
            for k in b.children:
                k.parent = b
            if b.msg is None:
                if not b.children:
                    continue
                if not root_level or len(b.children) == 1:
                    out += b.children  # promote (a lone child of a root dummy is a root)
                    continue
            out.append(b)
        return out

    roots = prune([b for b in table.values() if b.parent is None], True)
    for b in roots:
        b.parent = None

    def key(b: Box) -> tuple[float, int]:
        m = b.msg if b.msg is not None else b.children[0].msg
        assert m is not None
        return (m.sent, m.seq)

    def sort_tree(boxes: list[Box]) -> None:
        for b in boxes:
            sort_tree(b.children)
        boxes.sort(key=key)

    # (4) sort the roots (a dummy by its first child, after sorting its children).
    sort_tree(roots)

    # (5) group the roots by base subject.
    def subject_of(b: Box) -> tuple[str, bool]:
        m = b.msg if b.msg is not None else b.children[0].msg
        assert m is not None
        return m.subject, (b.msg is not None and m.is_reply)

    subjects: dict[str, Box] = {}
    for b in roots:
        subject, _ = subject_of(b)
        if not subject:
            continue
        old = subjects.get(subject)
        if (
            old is None
            or (b.msg is None and old.msg is not None)
            or (old.msg is not None and subject_of(old)[1] and b.msg is not None and not subject_of(b)[1])
        ):
            subjects[subject] = b
    grouped: list[Box] = []
    for b in roots:
        if b.parent is not None:
            continue  # already merged under a new dummy (below)
        subject, reply = subject_of(b)
        other = subjects.get(subject) if subject else None
        if other is None or other is b:
            grouped.append(b)
            continue
        if other.msg is None and b.msg is None:
            for k in b.children:
                k.parent = other
            other.children += b.children
        elif other.msg is None or (reply and not subject_of(other)[1]):
            b.parent = other
            other.children.append(b)
        else:
            # Neither is a reply of the other: a new dummy holds both, where *other* was.
            dummy = Box(children=[other, b])
            other.parent = b.parent = dummy
            subjects[subject] = dummy
            if other in grouped:
                grouped[grouped.index(other)] = dummy
            else:
                grouped.append(dummy)
    # (6) sort every set of siblings once more.
    sort_tree(grouped)

    def tree(b: Box) -> ThreadNode:
        return ThreadNode(b.msg.number if b.msg is not None else None, [tree(k) for k in b.children])

    return [tree(b) for b in grouped]
