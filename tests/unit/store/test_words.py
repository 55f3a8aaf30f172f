"""The word index: Python's terms are FTS5's, and SEARCH through it is an exact substring
match (compared with reading every body whole)."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier import compiled
from postier.mail.parse import parse_message
from postier.store.sqlite import SqliteStore, words
from postier.store.sqlite.indexer import FORMAT, INDEX_DB, open_index
from postier.store.sqlite.store import _search_haystack
from postier.store.types import Account, NewMessage, Uid
from tests.conftest import own_indexer

# ASCII letters, digits and separators, Latin and Greek letters, punctuation and spaces
# from beyond ASCII (term characters for the ascii tokenizer), an emoji.
ALPHABET = "abcXYZ019 .,-_@<>\"'*?[]\t\nßéÉΣσς“”—\u00a0\u2003😀"


def fts5_terms(text: str) -> set[str]:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"CREATE VIRTUAL TABLE f USING fts5(t, tokenize='{words.TOKENIZER}')")
        conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(f, 'row')")
        conn.execute("INSERT INTO f (t) VALUES (?)", (text,))
        return {str(row[0]) for row in conn.execute("SELECT term FROM v")}
    finally:
        conn.close()


@settings(max_examples=300, deadline=None)
@given(st.text(ALPHABET, max_size=60))
def test_terms_are_the_tokenizers(text: str) -> None:
    """The vocabulary must hold every term FTS5 indexes, or SEARCH would miss mail."""
    lowered = text.lower()
    assert {t.decode() for t in words.terms([lowered])} == fts5_terms(lowered)


# Bytes where terms, separators and repeats are all common: ASCII letters and digits,
# separators (NUL, space, dot, LF, 0x7f), and bytes of UTF-8 sequences.
TERM_BYTES = st.binary(max_size=400).map(
    lambda data: bytes(b"aZ9 .\x00\n\x7f\xc3\xa9\xff"[b % 11] for b in data))


Scan = Callable[[bytes, words.Known, set[bytes]], None]


def c_scanner() -> Scan:
    module = compiled.c_module("postier._textscan")
    if module is None:
        assert os.environ.get(compiled.ENV) == "0", "the C text scans are not built"
        pytest.skip("POSTIER_COMPILED=0: the Python twin runs alone")
    assert words.add_new_terms is module.add_new_terms  # the indexer uses it
    scan: Scan = module.add_new_terms
    return scan


def both(data: bytes, known: words.Known = frozenset(),
         into: set[bytes] | None = None) -> set[bytes]:
    """What the C scanner adds to ``into``, checked equal to what its twin adds."""
    by_c, by_python = set(into or ()), set(into or ())
    c_scanner()(data, known, by_c)
    words.python_add_new_terms(data, known, by_python)
    assert by_c == by_python, data
    return by_c


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=400), TERM_BYTES), st.sets(st.binary(max_size=3)),
       st.sets(st.binary(max_size=3)))
def test_the_c_term_scanner_adds_what_its_python_twin_adds(
    data: bytes, known: set[bytes], into: set[bytes]
) -> None:
    expected = both(data, known, into)
    both(data, frozenset(known), into)
    # past its probe bound (64 slots: words made to share slots) a term goes to the sets
    # directly; with a bound of 0 or 1 most terms take that way, and nothing changes
    scan: Callable[..., None] = c_scanner()
    for bound in (0, 1):
        found = set(into)
        scan(data, known, found, bound)
        assert found == expected


def test_the_c_term_scanner_on_edges_and_many_terms() -> None:
    for data in [b"", b" ", b"a", b"\xff", b" a ", b"a b a", b"ab\x00ab\x00ab",
                 b"caf\xc3\xa9 CAF\xc3\xa9 caf\xc3\xa9", b"x" * 100_000]:
        both(data)
    assert both(b"a b a c", {b"b"}, {b"z"}) == {b"a", b"c", b"z"}
    # far more distinct terms than the first table holds (it grows), and repeats of each
    many = b" ".join(b"t%d" % (i % 50_000) for i in range(120_000))
    assert len(both(many)) == 50_000
    assert both(many, {b"t%d" % i for i in range(0, 50_000, 2)}) == {
        b"t%d" % i for i in range(1, 50_000, 2)}
    both(random.Random(8).randbytes(1_000_000))
    scan = c_scanner()
    bad: tuple[object, ...]
    for bad in [("text", set(), set()), (bytearray(b"text"), set(), set()),
                (b"text", [], set()), (b"text", set(), frozenset())]:
        with pytest.raises(TypeError):
            scan(*bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        scan(b"text", set())  # type: ignore[call-arg]


def c_distinct() -> Callable[..., bytes | None]:
    module = compiled.c_module("postier._textscan")
    if module is None:
        assert os.environ.get(compiled.ENV) == "0", "the C text scans are not built"
        pytest.skip("POSTIER_COMPILED=0: the Python twin runs alone")
    distinct: Callable[..., bytes | None] = module.distinct_terms
    assert words._c_distinct_terms is distinct  # the indexer uses it
    return distinct


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=400), TERM_BYTES))
def test_distinct_terms_in_c_are_its_python_twins(data: bytes) -> None:
    """Exactly the twin's answer, or none: a body leaves the index by the same text
    again, which another process may compute the other way."""
    distinct = c_distinct()
    expected = words.python_distinct_terms(data)
    assert distinct(data) == expected
    assert words.distinct_terms(data) == expected
    # past its probe bound (words made to share slots) the C scan gives up; with a bound
    # of 0 or 1 it does on most inputs with a repeated term, and the wrapper answers
    for bound in (0, 1):
        assert distinct(data, bound) in (None, expected)


def test_distinct_terms_past_the_probe_bound_fall_back_to_the_twin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    distinct = c_distinct()
    data = b" ".join(b"w%d" % (i % 300) for i in range(900))
    assert distinct(data, 0) is None  # 300 terms in 256 slots and more: some collide
    calls: list[bytes] = []
    python_twin = words.python_distinct_terms

    def twin(data: bytes) -> bytes:
        calls.append(data)
        return python_twin(data)

    monkeypatch.setattr(words, "_c_distinct_terms", lambda data: distinct(data, 0))
    monkeypatch.setattr(words, "python_distinct_terms", twin)
    assert words.distinct_terms(data) == b" ".join(b"w%d" % i for i in range(300))
    assert calls == [data]


def c_index_forms() -> Callable[..., list[bytes] | None]:
    module = compiled.c_module("postier._textscan")
    if module is None:
        assert os.environ.get(compiled.ENV) == "0", "the C text scans are not built"
        pytest.skip("POSTIER_COMPILED=0: the Python twin runs alone")
    fn: Callable[..., list[bytes] | None] = module.index_forms
    assert words._c_index_forms is fn  # the indexer uses it
    return fn


def forms_by_twins(texts: list[bytes], known: words.Known) -> tuple[list[bytes], set[bytes]]:
    forms = [words.python_distinct_terms(t) for t in texts]
    new: set[bytes] = set()
    for form in forms:
        words.python_add_new_terms(form, known, new)
    return forms, new


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=200), TERM_BYTES), max_size=8),
       st.sets(st.binary(max_size=3)))
def test_index_forms_in_c_are_the_twins_of_both_scans(texts: list[bytes], known: set[bytes]) -> None:
    """Each text's distinct terms (exactly: a body leaves the index by its form again)
    and the batch's terms that ``known`` lacks, from one C pass and one table."""
    index_forms = c_index_forms()
    forms, new = forms_by_twins(texts, known)
    found: set[bytes] = set()
    assert index_forms(texts, known, found) == forms and found == new
    assert index_forms(texts, frozenset(known), set()) == forms
    values = [t.decode("utf-8", "replace") for t in texts]
    assert words.index_forms(values, known) == (
        [words.indexed_form(v) for v in values], words.terms(values, known))
    for bound in (0, 1):  # past the probe bound: None, never another answer
        found = set()
        answer = index_forms(texts, known, found, bound)
        assert answer is None or (answer == forms and found == new)


