"""The full-text index in a database of its own, written by a thread of its own.

Indexing used to run inside the delivery transaction on the writer thread, where it was
about half of the writer's work per message and held every delivery behind it (with the
insert switched off, the same SMTP load ran ~1.6× faster: bench/README.md, SMTP).  Now
each new body's id reaches this thread after COMMIT (from the writer of this process, or
over indexfeed.py when the thread runs in the index process, indexproc.py); the thread
reads the bodies' rows, extracts their texts (store.index_rows), inserts them into
``index.db`` in batches (its own lock, so the writer never waits for it) and then marks
the bodies ``indexed = 1`` through the writer (UPDATEs in a later group commit).

``index.db`` is derived data: it is not backed up, and whatever it lacks is found again
through the marks.  It is written with ``synchronous=FULL`` all the same: a body's mark
is a durable commit in postier.db, so the index commit it stands for must be durable
first.  With ``NORMAL`` a power cut could keep the mark and lose the index's last
commits, and SEARCH would then miss those messages for good (it trusts marked bodies
to be in the index).  The fsync costs ~0.1 ms per index batch (one per ~50 ms under
load), in this thread and without the GIL.  A body still ``indexed = 0``
is (re-)indexed by the catch-up pass when this thread is idle and at start, and SEARCH
reads such bodies whole (store.search_text), so results are exact while the index
catches up.  Several processes may index into the same ``index.db`` (workers,
``postier deliver``): a body already in the index is taken out before it goes in again
(_remove), so indexing a body twice is harmless.

What is indexed: the words of each body's header fields and text, and every new word in a
vocabulary with a trigram index of its own, so that SEARCH finds substrings through the
words (words.py).  FTS5 is given each value's distinct terms, not the value: it keeps
which columns of a body hold a term, not how often, and every token costs it a
tokenizer callback and a hash lookup (FORMAT 3; the values go to ``body_text``).  The
batch's new terms for the vocabulary come from the same pass as the forms
(words.index_forms); the terms already committed there are remembered
(KNOWN_TERMS_MAX), so a batch looks up only the others.  An index.db of an older FORMAT
(the trigram index before session 6) is emptied at start and every body indexed again,
SEARCH reading unmarked bodies whole meanwhile.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import queue
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from postier.store.sqlite import words
from postier.store.sqlite.writer import Tx, Writer, connect, take_batch

log = logging.getLogger("postier.store")

INDEX_DB = "index.db"
BATCH = 256  # bodies per index transaction at most
CATCH_UP_BATCH = 200  # bodies re-parsed per catch-up step
IDLE_S = 2.0  # quiet this long before a catch-up pass
# Under constant load the indexer is never quiet: one catch-up step (CATCH_UP_BATCH bodies)
# runs at least this often anyway, so that a body left unmarked (a full queue, a frame
# another worker could not send) waits minutes at most, not for the next lull.
BUSY_CATCH_UP_S = 60.0
# Bodies waiting in memory at most; past that a body is left to the catch-up pass (it stays
# marked unindexed, SEARCH reads it whole), so a burst cannot grow memory without bound.
MAX_PENDING = 5000
GATHER_S = 0.05  # how long a batch gathers bodies after the first
# Under constant load, marks wait up to this long to go in one transaction with others:
# every mark is a write on postier.db, and with the indexer in its own process each one
# can make a delivery batch wait for the lock (3 % of them at 10 senders, 20 marks/s).
MARK_EVERY_S = 0.25
RETRY_S = 60.0  # after a failed index transaction, the catch-up pass waits this long

# The index's layout; an index.db of another format is emptied and built again at start.
# 1: trigram index (sessions 1-5); 2: word index and vocabulary (session 6, words.py);
# 3: the word index given each value's distinct terms, the values in body_text (session 10)
FORMAT = 3
_COLUMNS = "subject, from_, to_, cc, bcc, headers, text"  # body_fts's, in order
SCHEMA = (
    # The values, lowercased (store._index_values, with Python's str.lower, as the
    # needle is), in body_fts's column order: SEARCH checks candidates against them
    # (store.search_text), and a body leaves the index through them (_remove).
    "CREATE TABLE body_text (id INTEGER PRIMARY KEY,"
    " c0 TEXT, c1 TEXT, c2 TEXT, c3 TEXT, c4 TEXT, c5 TEXT, c6 TEXT)",
    # Terms: words.py.  detail=column: which bodies and columns hold a term, not where
    # nor how often, so each value's distinct terms are inserted (words.indexed_form):
    # the same terms at a cost per distinct term, not per word.  Contentless (the values
    # are in body_text) and without column sizes (nothing is ranked).
    f"CREATE VIRTUAL TABLE body_fts USING fts5({_COLUMNS},"
    f" content='', columnsize=0, tokenize='{words.TOKENIZER}', detail=column)",
    # Every term ever indexed (never removed: a stale term only widens a candidate set),
    # and a trigram index of them, to find the terms that contain a piece of a needle.
    "CREATE TABLE vocab (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE)",
    "CREATE VIRTUAL TABLE vocab_fts USING fts5(term, content='vocab', content_rowid='id',"
    " tokenize='trigram case_sensitive 1', detail=none)",
)
_DROP = ("DROP TABLE IF EXISTS body_fts", "DROP TABLE IF EXISTS vocab_fts",
         "DROP TABLE IF EXISTS vocab", "DROP TABLE IF EXISTS body_text")
# Terms known to be in the vocabulary, kept in memory so that a batch looks up only the
# others; past this many the set starts again (~60 bytes each).
KNOWN_TERMS_MAX = 100_000

_STOP = object()
_Values = tuple[str, ...]
# (postier.db reader, body ids) -> (body id, index values, fulltext_cut) of those still there
Loader = Callable[[sqlite3.Connection, list[int]], list[tuple[int, _Values, bool]]]


def open_index(path: Path) -> tuple[sqlite3.Connection, int]:
    """The index database and its identity (a random number chosen when it was created).

    An unreadable file is moved aside and a new index started: it is derived data."""
    try:
        return _open_index(path)
    except sqlite3.DatabaseError as exc:
        aside = path.with_name(f"{path.name}.broken-{int(time.time())}")
        log.error("full-text index %s unreadable (%s): moved to %s, indexing again",
                  path, exc, aside.name)
        path.replace(aside)
        for suffix in ("-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
        return _open_index(path)


def _open_index(path: Path) -> tuple[sqlite3.Connection, int]:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        # durable before the marks that say so (see the module docstring)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")
            row = conn.execute("SELECT value FROM meta WHERE key = 'index_id'").fetchone()
            found = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if row is None or found is None or found[0] != FORMAT:  # a new index
                if row is not None:
                    log.info("full-text index %s is of an older format: building it again",
                             path.name)
                for statement in (*_DROP, *SCHEMA):
                    conn.execute(statement)
                conn.execute("INSERT INTO body_fts (body_fts, rank) VALUES ('automerge', 8)")
                row = (secrets.randbits(62) + 1,)
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('index_id', ?), ('format', ?)",
                    (row[0], FORMAT),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except BaseException:
        conn.close()
        raise
    return conn, int(row[0])


def prepare_index(path: Path, writer: Writer) -> sqlite3.Connection:
    """Open (or create) the index and make the bodies' marks refer to it: run once by every
    process that opens the store, whether or not it indexes itself (store.SqliteStore)."""
    conn, index_id = open_index(path)
    try:
        if writer.submit(_adopt(index_id)).result():
            log.info("full-text index %s is new: every body will be indexed", path.name)
    except BaseException:
        conn.close()
        raise
    return conn


def _adopt(index_id: int) -> Callable[[Tx], bool]:
    """A writer job: if the bodies' marks refer to another index (index.db deleted,
    replaced, moved aside), clear them so that everything is indexed again."""

    def fn(tx: Tx) -> bool:
        row = tx.execute("SELECT value FROM meta WHERE key = 'index_id'").fetchone()
        if row is not None and int(row[0]) == index_id:
            return False
        tx.execute("UPDATE bodies SET indexed = 0 WHERE indexed != 0")
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('index_id', ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (index_id,),
        )
        return True

    return fn


class Indexer:
    """One thread indexing bodies by id into ``index.db`` and marking them indexed."""

    def __init__(
        self, data_dir: Path, db_path: Path, writer: Writer, load: Loader, catch_up: bool = True
    ) -> None:
        self.path = data_dir / INDEX_DB
        self._conn = prepare_index(self.path, writer)
        self._db_path = db_path
        self._writer = writer
        self._load = load  # reads bodies' rows and extracts their texts (store.index_rows)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._marks: list[concurrent.futures.Future[None]] = []
        self._idle = threading.Event()
        self.indexed = 0  # bodies indexed by this process (tests, figures)
        self.deferred = 0  # bodies left to the catch-up pass (queue full)
        self._retry_at = 0.0  # after a failure, no catch-up before this (monotonic)
        self._caught_up_at = 0.0  # the last catch-up pass began (monotonic)
        self._catch_up_enabled = catch_up
        self._reader: sqlite3.Connection | None = None  # postier.db: bodies to index
        # Indexed, not yet marked: marked together when the queue runs dry, or every
        # MARK_EVERY_S under constant load (each mark is a write transaction on postier.db).
        self._unmarked: list[tuple[int, bool]] = []
        self._marked_at = 0.0
        self._known: set[bytes] = set()  # terms committed to the vocabulary (words.py)
        self._thread = threading.Thread(target=self._run, name="postier-indexer", daemon=True)
        self._thread.start()

    # called after COMMIT (the body's row is there to read), and from GC
    def add(self, body_id: int) -> None:
        if self._queue.qsize() >= MAX_PENDING:
            self.deferred += 1
            return
        self._idle.clear()
        self._queue.put((body_id, True))

    def delete(self, body_id: int) -> None:
        self._idle.clear()
        self._queue.put((body_id, False))

    def alive(self) -> bool:
        return self._thread.is_alive()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until everything handed over so far is indexed and marked (tests, backup)."""
        if not self._idle.wait(timeout):
            return False
        for mark in list(self._marks):
            mark.result(timeout)
        return True

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        for mark in self._marks:
            try:
                mark.result(10)
            except Exception as exc:  # the writer may be gone: re-indexed at next start
                log.warning("index marks not saved: %s", exc)
        if self._reader is not None:
            self._reader.close()
        self._conn.close()

    # the thread
    def _run(self) -> None:
        self._catch_up()
        if self._queue.empty():
            self._idle.set()
        while True:
            try:
                first = self._queue.get(timeout=IDLE_S)
            except queue.Empty:
                self._catch_up()
                self._idle.set()
                continue
            if first is _STOP:
                return
            # Nobody waits for the index: gather for a moment, so that FTS5 writes fewer,
            # larger segments (each commit is one, and merging them is most of the cost).
            items, stop = take_batch(self._queue, first, BATCH, _STOP, GATHER_S)
            self._apply(items)
            if stop:
                self._flush_marks()
                return
            if time.monotonic() - self._caught_up_at >= BUSY_CATCH_UP_S:
                self._catch_up(steps=1)
            if self._queue.empty() or time.monotonic() - self._marked_at >= MARK_EVERY_S:
                self._flush_marks()
            if self._queue.empty():
                self._idle.set()

    def _postier_db(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = connect(self._db_path, readonly=True)
        return self._reader

    def _apply(self, items: list[tuple[int, bool]]) -> bool:
        """Index (True) or remove (False) each body, in order, in one transaction."""
        try:
            loaded = {
                body_id: (values, cut)
                for body_id, values, cut in self._load(
                    self._postier_db(), [body_id for body_id, add in items if add]
                )
            }
        except sqlite3.Error as exc:
            log.error("full-text indexing: reading bodies failed: %s", exc)
            self._retry_at = time.monotonic() + RETRY_S
            return False
        except Exception:  # a bug or an unreadable file: this thread must not die of it
            log.exception("full-text indexing: reading bodies failed")
            self._retry_at = time.monotonic() + RETRY_S
            return False
        conn = self._conn
        done: list[tuple[int, bool]] = []
        flat, new_terms = words.index_forms(
            [v for values, _cut in loaded.values() for v in values], self._known)
        forms: dict[int, list[str]] = {}
        at = 0
        for body_id, (values, _cut) in loaded.items():
            forms[body_id] = flat[at:at + len(values)]
            at += len(values)
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Bodies already in the index (indexed twice, or removed now): one lookup
            # for the batch, then kept up to date as the batch goes in.
            present = {int(row[0]) for row in conn.execute(
                "SELECT id FROM body_text WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps([body_id for body_id, _add in items]),),
            )}
            for body_id, add in items:
                if body_id in present:
                    _remove(conn, body_id)
                    present.discard(body_id)
                if add and body_id in loaded:
                    values, cut = loaded[body_id]
                    conn.execute(
                        f"INSERT INTO body_fts (rowid, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (body_id, *forms[body_id]),
                    )
                    conn.execute(
                        "INSERT INTO body_text (id, c0, c1, c2, c3, c4, c5, c6)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (body_id, *values),
                    )
                    present.add(body_id)
                    done.append((body_id, cut))
            _add_terms(conn, new_terms)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # left unmarked: the catch-up pass tries again
            log.error("full-text indexing failed: %s", exc)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._retry_at = time.monotonic() + RETRY_S
            return False
        self.indexed += len(done)
        self._unmarked.extend(done)
        if len(self._known) + len(new_terms) > KNOWN_TERMS_MAX:
            self._known.clear()
        self._known |= new_terms  # only once committed: a term missing there hides mail
        return True

    def _flush_marks(self) -> None:
        if self._unmarked:
            bodies, self._unmarked = self._unmarked, []
            self._mark(bodies)
        self._marked_at = time.monotonic()

    def _mark(self, bodies: list[tuple[int, bool]]) -> None:
        """Mark the bodies indexed, with whether the index holds only part of their text
        (SEARCH reads those whole): one UPDATE each in a later group commit."""
        def fn(tx: Tx) -> None:
            tx.conn.executemany(
                "UPDATE bodies SET indexed = 1, fulltext_cut = ? WHERE id = ?",
                [(int(cut), i) for i, cut in bodies],
            )

        self._marks = [m for m in self._marks if not m.done()]
        try:
            self._marks.append(self._writer.submit(fn))
        except Exception as exc:  # closing: the marks are set again at the next start
            log.debug("index marks not submitted: %s", exc)

    def _catch_up(self, steps: int = 0) -> None:
        """Index bodies still marked unindexed (a crash, a restore, an upgrade): while
        nothing new waits, or ``steps`` batches whatever waits."""
        self._caught_up_at = time.monotonic()
        if not self._catch_up_enabled or time.monotonic() < self._retry_at:
            return
        # A forced step also meets bodies still queued here or not yet marked (indexed
        # twice: taken out first); it is routine then, not news.
        level = logging.DEBUG if steps else logging.INFO
        try:
            reader = self._postier_db()
            last = 0
            while self._queue.empty() or steps > 0:
                steps -= 1
                ids = [int(row[0]) for row in reader.execute(
                    "SELECT id FROM bodies WHERE indexed = 0 AND id > ? ORDER BY id LIMIT ?",
                    (last, CATCH_UP_BATCH),
                )]
                if not ids:
                    return
                last = ids[-1]
                log.log(level, "full-text index: catching up, %d bodies", len(ids))
                if not self._apply([(body_id, True) for body_id in ids]):
                    return  # tried again after RETRY_S
                self._flush_marks()
        except sqlite3.Error as exc:
            log.error("full-text catch-up: %s", exc)


def _remove(conn: sqlite3.Connection, body_id: int) -> None:
    """Take a body that is in the index out of it (inside the transaction).  FTS5 removes
    a row of a contentless table when given the very text it indexed: the indexed form
    of each stored value, computed again.  Never for a body not in body_text: a 'delete'
    of a row never indexed corrupts a contentless table."""
    row = conn.execute("SELECT c0, c1, c2, c3, c4, c5, c6 FROM body_text WHERE id = ?",
                       (body_id,)).fetchone()
    if row is None:
        return
    conn.execute(
        f"INSERT INTO body_fts (body_fts, rowid, {_COLUMNS})"
        " VALUES ('delete', ?, ?, ?, ?, ?, ?, ?, ?)",
        (body_id, *(words.indexed_form(v) for v in row)),
    )
    conn.execute("DELETE FROM body_text WHERE id = ?", (body_id,))


def _add_terms(conn: sqlite3.Connection, terms: set[bytes]) -> None:
    """Add the terms the vocabulary lacks, to it and to its trigram index (inside the
    transaction)."""
    if not terms:
        return
    top = conn.execute("SELECT coalesce(max(id), 0) FROM vocab").fetchone()[0]
    conn.executemany(
        "INSERT OR IGNORE INTO vocab (term) VALUES (?)",
        # Values are valid Unicode (decoded with "replace"), so their terms decode back
        # exactly; "replace" keeps a surprise from ending this thread.
        [(term.decode("utf-8", "replace"),) for term in terms],
    )
    conn.execute("INSERT INTO vocab_fts (rowid, term) SELECT id, term FROM vocab WHERE id > ?",
                 (top,))
