"""``postier migrate``: copy a whole account from another IMAP server (like imapsync).

Folders, messages, flags and internal dates are copied with the stdlib ``imaplib`` client
(RFC 9051 / RFC 3501: LIST, EXAMINE, UID FETCH of FLAGS, INTERNALDATE, RFC822.SIZE and
BODY.PEEK[] — PEEK, so the source's \\Seen flags are left as they are).  The blocking
client runs in a worker thread, one call at a time; the store is written on the loop
through :class:`postier.admin.transfer.AccountImporter`.

**Empty folders** are created too (the importer only creates a mailbox when a message
goes into it), so the folder tree arrives whole.

**Resumable, idempotent.** Messages are recognised by the sha256 of their bytes (the same
rule as ``postier import``): running the migration again after an interruption — or
after new mail arrived at the old server — appends only what is missing.  A resumed run
downloads again what it had already copied (to hash it) but never appends it twice; a
map of remote UIDVALIDITY/UID to local UID would save that download (not done yet).  When
the connection drops, what was already fetched is committed and the migration stops with
a :class:`ConnectionLost` error (a :class:`TransferError`) that says to run it again.
"""

from __future__ import annotations

import asyncio
import imaplib
import re
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from postier.admin.transfer import (
    AccountImporter,
    Problem,
    Progress,
    SourceMessage,
    TransferError,
    TransferSummary,
    get_account,
    no_progress,
)
from postier.errors import UserError
from postier.imap.wire import decode_mutf7
from postier.store.interface import Store
from postier.store.types import HIERARCHY_SEPARATOR, SYSTEM_FLAGS

FETCH_BATCH: Final = 50  # messages per UID FETCH of bodies
FETCH_BATCH_BYTES: Final = 16 * 1024 * 1024
TIMEOUT_S: Final = 60.0
Security = Literal["implicit", "starttls", "none"]

_LIST_RE: Final = re.compile(rb'^\((?P<attrs>[^)]*)\) (?P<delim>"(?:\\.|[^"])*"|NIL) (?P<name>.*)$')
_LITERAL_RE: Final = re.compile(rb"\{(\d+)\+?\}$")
_UID_RE: Final = re.compile(rb"\bUID (\d+)")
_SIZE_RE: Final = re.compile(rb"\bRFC822\.SIZE (\d+)")
_FLAGS_RE: Final = re.compile(rb"\bFLAGS \(([^)]*)\)")
_SYSTEM_LOWER: Final = {f.lower(): f for f in SYSTEM_FLAGS}


@dataclass(frozen=True, slots=True)
class ImapSource:
    host: str
    port: int
    user: str
    password: str
    security: Security = "implicit"
    ssl_context: ssl.SSLContext | None = None  # None: the system's default verification

    @classmethod
    def from_url(cls, url: str, password: str, ssl_context: ssl.SSLContext | None = None) -> ImapSource:
        """``imaps://user@host[:993]`` (implicit TLS), ``imap://user@host[:143]`` (STARTTLS),
        ``imap+plain://user@host`` (no TLS: loopback tests only)."""
        parts = urllib.parse.urlsplit(url)
        schemes: dict[str, tuple[Security, int]] = {
            "imaps": ("implicit", 993), "imap": ("starttls", 143), "imap+plain": ("none", 143),
        }
        if parts.scheme not in schemes or not parts.hostname or not parts.username:
            raise TransferError(f"{url!r}: expected imaps://user@host[:port] or imap://user@host")
        security, port = schemes[parts.scheme]
        return cls(parts.hostname, parts.port or port, urllib.parse.unquote(parts.username),
                   password, security, ssl_context)


@dataclass(frozen=True, slots=True)
class RemoteFolder:
    wire_name: bytes  # as the server spells it, for EXAMINE
    name: str  # postier name


@dataclass(frozen=True, slots=True)
class RemoteMessage:
    uid: int
    size: int
    flags: frozenset[str]
    internal_date: int | None


class ConnectionLost(TransferError):
    """The remote server went away mid-migration; running it again resumes."""