def test_index_forms_on_edges_and_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    index_forms = c_index_forms()
    texts = [b"", b"a b a", b"b c", b"c a d a", b"x" * 70_000, b"\xff\xfe a"]
    assert index_forms(texts, {b"d"}, set()) == forms_by_twins(texts, {b"d"})[0] == [
        b"", b"a b", b"b c", b"c a d", b"x" * 70_000, b"\xff\xfe a"]
    found: set[bytes] = set()
    index_forms(texts, {b"d"}, found)
    assert found == {b"a", b"b", b"c", b"x" * 70_000, b"\xff\xfe"}
    many = [b" ".join(b"t%d" % (i % 50_000) for i in range(j, j + 30_000)) for j in range(0, 90_000, 30_000)]
    assert index_forms(many, frozenset(), set()) == forms_by_twins(many, frozenset())[0]
    noise = [random.Random(n).randbytes(100_000) for n in range(3)]
    assert index_forms(noise, frozenset(), set()) == forms_by_twins(noise, frozenset())[0]
    # past the probe bound the wrapper runs the twins
    crowded = [b" ".join(b"w%d" % (i % 300) for i in range(900))]
    assert index_forms(crowded, frozenset(), set(), 0) is None
    monkeypatch.setattr(words, "_c_index_forms", lambda t, k, i: index_forms(t, k, i, 0))
    assert words.index_forms([crowded[0].decode()], frozenset()) == (
        [" ".join(f"w{i}" for i in range(300))], {b"w%d" % i for i in range(300)})
    bad: tuple[object, ...]
    for bad in [((b"a",), set(), set()), ([b"a", "b"], set(), set()), ([b"a"], [], set()),
                ([b"a"], set(), frozenset()), ([b"a"], set())]:
        with pytest.raises(TypeError):
            index_forms(*bad)


