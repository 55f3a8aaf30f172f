"""Session state without sockets: capabilities, the state table, the selected-mailbox view,
FETCH sections and SEARCH evaluation."""

from __future__ import annotations

import datetime

from postier.imap import commands as c
from postier.imap import fetch, search
from postier.imap.session import MailboxView, State, allowed, auth_allowed, capabilities
from postier.mail.parse import decode_parts, encode_parts, parse_message
from postier.store.types import BodyId, MessageInfo, ModSeq, Uid


def info(uid: int, flags: frozenset[str] = frozenset(), size: int = 100, date: int = 0) -> MessageInfo:
    return MessageInfo(Uid(uid), ModSeq(uid), flags, date, size, BodyId(uid))


# ---------------------------------------------------------------- capabilities


def test_logindisabled_before_tls_on_public_address() -> None:
    ok = auth_allowed(tls_active=False, loopback=False, allow_plaintext_on_loopback=True)
    assert not ok
    caps = capabilities(state=State.NOT_AUTHENTICATED, tls_active=False, tls_available=True, auth_ok=ok)
    assert "LOGINDISABLED" in caps and "STARTTLS" in caps and "AUTH=PLAIN" not in caps


def test_loopback_plaintext_allowed_only_when_configured() -> None:
    assert auth_allowed(tls_active=False, loopback=True, allow_plaintext_on_loopback=True)
    assert not auth_allowed(tls_active=False, loopback=True, allow_plaintext_on_loopback=False)


def test_after_tls_auth_plain_and_no_starttls() -> None:
    caps = capabilities(state=State.NOT_AUTHENTICATED, tls_active=True, tls_available=True, auth_ok=True)
    assert "AUTH=PLAIN" in caps and "STARTTLS" not in caps and "LOGINDISABLED" not in caps
    assert "AUTH=LOGIN" in caps and "AUTH=SCRAM-SHA-256" in caps
    assert {"IMAP4rev1", "IMAP4rev2", "IDLE", "UIDPLUS", "MOVE", "LITERAL+"} <= set(caps)


def test_authenticated_capabilities_have_no_auth_words() -> None:
    caps = capabilities(state=State.AUTHENTICATED, tls_active=False, tls_available=True, auth_ok=False)
    assert not {"STARTTLS", "LOGINDISABLED", "AUTH=PLAIN"} & set(caps)


def test_state_table() -> None:
    assert allowed(c.Capability(), State.NOT_AUTHENTICATED)
    assert not allowed(c.Select("INBOX"), State.NOT_AUTHENTICATED)
    assert allowed(c.Select("INBOX"), State.SELECTED)
    assert not allowed(c.Login(b"a", b"b"), State.AUTHENTICATED)
    assert not allowed(c.Expunge(), State.AUTHENTICATED)
    assert not allowed(c.StartTLS(), State.AUTHENTICATED)
    assert not allowed(c.Noop(), State.LOGOUT)


# ---------------------------------------------------------------- mailbox view


def seqset(*ranges: tuple[int | None, int | None]) -> c.SequenceSet:
    return c.SequenceSet(tuple(c.SeqRange(a, b) for a, b in ranges))


def test_resolve_sequence_and_uid_sets() -> None:
    view = MailboxView.open(1, "INBOX", False, 7, [info(3), info(5), info(9)])
    assert view.resolve(seqset((2, None)), uid=False) == [(2, 5), (3, 9)]
    assert view.resolve(seqset((4, 4)), uid=False) is None  # RFC 9051 §6.4.5: BAD
    assert view.resolve(seqset((4, 8)), uid=True) == [(2, 5)]
    assert view.resolve(seqset((20, None)), uid=True) == [(3, 9)]  # "*" is the last UID


def test_expunge_by_others_waits_until_allowed() -> None:
    view = MailboxView.open(1, "INBOX", False, 7, [info(1), info(2), info(3)])
    # During FETCH/STORE/SEARCH: no EXPUNGE (RFC 9051 §7.5.1); numbers stay stable.
    assert view.sync([info(1), info(3)], allow_expunge=False) == []
    assert view.exists == 3 and view.seq_of(3) == 3
    assert view.live(view.resolve(seqset((1, 3)), uid=False) or []) == [(1, 1), (3, 3)]
    # At NOOP: EXPUNGE, highest first.
    assert view.sync([info(1), info(3)], allow_expunge=True) == [b"* 2 EXPUNGE\r\n"]
    assert view.seq_of(3) == 2


