"""SEARCH evaluation (RFC 9051 §6.4.4) over the session's message listing.

Two steps, so the evaluation stays pure:

1. :func:`text_queries` lists the full-text keys (SUBJECT, FROM, BODY, TEXT, HEADER ...);
   the server answers each from the store's index (``Store.search_text``), never by
   reading messages (ARCHITECTURE principle 3).
2. :func:`matches` evaluates the program for one message from its ``MessageInfo``, its
   sequence number and those answers.

Dates compare disregarding time (RFC 9051 §6.4.4): the internal date in UTC; SENT* keys the
Date: header's day, read from the stored ENVELOPE; SAVED* keys use the internal date.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
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


def uses_sent_date(key: c.SearchKey) -> bool:
    stack: list[c.SearchKey] = [key]
    while stack:
        k = stack.pop()
        if isinstance(k, c.SearchDate) and k.field is c.DateField.SENT:
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
    if flag == "\\Recent":
        return False  # \Recent is not kept (IMAP4rev2 removed it, RFC 9051 §2.3.2)
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
            if which is c.DateField.SENT:
                sent = ctx.sent_dates.get(int(info.uid))
                if sent is None:
                    return False
                day = sent
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
            return False
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