def test_distinct_terms_on_edges_and_many_terms() -> None:
    distinct = c_distinct()
    for data, expected in [
        (b"", b""), (b" ", b""), (b"a", b"a"), (b"\xff", b"\xff"), (b" a ", b"a"),
        (b"a b a", b"a b"), (b"ab\x00ab\x00ab", b"ab"), (b"x" * 100_000, b"x" * 100_000),
        (b"caf\xc3\xa9 CAF\xc3\xa9 caf\xc3\xa9", b"caf\xc3\xa9 CAF\xc3\xa9"),
        (b"--b, a.b;c", b"b a c"),
    ]:
        assert distinct(data) == words.python_distinct_terms(data) == expected, data
    # far more distinct terms than the first table holds (it grows), and repeats of
    # each, all found within the probe bound
    many = b" ".join(b"t%d" % (i % 50_000) for i in range(120_000))
    assert distinct(many) == b" ".join(b"t%d" % i for i in range(50_000))
    noise = random.Random(9).randbytes(1_000_000)
    assert distinct(noise) == words.python_distinct_terms(noise)
    bad: tuple[object, ...]
    for bad in [("text",), (bytearray(b"text"),), (), (b"a", 1, 2)]:
        with pytest.raises(TypeError):
            distinct(*bad)


@settings(max_examples=300, deadline=None)
@given(st.text(ALPHABET, max_size=60))
def test_the_indexed_form_has_the_values_terms_each_once(text: str) -> None:
    """The index is given each value's indexed form: FTS5 must find the same terms in
    it as in the value, or SEARCH would miss mail."""
    lowered = text.lower()
    form = words.indexed_form(lowered)
    terms = fts5_terms(lowered)
    assert fts5_terms(form) == terms
    assert len(form.split(" ") if form else []) == len(terms)


