"""IMAP session state: the connection states, the commands each allows, the capabilities,
and the per-session view of the selected mailbox (message sequence numbers).

Pure data and decisions, no I/O (the asyncio adapter in :mod:`postier.imap.server` awaits
the store and feeds the results in here):

- States and transitions (RFC 9051 §3, figure in §3.5): :class:`State` and the table
  :data:`ALLOWED_STATES` of which command may run in which state.
- CAPABILITY (RFC 9051 §6.1.1, §7.2.2): :func:`capabilities` — ``STARTTLS`` and
  ``LOGINDISABLED`` before TLS (RFC 9051 §6.2.3), except on loopback when allowed.
- :class:`MailboxView`: the session's own list of UIDs, so sequence numbers stay stable
  while other sessions expunge (RFC 9051 §7.5.1, §5.5): a vanished message is reported
  with untagged EXPUNGE only at a moment the RFC allows — never during FETCH, STORE or
  SEARCH (RFC 9051 §7.5.1 "MUST NOT send EXPUNGE ... while responding to FETCH, STORE,
  SEARCH") — and stays as a *ghost* in the view until then.
"""

from __future__ import annotations

import bisect
import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from postier.imap import commands as c
from postier.imap.recent import RECENT_FLAG
from postier.imap.wire import (
    compress_uids,
    flag_list,
    paren_list,
    quoted,
    response_code,
    untagged,
    untagged_status,
)
from postier.imap.wire import mailbox as wire_mailbox
from postier.store.types import HIERARCHY_SEPARATOR, Mailbox, MessageInfo


