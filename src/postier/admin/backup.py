"""Online backup, verification and restore of a postier data folder.

A backup folder (DEST) holds any number of snapshots sharing one content-addressed body
store, so a second backup to the same DEST copies only bodies it has not seen::

    DEST/
      blobs/ab/<sha256>              body files (> 64 KiB bodies), shared by all snapshots
      snapshots/20250101T120000Z/
        postier.db                   the SQLite database, via the online backup API
        tls/...                      certificates and keys of the data folder
        manifest.json                written last: the snapshot exists once this exists

**Consistency while the server runs.** The database is copied with SQLite's online
backup API from a connection that holds one read transaction for the whole copy: in WAL
mode writers go on committing, and the copy is exactly the database at the moment that
transaction began (the backup does not restart when others write, because our
connection never re-reads).  The list of body files to copy is read in the same
transaction, so it matches the copied database.  A body file is written and fsync'd
before the transaction that references it commits, so every file the snapshot
references is whole on disk; only garbage collection (of bodies expunged *after* the
snapshot) could remove one before we copy it, and then the snapshot is taken again.

**IMAP identity.** A restore copies the database, never re-appends: UIDVALIDITY, UIDs,
MODSEQs, POP3 UIDLs and the UIDVALIDITY counter come back exactly.

**Trust.** ``manifest.json`` holds the database's sha256 and the list of bodies it
references; every body file is named by its sha256.  :func:`verify` checks all of it;
:func:`restore` runs the same checks before it writes a single byte.
"""

from __future__ import annotations

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
from postier.store.sqlite.schema import LATEST

Progress = Callable[[int, int, str], None]
"""progress(done, total, what): called often; ``what`` names the phase ("database", …)."""

FORMAT: Final = "postier-backup"
FORMAT_VERSION: Final = 1
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
    bytes_copied: int  # database + copied body files + tls
    seconds: float

    def describe(self) -> str:
        c = self.counts
        mb = self.bytes_copied / 1e6
        return (
            f"backup {self.snapshot}: {c.accounts} accounts, {c.mailboxes} mailboxes, "
            f"{c.messages} messages ({c.message_bytes / 1e6:.1f} MB); "
            f"{self.blobs_copied} of {self.blobs} body files copied; "
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
    try:
        for attempt in range(1, SNAPSHOT_ATTEMPTS + 1):
            schema, counts, referenced = _snapshot_db(db_path, work / DB_NAME, progress)
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
            "tls": tls_files,
        }
        _write_durably(work / MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
        _fsync_dir(work)
        final = snapshots / stamp
        os.replace(work, final)
        _fsync_dir(snapshots)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    tls_bytes = sum(int(str(t["size"])) for t in tls_files)
    return BackupSummary(
        final, schema, counts, db_size, len(referenced), copied,
        db_size + copied_bytes + tls_bytes, time.monotonic() - started,
    )


def _stamp(snapshots: Path) -> str:
    base = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    stamp, n = base, 1
    while (snapshots / stamp).exists():
        n += 1
        stamp = f"{base}-{n}"
    return stamp


def _snapshot_db(
    db_path: Path, target: Path, progress: Progress
) -> tuple[int, Counts, dict[str, int]]:
    """Copy the database as of one read transaction; return what that copy references."""
    target.unlink(missing_ok=True)
    src = sqlite3.connect(db_path, isolation_level=None)
    try:
        src.execute("PRAGMA busy_timeout = 10000")
        src.execute("PRAGMA query_only = ON")
        # One read transaction for everything below: the snapshot the backup API copies,
        # the counts and the list of body files are the same database state.
        src.execute("BEGIN")
        schema = int(src.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)
        if schema > LATEST:
            raise BackupError(f"database schema {schema} is newer than this postier ({LATEST})")
        counts = _read_counts(src)
        referenced = _referenced_blobs(src)
        dst = sqlite3.connect(target, isolation_level=None)
        try:
            def step(status: int, remaining: int, total: int) -> None:
                progress(total - remaining, total, "database")

            src.backup(dst, pages=DB_PAGES_PER_STEP, progress=step)
            # The copy is a standalone file: no WAL beside it.
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
        src.execute("COMMIT")
    finally:
        src.close()
    with open(target, "rb+") as f:
        os.fsync(f.fileno())
    return schema, counts, referenced


def _read_counts(conn: sqlite3.Connection) -> Counts:
    def one(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0] or 0)

    return Counts(
        domains=one("SELECT count(*) FROM domains"),
        accounts=one("SELECT count(*) FROM accounts"),
        aliases=one("SELECT count(*) FROM aliases"),
        mailboxes=one("SELECT count(*) FROM mailboxes"),
        messages=one("SELECT count(*) FROM messages"),
        message_bytes=one("SELECT sum(size) FROM messages"),
        queue=one("SELECT count(*) FROM queue"),
    )


def _referenced_blobs(conn: sqlite3.Connection) -> dict[str, int]:
    """sha256 → size of every body kept as a file (``bodies.data IS NULL``)."""
    return {
        str(sha): int(size)
        for sha, size in conn.execute("SELECT sha256, size FROM bodies WHERE data IS NULL")
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
        _fsync_dir(d)
    if dirty_dirs:
        _fsync_dir(dst_root)
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
        _fsync_dir(target.parent)
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
            referenced = _check_db(db_file, schema)
        except (sqlite3.Error, BackupError) as exc:
            report.errors.append(f"{DB_NAME}: {exc}")
        else:
            if set(referenced) != listed:
                report.errors.append(
                    f"{DB_NAME} references {len(referenced)} body files, manifest lists "
                    f"{len(listed)} ({len(set(referenced) ^ listed)} differ)"
                )
            listed |= set(referenced)
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


def _check_db(db_file: Path, schema: int) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db_file}?mode=ro&immutable=1", uri=True)
    try:
        result = conn.execute("PRAGMA quick_check").fetchall()
        if result != [("ok",)]:
            raise BackupError("integrity check failed: " + "; ".join(r[0] for r in result[:3]))
        found = int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0)
        if found != schema:
            raise BackupError(f"schema version {found}, manifest says {schema}")
        return _referenced_blobs(conn)
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
        _fsync_dir(d)
    if (snap / TLS_DIR).is_dir():
        for entry in _copy_tree(snap / TLS_DIR, data_dir / TLS_DIR):
            written += int(str(entry["size"]))
    db = manifest.get("db")
    assert isinstance(db, dict)
    tmp = data_dir / f".{DB_NAME}.restoring"
    progress(0, 1, "database")
    if _copy_file(snap / DB_NAME, tmp) != db.get("sha256"):
        tmp.unlink(missing_ok=True)
        raise BackupError(f"{DB_NAME} changed during restore; nothing restored")
    os.replace(tmp, data_dir / DB_NAME)
    _fsync_dir(data_dir)
    written += int(db.get("size", 0))
    progress(1, 1, "database")
    return RestoreSummary(
        snap, data_dir, _counts_from(manifest.get("counts")), len(blob_list), written,
        time.monotonic() - started, moved,
    )


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
    _fsync_dir(data_dir)
    return aside
