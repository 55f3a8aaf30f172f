"""\\Recent bookkeeping (RFC 3501 §2.3.2): the per-process watermark and the view's flags."""

from __future__ import annotations

from postier.imap.recent import RECENT_FLAG, RecentWatermarks
from postier.imap.session import MailboxView
from postier.store.types import BodyId, MessageInfo, ModSeq, Uid


def info(uid: int, flags: frozenset[str] = frozenset()) -> MessageInfo:
    return MessageInfo(uid=Uid(uid), flags=flags, internal_date=0, size=10, modseq=ModSeq(uid), body_id=BodyId(uid))


def test_first_claim_takes_the_messages_later_ones_do_not() -> None:
    marks = RecentWatermarks()
    assert marks.claim(1, 7, 3) == 0  # UIDs 1..3 are recent for this session
    assert marks.claim(1, 7, 3) == 3  # none for the next one
    assert marks.peek(1, 7) == 3
    assert marks.claim(1, 8, 3) == 0  # a new UIDVALIDITY starts afresh
    assert marks.claim(1, 7, 2) == 3  # never goes down


def test_recent_survives_flag_updates_in_the_view() -> None:
    view = MailboxView.open(1, "INBOX", False, 7, [info(1), info(2)])
    view.mark_recent([2])
    assert view.infos[2].flags == {RECENT_FLAG}
    view.update(info(2, frozenset({"\\Seen"})))
    assert view.infos[2].flags == {RECENT_FLAG, "\\Seen"}
    lines = view.apply([info(2, frozenset())], [], 9, allow_expunge=True)
    assert lines == [b"* 2 FETCH (FLAGS (\\Recent) UID 2)\r\n"]
    assert view.remove([2]) == [b"* 2 EXPUNGE\r\n"] and view.recent == set()


def test_enabling_imap4rev2_forgets_recent() -> None:
    view = MailboxView.open(1, "INBOX", False, 7, [info(1, frozenset({"\\Seen"}))])
    view.mark_recent([1])
    view.forget_recent()
    assert view.infos[1].flags == {"\\Seen"} and view.recent == set()
    view.update(info(1, frozenset()))
    assert view.infos[1].flags == frozenset()