def test_sync_reports_new_messages_and_flag_changes() -> None:
    view = MailboxView.open(1, "INBOX", False, 7, [info(1), info(2)])
    lines = view.sync([info(1, frozenset({"\\Seen"})), info(2), info(4)], allow_expunge=True)
    assert lines == [b"* 1 FETCH (FLAGS (\\Seen) UID 1)\r\n", b"* 3 EXISTS\r\n"]
    assert view.sync([info(1, frozenset({"\\Seen"})), info(2), info(4)], allow_expunge=True) == []


def test_own_expunge_lines_descend() -> None:
    view = MailboxView.open(1, "INBOX", False, 7, [info(u) for u in (1, 2, 3, 4)])
    assert view.remove([2, 4]) == [b"* 4 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n"]
    assert view.uids == [1, 3]


# ---------------------------------------------------------------- fetch


RAW = (
    b"From: a@example.org\r\nSubject: hi\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
    b"--B\r\nContent-Type: text/plain\r\n\r\none\r\n--B\r\nContent-Type: message/rfc822\r\n\r\n"
    b"Subject: inner\r\nX-A: 1\r\n\r\ninner body\r\n--B--\r\n"
)


def test_sections_from_stored_offsets() -> None:
    root = decode_parts(encode_parts(parse_message(RAW).root))
    prefix = b"Return-Path: <x@y>\r\n"
    whole = prefix + RAW

    def sect(part: tuple[int, ...] = (), text: c.SectionText | None = None, fields: tuple[str, ...] = ()) -> bytes:
        return fetch.section_bytes(whole, len(prefix), root, c.Section(part, text, fields))

    assert sect() == whole
    assert sect(text=c.SectionText.HEADER).startswith(prefix) and sect(text=c.SectionText.HEADER).endswith(b"\r\n\r\n")
    assert sect((1,)) == b"one"
    assert sect((2,)) == b"Subject: inner\r\nX-A: 1\r\n\r\ninner body"
    assert sect((2,), c.SectionText.TEXT) == b"inner body"
    assert sect((2,), c.SectionText.HEADER) == b"Subject: inner\r\nX-A: 1\r\n\r\n"
    assert sect((2,), c.SectionText.HEADER_FIELDS, ("x-a",)) == b"X-A: 1\r\n\r\n"
    assert sect(text=c.SectionText.HEADER_FIELDS_NOT, fields=("From", "Content-Type", "Return-Path")) == (
        b"Subject: hi\r\n\r\n"
    )
    assert sect((1,), c.SectionText.MIME) == b"Content-Type: text/plain\r\n\r\n"
    assert sect((7,)) == b""


def test_mime_header_of_part_1_of_a_single_part_message_is_the_message_header() -> None:
    raw = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    root = decode_parts(encode_parts(parse_message(raw).root))
    prefix = b"Return-Path: <x@y>\r\n"
    whole = prefix + raw
    mime = fetch.section_bytes(whole, len(prefix), root, c.Section((1,), c.SectionText.MIME, ()))
    header = fetch.section_bytes(whole, len(prefix), root, c.Section((), c.SectionText.HEADER, ()))
    assert mime == header == prefix + b"From: a@example.org\r\nSubject: hi\r\n\r\n"
    assert fetch.section_bytes(whole, len(prefix), root, c.Section((1,), None, ())) == b"body\r\n"


def test_internal_date_format() -> None:
    ts = int(datetime.datetime(2026, 3, 5, 4, 5, 6, tzinfo=datetime.UTC).timestamp())
    assert fetch.internal_date(ts) == b'" 5-Mar-2026 04:05:06 +0000"'


def test_needs_and_seen() -> None:
    assert fetch.needs([c.FetchAttr.FLAGS, c.FetchAttr.UID]) == fetch.Needs(False, False, False)
    assert fetch.needs([c.FetchBody(c.Section(), peek=True)]).sets_seen is False
    assert fetch.needs([c.FetchAttr.RFC822]) == fetch.Needs(False, True, True)
    assert fetch.needs([c.FetchBody(c.Section((1,)), peek=True)]) == fetch.Needs(True, True, False)


# ---------------------------------------------------------------- search


