"""Online backup, verification and restore of a postier data folder.

A backup folder (DEST) holds any number of snapshots sharing one content-addressed body
store, so a second backup to the same DEST copies only bodies it has not seen — the
small bodies kept inline in the database included::

    DEST/
      blobs/ab/<sha256>              every body (file or inline in the store), shared by
                                     all snapshots
      snapshots/20250101T120000Z/
        postier.db                   the database *without* inline bodies and without
                                     the full-text index (metadata, parsed structure)
        tls/...                      certificates and keys of the data folder
        manifest.json                written last: the snapshot exists once this exists

**Consistency while the server runs.** The snapshot's database is built by one
connection that attaches the live database and, inside one read transaction, creates
the same schema and copies every table row by row (``INSERT … SELECT``, rowids kept, the
full-text index's shadow tables included): in WAL mode writers go on committing, and
the copy is exactly the database at the moment that transaction began.  The copy of
``bodies`` leaves ``data`` NULL and lists the ids of inline bodies in a table
``backup_inline`` (which exists only in snapshots); the inline bodies not yet in DEST
are written to ``DEST/blobs`` from the same transaction, so the second backup of a
store reads and writes only the metadata and the new bodies.  The list of body files to
copy is read in the same transaction too.  A body file is written and fsync'd before
the transaction that references it commits, so every file the snapshot references is
whole on disk; only garbage collection (of bodies expunged *after* the snapshot) could
remove one before we copy it, and then the snapshot is taken again.

**The full-text index is not in a snapshot (formats 3 and 4).** The trigram index was
~96 % of each snapshot database, so every "incremental" backup rewrote it whole.  Since
schema 6 it lives in its own database, ``index.db``, which is derived data and never
copied (format 4); format 3 snapshots carried the index table empty.  Restore clears the
bodies' ``indexed`` marks and removes any ``index.db``: the restored server indexes every
body again in the background (store/sqlite/indexer.py) and SEARCH reads the bodies not
yet indexed whole meanwhile, so results are exact from the first minute, only slower.
The ``orphans`` of the live store (bodies whose rows are gone, for ``collect_garbage``)
are not copied; restore empties ``orphans`` in any case (their files, when no body row
shares the hash, are removed).

**Formats.** Version 4 (this one) and 3 leave the full-text index out; version 2 snapshots
(inline bodies moved out, index copied) and version 1 snapshots (the whole database,
inline bodies in it) are still verified and restored as they are.

**IMAP identity.** A restore copies the database, never re-appends: UIDVALIDITY, UIDs,
MODSEQs, POP3 UIDLs and the UIDVALIDITY counter come back exactly; the inline bodies are
put back into ``bodies.data`` from DEST's body files (each checked against its hash)
and ``backup_inline`` is dropped.

**Trust.** ``manifest.json`` holds the database's sha256 and the lists of bodies it
references (``blobs``: kept as files in the store; ``inline``: kept in the database);
every body file is named by its sha256.  :func:`verify` checks all of it;
:func:`restore` runs the same checks before it writes a single byte.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from postier import __version__
from postier.errors import UserError
from postier.store.blobs import fsync_dir
from postier.store.sqlite.indexer import INDEX_DB
from postier.store.sqlite.schema import LATEST

Progress = Callable[[int, int, str], None]
"""progress(done, total, what): called often; ``what`` names the phase ("database", …)."""

FORMAT: Final = "postier-backup"
FORMAT_VERSION: Final = 4  # 2: inline bodies moved out; 3: index left out; 4: no index at all
FTS_TABLE: Final = "body_fts"  # the store's full-text index: rebuilt at restore (format 3)
# Its shadow tables whose rows are not copied (FTS5 names; ``_config`` is copied).
FTS_OMITTED: Final = tuple(f"{FTS_TABLE}_{s}" for s in ("data", "idx", "docsize", "content"))
ORPHANS_TABLE: Final = "orphans"  # not copied: their index entries are not in the snapshot
INLINE_TABLE: Final = "backup_inline"  # in snapshots only: ids of bodies kept inline
DB_NAME: Final = "postier.db"
MANIFEST_NAME: Final = "manifest.json"
BLOBS_DIR: Final = "blobs"
SNAPSHOTS_DIR: Final = "snapshots"
TLS_DIR: Final = "tls"
DB_PAGES_PER_STEP: Final = 4096  # ~16 MB per backup step: frequent progress, few calls
COPY_CHUNK_BYTES: Final = 1024 * 1024
SNAPSHOT_ATTEMPTS: Final = 5  # retakes when GC removed a referenced file mid-backup

# Leftovers of a running or crashed server that a restore must not carry over or that
# do not make a data folder "non-empty" in a meaningful way.
_IGNORED_IN_EMPTY: Final = frozenset({"lost+found"})


class BackupError(UserError):
    """The backup cannot be made, is damaged, or cannot be restored where asked."""


def _no_progress(done: int, total: int, what: str) -> None:
    pass


@dataclass(frozen=True, slots=True)
class Counts:
    domains: int
    accounts: int
    aliases: int
    mailboxes: int
    messages: int
    message_bytes: int  # sum of RFC822.SIZE over all messages
    queue: int


@dataclass(frozen=True, slots=True)
class BackupSummary:
    snapshot: Path
    schema_version: int
    counts: Counts
    db_bytes: int
    blobs: int  # body files the snapshot references
    blobs_copied: int  # of which this run copied (the others were already in DEST)
    bytes_copied: int  # database + copied body files + inline bodies written + tls
    seconds: float
    inline: int = 0  # bodies kept in the database, stored in DEST/blobs
    inline_copied: int = 0  # of which this run wrote (the others were already in DEST)

    def describe(self) -> str:
        c = self.counts
        mb = self.bytes_copied / 1e6
        return (
            f"backup {self.snapshot}: {c.accounts} accounts, {c.mailboxes} mailboxes, "
            f"{c.messages} messages ({c.message_bytes / 1e6:.1f} MB); "
            f"{self.blobs_copied} of {self.blobs} body files and {self.inline_copied} of "
            f"{self.inline} inline bodies copied; "
            f"{mb:.1f} MB written in {self.seconds:.1f} s"
            f" ({mb / self.seconds if self.seconds else 0:.1f} MB/s)"
        )


@dataclass(slots=True)
class VerifyReport:
    snapshot: Path
    manifest: dict[str, object] = field(default_factory=dict)
    blobs_checked: int = 0
    bytes_checked: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def describe(self) -> str:
        head = f"snapshot {self.snapshot}: {self.blobs_checked} body files checked"
        if self.ok:
            return head + ", all good"
        shown = "\n  ".join(self.errors[:20])
        more = f"\n  … and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
        return f"{head}, {len(self.errors)} problem(s):\n  {shown}{more}"


@dataclass(frozen=True, slots=True)
class RestoreSummary:
    snapshot: Path
    data_dir: Path
    counts: Counts
    blobs: int
    bytes_written: int
    seconds: float
    moved_aside: Path | None  # the previous contents, when forced into a non-empty folder

    def describe(self) -> str:
        c = self.counts
        mb = self.bytes_written / 1e6
        aside = f"; previous contents moved to {self.moved_aside}" if self.moved_aside else ""
        return (
            f"restored {self.snapshot} into {self.data_dir}: {c.accounts} accounts, "
            f"{c.messages} messages; {mb:.1f} MB in {self.seconds:.1f} s"
            f" ({mb / self.seconds if self.seconds else 0:.1f} MB/s){aside}"
        )


# backup ---------------------------------------------------------------------------------


def backup(data_dir: Path, dest: Path, progress: Progress = _no_progress) -> BackupSummary:
    """Take a consistent snapshot of ``data_dir`` (server running or not) into ``dest``.

    Blocking: call from a thread when inside an event loop.  Safe to run while the
    server accepts mail; several backups to the same ``dest`` share body files.
    """
    started = time.monotonic()
    db_path = data_dir / DB_NAME
    if not db_path.is_file():
        raise BackupError(f"{data_dir} has no {DB_NAME}: not a postier data folder")
    blob_root = dest / BLOBS_DIR
    snapshots = dest / SNAPSHOTS_DIR
    blob_root.mkdir(parents=True, exist_ok=True)
    snapshots.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(snapshots)
    work = snapshots / f".tmp-{stamp}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    inline_written = inline_bytes = 0
    try:
        for attempt in range(1, SNAPSHOT_ATTEMPTS + 1):
            snap = _snapshot_db(db_path, work / DB_NAME, blob_root, progress)
            inline_written += snap.inline_written
            inline_bytes += snap.inline_bytes_written
            referenced = snap.files
            missing, copied, copied_bytes = _copy_blobs(
                data_dir / BLOBS_DIR, blob_root, referenced, progress
            )
            if not missing:
                break
            if attempt == SNAPSHOT_ATTEMPTS:
                raise BackupError(
                    f"{len(missing)} body file(s) the database references are missing from "
                    f"{data_dir / BLOBS_DIR} (first: {sorted(missing)[0]}); "
                    "run `postier backup verify` on older backups and check the disk"
                )
        schema, counts = snap.schema, snap.counts
        tls_files = _copy_tree(data_dir / TLS_DIR, work / TLS_DIR)
        db_size = (work / DB_NAME).stat().st_size
        db_sha = _file_sha256(work / DB_NAME)
        manifest: dict[str, object] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "postier": __version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "schema_version": schema,
            "db": {"file": DB_NAME, "size": db_size, "sha256": db_sha},
            "counts": _counts_dict(counts),
            "blobs": {"count": len(referenced), "bytes": sum(referenced.values()),
                      "sha256": sorted(referenced)},
            "inline": {"count": len(snap.inline), "bytes": sum(snap.inline.values()),
                       "sha256": sorted(snap.inline)},
            "tls": tls_files,
        }
        _write_durably(work / MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
        fsync_dir(work)
        final = snapshots / stamp
        os.replace(work, final)
        fsync_dir(snapshots)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    tls_bytes = sum(int(str(t["size"])) for t in tls_files)
    return BackupSummary(
        final, schema, counts, db_size, len(referenced), copied,
        db_size + copied_bytes + inline_bytes + tls_bytes, time.monotonic() - started,
        len(snap.inline), inline_written,
    )


def _stamp(snapshots: Path) -> str:
    base = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    stamp, n = base, 1
    while (snapshots / stamp).exists():
        n += 1
        stamp = f"{base}-{n}"
    return stamp


@dataclass(slots=True)
class _Snapshot:
    schema: int
    counts: Counts
    files: dict[str, int]  # sha256 → size of bodies kept as files in the store
    inline: dict[str, int]  # sha256 → size of bodies kept in the database
    inline_written: int = 0  # inline bodies this run wrote into DEST/blobs
    inline_bytes_written: int = 0


def _snapshot_db(db_path: Path, target: Path, blob_root: Path, progress: Progress) -> _Snapshot:
    """Build the snapshot's database as of one read transaction; inline bodies → blobs."""
    target.unlink(missing_ok=True)
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        # A fresh file that is fsync'd below and discarded on any failure: no journal.
        # (Qualified: an unqualified journal_mode would also apply to the attached store.)
        conn.execute("PRAGMA main.journal_mode = OFF")
        conn.execute("PRAGMA main.synchronous = OFF")
        conn.execute("ATTACH DATABASE ? AS src", (str(db_path),))
        for pragma in ("page_size", "auto_vacuum"):
            value = int(conn.execute(f"PRAGMA src.{pragma}").fetchone()[0])
            conn.execute(f"PRAGMA main.{pragma} = {value}")
        # One transaction for everything below: what is copied, the counts, the lists of
        # bodies and the inline bodies written out are the same database state.
        conn.execute("BEGIN")
        schema = int(
            conn.execute("SELECT max(version) FROM src.schema_version").fetchone()[0] or 0
        )
        if schema > LATEST:
            raise BackupError(f"database schema {schema} is newer than this postier ({LATEST})")
        snap = _Snapshot(schema, _read_counts(conn, "src"), _referenced_blobs(conn, "src"), {})
        _copy_schema_and_rows(conn, progress)
        conn.execute(f"CREATE TABLE main.{INLINE_TABLE} (body_id INTEGER PRIMARY KEY)")
        conn.execute(
            f"INSERT INTO main.{INLINE_TABLE} (body_id)"
            " SELECT id FROM src.bodies WHERE data IS NOT NULL"
        )
        _write_inline_bodies(conn, blob_root, snap, progress)
        for pragma in ("user_version", "application_id"):
            value = int(conn.execute(f"PRAGMA src.{pragma}").fetchone()[0])
            conn.execute(f"PRAGMA main.{pragma} = {value}")
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE src")
    finally:
        conn.close()
    with open(target, "rb+") as f:
        os.fsync(f.fileno())
    return snap


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _copy_schema_and_rows(conn: sqlite3.Connection, progress: Progress) -> None:
    """Recreate src's schema in main and copy every row (rowids kept); bodies without data.

    Virtual tables are created from their SQL; of the full-text index only its
    configuration is copied (format 3: restore rebuilds it), and ``orphans`` stays empty.
    """
    objects = conn.execute(
        "SELECT type, name, sql FROM src.sqlite_master WHERE sql IS NOT NULL"
        " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid"
    ).fetchall()
    kinds = {
        str(row[1]): (str(row[2]), bool(row[4]))
        for row in conn.execute("PRAGMA src.table_list")
    }  # name → (type: table/virtual/shadow/view, without rowid)

    def existing() -> set[str]:
        return {str(r[0]) for r in conn.execute("SELECT name FROM main.sqlite_master")}

    for kind, name, sql in objects:
        if kind == "table" and name not in existing():
            conn.execute(sql)  # unqualified CREATE: into main
    tables = [
        name for kind, name, _ in objects
        if kind == "table" and kinds.get(name, ("table", False))[0] in ("table", "shadow")
    ]
    for n, name in enumerate(tables, 1):
        if name in FTS_OMITTED or name == ORPHANS_TABLE:
            # Left as CREATE made them: an empty index (FTS5 wrote its empty structure
            # record), no orphans.  Restore rebuilds the index from the bodies.
            progress(n, len(tables), "database")
            continue
        cols = [str(r[1]) for r in conn.execute(f"PRAGMA src.table_info({_quote(name)})")]
        picked = [("NULL" if name == "bodies" and c == "data" else _quote(c)) for c in cols]
        targets = [_quote(c) for c in cols]
        if not kinds.get(name, ("table", False))[1]:
            picked.insert(0, "rowid")
            targets.insert(0, "rowid")
        conn.execute(f"DELETE FROM main.{_quote(name)}")  # shadow tables start non-empty
        conn.execute(
            f"INSERT INTO main.{_quote(name)} ({', '.join(targets)})"
            f" SELECT {', '.join(picked)} FROM src.{_quote(name)}"
        )
        progress(n, len(tables), "database")
    if conn.execute(
        "SELECT 1 FROM src.sqlite_master WHERE name = 'sqlite_sequence'"
    ).fetchone():
        conn.execute("DELETE FROM main.sqlite_sequence")
        conn.execute("INSERT INTO main.sqlite_sequence SELECT * FROM src.sqlite_sequence")
    for kind, _name, sql in objects:
        if kind in ("index", "trigger", "view"):
            conn.execute(sql)


