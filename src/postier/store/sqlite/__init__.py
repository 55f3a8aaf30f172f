"""The embedded default backend: SQLite in WAL mode with synchronous=FULL."""

from postier.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