async def test_a_body_indexed_twice_then_removed_leaves_no_term(
    store: SqliteStore, account: Account
) -> None:
    """Removing a body gives FTS5 its indexed form again (a contentless table keeps no
    text): indexing it twice, then removing it, must leave nothing of it."""
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    raw = b"Subject: Zebra notes\r\n\r\nquokka quokka wombat zebra\r\n"
    await store.append([NewMessage(box.id, await store.prepare_body(raw))])
    indexer = own_indexer(store)
    assert await asyncio.to_thread(indexer.wait_idle)
    body_id = (await store.list_messages(box.id))[0].body_id
    indexer.add(body_id)  # again: taken out first, then in
    assert await asyncio.to_thread(indexer.wait_idle)
    assert indexer.indexed == 2

    def documents(term: str) -> list[tuple[str, int]]:
        conn = sqlite3.connect(store.data_dir / INDEX_DB)
        try:
            conn.execute("CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, body_fts, 'col')")
            conn.execute("INSERT INTO body_fts (body_fts) VALUES ('integrity-check')")
            return [(str(r[0]), int(r[1])) for r in conn.execute(
                "SELECT col, doc FROM temp.v WHERE term = ? ORDER BY col", (term,))]
        finally:
            conn.close()

    assert documents("quokka") == [("text", 1)]
    assert documents("zebra") == [("headers", 1), ("subject", 1), ("text", 1)]
    assert await store.search_text(box.id, "body", "okka wom") == [Uid(1)]
    await store.expunge(box.id, [Uid(1)], only_deleted=False)
    assert await store.collect_garbage() == 1
    assert await asyncio.to_thread(indexer.wait_idle)
    assert documents("quokka") == documents("zebra") == []
    conn = sqlite3.connect(store.data_dir / INDEX_DB)
    try:
        assert conn.execute("SELECT count(*) FROM body_text").fetchone() == (0,)
    finally:
        conn.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(ALPHABET, max_size=40), max_size=12), st.integers(1, 64))
def test_terms_of_many_values_are_each_values_terms(values: list[str], chunk: int) -> None:
    """Scanned joined, in chunks of any size: no term spans two values, none is lost."""
    lowered = [v.lower() for v in values]
    each: set[bytes] = set()
    for value in lowered:
        each |= {t.encode() for t in fts5_terms(value)}
    original = words.SCAN_CHUNK_BYTES
    words.SCAN_CHUNK_BYTES = chunk
    try:
        assert words.terms(lowered) == each
        some = set(list(each)[::2])
        assert words.terms(lowered, frozenset(some)) == each - some
    finally:
        words.SCAN_CHUNK_BYTES = original


def test_pieces_know_which_end_of_a_term_they_touch() -> None:
    assert words.pieces("bob@example.net") == [
        words.Piece("bob", False, True), words.Piece("example", True, True),
        words.Piece("net", True, False),
    ]
    assert words.pieces("<straße>") == [words.Piece("straße", True, True)]
    assert words.pieces("“quoted”") == [words.Piece("“quoted”", False, False)]  # not ASCII
    assert words.pieces(" .. ") == []
    # one run of term characters: the index's answer is exact, no check of the text
    assert words.one_run("straße") and words.one_run("“quoted”")
    assert not words.one_run("a b") and not words.one_run("-ab") and not words.one_run("..")


# ------------------------------------------------------------ SEARCH through the index

VOCABULARY = ["alpha", "alphabet", "bet", "beta", "ab", "x", "ça", "Straße", "ΟΔΟΣ", "naïve",
              "foo_bar", "mail-list", "a.b", "re:", "2026", "“hi”", "un—deux", "bob@example.net"]


def body_text(rng: random.Random) -> str:
    return "".join(rng.choice(VOCABULARY) + rng.choice([" ", " ", ", ", "-", ".", "\r\n"])
                   for _ in range(rng.randint(1, 20)))


