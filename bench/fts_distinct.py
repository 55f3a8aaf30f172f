"""FTS5 given a body's values as they are, or each value's distinct terms (index format 3).

    .venv/bin/python bench/fts_distinct.py [--docs 6000] [--batch 75] [--rounds 3]
                                           [--text english|bench]

Only SQLite and the indexer's own pieces, no server: each round and variant gets a fresh
``index.db`` made by indexer.open_index (the real schema, synchronous=FULL), and inserts
``--docs`` 10 KB messages (bench/smtp.py's make_message, parsed once beforehand) in
transactions of ``--batch`` bodies, with the batch's new vocabulary terms, as
Indexer._apply does.  "as is" inserts the lowercased values themselves (format 2 did,
into a table with content); "distinct" computes words.indexed_form of each, in the timed
part, and inserts that (format 3).  Prints the indexing thread's CPU per message, all of
it and the FTS5 inserts alone (the rest: indexed_form, the terms for the vocabulary, its
inserts, and the commit, where FTS5 writes its segments).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import smtp as load  # bench/smtp.py: make_message, TEXT
from postier.mail.parse import parse_message
from postier.store.sqlite import indexer, words

Values = tuple[str, ...]


def insert_all(docs: list[Values], batch: int, distinct: bool) -> tuple[float, float]:
    """(CPU seconds of it all, of the FTS5 inserts alone) for indexing ``docs``."""
    folder = Path(tempfile.mkdtemp(prefix="bench-fts-distinct-"))
    conn, _ = indexer.open_index(folder / indexer.INDEX_DB)
    known: set[bytes] = set()
    inserts = 0.0
    try:
        start = time.thread_time()
        for first in range(0, len(docs), batch):
            part = docs[first:first + batch]
            if distinct:
                part = [tuple(map(words.indexed_form, values)) for values in part]
            new = words.terms((v for values in part for v in values), known)
            conn.execute("BEGIN IMMEDIATE")
            t = time.thread_time()
            for n, values in enumerate(part):
                conn.execute(
                    "INSERT INTO body_fts (rowid, subject, from_, to_, cc, bcc, headers, text)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (first + n + 1, *values))
            inserts += time.thread_time() - t
            indexer._add_terms(conn, new)
            conn.execute("COMMIT")
            known |= new
        return time.thread_time() - start, inserts
    finally:
        conn.close()
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=6000)
    parser.add_argument("--batch", type=int, default=75)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--text", choices=load.TEXTS, default="english")
    args = parser.parse_args()
    load.TEXT = args.text
    as_is: list[Values] = []
    for n in range(args.docs):
        p = parse_message(load.make_message(n, 10_240))
        as_is.append((p.subject.lower(), p.from_.lower(), p.to.lower(), p.cc.lower(),
                      p.bcc.lower(), p.headers_text.lower(), p.text.lower()))
    start = time.thread_time()
    distinct = [tuple(map(words.indexed_form, values)) for values in as_is]
    form_us = (time.thread_time() - start) / args.docs * 1e6
    words_in = statistics.mean(len(v[6].encode().translate(words._SPACED).split()) for v in as_is)
    terms_in = statistics.mean(len(v[6].split(" ")) for v in distinct)
    print(f"{args.text} text: {words_in:.0f} words, {terms_in:.0f} distinct terms per body text;"
          f" indexed_form {form_us:.0f} µs per message"
          f" ({'Python' if words.distinct_terms is words.python_distinct_terms else 'C'})")
    figures: dict[str, list[tuple[float, float]]] = {"as is": [], "distinct": []}
    for _ in range(args.rounds):  # interleaved: the host's speed drifts
        for name in figures:
            figures[name].append(insert_all(as_is, args.batch, name == "distinct"))
    for name, runs in figures.items():
        alls = sorted(round(a / args.docs * 1e6) for a, _ in runs)
        ins = sorted(round(i / args.docs * 1e6) for _, i in runs)
        print(f"{name:>9}: {alls} µs per message in all, FTS5 inserts {ins}")


if __name__ == "__main__":
    main()