def _write_inline_bodies(
    conn: sqlite3.Connection, blob_root: Path, snap: _Snapshot, progress: Progress
) -> None:
    """Write every inline body not yet in ``blob_root`` there, checked against its hash.

    Files are written without a fsync each; one ``syncfs`` makes them durable before the
    manifest is written (one journal commit instead of one per body).
    """
    rows = conn.execute(
        "SELECT id, sha256, length(data) FROM src.bodies WHERE data IS NOT NULL"
    ).fetchall()
    total = len(rows)
    for n, (body_id, sha, size) in enumerate(rows, 1):
        sha, size = str(sha), int(size)
        snap.inline[sha] = size
        target = _blob_path(blob_root, sha)
        try:
            present = target.stat().st_size == size
        except FileNotFoundError:
            present = False
        if not present:
            data = conn.execute(
                "SELECT data FROM src.bodies WHERE id = ?", (body_id,)
            ).fetchone()[0]
            if hashlib.sha256(data).hexdigest() != sha:
                raise BackupError(
                    f"inline body {body_id} does not match its sha256 {sha}: "
                    "the database is damaged; not backed up"
                )
            target.parent.mkdir(exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
            snap.inline_written += 1
            snap.inline_bytes_written += size
        if n % 256 == 0 or n == total:
            progress(n, total, "inline")
    if snap.inline_written:
        _sync_filesystem(blob_root)


def _sync_filesystem(path: Path) -> None:
    """Make everything written under ``path`` durable: syncfs(2), else sync(2)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syncfs = libc.syncfs
    except (OSError, AttributeError):
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _read_counts(conn: sqlite3.Connection, db: str = "main") -> Counts:
    def one(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0] or 0)

    return Counts(
        domains=one(f"SELECT count(*) FROM {db}.domains"),
        accounts=one(f"SELECT count(*) FROM {db}.accounts"),
        aliases=one(f"SELECT count(*) FROM {db}.aliases"),
        mailboxes=one(f"SELECT count(*) FROM {db}.mailboxes"),
        messages=one(f"SELECT count(*) FROM {db}.messages"),
        message_bytes=one(f"SELECT sum(size) FROM {db}.messages"),
        queue=one(f"SELECT count(*) FROM {db}.queue"),
    )


def _has_inline_table(conn: sqlite3.Connection, db: str = "main") -> bool:
    return conn.execute(
        f"SELECT 1 FROM {db}.sqlite_master WHERE type = 'table' AND name = ?", (INLINE_TABLE,)
    ).fetchone() is not None


def _referenced_blobs(conn: sqlite3.Connection, db: str = "main") -> dict[str, int]:
    """sha256 → size of every body kept as a file in the store.

    In a live database that is ``bodies.data IS NULL``; in a snapshot the inline bodies
    (``backup_inline``) have NULL data too and are not files.
    """
    sql = f"SELECT sha256, size FROM {db}.bodies WHERE data IS NULL"
    if _has_inline_table(conn, db):
        sql += f" AND id NOT IN (SELECT body_id FROM {db}.{INLINE_TABLE})"
    return {str(sha): int(size) for sha, size in conn.execute(sql)}


def _inline_bodies(conn: sqlite3.Connection) -> dict[int, str]:
    """A snapshot's inline bodies: body id → sha256 (empty for format 1 snapshots)."""
    if not _has_inline_table(conn):
        return {}
    return {
        int(body_id): str(sha)
        for body_id, sha in conn.execute(
            f"SELECT b.id, b.sha256 FROM bodies b JOIN {INLINE_TABLE} i ON i.body_id = b.id"
        )
    }


def _counts_dict(c: Counts) -> dict[str, int]:
    return {
        "domains": c.domains, "accounts": c.accounts, "aliases": c.aliases,
        "mailboxes": c.mailboxes, "messages": c.messages, "message_bytes": c.message_bytes,
        "queue": c.queue,
    }


def _counts_from(d: object) -> Counts:
    if not isinstance(d, dict):
        raise BackupError("manifest has no counts")
    return Counts(**{k: int(d.get(k, 0)) for k in Counts.__slots__})


def _blob_path(root: Path, sha: str) -> Path:
    return root / sha[:2] / sha


def _copy_blobs(
    src_root: Path, dst_root: Path, referenced: dict[str, int], progress: Progress
) -> tuple[set[str], int, int]:
    """Copy referenced body files not yet in ``dst_root``, checking each hash on the way.

    Returns (missing in source, files copied, bytes copied).
    """
    missing: set[str] = set()
    copied = copied_bytes = 0
    dirty_dirs: set[Path] = set()
    total = len(referenced)
    for n, (sha, size) in enumerate(sorted(referenced.items()), 1):
        target = _blob_path(dst_root, sha)
        try:
            present = target.stat().st_size == size
        except FileNotFoundError:
            present = False
        if not present:
            source = _blob_path(src_root, sha)
            try:
                digest = _copy_file(source, target, dirty_dirs)
            except FileNotFoundError:
                missing.add(sha)
                continue
            if digest != sha:
                target.unlink(missing_ok=True)
                raise BackupError(
                    f"body file {source} does not match its name (sha256 {digest}): "
                    "the data folder is damaged; not backed up"
                )
            copied += 1
            copied_bytes += size
        if n % 64 == 0 or n == total:
            progress(n, total, "bodies")
    for d in dirty_dirs:
        fsync_dir(d)
    if dirty_dirs:
        fsync_dir(dst_root)
    return missing, copied, copied_bytes


def _copy_file(source: Path, target: Path, dirty_dirs: set[Path] | None = None) -> str:
    """Copy durably via a temporary name; return the sha256 of the bytes copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    h = hashlib.sha256()
    with open(source, "rb") as fin, open(tmp, "wb") as fout:
        while chunk := fin.read(COPY_CHUNK_BYTES):
            h.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, target)
    if dirty_dirs is not None:
        dirty_dirs.add(target.parent)
    else:
        fsync_dir(target.parent)
    return h.hexdigest()


def _copy_tree(src: Path, dst: Path) -> list[dict[str, object]]:
    """Copy a small folder (tls/) keeping modes; return [{path, size, sha256}]."""
    files: list[dict[str, object]] = []
    if not src.is_dir():
        return files
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src)
        target = dst / rel
        digest = _copy_file(path, target)
        os.chmod(target, path.stat().st_mode & 0o777)
        files.append({"path": rel.as_posix(), "size": target.stat().st_size, "sha256": digest})
    return files


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(COPY_CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()


def _write_durably(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# verify ---------------------------------------------------------------------------------


def list_snapshots(dest: Path) -> list[Path]:
    """Complete snapshots (those with a manifest), oldest first."""
    root = dest / SNAPSHOTS_DIR
    if not root.is_dir():
        return []
    return sorted(
        p for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_NAME).is_file()
    )


def find_snapshot(src: Path, snapshot: str | None = None) -> Path:
    """The snapshot to use: ``src`` itself if it is one, the named one, else the latest."""
    if (src / MANIFEST_NAME).is_file() and snapshot is None:
        return src
    if snapshot is not None:
        path = src / SNAPSHOTS_DIR / snapshot
        if not (path / MANIFEST_NAME).is_file():
            raise BackupError(f"no complete snapshot {snapshot!r} in {src}")
        return path
    found = list_snapshots(src)
    if not found:
        raise BackupError(f"{src} holds no complete backup snapshot (no {MANIFEST_NAME})")
    return found[-1]


def _blob_root_of(snapshot: Path) -> Path:
    return snapshot.parent.parent / BLOBS_DIR


def verify(
    dest: Path, snapshot: str | None = None, progress: Progress = _no_progress
) -> VerifyReport:
    """Check a snapshot: manifest, database hash and integrity, and every body file's hash.

    Never raises for damage: every problem found is in ``report.errors``.
    """
    snap = find_snapshot(dest, snapshot)
    report = VerifyReport(snap)
    try:
        manifest = json.loads((snap / MANIFEST_NAME).read_bytes())
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError("not a postier backup manifest")
    except (OSError, ValueError) as exc:
        report.errors.append(f"{MANIFEST_NAME}: unreadable ({exc})")
        return report
    report.manifest = manifest
    if int(manifest.get("version", 0)) > FORMAT_VERSION:
        report.errors.append(
            f"backup format {manifest.get('version')} is newer than this postier understands"
        )
        return report
    schema = int(manifest.get("schema_version", 0))
    if schema > LATEST:
        report.errors.append(f"database schema {schema} is newer than this postier ({LATEST})")
    db = manifest.get("db")
    blobs = manifest.get("blobs")
    if not isinstance(db, dict) or not isinstance(blobs, dict):
        report.errors.append(f"{MANIFEST_NAME}: db or blobs section missing")
        return report
    db_file = snap / DB_NAME
    listed: set[str] = set(blobs.get("sha256", []))
    inline_section = manifest.get("inline", {})
    listed_inline: set[str] = (
        set(inline_section.get("sha256", [])) if isinstance(inline_section, dict) else set()
    )
    # 1. The database: size, hash, then SQLite's own integrity check and what it references.
    try:
        size = db_file.stat().st_size
    except FileNotFoundError:
        report.errors.append(f"{DB_NAME}: missing")
        return report
    progress(0, 1, "database")
    if size != db.get("size"):
        report.errors.append(f"{DB_NAME}: {size} bytes, manifest says {db.get('size')} (truncated?)")
    elif _file_sha256(db_file) != db.get("sha256"):
        report.errors.append(f"{DB_NAME}: sha256 differs from the manifest (modified or damaged)")
    else:
        try:
            referenced, inline = _check_db(db_file, schema)
        except (sqlite3.Error, BackupError) as exc:
            report.errors.append(f"{DB_NAME}: {exc}")
        else:
            if set(referenced) != listed:
                report.errors.append(
                    f"{DB_NAME} references {len(referenced)} body files, manifest lists "
                    f"{len(listed)} ({len(set(referenced) ^ listed)} differ)"
                )
            found_inline = set(inline.values())
            if found_inline != listed_inline:
                report.errors.append(
                    f"{DB_NAME} has {len(found_inline)} inline bodies, manifest lists "
                    f"{len(listed_inline)} ({len(found_inline ^ listed_inline)} differ)"
                )
            listed |= set(referenced)
            listed_inline |= found_inline
    listed |= listed_inline
    progress(1, 1, "database")
    # 2. Every body file: present, and its content hashes to its name.
    root = _blob_root_of(snap)
    total = len(listed)
    for n, sha in enumerate(sorted(listed), 1):
        path = _blob_path(root, sha)
        try:
            digest = _file_sha256(path)
        except FileNotFoundError:
            report.errors.append(f"body {sha}: missing from {root}")
            continue
        report.blobs_checked += 1
        report.bytes_checked += path.stat().st_size
        if digest != sha:
            report.errors.append(f"body {sha}: content hashes to {digest} (damaged)")
        if n % 64 == 0 or n == total:
            progress(n, total, "bodies")
    # 3. Small files (tls/) against their hashes.
    for entry in manifest.get("tls", []):
        path = snap / TLS_DIR / str(entry.get("path"))
        try:
            ok = _file_sha256(path) == entry.get("sha256")
        except FileNotFoundError:
            ok = False
        if not ok:
            report.errors.append(f"{TLS_DIR}/{entry.get('path')}: missing or damaged")
    return report


def _check_db(db_file: Path, schema: int) -> tuple[dict[str, int], dict[int, str]]:
    """Integrity and schema of a snapshot's database; (body files, inline bodies)."""
    conn = sqlite3.connect(f"file:{db_file}?mode=ro&immutable=1", uri=True)
    try:
        result = conn.execute("PRAGMA quick_check").fetchall()
        if result != [("ok",)]:
            raise BackupError("integrity check failed: " + "; ".join(r[0] for r in result[:3]))
        found = int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)
        if found != schema:
            raise BackupError(f"schema version {found}, manifest says {schema}")
        return _referenced_blobs(conn), _inline_bodies(conn)
    finally:
        conn.close()