class State(enum.Enum):
    """RFC 9051 §3."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY: Final = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
_NOT_AUTH: Final = frozenset({State.NOT_AUTHENTICATED})
_AUTH: Final = frozenset({State.AUTHENTICATED, State.SELECTED})
_SELECTED: Final = frozenset({State.SELECTED})

# RFC 9051 §6.1-§6.4: which command is valid in which state (anything else → BAD).
ALLOWED_STATES: Final[dict[type[c.ImapCommand], frozenset[State]]] = {
    c.Capability: _ANY,
    c.Noop: _ANY,
    c.Logout: _ANY,
    c.Id: _ANY,
    c.StartTLS: _NOT_AUTH,
    c.Authenticate: _NOT_AUTH,
    c.Login: _NOT_AUTH,
    c.Enable: _AUTH,
    c.Select: _AUTH,
    c.Examine: _AUTH,
    c.Create: _AUTH,
    c.Delete: _AUTH,
    c.Rename: _AUTH,
    c.Subscribe: _AUTH,
    c.Unsubscribe: _AUTH,
    c.List: _AUTH,
    c.Lsub: _AUTH,
    c.Namespace: _AUTH,
    c.Status: _AUTH,
    c.Append: _AUTH,
    c.Idle: _AUTH,
    c.Check: _SELECTED,
    c.Close: _SELECTED,
    c.Unselect: _SELECTED,
    c.Expunge: _SELECTED,
    c.UidExpunge: _SELECTED,
    c.Search: _SELECTED,
    c.Fetch: _SELECTED,
    c.Store: _SELECTED,
    c.Copy: _SELECTED,
    c.Move: _SELECTED,
    c.Compress: _AUTH,
    c.Sort: _SELECTED,
    c.Thread: _SELECTED,
    c.GetQuota: _AUTH,
    c.GetQuotaRoot: _AUTH,
    c.SetQuota: _AUTH,
}


def allowed(command: c.ImapCommand, state: State) -> bool:
    return state in ALLOWED_STATES.get(type(command), frozenset())


BASE_CAPABILITIES: Final = (
    "IMAP4rev1",
    "IMAP4rev2",
    "LITERAL+",
    "SASL-IR",
    "ENABLE",
    "IDLE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "NAMESPACE",
    "ID",
    "CHILDREN",
    "SPECIAL-USE",
    "CONDSTORE",
    "QRESYNC",
    "LIST-STATUS",
    "ESEARCH",
    "SEARCHRES",
    "CREATE-SPECIAL-USE",
    "SAVEDATE",
    "STATUS=SIZE",
    "LIST-EXTENDED",
    "MULTIAPPEND",
    "BINARY",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "UTF8=ACCEPT",
    "COMPRESS=DEFLATE",
    "SORT",
    "SORT=DISPLAY",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
)
ENABLEABLE: Final = frozenset({"IMAP4REV2", "CONDSTORE", "QRESYNC", "UTF8=ACCEPT"})
MAX_BAD_COMMANDS: Final = 20
"""Consecutive BAD responses before the connection is closed with BYE (issue 4: "a client
that keeps misbehaving is disconnected"); a real client never comes near it."""


def auth_allowed(*, tls_active: bool, loopback: bool, allow_plaintext_on_loopback: bool) -> bool:
    """Whether passwords may be sent (RFC 9051 §6.2.3: not before TLS)."""
    return tls_active or (loopback and allow_plaintext_on_loopback)


def capabilities(
    *,
    state: State,
    tls_active: bool,
    tls_available: bool,
    auth_ok: bool,
    append_limit: int | None = None,
) -> tuple[str, ...]:
    """The CAPABILITY list for the current moment (RFC 9051 §6.1.1)."""
    caps = list(BASE_CAPABILITIES)
    if append_limit is not None:
        caps.append(f"APPENDLIMIT={append_limit}")  # RFC 7889
    if state is State.NOT_AUTHENTICATED:
        if tls_available and not tls_active:
            caps.append("STARTTLS")
        if auth_ok:
            caps += ["AUTH=PLAIN", "AUTH=LOGIN", "AUTH=SCRAM-SHA-256"]
        else:
            caps.append("LOGINDISABLED")  # RFC 9051 §6.2.3
    return tuple(caps)


def capability_line(caps: Iterable[str]) -> bytes:
    return untagged(b"CAPABILITY", " ".join(caps).encode("ascii"))


# --------------------------------------------------------------------------- selected view


def fetch_flags_line(seq: int, uid: int, flags: Iterable[str], modseq: int | None = None) -> bytes:
    items = [b"FLAGS", flag_list(sorted(flags)), b"UID", b"%d" % uid]
    if modseq is not None:
        items += [b"MODSEQ", b"(%d)" % modseq]
    return untagged(b"%d" % seq, b"FETCH", b"(" + b" ".join(items) + b")")


@dataclass
class MailboxView:
    """The selected mailbox as this session knows it (RFC 9051 §2.3.1.2)."""

    mailbox_id: int
    name: str
    readonly: bool
    uidvalidity: int
    uids: list[int] = field(default_factory=list)
    infos: dict[int, MessageInfo] = field(default_factory=dict)
    ghosts: set[int] = field(default_factory=set)
    """Expunged by someone else, not reported yet: they keep their sequence number."""
    highestmodseq: int = 0
    """Changes up to here are in the view; :meth:`apply` asks the store for later ones."""
    vanished: bool = False
    """QRESYNC enabled: expunges are reported as ``* VANISHED uid-set`` (RFC 7162 §3.2.10)."""
    recent: set[int] = field(default_factory=set)
    """UIDs that are ``\\Recent`` in this session (IMAP4rev1 only, RFC 3501 §2.3.2); their
    flags in :attr:`infos` carry ``\\Recent`` so every FETCH, STORE and SEARCH sees it."""

    @classmethod
    def open(
        cls,
        mailbox_id: int,
        name: str,
        readonly: bool,
        uidvalidity: int,
        listing: Sequence[MessageInfo],
    ) -> MailboxView:
        view = cls(mailbox_id, name, readonly, uidvalidity)
        for info in sorted(listing, key=lambda i: i.uid):
            view.uids.append(int(info.uid))
            view.infos[int(info.uid)] = info
        view.highestmodseq = max((int(i.modseq) for i in listing), default=0)
        return view

    @property
    def exists(self) -> int:
        return len(self.uids)

    def max_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        return i + 1 if i < len(self.uids) and self.uids[i] == uid else None

    def resolve(self, seqset: c.SequenceSet, *, uid: bool) -> list[tuple[int, int]] | None:
        """``[(seq, uid)]`` of a sequence set, ascending.

        None when a message sequence number is beyond the mailbox (RFC 9051 §6.4.5: BAD).
        UID sets silently skip UIDs that do not exist (RFC 9051 §6.4.9); ``*`` is the
        highest UID in use, so ``N:*`` always contains the last message.
        """
        if uid:
            if not self.uids:
                return []
            out: list[tuple[int, int]] = []
            for low, high in seqset.normalized(self.uids[-1]):
                i = bisect.bisect_left(self.uids, low)
                while i < len(self.uids) and self.uids[i] <= high:
                    out.append((i + 1, self.uids[i]))
                    i += 1
            return out
        if seqset.max_explicit() > len(self.uids) or (not self.uids and seqset.ranges):
            return None
        return [(n, self.uids[n - 1]) for n in seqset.iter(len(self.uids))]

    def live(self, pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """Without the ghosts (expunged elsewhere: nothing left to fetch or store)."""
        return [(s, u) for s, u in pairs if u not in self.ghosts]

    def _dress(self, info: MessageInfo) -> MessageInfo:
        """*info* as this session shows it: with ``\\Recent`` when it is recent here."""
        if int(info.uid) in self.recent and RECENT_FLAG not in info.flags:
            return info._replace(flags=info.flags | {RECENT_FLAG})
        return info

    def mark_recent(self, uids: Iterable[int]) -> None:
        """RFC 3501 §2.3.2: this session is the first to be told about *uids*."""
        for uid in uids:
            if uid in self.infos:
                self.recent.add(uid)
                self.infos[uid] = self._dress(self.infos[uid])

    def forget_recent(self) -> None:
        """IMAP4rev2 enabled while selected: no more ``\\Recent`` (RFC 9051 §2.3.2)."""
        for uid in self.recent:
            info = self.infos.get(uid)
            if info is not None:
                self.infos[uid] = info._replace(flags=info.flags - {RECENT_FLAG})
        self.recent.clear()

    def update(self, info: MessageInfo) -> None:
        if info.uid in self.infos:
            self.infos[int(info.uid)] = self._dress(info)

    def remove(self, uids: Iterable[int]) -> list[bytes]:
        """Untagged EXPUNGE lines for messages this session expunged itself."""
        return self._expunge_lines(set(uids))

    def _expunge_lines(self, gone: set[int]) -> list[bytes]:
        if self.vanished:
            present = gone & set(self.uids)
            if not present:
                return []
            self.uids = [u for u in self.uids if u not in present]
            for uid in present:
                self.infos.pop(uid, None)
                self.ghosts.discard(uid)
                self.recent.discard(uid)
            return [untagged(b"VANISHED", compress_uids(present))]
        lines: list[bytes] = []
        # Highest sequence number first, so each number is right when the client reads it
        # (RFC 9051 §7.5.1: later numbers shift down after each EXPUNGE).
        for i in range(len(self.uids) - 1, -1, -1):
            uid = self.uids[i]
            if uid in gone:
                lines.append(untagged(b"%d" % (i + 1), b"EXPUNGE"))
                del self.uids[i]
                self.infos.pop(uid, None)
                self.ghosts.discard(uid)
                self.recent.discard(uid)
        return lines

    def sync(
        self, listing: Sequence[MessageInfo], *, allow_expunge: bool, modseq: bool = False
    ) -> list[bytes]:
        """Compare with the store's listing; the untagged responses that tell the client.

        EXPUNGE first (only when *allow_expunge*, RFC 9051 §7.5.1), then EXISTS, then
        FETCH FLAGS for flags changed by others (RFC 9051 §7.5.2).
        """
        current = {int(i.uid): i for i in listing}
        lines: list[bytes] = []
        vanished = {u for u in self.uids if u not in current}
        if allow_expunge:
            lines += self._expunge_lines(vanished | self.ghosts)
        else:
            self.ghosts |= vanished
        top = self.max_uid()
        new = sorted(u for u in current if u > top)
        for seq, uid in enumerate(self.uids, 1):
            info = current.get(uid)
            if info is None:
                continue
            old = self.infos[uid]
            info = self.infos[uid] = self._dress(info)
            if info.flags != old.flags:
                lines.append(fetch_flags_line(seq, uid, info.flags, info.modseq if modseq else None))
        if new:
            for u in new:
                self.uids.append(u)
                self.infos[u] = current[u]
            lines.append(untagged(b"%d" % len(self.uids), b"EXISTS"))
        return lines


    def apply(
        self,
        changed: Sequence[MessageInfo],
        vanished: Iterable[int],
        highestmodseq: int,
        *,
        allow_expunge: bool,
        modseq: bool = False,
    ) -> list[bytes]:
        """Like :meth:`sync`, from the store's ``changes_since(highestmodseq)``: the cost is
        that of the changes, not of the mailbox (RFC 7162 §3.1 MODSEQ bookkeeping)."""
        lines: list[bytes] = []
        gone = {int(u) for u in vanished} & set(self.infos)
        if allow_expunge:
            lines += self._expunge_lines(gone | self.ghosts)
        else:
            self.ghosts |= gone
        top = self.max_uid()
        new: list[MessageInfo] = []
        latest = {int(i.uid): i for i in changed}  # one entry per UID, the last one wins
        for info in latest.values():
            uid = int(info.uid)
            if uid > top:
                new.append(info)
                continue
            old = self.infos.get(uid)
            if old is None or uid in self.ghosts:
                continue
            info = self.infos[uid] = self._dress(info)
            if info.flags != old.flags:
                seq = self.seq_of(uid)
                assert seq is not None
                lines.append(fetch_flags_line(seq, uid, info.flags, info.modseq if modseq else None))
        if new:
            for info in sorted(new, key=lambda i: i.uid):
                self.uids.append(int(info.uid))
                self.infos[int(info.uid)] = info
            lines.append(untagged(b"%d" % len(self.uids), b"EXISTS"))
        self.highestmodseq = max(self.highestmodseq, highestmodseq)
        return lines


PERMANENT_FLAGS: Final = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft", "\\*")
MAILBOX_FLAGS: Final = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


# --------------------------------------------------------------------------- responses


def select_responses(view: MailboxView, mailbox: Mailbox, *, rev2: bool, utf8: bool) -> list[bytes]:
    """The untagged responses of SELECT / EXAMINE (RFC 9051 §6.3.2, RFC 3501 §6.3.1)."""
    lines = [untagged(b"%d" % view.exists, b"EXISTS")]
    if not rev2:
        lines.append(untagged(b"%d" % len(view.recent), b"RECENT"))  # RFC 3501 §7.3.2 only
    keywords = sorted({f for i in view.infos.values() for f in i.flags if not f.startswith("\\")})
    lines.append(untagged(b"FLAGS", flag_list([*MAILBOX_FLAGS, *keywords])))
    permanent = [] if view.readonly else [*PERMANENT_FLAGS, *keywords]
    lines.append(untagged_status("OK", "flags", code=response_code("PERMANENTFLAGS", flag_list(permanent))))
    if not rev2:
        first_unseen = next(
            (n for n, u in enumerate(view.uids, 1) if "\\Seen" not in view.infos[u].flags), None
        )
        if first_unseen is not None:
            lines.append(
                untagged_status("OK", "first unseen", code=response_code("UNSEEN", b"%d" % first_unseen))
            )
    for name, value, text in (
        ("UIDVALIDITY", mailbox.uidvalidity, "UIDs valid"),
        ("UIDNEXT", int(mailbox.uidnext), "predicted next UID"),
        ("HIGHESTMODSEQ", int(mailbox.highestmodseq), "highest"),
    ):
        lines.append(untagged_status("OK", text, code=response_code(name, b"%d" % value)))
    if rev2:
        # RFC 9051 §6.3.2: a LIST response with the mailbox name.
        lines.append(untagged(b"LIST", b"()", quoted(HIERARCHY_SEPARATOR), wire_mailbox(mailbox.name, utf8=utf8)))
    return lines


def search_responses(
    tag: str,
    numbers: Sequence[int],
    returns: frozenset[c.SearchReturn] | None,
    *,
    uid: bool,
    esearch: bool,
    modseq: int | None = None,
) -> list[bytes]:
    """SEARCH (RFC 3501 §7.2.5) or ESEARCH (RFC 4731 §3.1, RFC 9051 §7.3.4) replies.

    *esearch*: IMAP4rev2 enabled, so a plain SEARCH is answered with ESEARCH too.
    *modseq*: the search used MODSEQ (RFC 7162 §3.1.5).
    """
    if returns == frozenset({c.SearchReturn.SAVE}):
        return []  # RFC 5182 §2.4: SAVE alone gives no response
    if returns is None and not esearch:
        items = [b"%d" % n for n in numbers]
        if numbers and modseq is not None:
            items.append(b"(MODSEQ %d)" % modseq)
        return [untagged(b"SEARCH", *items) if items else b"* SEARCH\r\n"]
    wanted = returns or frozenset({c.SearchReturn.ALL})
    parts = [b"(TAG " + quoted(tag) + b")"]
    if uid:
        parts.append(b"UID")
    if numbers:
        if c.SearchReturn.MIN in wanted:
            parts += [b"MIN", b"%d" % min(numbers)]
        if c.SearchReturn.MAX in wanted:
            parts += [b"MAX", b"%d" % max(numbers)]
        if c.SearchReturn.ALL in wanted:
            parts += [b"ALL", compress_uids(numbers)]
    if c.SearchReturn.COUNT in wanted:
        parts += [b"COUNT", b"%d" % len(numbers)]
    if numbers and modseq is not None:
        parts += [b"MODSEQ", b"%d" % modseq]
    return [untagged(b"ESEARCH", *parts)]


# --------------------------------------------------------------------------- LIST

_WILDCARD: Final = re.compile(r"[*%]")
SEP: Final = HIERARCHY_SEPARATOR


def list_matcher(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 9051 §6.3.9: ``*`` matches anything, ``%`` anything but the separator."""
    full = reference + pattern
    pieces = _WILDCARD.split(full)
    wildcards = _WILDCARD.findall(full)
    regex = ""
    for i, piece in enumerate(pieces):
        regex += re.escape(piece)
        if i < len(wildcards):
            regex += ".*" if wildcards[i] == "*" else "[^" + re.escape(SEP) + "]*"
    return re.compile(regex + r"\Z", re.DOTALL)


def _name_matches(rx: re.Pattern[str], name: str) -> bool:
    if rx.match(name):
        return True
    # INBOX is case-insensitive (RFC 9051 §5.1).
    return name == "INBOX" and any(rx.match(v) for v in ("inbox", "Inbox", "INBOX"))


@dataclass(frozen=True, slots=True)
class ListOptions:
    lsub: bool = False
    subscribed_only: bool = False  # LIST (SUBSCRIBED) or LSUB
    show_subscribed: bool = False  # RETURN (SUBSCRIBED)
    special_only: bool = False  # LIST (SPECIAL-USE)
    recursive: bool = False  # RECURSIVEMATCH (RFC 5258 §3.5)
    extended: bool = False  # LIST-EXTENDED syntax used
    nonexistent: bool = False  # \NonExistent (RFC 5258, IMAP4rev2) rather than \Noselect
    utf8: bool = False  # mailbox names in UTF-8, not modified UTF-7


def list_responses(
    boxes: Sequence[Mailbox], reference: str, patterns: Sequence[str], options: ListOptions
) -> list[tuple[bytes, Mailbox | None]]:
    """LIST / LSUB replies (RFC 9051 §6.3.9, RFC 5258, RFC 6154, RFC 3501 §6.3.9), each with
    its mailbox (None for a parent that does not exist) for LIST-STATUS."""
    o = options
    word = b"LSUB" if o.lsub else b"LIST"
    if len(patterns) == 1 and patterns[0] == "":
        # RFC 9051 §6.3.9: the hierarchy delimiter and root name.
        return [(untagged(word, b"(\\Noselect)", quoted(SEP), b'""'), None)]
    by_name = {m.name: m for m in boxes}
    parents: set[str] = set()  # every name that has at least one child
    subscribed_parents: set[str] = set()  # ... with a subscribed descendant
    for box in boxes:
        parts = box.name.split(SEP)
        for i in range(1, len(parts)):
            parents.add(SEP.join(parts[:i]))
            if box.subscribed:
                subscribed_parents.add(SEP.join(parts[:i]))
    matchers = [list_matcher(reference, p) for p in patterns]
    out: list[tuple[bytes, Mailbox | None]] = []
    # RFC 5258 §3 / RFC 9051 §6.3.9: a parent that does not exist is still listed when the
    # pattern matches it.
    for name in sorted(set(by_name) | parents, key=lambda n: (n != "INBOX", n)):
        if not any(_name_matches(rx, name) for rx in matchers):
            continue
        mb = by_name.get(name)
        childinfo = False
        if mb is None:
            if o.lsub or o.special_only:
                continue
            if o.subscribed_only and not (o.recursive and name in subscribed_parents):
                continue
            attrs = [b"\\NonExistent" if o.nonexistent else b"\\Noselect", b"\\HasChildren"]
            childinfo = o.recursive and name in subscribed_parents
        else:
            if (o.subscribed_only or o.lsub) and not mb.subscribed:
                if not (o.recursive and name in subscribed_parents):
                    continue
                childinfo = True
            if o.special_only and not mb.special_use:
                continue
            attrs = [b"\\HasChildren" if name in parents else b"\\HasNoChildren"]
            if mb.special_use and not o.lsub:
                attrs.append(mb.special_use.encode("ascii"))
            if o.show_subscribed and mb.subscribed:
                attrs.append(b"\\Subscribed")
        line = [word, paren_list(attrs), quoted(SEP), wire_mailbox(name, utf8=o.utf8)]
        if childinfo:
            line.append(b'("CHILDINFO" ("SUBSCRIBED"))')  # RFC 5258 §3.5
        out.append((untagged(*line), mb))
    return out
