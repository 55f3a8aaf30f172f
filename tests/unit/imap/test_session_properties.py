"""Invariant of the selected-mailbox view: a client that applies the untagged responses it
receives (EXPUNGE / VANISHED / EXISTS) always ends with the server's list of UIDs, whatever
the changes and whenever expunges are allowed."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from postier.imap.session import MailboxView
from postier.store.types import BodyId, MessageInfo, ModSeq, Uid


def info(uid: int, seen: bool = False) -> MessageInfo:
    return MessageInfo(Uid(uid), ModSeq(uid), frozenset({"\\Seen"}) if seen else frozenset(), 0, 1, BodyId(uid))




@st.composite
def histories(draw: st.DrawFn) -> tuple[int, list[tuple[frozenset[int], int, bool, bool]]]:
    start = draw(st.integers(0, 12))
    steps = draw(
        st.lists(
            st.tuples(
                st.frozensets(st.integers(1, 40), max_size=6),
                st.integers(0, 3),
                st.booleans(),
                st.booleans(),
            ),
            max_size=12,
        )
    )
    return start, steps


def apply_to_client(client: list[int], lines: list[bytes], server_uids: list[int]) -> None:
    for line in lines:
        if m := re.fullmatch(rb"\* (\d+) EXPUNGE\r\n", line):
            del client[int(m.group(1)) - 1]
        elif m := re.fullmatch(rb"\* (\d+) EXISTS\r\n", line):
            count = int(m.group(1))
            assert count >= len(client)
            client.extend(server_uids[len(client) : count])
        elif m := re.fullmatch(rb"\* VANISHED ([0-9:,]+)\r\n", line):
            gone: set[int] = set()
            for part in m.group(1).split(b","):
                a, _, b = part.partition(b":")
                gone.update(range(int(a), int(b or a) + 1))
            client[:] = [u for u in client if u not in gone]
        else:
            assert re.fullmatch(rb"\* (\d+) FETCH \(FLAGS \([^)]*\) UID (\d+)\)\r\n", line), line


@settings(max_examples=150, deadline=None)
@given(histories(), st.booleans(), st.booleans())
def test_client_model_follows_view(history: tuple[int, list[tuple[frozenset[int], int, bool, bool]]],
                                   vanished: bool, incremental: bool) -> None:
    start, steps = history
    store = {u: info(u) for u in range(1, start + 1)}
    next_uid = start + 1
    view = MailboxView.open(1, "INBOX", False, 1, list(store.values()))
    view.vanished = vanished
    client = list(view.uids)
    for removed, added, allow, flip in steps:
        gone = [u for u in removed if u in store]
        for u in gone:
            del store[u]
        new = []
        for _ in range(added):
            store[next_uid] = info(next_uid)
            new.append(store[next_uid])
            next_uid += 1
        changed = list(new)
        if flip and store:
            u = min(store)
            store[u] = info(u, "\\Seen" not in store[u].flags)
            changed.append(store[u])
        if incremental:
            lines = view.apply(changed, gone, 0, allow_expunge=allow)
        else:
            lines = view.sync(sorted(store.values(), key=lambda i: i.uid), allow_expunge=allow)
        apply_to_client(client, lines, view.uids)
        assert client == view.uids  # sequence numbers agree at every step
        if allow:
            assert view.uids == sorted(store)  # nothing pending once expunges are allowed
        else:
            assert set(view.uids) >= set(store)