# restore --------------------------------------------------------------------------------


def restore(
    src: Path,
    data_dir: Path,
    force: bool = False,
    progress: Progress = _no_progress,
    snapshot: str | None = None,
) -> RestoreSummary:
    """Restore a snapshot into ``data_dir`` (the server must not be running on it).

    The whole backup is verified first; nothing is written unless it is intact.  A
    non-empty ``data_dir`` is refused unless ``force``; then its previous contents are
    moved aside to a sibling folder ``<data_dir>.before-restore-<time>``, never deleted.
    """
    started = time.monotonic()
    snap = find_snapshot(src, snapshot)
    occupied = _occupied(data_dir)
    if occupied and not force:
        raise BackupError(
            f"{data_dir} is not empty ({', '.join(occupied[:3])}…); restore only into an "
            "empty data folder, or use --force to move its contents aside"
        )
    report = verify(src, snap.name if snap != src else None, progress)
    if not report.ok:
        raise BackupError("backup failed verification, nothing restored:\n  "
                          + "\n  ".join(report.errors[:10]))
    manifest = report.manifest
    blob_list = sorted(set(_manifest_blobs(manifest)))
    moved: Path | None = None
    if occupied:
        moved = _move_aside(data_dir, occupied)
    data_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    # Bodies first, database last: a crash midway leaves no database, not a broken one.
    src_root = _blob_root_of(snap)
    dst_root = data_dir / BLOBS_DIR
    dirty: set[Path] = set()
    for n, sha in enumerate(blob_list, 1):
        digest = _copy_file(_blob_path(src_root, sha), _blob_path(dst_root, sha), dirty)
        if digest != sha:  # changed since verify: refuse to go on
            raise BackupError(f"body {sha} changed during restore; restore incomplete")
        written += _blob_path(dst_root, sha).stat().st_size
        if n % 64 == 0 or n == len(blob_list):
            progress(n, len(blob_list), "bodies")
    for d in dirty:
        fsync_dir(d)
    if (snap / TLS_DIR).is_dir():
        for entry in _copy_tree(snap / TLS_DIR, data_dir / TLS_DIR):
            written += int(str(entry["size"]))
    db = manifest.get("db")
    assert isinstance(db, dict)
    tmp = data_dir / f".{DB_NAME}.restoring"
    progress(0, 1, "database")
    try:
        if _copy_file(snap / DB_NAME, tmp) != db.get("sha256"):
            raise BackupError(f"{DB_NAME} changed during restore; nothing restored")
        written += _put_back_inline(tmp, src_root, progress)
        _forget_index(tmp, data_dir)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, data_dir / DB_NAME)
    fsync_dir(data_dir)
    written += int(db.get("size", 0))
    progress(1, 1, "database")
    return RestoreSummary(
        snap, data_dir, _counts_from(manifest.get("counts")), len(blob_list), written,
        time.monotonic() - started, moved,
    )


