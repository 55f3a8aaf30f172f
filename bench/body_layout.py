"""Layouts of the ``bodies`` table: what a delivery and an index mark cost in each.

    .venv/bin/python bench/body_layout.py [--rows 20000] [--deliveries 4000] [--rounds 4]

Only SQLite: each round and layout gets a fresh WAL database (synchronous=FULL) with a
``bodies`` table shaped like the store's (schema.py: the parse's metadata of
bench/smtp.py's 10 KB messages, a random-looking ``sha256``), ``--rows`` rows already
there and marked; then ``--deliveries`` bodies are stored in commits of 4 (a group
commit at 10 SMTP senders) and marked indexed in commits of 130 (an index batch).
Prints medians over the rounds of the CPU and WAL bytes per message, for the delivery,
the mark, and a checkpoint of it all (automatic checkpoints off while timing).

Layouts: "inline" (as now: the body's bytes in its row, ``sha256`` UNIQUE for
dedup), "inline, no unique sha256", "split" (the bytes in a table of their own, so the
rows the marks rewrite are small), "split + pending" (also the marks as the removal of
a row from a list of unindexed bodies, filled at delivery, instead of an UPDATE).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import smtp as load  # bench/smtp.py: make_message
from postier.mail.parse import encode_parts, parse_message

LAYOUTS = ("inline", "inline, no unique sha256", "split", "split + pending")
META = ("sha256, size, envelope, body, bodystructure, parts, subject, from_, to_, cc, bcc,"
        " sent_date, message_id, in_reply_to, refs, has_attachment")
GROUP = 4  # deliveries per commit
MARK_BATCH = 130  # marks per commit


def schema(layout: str) -> list[str]:
    unique = "" if layout == "inline, no unique sha256" else " UNIQUE"
    data = ", data BLOB" if layout.startswith("inline") else ""
    out = [
        "CREATE TABLE bodies (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        f" sha256 TEXT NOT NULL{unique}, size INTEGER NOT NULL, envelope BLOB NOT NULL,"
        " body BLOB NOT NULL, bodystructure BLOB NOT NULL, parts BLOB NOT NULL,"
        " subject TEXT NOT NULL DEFAULT '', from_ TEXT NOT NULL DEFAULT '',"
        " to_ TEXT NOT NULL DEFAULT '', cc TEXT NOT NULL DEFAULT '',"
        " bcc TEXT NOT NULL DEFAULT '', sent_date INTEGER,"
        " message_id TEXT NOT NULL DEFAULT '', in_reply_to TEXT NOT NULL DEFAULT '',"
        " refs TEXT NOT NULL DEFAULT '', has_attachment INTEGER NOT NULL DEFAULT 0"
        f"{data}, indexed INTEGER NOT NULL DEFAULT 0,"
        " fulltext_cut INTEGER NOT NULL DEFAULT 0)",
        "CREATE INDEX bodies_unindexed ON bodies (id) WHERE indexed = 0",
        "CREATE INDEX bodies_cut ON bodies (id) WHERE fulltext_cut = 1",
    ]
    if not layout.startswith("inline"):
        out.append("CREATE TABLE body_data (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    if layout == "split + pending":
        out.append("CREATE TABLE index_pending (body_id INTEGER PRIMARY KEY)")
    return out


class Messages:
    """bench/smtp.py's messages, parsed once; row(i) is a new body each time."""

    def __init__(self, count: int = 200) -> None:
        self.parsed = []
        for n in range(count):
            raw = load.make_message(n, 10_240)
            self.parsed.append((raw, parse_message(raw)))

    def row(self, i: int) -> tuple[tuple[object, ...], bytes]:
        raw, p = self.parsed[i % len(self.parsed)]
        meta = (hashlib.sha256(raw + b"%d" % i).hexdigest(), len(raw), p.envelope, p.body,
                p.bodystructure, encode_parts(p.root), p.subject, p.from_, p.to, p.cc, p.bcc,
                p.date, p.message_id, p.in_reply_to, "", 0)
        return meta, raw