def test_search_program() -> None:
    messages = [(1, info(1, frozenset({"\\Seen"}), 50)), (2, info(2, frozenset({"$Work"}), 500))]
    hits = {("subject", "lunch"): frozenset({2})}
    ctx = search.Context(max_seq=2, max_uid=2, now_s=0, text_hits=hits)
    key = c.SearchAnd((c.SearchFlag("\\Seen", False), c.SearchHeader("subject", "lunch")))
    assert search.text_queries(key) == {("subject", "lunch")}
    assert search.run(key, messages, ctx) == [(2, 2)]
    assert search.run(c.SearchOr(c.SearchSize(True, 100), c.SearchFlag("\\Seen")), messages, ctx) == [(1, 1), (2, 2)]
    assert search.run(c.SearchNot(c.SearchFlag("$work")), messages, ctx) == [(1, 1)]
    assert search.run(c.SearchUid(seqset((2, None))), messages, ctx) == [(2, 2)]


def test_envelope_date_and_sent_keys() -> None:
    assert search.envelope_date(b'("Mon, 2 Nov 2026 23:30:00 -0800" "s" NIL)') == datetime.date(2026, 11, 2)
    assert search.envelope_date(b'(NIL "s")') is None
    ctx = search.Context(1, 1, 0, {}, sent_dates={1: datetime.date(2026, 11, 2)})
    key = c.SearchDate(c.DateField.SENT, c.DateOp.ON, datetime.date(2026, 11, 2))
    assert search.run(key, [(1, info(1))], ctx) == [(1, 1)]
    assert search.run(key, [(1, info(2))], ctx) == []


def test_base_subject_rfc5256() -> None:
    assert search.base_subject(b"Re: [list] Fwd: Hello  world (fwd)") == ("HELLO WORLD", True)
    assert search.base_subject(b"=?utf-8?q?caf=C3=A9?=") == ("CAFÉ", False)
    assert search.base_subject(b"[fwd: Plans]") == ("PLANS", True)


def test_sort_fields_from_envelope() -> None:
    env = (
        b'("Tue, 3 Nov 2026 08:00:00 +0100" "Re: plans" (("Bob" NIL "bob" "example.net")) NIL NIL'
        b' ((NIL NIL "alice" "example.org")) NIL NIL "<1@x>" "<2@x>")'
    )
    f = search.sort_fields(env)
    assert (f.subject, f.is_reply, f.from_, f.to) == ("PLANS", True, "BOB", "ALICE")
    assert (f.display_from, f.message_id, f.in_reply_to) == ("BOB", "<2@x>", "<1@x>")
    assert f.date == datetime.date(2026, 11, 3)


def test_sort_and_threads() -> None:
    def env(subject: str, mid: str, parent: str, day: int) -> search.SortFields:
        return search.sort_fields(
            f'("{day} Nov 2026 10:00 +0000" "{subject}" NIL NIL NIL NIL NIL NIL "{parent}" "{mid}")'.encode()
        )

    messages = [(1, info(1, size=30)), (2, info(2, size=10)), (3, info(3, size=20))]
    fields = {1: env("b", "<1>", "", 3), 2: env("a", "<2>", "", 1), 3: env("Re: b", "<3>", "<1>", 4)}
    assert search.sort_messages([c.SortCriterion("SIZE")], messages, fields) == [(2, 2), (3, 3), (1, 1)]
    by_subject_then_date = [c.SortCriterion("SUBJECT"), c.SortCriterion("DATE", reverse=True)]
    assert search.sort_messages(by_subject_then_date, messages, fields) == [(2, 2), (3, 3), (1, 1)]
    inputs = [search.thread_input(seq, i, fields[int(i.uid)], b"", uid=False) for seq, i in messages]
    roots = search.thread_references(inputs)
    assert search.render_threads(roots) == b"(2)(1 3)"
    roots = search.thread_orderedsubject(messages, fields, uid=True)
    assert search.render_threads(roots) == b"(2)(1 3)"


def test_apply_changes_like_sync() -> None:
    view = MailboxView.open(1, "INBOX", False, 7, [info(1), info(2), info(3)])
    seen = MessageInfo(Uid(1), ModSeq(9), frozenset({"\\Seen"}), 0, 100, BodyId(1))
    lines = view.apply([seen, info(5)], [2], 9, allow_expunge=False)
    assert lines == [b"* 1 FETCH (FLAGS (\\Seen) UID 1)\r\n", b"* 4 EXISTS\r\n"]
    assert view.ghosts == {2} and view.highestmodseq == 9
    assert view.apply([], [], 9, allow_expunge=True) == [b"* 2 EXPUNGE\r\n"]
    view.vanished = True
    assert view.apply([], [3, 5], 10, allow_expunge=True) == [b"* VANISHED 3,5\r\n"]
    assert view.uids == [1]


