"""THREAD=REFERENCES (RFC 5256 §4): the pure algorithm, from References: / In-Reply-To:."""

from __future__ import annotations

from postier.imap.search import (
    ThreadInput,
    message_ids,
    references_of,
    render_threads,
    thread_references,
)


def msg(
    seq: int, mid: str = "", refs: tuple[str, ...] = (), subject: str = "", reply: bool = False,
    sent: float | None = None,
) -> ThreadInput:
    return ThreadInput(seq, seq, mid, refs, float(seq) if sent is None else sent, subject, reply)


def threads(*messages: ThreadInput) -> bytes:
    return render_threads(thread_references(list(messages)))


def test_references_header_is_parsed_unfolded_and_in_order() -> None:
    header = b"Subject: x\r\nReferences: <a@x>\r\n <b@x>\t<c@x>\r\nIn-Reply-To: <z@x>\r\n"
    assert references_of(header) == ("<a@x>", "<b@x>", "<c@x>")
    assert references_of(b"Subject: x\r\n") == ()
    assert message_ids(b"<1@x> (comment) <2@x>") == ("<1@x>", "<2@x>")


def test_chain_follows_references() -> None:
    assert threads(
        msg(1, "<a>", subject="s1"), msg(2, "<b>", ("<a>",), "s2"), msg(3, "<c>", ("<a>", "<b>"), "s3")
    ) == b"(1 2 3)"


def test_siblings_under_one_parent_are_sorted_by_sent_date() -> None:
    assert threads(
        msg(1, "<a>", subject="s1"),
        msg(2, "<b>", ("<a>",), "s2", sent=50.0),
        msg(3, "<c>", ("<a>",), "s3", sent=10.0),
    ) == b"(1 (3)(2))"


def test_missing_root_gives_a_dummy_with_both_replies() -> None:
    # RFC 5256 §4 (3): a root-level dummy with more than one child stays.
    assert threads(msg(1, "<b>", ("<x>",), "p"), msg(2, "<c>", ("<x>",), "q")) == b"((1)(2))"


def test_missing_middle_message_is_pruned() -> None:
    # <a> → <b> (never seen) → <c>: the dummy for <b> is not a root, its child moves up.
    assert threads(msg(1, "<a>", subject="s"), msg(2, "<c>", ("<a>", "<b>"), "t")) == b"(1 2)"


def test_same_base_subject_reply_joins_the_original() -> None:
    # RFC 5256 §4 (5): no References, but "Re: lunch" goes under "lunch".
    assert threads(
        msg(1, "<a>", subject="lunch"), msg(2, "<b>", subject="other"), msg(3, "<c>", subject="lunch", reply=True)
    ) == b"(1 3)(2)"


def test_same_base_subject_neither_a_reply_gives_a_dummy() -> None:
    assert threads(msg(1, "<a>", subject="lunch"), msg(2, "<b>", subject="lunch")) == b"((1)(2))"


def test_loops_and_duplicate_ids_do_not_break_it() -> None:
    assert threads(msg(1, "<a>", ("<b>",), "x"), msg(2, "<b>", ("<a>",), "y")) in (b"(1 2)", b"(2 1)")
    # A second message with the same Message-ID is threaded as a different message.
    assert threads(msg(1, "<a>", subject="x"), msg(2, "<a>", subject="y")) == b"(1)(2)"


def test_empty_mailbox_has_no_threads() -> None:
    assert threads() == b""