def deliver(conn: sqlite3.Connection, layout: str, messages: Messages, i: int) -> int:
    meta, raw = messages.row(i)
    marks = ", ".join("?" * len(meta))
    if layout == "inline, no unique sha256":
        sql = f"INSERT INTO bodies ({META}, data) VALUES ({marks}, ?) RETURNING id"
        (body_id,) = conn.execute(sql, (*meta, raw)).fetchone()
    elif layout == "inline":
        sql = (f"INSERT INTO bodies ({META}, data) VALUES ({marks}, ?)"
               " ON CONFLICT (sha256) DO NOTHING RETURNING id")
        (body_id,) = conn.execute(sql, (*meta, raw)).fetchone()
    else:
        sql = (f"INSERT INTO bodies ({META}) VALUES ({marks})"
               " ON CONFLICT (sha256) DO NOTHING RETURNING id")
        (body_id,) = conn.execute(sql, meta).fetchone()
        conn.execute("INSERT INTO body_data (id, data) VALUES (?, ?)", (body_id, raw))
        if layout == "split + pending":
            conn.execute("INSERT INTO index_pending (body_id) VALUES (?)", (body_id,))
    return int(body_id)


def mark(conn: sqlite3.Connection, layout: str, ids: list[int]) -> None:
    if layout == "split + pending":
        conn.executemany("DELETE FROM index_pending WHERE body_id = ?", [(i,) for i in ids])
    else:
        conn.executemany("UPDATE bodies SET indexed = 1, fulltext_cut = ? WHERE id = ?",
                         [(0, i) for i in ids])


def one_round(layout: str, messages: Messages, rows: int, deliveries: int) -> list[float]:
    """[delivery µs, delivery WAL KB, mark µs, mark WAL KB, checkpoint µs] per message."""
    folder = Path(tempfile.mkdtemp(prefix="bench-body-layout-"))
    wal = folder / "db-wal"
    try:
        conn = sqlite3.connect(folder / "db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        for statement in schema(layout):
            conn.execute(statement)
        conn.execute("BEGIN")
        existing = [deliver(conn, layout, messages, i) for i in range(rows)]
        conn.execute("COMMIT")
        mark(conn, layout, existing)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        ids: list[int] = []
        start, wal0 = time.thread_time(), wal.stat().st_size
        for first in range(rows, rows + deliveries, GROUP):
            conn.execute("BEGIN IMMEDIATE")
            ids += [deliver(conn, layout, messages, i) for i in range(first, first + GROUP)]
            conn.execute("COMMIT")
        stored, stored_wal = time.thread_time() - start, wal.stat().st_size - wal0
        start, wal0 = time.thread_time(), wal.stat().st_size
        for first in range(0, len(ids), MARK_BATCH):
            conn.execute("BEGIN IMMEDIATE")
            mark(conn, layout, ids[first:first + MARK_BATCH])
            conn.execute("COMMIT")
        marked, marked_wal = time.thread_time() - start, wal.stat().st_size - wal0
        start = time.thread_time()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        checkpoint = time.thread_time() - start
        conn.close()
    finally:
        shutil.rmtree(folder)
    n = len(ids)
    return [stored / n * 1e6, stored_wal / n / 1024, marked / n * 1e6, marked_wal / n / 1024,
            checkpoint / n * 1e6]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--deliveries", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    messages = Messages()
    figures: dict[str, list[list[float]]] = {layout: [] for layout in LAYOUTS}
    for _ in range(args.rounds):  # interleaved: the host's speed drifts
        for layout in LAYOUTS:
            figures[layout].append(one_round(layout, messages, args.rows, args.deliveries))
    print(f"per message, medians of {args.rounds} rounds [lowest, highest]:")
    print(f"{'layout':>26} {'delivery µs':>20} {'its WAL KB':>11} {'mark µs':>18}"
          f" {'its WAL KB':>11} {'checkpoint µs':>20}")
    for layout, rounds in figures.items():
        cells = []
        for column in range(5):
            values = [r[column] for r in rounds]
            median = statistics.median(values)
            cells.append(f"{median:.1f}" if column in (1, 3) else
                         f"{median:.1f} [{min(values):.1f}, {max(values):.1f}]")
        print(f"{layout:>26} {cells[0]:>20} {cells[1]:>11} {cells[2]:>18} {cells[3]:>11}"
              f" {cells[4]:>20}")


if __name__ == "__main__":
    main()