def test_select_responses_rev1_and_rev2() -> None:
    from postier.imap.session import select_responses
    from postier.store.types import AccountId, Mailbox, MailboxId

    mb = Mailbox(MailboxId(1), AccountId(1), "Entwürfe", 42, Uid(4), ModSeq(9), None, True)
    view = MailboxView.open(1, mb.name, False, 42, [info(1, frozenset({"\\Seen", "$Work"})), info(3)])
    rev1 = b"".join(select_responses(view, mb, rev2=False, utf8=False))
    assert rev1 == (
        b"* 2 EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n"
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\* $Work)] flags\r\n"
        b"* OK [UNSEEN 2] first unseen\r\n* OK [UIDVALIDITY 42] UIDs valid\r\n"
        b"* OK [UIDNEXT 4] predicted next UID\r\n* OK [HIGHESTMODSEQ 9] highest\r\n"
    )
    rev2 = b"".join(select_responses(view, mb, rev2=True, utf8=True))
    assert b"RECENT" not in rev2 and b"UNSEEN" not in rev2
    assert rev2.endswith(b'* LIST () "/" "Entw\xc3\xbcrfe"\r\n') or rev2.endswith(b'* LIST () "/" Entw\xc3\xbcrfe\r\n')


def test_search_responses() -> None:
    from postier.imap.session import search_responses

    assert search_responses("a", [1, 2, 3, 7], None, uid=False, esearch=False) == [b"* SEARCH 1 2 3 7\r\n"]
    assert search_responses("a", [], None, uid=False, esearch=False) == [b"* SEARCH\r\n"]
    assert search_responses("a", [1, 2, 3, 7], None, uid=True, esearch=True) == [
        b'* ESEARCH (TAG "a") UID ALL 1:3,7\r\n'
    ]
    both = frozenset({c.SearchReturn.MIN, c.SearchReturn.COUNT})
    assert search_responses("b", [], both, uid=False, esearch=False) == [b'* ESEARCH (TAG "b") COUNT 0\r\n']
    assert search_responses("c", [5], None, uid=False, esearch=False, modseq=12) == [b"* SEARCH 5 (MODSEQ 12)\r\n"]
    assert search_responses("d", [5], frozenset({c.SearchReturn.SAVE}), uid=False, esearch=True) == []


def test_list_responses() -> None:
    from postier.imap.session import ListOptions, list_responses
    from postier.store.types import AccountId, Mailbox, MailboxId

    def box(name: str, special: str | None = None, subscribed: bool = True) -> Mailbox:
        return Mailbox(MailboxId(len(name)), AccountId(1), name, 1, Uid(1), ModSeq(1), special, subscribed)

    boxes = [box("INBOX"), box("Sent", "\\Sent"), box("a/b/c", subscribed=True), box("a/x", subscribed=False)]

    def lines(pattern: str, **kw: bool) -> list[bytes]:
        return [line for line, _ in list_responses(boxes, "", [pattern], ListOptions(**kw))]

    assert lines("%") == [
        b'* LIST (\\HasNoChildren) "/" INBOX\r\n',
        b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n',
        b'* LIST (\\Noselect \\HasChildren) "/" a\r\n',
    ]
    assert lines("inbox") == [b'* LIST (\\HasNoChildren) "/" INBOX\r\n']
    assert lines("a/%") == [
        b'* LIST (\\Noselect \\HasChildren) "/" a/b\r\n', b'* LIST (\\HasNoChildren) "/" a/x\r\n'
    ]
    assert lines("a*", lsub=True) == [b'* LSUB (\\HasNoChildren) "/" a/b/c\r\n']
    assert lines("%", subscribed_only=True, recursive=True, nonexistent=True)[2] == (
        b'* LIST (\\NonExistent \\HasChildren) "/" a ("CHILDINFO" ("SUBSCRIBED"))\r\n'
    )
    assert lines("*", special_only=True) == [b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n']
    assert lines("") == [b'* LIST (\\Noselect) "/" ""\r\n']