def _put_back_inline(db_file: Path, blob_root: Path, progress: Progress) -> int:
    """Refill ``bodies.data`` of a copied snapshot from the body files; drop the marker.

    Each body is checked against its hash again (it was verified, but read anew here).
    Returns the bytes put back.  A format 1 snapshot has no marker: nothing to do.
    """
    conn = sqlite3.connect(db_file, isolation_level=None)
    written = 0
    try:
        conn.execute("PRAGMA main.journal_mode = OFF")  # a private file, discarded on failure
        conn.execute("PRAGMA main.synchronous = OFF")
        conn.execute("BEGIN")
        inline = _inline_bodies(conn)
        if not _has_inline_table(conn):
            conn.execute("ROLLBACK")
            return 0
        total = len(inline)
        for n, (body_id, sha) in enumerate(sorted(inline.items()), 1):
            data = _blob_path(blob_root, sha).read_bytes()
            if hashlib.sha256(data).hexdigest() != sha:
                raise BackupError(f"body {sha} changed during restore; nothing restored")
            conn.execute("UPDATE bodies SET data = ? WHERE id = ?", (data, body_id))
            written += len(data)
            if n % 256 == 0 or n == total:
                progress(n, total, "inline")
        conn.execute(f"DROP TABLE {INLINE_TABLE}")
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()
    return written


