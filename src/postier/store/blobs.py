"""Message bodies as content-addressed files, written durably before they are referenced.

Layout: ``blobs/<first two hex of sha256>/<sha256>``.  A body is written to ``blobs/tmp``,
fsync'd, renamed into place and its directory fsync'd, so a body referenced by a committed
transaction is whole on disk after a crash (docs/architecture.md, "Durability").
Why files and not SQLite rows: bodies of many MB do not pass through the WAL twice, FETCH
reads byte ranges without loading a whole row, and incremental backup copies only new
files (measurements in bench/README.md).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        for stale in self._tmp.iterdir():  # left by a crash before rename: never referenced
            stale.unlink(missing_ok=True)
        self._known_dirs: set[str] = set()

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Write ``data`` durably (blocking: call from a worker thread); return its sha256."""
        sha = sha256 or self.digest(data)
        final = self.path(sha)
        if final.exists():
            return sha
        shard = sha[:2]
        if shard not in self._known_dirs:
            shard_dir = self.root / shard
            if not shard_dir.exists():
                shard_dir.mkdir(exist_ok=True)
                fsync_dir(self.root)
            self._known_dirs.add(shard)
        tmp = self._tmp / f"{sha}.{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
        fsync_dir(final.parent)
        return sha

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def read_range(self, sha256: str, start: int, end: int) -> bytes:
        with open(self.path(sha256), "rb") as f:
            f.seek(start)
            return f.read(max(0, end - start))

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def iter_all(self) -> list[str]:
        return [p.name for d in self.root.iterdir() if len(d.name) == 2 for p in d.iterdir()]


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (created, renamed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