def needles(rng: random.Random, texts: list[str]) -> list[str]:
    out = ["zzz", "alphabeta", "ab-be", "straße", "ΣΣ", "“hi", "l-li", "@exa", "e.ne", "bet a"]
    # whole bodies, whitespace collapsed as the parsed text is: long needles, many pieces
    # (more than a query names: words.MAX_CLAUSES)
    out += [" ".join(text.split()) for text in texts]
    for _ in range(250):
        text = rng.choice(texts)
        start = rng.randrange(len(text))
        out.append(text[start:start + rng.randint(3, 14)].strip("\r\n") or "alpha")
    return out


async def test_search_through_the_word_index_is_an_exact_substring_match(
    store: SqliteStore, account: Account
) -> None:
    rng = random.Random(7)
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    texts: dict[Uid, str] = {}
    raws: dict[Uid, bytes] = {}
    for _ in range(40):
        subject, text = body_text(rng).replace("\r\n", " "), body_text(rng)
        raw = (f"From: Bob <bob@example.net>\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
               f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n").encode()
        (appended,) = await store.append([NewMessage(box.id, await store.prepare_body(raw))])
        raws[appended.uid] = raw
        texts[appended.uid] = text
    assert await asyncio.to_thread(own_indexer(store).wait_idle)
    marks = await store._read(lambda c: c.execute("SELECT min(indexed) FROM bodies").fetchone())
    assert marks == (1,)  # every answer below comes from the index
    parsed = {uid: parse_message(raw) for uid, raw in raws.items()}
    checked = 0
    for needle in needles(rng, list(texts.values())):
        for field in ("body", "text", "subject"):
            lowered = needle.lower()
            expected = [
                uid for uid, p in parsed.items()
                if lowered in (_search_haystack(p, field) if field != "subject" else p.subject).lower()
            ]
            assert await store.search_text(box.id, field, needle) == expected, (field, needle)
            checked += bool(expected)
    assert checked > 200  # most needles are found somewhere: the test is not vacuous
    assert max(len(words.pieces(" ".join(t.split()))) for t in texts.values()) > words.MAX_CLAUSES


async def test_a_piece_inside_many_terms_narrows_nothing_and_search_stays_exact(
    store: SqliteStore, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(words, "MAX_TERMS", 2)
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    for body in ("xalphax yalphay", "zalphaz", "beta", "alpha"):
        raw = (f"Subject: s\r\nContent-Type: text/plain\r\n\r\n{body}\r\n").encode()
        await store.append([NewMessage(box.id, await store.prepare_body(raw))])
    assert await asyncio.to_thread(own_indexer(store).wait_idle)
    assert await store.search_text(box.id, "body", "alpha") == [1, 2, 4]
    assert await store.search_text(box.id, "body", "lphax y") == [1]
    assert await store.search_text(box.id, "body", "quokka") == []  # in no term at all


def test_match_expression_names_the_terms_a_piece_can_be_in(tmp_path: Path) -> None:
    conn, _ = open_index(tmp_path / INDEX_DB)
    try:
        for term in ("hello", "othello", "help", "yellow"):
            conn.execute("INSERT INTO vocab (term) VALUES (?)", (term,))
        conn.execute("INSERT INTO vocab_fts (rowid, term) SELECT id, term FROM vocab")
        match = words.match_expression
        assert match(conn, "ello", "vocab_fts") == '(("hello" OR "othello" OR "yellow"))'
        # "llo" ends a term; "w" starts one but is too short a prefix to narrow
        assert match(conn, "llo w", "vocab_fts") == '(("hello" OR "othello"))'
        assert match(conn, "lo yellow", "vocab_fts") == '("yellow" *)'  # "lo" too short
        assert match(conn, "llo wo", "vocab_fts") == '(("hello" OR "othello") AND "wo" *)'
        assert match(conn, "hel", "vocab_fts") == '(("hello" OR "othello" OR "help"))'
        assert match(conn, "-help-", "vocab_fts") == '("help")'
        assert match(conn, "-hel", "vocab_fts") == '("hel" *)'
        assert match(conn, "quokka", "vocab_fts") == words.NOTHING
        # a long needle: at most MAX_CLAUSES pieces, spread over it (first and last kept)
        long = " ".join(f"w{i}" for i in range(100)) + " help"
        expression = match(conn, long, "vocab_fts")
        assert expression is not None
        assert expression.count(" AND ") == words.MAX_CLAUSES - 1
        # "w0" ends a term and is too short to look up: the first clause is "w1"
        assert expression.startswith('("w1" AND') and expression.endswith('"help" *)')
        assert match(conn, "a b", "vocab_fts") is None  # nothing narrows: read them all
    finally:
        conn.close()


@pytest.mark.parametrize("older", [1, 2])
async def test_an_index_of_an_older_format_is_built_again(
    store: SqliteStore, account: Account, older: int
) -> None:
    """An index.db of an older format is emptied and every body indexed again at start:
    format 1, the trigram index (no 'format' key); format 2, the word index given whole
    values, kept in FTS5's own content table (no body_text)."""
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    raw = b"Subject: old\r\nContent-Type: text/plain\r\n\r\nthe quick brown fox\r\n"
    await store.append([NewMessage(box.id, await store.prepare_body(raw))])
    assert await asyncio.to_thread(own_indexer(store).wait_idle)
    data_dir = store.data_dir
    await store.close()
    old = sqlite3.connect(data_dir / INDEX_DB, isolation_level=None)
    for table in ("body_fts", "vocab_fts", "vocab", "body_text"):
        old.execute(f"DROP TABLE {table}")
    if older == 1:
        old.execute("CREATE VIRTUAL TABLE body_fts USING fts5(subject, from_, to_, cc, bcc,"
                    " headers, text, tokenize='trigram case_sensitive 1', detail=column)")
        old.execute("DELETE FROM meta WHERE key = 'format'")
    else:
        old.execute("CREATE VIRTUAL TABLE body_fts USING fts5(subject, from_, to_, cc, bcc,"
                    " headers, text, tokenize='ascii', detail=column)")
        old.execute("INSERT INTO body_fts (rowid, subject, text) VALUES (1, 'old', 'a b')")
        old.execute("CREATE TABLE vocab (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE)")
        old.execute("UPDATE meta SET value = 2 WHERE key = 'format'")
    old.close()
    again = await SqliteStore.open(data_dir)
    try:
        assert await asyncio.to_thread(own_indexer(again).wait_idle)
        assert own_indexer(again).indexed == 1
        assert await again.search_text(box.id, "body", "uick bro") == [1]
        reader = sqlite3.connect(data_dir / INDEX_DB)
        try:
            assert reader.execute("SELECT value FROM meta WHERE key = 'format'").fetchone() == (FORMAT,)
            assert reader.execute("SELECT count(*) FROM vocab WHERE term = 'quick'").fetchone() == (1,)
            assert reader.execute("SELECT id, c0 FROM body_text").fetchall() == [(1, "old")]
        finally:
            reader.close()
    finally:
        await again.close()


async def test_text_search_sees_headers_and_body_joined_by_a_line_break(
    store: SqliteStore, account: Account
) -> None:
    """TEXT is the header text, a line break, then the body text, on every path: a needle
    across that line break is found through the index as when the body is read whole."""
    box = await store.get_mailbox(account.id, "INBOX")
    assert box is not None
    raw = b"Subject: s\r\nContent-Type: text/plain\r\n\r\nhello world\r\n"
    await store.append([NewMessage(box.id, await store.prepare_body(raw))])
    assert await store.search_text(box.id, "text", "PLAIN\nhello") == [1]  # maybe unindexed
    assert await asyncio.to_thread(own_indexer(store).wait_idle)
    assert await store.search_text(box.id, "text", "PLAIN\nhello") == [1]
    assert await store.search_text(box.id, "text", "n\nh") == [1]  # short needle
    assert await store.search_text(box.id, "text", "plain hello") == []