def _forget_index(db_file: Path, data_dir: Path) -> None:
    """The restored store indexes every body again, in the background (store/sqlite/
    indexer.py): its marks are cleared and no index.db is kept.  Older snapshots (schema
    before 6) carry the index inside the database; the migration at first open drops it
    and adds the marks, cleared."""
    for suffix in ("", "-wal", "-shm"):
        (data_dir / f"{INDEX_DB}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(db_file, isolation_level=None)
    try:
        conn.execute("PRAGMA main.journal_mode = OFF")  # a private file, discarded on failure
        conn.execute("PRAGMA main.synchronous = OFF")
        conn.execute("BEGIN")
        _drop_orphans(conn, data_dir / BLOBS_DIR)
        columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(bodies)")}
        if "indexed" in columns:
            conn.execute("UPDATE bodies SET indexed = 0 WHERE indexed != 0")
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = DELETE")
    finally:
        conn.close()


def _drop_orphans(conn: sqlite3.Connection, blob_root: Path) -> None:
    """Forget orphans (their index entries are not in a rebuilt index) and their files.

    A file goes only when no ``bodies`` row has the same sha256 (content delivered
    again owns it); inline orphan data goes with its row.
    """
    rows = conn.execute(
        f"SELECT o.sha256, o.data IS NULL, EXISTS (SELECT 1 FROM bodies b"
        f" WHERE b.sha256 = o.sha256) FROM {ORPHANS_TABLE} o"
    ).fetchall()
    for sha, in_file, owned in rows:
        if in_file and not owned:
            _blob_path(blob_root, str(sha)).unlink(missing_ok=True)
    conn.execute(f"DELETE FROM {ORPHANS_TABLE}")


def _manifest_blobs(manifest: dict[str, object]) -> list[str]:
    blobs = manifest.get("blobs")
    assert isinstance(blobs, dict)
    return [str(s) for s in blobs.get("sha256", [])]


def _occupied(data_dir: Path) -> list[str]:
    if not data_dir.exists():
        return []
    if not data_dir.is_dir():
        raise BackupError(f"{data_dir} exists and is not a folder")
    return sorted(p.name for p in data_dir.iterdir() if p.name not in _IGNORED_IN_EMPTY)


def _move_aside(data_dir: Path, names: list[str]) -> Path:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = data_dir.parent / f"{data_dir.name}.before-restore-{stamp}"
    aside.mkdir()
    for name in names:
        try:
            os.replace(data_dir / name, aside / name)
        except OSError as exc:
            raise BackupError(
                f"cannot move {data_dir / name} aside to {aside} ({exc}); empty {data_dir} "
                "by hand and restore again"
            )
    fsync_dir(data_dir)
    return aside
