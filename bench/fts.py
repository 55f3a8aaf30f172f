"""Full-text index variants: insert CPU per message, SEARCH latency, database size.

    .venv/bin/python bench/fts.py [--docs 3000] [--search-docs 20000] [--sizes 2048 10240 102400]

Only SQLite, no server: each variant gets a fresh WAL database (synchronous=FULL, as the
store) with a ``bodies``-like table holding the raw message inline, and inserts in group
commits of 25 messages with the index insert after the rows, as the store's writer does.
Text is either the repetitive bench/store.py text or "natural" text cut from the parsed
bodies of tests/data/messages (103 real messages) with their real header blocks.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from postier.mail.parse import parse_message

BATCH = 25
COLS = ("subject", "from_", "to_", "cc", "bcc", "headers", "text")
WORDS = [w.decode() for w in (
    b"alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    b"november oscar papa quebec romeo sierra tango uniform victor whiskey xray").split()]


@dataclass
class Doc:
    values: tuple[str, ...]  # subject, from_, to_, cc, bcc, headers, text
    raw: bytes


def corpus() -> tuple[str, list[tuple[str, ...]]]:
    root = Path(__file__).resolve().parent.parent / "tests" / "data" / "messages"
    texts: list[str] = []
    heads: list[tuple[str, ...]] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix in (".md",) or path.name == "LICENSE":
            continue
        p = parse_message(path.read_bytes())
        if p.text.strip():
            texts.append(p.text)
        heads.append((p.subject, p.from_, p.to, p.cc, p.bcc, p.headers_text))
    return "\n".join(texts), heads


def make_docs(kind: str, count: int, size: int, seed: int = 1) -> list[Doc]:
    rng = random.Random(seed)
    pool, heads = corpus()
    docs: list[Doc] = []
    for n in range(count):
        subject = f"benchmark message {n}"
        if kind == "bench":
            line = " ".join(WORDS[(n + i) % len(WORDS)] for i in range(12)) + "\n"
            text = (line * (size // len(line) + 1))[:size]
            head = ("", f"Sender {n % 97} <sender{n % 97}@example.net>", "alice@example.org",
                    "", "")
            headers = (f"From: {head[1]}\nTo: alice@example.org\nSubject: {subject}\n"
                       f"Message-ID: <{n}@bench.example.net>\nDate: Fri, 27 Nov 2026 08:00:00 +0000")
            vals = (subject, head[1], head[2], "", "", headers, text)
        else:
            h = heads[n % len(heads)]
            parts = []
            total = 0
            while total < size:  # paragraphs from random places of the real corpus
                start = rng.randrange(0, max(1, len(pool) - 2000))
                chunk = pool[start:start + rng.randrange(300, 2000)]
                parts.append(chunk)
                total += len(chunk)
            text = "\n".join(parts)[:size]
            headers = h[5] + f"\nSubject: {subject}"
            vals = (subject, h[1], h[2], h[3], h[4], headers, text)
        docs.append(Doc(vals, (vals[5] + "\n\n" + vals[6]).encode()))
    return docs


@dataclass
class Variant:
    name: str
    ddl: str
    copy: bool = False  # keep a folded copy of headers/text for verification
    content: bool = False  # FTS5 keeps the (lowered) values itself; verified in Python

    def create(self, conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE bodies (id INTEGER PRIMARY KEY, data BLOB)")
        conn.execute("CREATE TABLE messages (mailbox_id INTEGER, uid INTEGER, body_id INTEGER,"
                     " PRIMARY KEY (mailbox_id, uid)) WITHOUT ROWID")
        for stmt in self.ddl.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        if self.copy:
            conn.execute("CREATE TABLE body_text (id INTEGER PRIMARY KEY, headers TEXT, text TEXT)")


FTS = "CREATE VIRTUAL TABLE body_fts USING fts5(subject, from_, to_, cc, bcc, headers, text, {})"
AUTOMERGE8 = "; INSERT INTO body_fts (body_fts, rank) VALUES ('automerge', 8)"
VARIANTS = {
    "full": Variant("full (today)", FTS.format("content='', tokenize='trigram'") + AUTOMERGE8),
    "full-cs0": Variant("full columnsize=0", FTS.format(
        "content='', tokenize='trigram', columnsize=0") + AUTOMERGE8),
    "full-pgsz4k": Variant("full pgsz=4000", FTS.format("content='', tokenize='trigram'")
                           + AUTOMERGE8 + "; INSERT INTO body_fts (body_fts, rank) VALUES ('pgsz', 4000)"),
    "full-am16": Variant("full automerge=16", FTS.format("content='', tokenize='trigram'")
                         + "; INSERT INTO body_fts (body_fts, rank) VALUES ('automerge', 16)"),
    "column": Variant("detail=column (no copy)", FTS.format(
        "content='', tokenize='trigram', detail=column") + AUTOMERGE8),
    "column+copy": Variant("detail=column + folded copy", FTS.format(
        "content='', tokenize='trigram', detail=column") + AUTOMERGE8, copy=True),
    "column+content": Variant("detail=column, lowered content", FTS.format(
        "tokenize='trigram', detail=column") + AUTOMERGE8, content=True),
    "column+content-am16": Variant("detail=column, content, am16", FTS.format(
        "tokenize='trigram', detail=column")
        + "; INSERT INTO body_fts (body_fts, rank) VALUES ('automerge', 16)", content=True),
    "none+copy": Variant("detail=none + folded copy", FTS.format(
        "content='', tokenize='trigram', detail=none") + AUTOMERGE8, copy=True),
}


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def cpu() -> float:
    return time.process_time()


def insert(conn: sqlite3.Connection, v: Variant, docs: list[Doc], first_id: int = 1,
           mailbox: int = 1) -> tuple[float, float]:
    """Returns (total CPU s, CPU s of the index part alone)."""
    fts_sql = "INSERT INTO body_fts (rowid, subject, from_, to_, cc, bcc, headers, text) VALUES (?,?,?,?,?,?,?,?)"
    total = index = 0.0
    for start in range(0, len(docs), BATCH):
        c0 = cpu()
        conn.execute("BEGIN IMMEDIATE")
        batch = docs[start:start + BATCH]
        ids = []
        for i, d in enumerate(batch):
            bid = first_id + start + i
            conn.execute("INSERT INTO bodies (id, data) VALUES (?, ?)", (bid, d.raw))
            conn.execute("INSERT INTO messages VALUES (?, ?, ?)", (mailbox, bid, bid))
            ids.append(bid)
        c1 = cpu()
        for bid, d in zip(ids, batch, strict=True):
            if v.content:
                conn.execute(fts_sql, (bid, *(x.lower() for x in d.values)))
                continue
            conn.execute(fts_sql, (bid, *d.values))
            if v.copy:
                conn.execute("INSERT INTO body_text (id, headers, text) VALUES (?, ?, ?)",
                             (bid, d.values[5].lower(), d.values[6].lower()))
        c2 = cpu()
        conn.execute("COMMIT")
        c3 = cpu()
        total += c3 - c0
        index += c2 - c1
    return total, index


def trigram_query(needle: str) -> str:
    grams: list[str] = []
    for i in range(len(needle) - 2):
        g = needle[i:i + 3]
        if g.lower() not in (x.lower() for x in grams):
            grams.append(g)
    return "(" + " AND ".join('"' + g.replace('"', '""') + '"' for g in grams) + ")"


def search(conn: sqlite3.Connection, v: Variant, field: str, needle: str) -> list[int]:
    col = {"body": "text", "text": None, "subject": "subject"}[field]
    if "detail" not in v.ddl:
        match = (f"{col} : " if col else "{headers text} : ") + '"' + needle.replace('"', '""') + '"'
        return [r[0] for r in conn.execute(
            "SELECT m.uid FROM messages m WHERE m.mailbox_id = ? AND m.body_id IN"
            " (SELECT rowid FROM body_fts WHERE body_fts MATCH ?) ORDER BY m.uid",
            (1, match))]
    q = trigram_query(needle)
    match = q
    if "detail=column" in v.ddl:
        match = (f"{col} : " if col else "{headers text} : ") + q
    if v.content:
        low = needle.lower()
        if len(low) == 3:  # one trigram: the index answer is exact
            return [r[0] for r in conn.execute(
                "SELECT m.uid FROM messages m WHERE m.mailbox_id = ? AND m.body_id IN"
                " (SELECT rowid FROM body_fts WHERE body_fts MATCH ?) ORDER BY m.uid",
                (1, match))]
        cols = {"body": "CAST(c6 AS BLOB)", "text": "CAST(c5 AS BLOB), CAST(c6 AS BLOB)",
                "subject": "CAST(c0 AS BLOB)"}[field]
        blow = low.encode()
        rows = conn.execute(
            f"SELECT m.uid, {cols} FROM messages m JOIN body_fts_content c ON c.id = m.body_id"
            " WHERE m.mailbox_id = ? AND m.body_id IN"
            " (SELECT rowid FROM body_fts WHERE body_fts MATCH ?) ORDER BY m.uid", (1, match))
        if field == "text":
            return [r[0] for r in rows if blow in r[1] or blow in r[2]]
        return [r[0] for r in rows if blow in r[1]]
    if not v.copy:  # candidates only (what an unverified index would answer)
        return [r[0] for r in conn.execute(
            "SELECT m.uid FROM messages m WHERE m.mailbox_id = ? AND m.body_id IN"
            " (SELECT rowid FROM body_fts WHERE body_fts MATCH ?) ORDER BY m.uid", (1, match))]
    low = needle.lower()
    cond = {"body": "instr(t.text, ?3)", "text": "(instr(t.headers, ?3) OR instr(t.text, ?3))",
            "subject": "instr(t.headers, ?3)"}[field]
    return [r[0] for r in conn.execute(
        "SELECT m.uid FROM messages m JOIN body_text t ON t.id = m.body_id"
        " WHERE m.mailbox_id = ?1 AND m.body_id IN"
        f" (SELECT rowid FROM body_fts WHERE body_fts MATCH ?2) AND {cond} ORDER BY m.uid",
        (1, match, low))]


def db_size(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.stat().st_size


def table_bytes(conn: sqlite3.Connection) -> dict[str, int]:
    try:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.Error:
        return {}
    return {r[0]: r[1] for r in rows}


def run_insert(tmp: Path, kinds: list[str], sizes: list[int], count: int, names: list[str],
               repeat: int) -> None:
    print(f"insert: {count} messages per run, group commits of {BATCH}; CPU ms per message"
          " (total writer work / index part); index+copy bytes per message")
    for kind in kinds:
        for size in sizes:
            n = count if size <= 10240 else max(300, count // 10)
            docs = make_docs(kind, n, size)
            res: dict[str, tuple[list[float], list[float], float]] = {
                name: ([], [], 0.0) for name in names}
            for r in range(repeat):  # variants interleaved: the machine's load hits all alike
                for name in names:
                    v = VARIANTS[name]
                    path = tmp / f"{kind}-{size}-{name}-{r}.db"
                    conn = connect(path)
                    v.create(conn)
                    t, i = insert(conn, v, docs)
                    tb = table_bytes(conn)
                    conn.close()
                    fts = sum(b for k, b in tb.items() if k.startswith("body_fts") or k == "body_text")
                    totals, idx, _ = res[name]
                    totals.append(t / n * 1000)
                    idx.append(i / n * 1000)
                    res[name] = (totals, idx, fts / n)
                    path.unlink()
                    for suffix in ("-wal", "-shm"):
                        Path(str(path) + suffix).unlink(missing_ok=True)
            for name in names:
                totals, idx, per_msg = res[name]
                print(f"  {kind:7} {size:>6} {VARIANTS[name].name:30} total {min(totals):.3f}-"
                      f"{max(totals):.3f}  index {min(idx):.3f}-{max(idx):.3f}  index bytes/msg "
                      f"{per_msg:,.0f}", flush=True)


NEEDLES = [("text", "benchmark message 424"), ("body", "the"), ("body", "with the"),
           ("body", "please"), ("body", "zanzibar"), ("body", "whiskey xray alpha"),
           ("body", "mailing list"), ("body", "ment")]


def run_search(tmp: Path, kind: str, count: int, names: list[str], repeat: int) -> None:
    docs = make_docs(kind, count, 10240, seed=2)
    print(f"search: {count:,} {kind} 10 KB messages; ms per search (min of {repeat})")
    truth: dict[tuple[str, str], int] = {}
    for name in names:
        v = VARIANTS[name]
        path = tmp / f"search-{kind}-{name}.db"
        conn = connect(path)
        v.create(conn)
        insert(conn, v, docs)
        conn.close()
        size = db_size(path)
        conn = sqlite3.connect(path, isolation_level=None)
        line = []
        for field, needle in NEEDLES:
            best = 1e9
            hits: list[int] = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                hits = search(conn, v, field, needle)
                best = min(best, time.perf_counter() - t0)
            key = (field, needle)
            truth.setdefault(key, len(hits))
            flag = "" if truth[key] == len(hits) else f"(!={truth[key]})"
            line.append(f"{needle!r} {len(hits)}{flag} {best * 1000:.1f}")
        conn.close()
        print(f"  {v.name:30} db {size / 2**20:.0f} MiB: " + "; ".join(line), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--search-docs", type=int, default=20000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 10240, 102400])
    ap.add_argument("--kinds", nargs="+", default=["bench", "natural"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-insert", action="store_true")
    ap.add_argument("--skip-search", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="postier-fts-"))
    print(f"sqlite {sqlite3.sqlite_version}; {os.cpu_count()} CPUs; files in {tmp}")
    if not args.skip_insert:
        run_insert(tmp, args.kinds, args.sizes, args.docs, args.variants, args.repeat)
    if not args.skip_search:
        for kind in args.kinds:
            run_search(tmp, kind, args.search_docs, args.variants, 3)


if __name__ == "__main__":
    main()