class ImapReader:
    """The blocking side: one imaplib connection, used from one worker thread at a time."""

    def __init__(self, source: ImapSource) -> None:
        self.source = source
        self.conn: imaplib.IMAP4 | None = None

    def connect(self) -> None:
        s = self.source
        try:
            if s.security == "implicit":
                ctx = s.ssl_context or ssl.create_default_context()
                self.conn = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=ctx, timeout=TIMEOUT_S)
            else:
                self.conn = imaplib.IMAP4(s.host, s.port, timeout=TIMEOUT_S)
                if s.security == "starttls":
                    self.conn.starttls(s.ssl_context or ssl.create_default_context())
            self.conn.login(s.user, s.password)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise TransferError(f"cannot log in to {s.host}:{s.port} as {s.user}: {exc}")

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.logout()
            except (OSError, imaplib.IMAP4.error):
                pass
            self.conn = None

    def _lost(self, exc: BaseException, what: str) -> ConnectionLost:
        s = self.source
        return ConnectionLost(f"{what}: connection to {s.host}:{s.port} lost ({exc}); what was "
                              "copied so far is kept, run the migration again to resume")

    def _ok(self, result: tuple[str, Sequence[object]], what: str) -> Sequence[object]:
        typ, data = result
        if typ != "OK":
            raise TransferError(f"{what}: {typ} {data!r}")
        return data

    def folders(self) -> list[RemoteFolder | Problem]:
        assert self.conn is not None
        try:
            reply = self.conn.list()
        except (OSError, imaplib.IMAP4.abort) as exc:
            raise self._lost(exc, "LIST")
        except imaplib.IMAP4.error as exc:
            raise TransferError(f"LIST: {exc}")
        out: list[RemoteFolder | Problem] = []
        for item in self._ok(reply, "LIST"):
            if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], bytes) \
                    and isinstance(item[1], bytes):
                # A name sent as a literal (8-bit, quotes...): imaplib splits the line there.
                lit = _LITERAL_RE.search(item[0])
                if lit is None:
                    out.append(Problem(f"LIST {item!r}", "unparseable LIST reply"))
                    continue
                escaped = item[1].replace(b"\\", b"\\\\").replace(b'"', b'\\"')
                line = item[0][: lit.start()] + b'"' + escaped + b'"'
            elif isinstance(item, bytes):
                line = item
            else:
                continue
            m = _LIST_RE.match(line)
            if not m:
                out.append(Problem(f"LIST {line!r}", "unparseable LIST reply"))
                continue
            if b"\\noselect" in m.group("attrs").lower() or b"\\nonexistent" in m.group("attrs").lower():
                continue
            delim = m.group("delim")
            sep = None if delim == b"NIL" else _unquote(delim).decode()
            wire = m.group("name")
            raw_name = _unquote(wire) if wire.startswith(b'"') else wire
            try:
                name = decode_mutf7(raw_name)
            except ValueError:
                name = raw_name.decode("utf-8", "replace")
            if sep and sep != HIERARCHY_SEPARATOR:
                name = HIERARCHY_SEPARATOR.join(
                    p.replace(HIERARCHY_SEPARATOR, "_") for p in name.split(sep)
                )
            if name.upper() == "INBOX":
                name = "INBOX"
            out.append(RemoteFolder(wire if wire.startswith(b'"') else b'"' + wire + b'"', name))
        return out

    def examine(self, folder: RemoteFolder) -> list[RemoteMessage]:
        assert self.conn is not None
        try:
            self._ok(self.conn.select(folder.wire_name.decode("utf-8", "replace"), readonly=True),
                     f"EXAMINE {folder.name}")
            typ, data = self.conn.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
        except (OSError, imaplib.IMAP4.abort) as exc:
            raise self._lost(exc, f"EXAMINE {folder.name}")
        except imaplib.IMAP4.error as exc:
            raise TransferError(f"EXAMINE {folder.name}: {exc}")
        if typ != "OK":
            return []
        out: list[RemoteMessage] = []
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            if not isinstance(line, bytes):
                continue
            uid, size = _UID_RE.search(line), _SIZE_RE.search(line)
            if not uid or not size:
                continue
            out.append(RemoteMessage(int(uid.group(1)), int(size.group(1)), _flags(line),
                                     _internal_date(line)))
        return out

    def bodies(self, uids: list[int]) -> dict[int, bytes]:
        assert self.conn is not None
        try:
            typ, data = self.conn.uid("FETCH", ",".join(map(str, uids)), "(UID BODY.PEEK[])")
        except (OSError, imaplib.IMAP4.abort) as exc:
            raise self._lost(exc, "UID FETCH")
        except imaplib.IMAP4.error as exc:
            raise TransferError(f"UID FETCH failed: {exc}")
        if typ != "OK":
            raise TransferError(f"UID FETCH failed: {data!r}")
        out: dict[int, bytes] = {}
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                m = _UID_RE.search(item[0])
                if m:
                    out[int(m.group(1))] = item[1]
        return out


