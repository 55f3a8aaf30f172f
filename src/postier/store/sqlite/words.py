"""Words of the full-text index, and the FTS5 query that finds a substring through them.

The index (indexer.py) is a word index: FTS5's ``ascii`` tokenizer, whose terms are the
maximal runs of ASCII letters and digits and of any non-ASCII character (every other
ASCII character separates them).  A trigram index answered substrings directly, but it
costs an entry per distinct trigram and message: ~1,800 for 10 KB of English, ~700
distinct words.  On English-like text the word index inserts in a quarter of the time
(bench/README.md, "Full-text index": 0.26 against 1.0 ms per 10 KB message).

IMAP SEARCH is a substring match (RFC 9051 §6.4.4), so a needle is split the same way
into pieces, and each piece says which terms could hold it:

- a piece with separators on both sides in the needle is a whole term;
- one with a separator only before it starts a term (an FTS5 prefix query, from two
  characters on);
- otherwise it ends a term or lies inside one.  Those terms are looked up in the
  vocabulary (every term ever indexed, with a trigram index of its own: ``vocab_fts``),
  and the query names them all.

A message holding the needle holds a term for every piece, so the query's answer is a
superset of the messages that hold the needle; SEARCH then checks each candidate's
stored text (store.search_text) — except for a needle that is one run of term
characters (a word or part of one, the usual search), whose answer is exact (one_run).  A piece too short (a prefix of one character, a
piece of one or two that is not a whole term) or inside more than MAX_TERMS terms
narrows too little and is left out; with no piece left the stored texts of the mailbox
are all checked.

``terms()`` computes what the tokenizer does inside FTS5, for the vocabulary: the
indexer adds each batch's new terms (indexer.py).  A term the vocabulary missed would
hide messages from SEARCH, so a test compares them with FTS5's own terms
(tests/unit/store/test_words.py).  The scan is in C (``postier/_textscan.c``) when
built: a quarter to a half of the time, with one object per distinct term instead of
per word.  Else :func:`python_add_new_terms` runs, its twin, which a test holds equal to
it on any bytes.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from postier import compiled

TOKENIZER = "ascii"  # FTS5's built-in: ASCII letters and digits, and all non-ASCII, are term bytes
MIN_PIECE = 3  # shorter pieces have no trigram to look up in the vocabulary
# A prefix query reads the document lists of every term with the prefix: one character
# would name a 26th of the vocabulary or so.
MIN_PREFIX = 2
MAX_TERMS = 200  # a piece inside more terms than this narrows too little to name them all
NOTHING = ""  # match_expression: no indexed message can hold the needle
# A query names at most this many pieces of a long needle (spread over it): the candidates
# are checked anyway, and each piece costs FTS5 a lookup (a 20 KB needle took 1.9 s).
MAX_CLAUSES = 16

# Every byte that separates terms (ASCII, neither letter nor digit) made a SPACE; UTF-8
# sequences are all bytes >= 0x80, so a split never cuts a character.
_SPACED = bytes(c if c >= 0x80 or chr(c).isalnum() else 0x20 for c in range(256))
_RUN = re.compile(rb"[^ ]+")


Known = set[bytes] | frozenset[bytes]  # what the C scanner takes (PyAnySet)
# terms() scans at most about this many bytes at once (a batch of 256 bodies of 64 K
# characters each would otherwise be joined whole)
SCAN_CHUNK_BYTES = 4 * 1024 * 1024


def python_add_new_terms(data: bytes, known: Known, into: set[bytes]) -> None:
    """Adds to ``into`` the distinct runs of term bytes in ``data`` that ``known`` lacks
    (the twin of ``add_new_terms`` in ``_textscan.c``)."""
    into.update(set(data.translate(_SPACED).split()) - known)


def python_distinct_terms(data: bytes) -> bytes:
    """The distinct runs of term bytes in ``data``, each once in the order of its first
    occurrence, joined by a SPACE (the twin of ``distinct_terms`` in ``_textscan.c``)."""
    return b" ".join(dict.fromkeys(data.translate(_SPACED).split()))


_textscan = compiled.c_module("postier._textscan")
add_new_terms: Callable[[bytes, Known, set[bytes]], None] = (
    python_add_new_terms if _textscan is None else _textscan.add_new_terms
)
_c_distinct_terms: Callable[[bytes], bytes | None] | None = (
    None if _textscan is None else _textscan.distinct_terms
)
_c_index_forms: Callable[[list[bytes], Known, set[bytes]], list[bytes] | None] | None = (
    None if _textscan is None else _textscan.index_forms
)


def distinct_terms(data: bytes) -> bytes:
    """``python_distinct_terms(data)``, by the C scan when it is built.  The C scan gives
    up (None) on a term it could not look up in a bounded number of slots (words made to
    collide in its unkeyed hash); the Python twin, with its keyed hash, then answers, so
    the answer is the same either way: a body is removed from the index by giving FTS5
    its indexed form again, maybe computed by another process built otherwise."""
    if _c_distinct_terms is not None:
        found = _c_distinct_terms(data)
        if found is not None:
            return found
    return python_distinct_terms(data)


def indexed_form(value: str) -> str:
    """What the index is given for ``value`` (lowercased): its distinct terms, each once,
    joined by a SPACE.  FTS5 with detail=column keeps only which columns of a body hold
    a term, so it finds the same terms there as in the value, at a cost per distinct
    term instead of per word (indexer.py).  A body is removed from the index by giving
    FTS5 its indexed form again, computed from the stored value: this function must stay
    as it is for an index of the same FORMAT."""
    if not value:
        return value
    return distinct_terms(value.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")


def terms(values: Iterable[str], known: Known = frozenset()) -> set[bytes]:
    """The terms FTS5's ``ascii`` tokenizer finds in ``values`` (already lowercased), as
    UTF-8, but those in ``known``.

    The values are scanned joined by a SPACE (a separator: no term spans two), in chunks
    of SCAN_CHUNK_BYTES: a term found in many values of a batch becomes an object and is
    looked up in ``known`` once per chunk, not once per value (English: ~50 against ~140
    µs per 10 KB message in a batch of 64, bench/README.md, SMTP, session 8)."""
    found: set[bytes] = set()
    chunk: list[bytes] = []
    size = 0
    for value in values:
        if value:
            data = value.encode("utf-8", "surrogatepass")
            chunk.append(data)
            size += len(data) + 1
            if size >= SCAN_CHUNK_BYTES:
                add_new_terms(b" ".join(chunk), known, found)
                chunk, size = [], 0
    if chunk:
        add_new_terms(b" ".join(chunk), known, found)
    return found


def index_forms(values: Sequence[str], known: Known = frozenset()) -> tuple[list[str], set[bytes]]:
    """``[indexed_form(v) for v in values]`` and ``terms(values, known)`` together: one C
    pass over a batch's values with one table (``index_forms`` in ``_textscan.c``) where
    the indexer scanned them once for the forms and the forms again for the vocabulary.
    The same answer either way (tests/unit/store/test_words.py)."""
    if _c_index_forms is not None:
        new: set[bytes] = set()
        found = _c_index_forms([v.encode("utf-8", "surrogatepass") for v in values], known, new)
        if found is not None:
            return [f.decode("utf-8", "surrogatepass") for f in found], new
    forms = [indexed_form(v) for v in values]  # past the C table's probe bound, or no C
    return forms, terms(forms, known)


@dataclass(frozen=True)
class Piece:
    """A run of term characters in a needle."""

    text: str
    starts: bool  # a separator precedes it: it starts the term that holds it
    ends: bool  # a separator follows it: it ends that term


def pieces(lowered: str) -> list[Piece]:
    data = lowered.encode("utf-8", "surrogatepass")
    spaced = data.translate(_SPACED)
    return [
        Piece(data[m.start():m.end()].decode("utf-8", "surrogatepass"),
              m.start() > 0, m.end() < len(data))
        for m in _RUN.finditer(spaced)
    ]


def one_run(lowered: str) -> bool:
    """Whether the needle is a single run of term characters.  Every occurrence of such a
    needle lies inside one term, so when match_expression names the terms holding it, the
    messages it finds are exactly those holding the needle: no check needed."""
    found = pieces(lowered)
    return len(found) == 1 and not found[0].starts and not found[0].ends


def _quoted(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def match_expression(conn: sqlite3.Connection, lowered: str, vocab: str) -> str | None:
    """An FTS5 expression naming, for every piece of ``lowered`` that narrows, the terms
    that could hold it: None when no piece narrows (check every stored text), NOTHING
    when some piece is in no term at all.  ``vocab``: the vocabulary's FTS5 table as
    ``conn`` names it."""
    clauses: list[str] = []
    for piece in pieces(lowered):
        if piece.starts and piece.ends:
            clauses.append(_quoted(piece.text))
            continue
        if piece.starts:  # a prefix: FTS5 finds the terms itself
            if len(piece.text) >= MIN_PREFIX:
                clauses.append(_quoted(piece.text) + " *")
            continue
        if len(piece.text) < MIN_PIECE:
            continue
        pattern = "*" + piece.text + ("" if piece.ends else "*")
        found = [
            str(row[0]) for row in conn.execute(
                f"SELECT term FROM {vocab} WHERE term GLOB ? LIMIT ?", (pattern, MAX_TERMS + 1)
            )
        ]
        if not found:
            return NOTHING
        if len(found) <= MAX_TERMS:
            clauses.append("(" + " OR ".join(_quoted(t) for t in found) + ")")
    if not clauses:
        return None
    if len(clauses) > MAX_CLAUSES:
        step = (len(clauses) - 1) / (MAX_CLAUSES - 1)
        clauses = [clauses[round(i * step)] for i in range(MAX_CLAUSES)]
    return "(" + " AND ".join(clauses) + ")"