def _unquote(quoted: bytes) -> bytes:
    return re.sub(rb"\\(.)", rb"\1", quoted[1:-1])


def _flags(line: bytes) -> frozenset[str]:
    m = _FLAGS_RE.search(line)
    if not m:
        return frozenset()
    flags: set[str] = set()
    for flag in m.group(1).decode("utf-8", "replace").split():
        if flag.startswith("\\"):
            system = _SYSTEM_LOWER.get(flag.lower())  # \Recent and others are not kept
            if system:
                flags.add(system)
        else:
            flags.add(flag)
    return frozenset(flags)


def _internal_date(line: bytes) -> int | None:
    t = imaplib.Internaldate2tuple(line)
    return int(time.mktime(t)) if t is not None else None


async def _read_remote(
    reader: ImapReader, folders: list[RemoteFolder | Problem], counter: list[int]
) -> AsyncIterator[SourceMessage | Problem]:
    for folder in folders:
        if isinstance(folder, Problem):
            yield folder
            continue
        try:
            messages = await asyncio.to_thread(reader.examine, folder)
        except ConnectionLost:
            raise
        except TransferError as exc:
            yield Problem(f"imap:{folder.name}", f"folder not readable ({exc}); skipped")
            continue
        counter[0] += len(messages)
        batch: list[RemoteMessage] = []
        batch_bytes = 0
        for i, msg in enumerate(messages):
            batch.append(msg)
            batch_bytes += msg.size
            if len(batch) < FETCH_BATCH and batch_bytes < FETCH_BATCH_BYTES and i < len(messages) - 1:
                continue
            bodies = await asyncio.to_thread(reader.bodies, [m.uid for m in batch])
            for m in batch:
                origin = f"imap:{folder.name}/{m.uid}"
                raw = bodies.get(m.uid)
                if raw is None:
                    yield Problem(origin, "the server returned no body (expunged meanwhile?)")
                else:
                    yield SourceMessage(folder.name, raw, m.flags, m.internal_date, origin)
            batch, batch_bytes = [], 0


async def migrate_account(
    store: Store, address: str, source: ImapSource, progress: Progress = no_progress
) -> TransferSummary:
    """Copy every selectable folder of ``source`` into the local account ``address``."""
    account = await get_account(store, address)
    reader = ImapReader(source)
    await asyncio.to_thread(reader.connect)
    counter = [0]
    try:
        folders = await asyncio.to_thread(reader.folders)
        created: list[RemoteFolder | Problem] = []
        for folder in folders:  # empty folders too: the importer creates only non-empty ones
            if isinstance(folder, RemoteFolder) and \
                    await store.get_mailbox(account.id, folder.name) is None:
                try:
                    await store.create_mailbox(account.id, folder.name)
                except UserError as exc:
                    # Still read: the importer then reports each of its messages.
                    created.append(Problem(f"imap:{folder.name}", f"folder not created: {exc}"))
            created.append(folder)

        def report(done: int, total: int, what: str) -> None:
            progress(done, counter[0], what)

        importer = AccountImporter(store, account, report)
        try:
            async for item in _read_remote(reader, created, counter):
                await importer.add(item)
        except ConnectionLost:
            await importer.finish()  # keep what was fetched: the next run resumes after it
            raise
        return await importer.finish()
    finally:
        await asyncio.to_thread(reader.close)
