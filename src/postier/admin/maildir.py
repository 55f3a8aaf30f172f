"""Maildir++ export and import, with Dovecot's flag and keyword conventions.

Layout (Maildir++, as Dovecot and Courier write it)::

    DEST/cur, new, tmp             INBOX
    DEST/.Sent/cur, new, tmp       "Sent"  (plus an empty ``maildirfolder`` file)
    DEST/.Archive.2024/...         "Archive/2024": postier's "/" is Maildir++'s "."

Folder names: each level is IMAP modified UTF-7 (RFC 3501 §5.1.3, Dovecot's default on
disk); a ``.``, ``/``, ``\\`` or ``~`` inside a level is written ``\\2e``-style, as Dovecot's
listescape plugin does.

File names (https://cr.yp.to/proto/maildir.html and Dovecot's maildir format):
``<unique>,S=<size>:2,<flags>`` in ``cur/``.  Flags: ``D`` \\Draft, ``F`` \\Flagged,
``R`` \\Answered, ``S`` \\Seen, ``T`` \\Deleted (``P`` passed has no IMAP flag); lower-case
letters ``a``–``z`` are keywords numbered in the folder's ``dovecot-keywords`` file
(``0 $Label1`` per line).  The internal date is the file's mtime.  Messages are written
byte for byte (CRLF kept).  Files in ``new/`` have no flags.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

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
from postier.imap.wire import decode_mutf7, encode_mutf7
from postier.store.interface import Store
from postier.store.types import HIERARCHY_SEPARATOR

# Maildir info letters → IMAP system flags (RFC 9051 §2.3.2); "P" (passed) has none.
LETTER_FLAGS: Final = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered",
                       "S": "\\Seen", "T": "\\Deleted"}
FLAG_LETTERS: Final = {flag: letter for letter, flag in LETTER_FLAGS.items()}
KEYWORD_LETTERS: Final = "abcdefghijklmnopqrstuvwxyz"  # Dovecot: at most 26 per folder
KEYWORDS_FILE: Final = "dovecot-keywords"
_ESCAPED: Final = {".": "\\2e", "/": "\\2f", "\\": "\\5c", "~": "\\7e"}
_UNESCAPE_RE: Final = re.compile(r"\\([0-9a-fA-F]{2})")
_HEADER_START_RE: Final = re.compile(rb"^[!-9;-~]+:|^From ")


# names --------------------------------------------------------------------------------


def folder_dirname(name: str) -> str:
    """postier mailbox name → Maildir++ directory name ("" for INBOX)."""
    if name == "INBOX":
        return ""
    levels = []
    for level in name.split(HIERARCHY_SEPARATOR):
        escaped = "".join(_ESCAPED.get(ch, ch) for ch in level)
        levels.append(encode_mutf7(escaped).decode("ascii"))
    return "." + ".".join(levels)


def folder_name(dirname: str) -> str:
    """Maildir++ directory name → postier mailbox name; ValueError when undecodable."""
    if dirname in ("", "."):
        return "INBOX"
    if not dirname.startswith(".") or dirname in ("..",):
        raise ValueError(f"{dirname!r} is not a Maildir++ folder")
    levels = []
    for level in dirname[1:].split("."):
        decoded = decode_mutf7(level.encode("ascii"))
        levels.append(_UNESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16)), decoded))
    name = HIERARCHY_SEPARATOR.join(levels)
    return "INBOX" if name.upper() == "INBOX" else name


def parse_filename(filename: str, keywords: dict[str, str]) -> tuple[frozenset[str], list[str]]:
    """Flags of a Maildir file name (``…:2,FRS`` or Dovecot's ``…!2,FRS``), and warnings."""
    warnings: list[str] = []
    info = ""
    for sep in (":2,", "!2,", ";2,"):
        if sep in filename:
            info = filename.rsplit(sep, 1)[1]
            break
    flags: set[str] = set()
    for letter in info:
        if letter in LETTER_FLAGS:
            flags.add(LETTER_FLAGS[letter])
        elif letter in KEYWORD_LETTERS:
            keyword = keywords.get(letter)
            if keyword is None:
                warnings.append(f"keyword letter {letter!r} not in {KEYWORDS_FILE}")
            else:
                flags.add(keyword)
    return frozenset(flags), warnings


def read_keywords(folder: Path) -> dict[str, str]:
    """dovecot-keywords: "<index> <keyword>" per line → {letter: keyword}."""
    out: dict[str, str] = {}
    try:
        text = (folder / KEYWORDS_FILE).read_text("utf-8", errors="replace")
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        index, _, keyword = line.strip().partition(" ")
        if index.isdigit() and int(index) < len(KEYWORD_LETTERS) and keyword:
            out[KEYWORD_LETTERS[int(index)]] = keyword
    return out


def is_maildir(path: Path) -> bool:
    return path.is_dir() and ((path / "cur").is_dir() or (path / "new").is_dir())


# export -------------------------------------------------------------------------------


class MaildirWriter:
    """Writes folders of messages as a Maildir++ tree under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.host = socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "postier"
        self._folder: Path | None = None
        self._keywords: dict[str, str] = {}  # keyword → letter, per folder
        self.problems: list[Problem] = []

    def open_folder(self, name: str) -> None:
        self.close_folder()
        path = self.root / folder_dirname(name)
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        if path != self.root:
            (path / "maildirfolder").touch()
        self._folder = path
        self._keywords = {}

    def add(self, raw: bytes, flags: frozenset[str], internal_date: int, key: str) -> None:
        """``key`` makes the name unique (e.g. "<uidvalidity>-<uid>")."""
        assert self._folder is not None
        letters = sorted(FLAG_LETTERS[f] for f in flags if f in FLAG_LETTERS)
        for keyword in sorted(f for f in flags if not f.startswith("\\")):
            letter = self._keyword_letter(keyword, key)
            if letter:
                letters.append(letter)
        name = f"{internal_date}.M{key}.{self.host},S={len(raw)}:2,{''.join(sorted(letters))}"
        tmp = self._folder / "tmp" / name
        tmp.write_bytes(raw)
        os.utime(tmp, (internal_date, internal_date))
        os.replace(tmp, self._folder / "cur" / name)

    def _keyword_letter(self, keyword: str, key: str) -> str | None:
        letter = self._keywords.get(keyword)
        if letter is None:
            if len(self._keywords) >= len(KEYWORD_LETTERS):
                self.problems.append(Problem(
                    f"{self._folder}/{key}", f"keyword {keyword!r} dropped: a Maildir folder "
                    "holds at most 26 keywords", skipped=False))
                return None
            letter = KEYWORD_LETTERS[len(self._keywords)]
            self._keywords[keyword] = letter
        return letter

    def close_folder(self) -> None:
        if self._folder is not None and self._keywords:
            lines = [f"{KEYWORD_LETTERS.index(letter)} {kw}\n"
                     for kw, letter in self._keywords.items()]
            (self._folder / KEYWORDS_FILE).write_text("".join(lines), "utf-8")
        self._folder = None


async def export_maildir(
    store: Store, address: str, dest: Path, progress: Progress = no_progress
) -> TransferSummary:
    """Write every mailbox of ``address`` as a Maildir++ tree at ``dest`` (new or empty)."""
    started = time.monotonic()
    account = await get_account(store, address)
    _check_empty_target(dest)
    writer = MaildirWriter(dest)
    summary = TransferSummary()
    mailboxes = await store.list_mailboxes(account.id)
    infos = {mb.id: await store.list_messages(mb.id) for mb in mailboxes}
    total = sum(len(v) for v in infos.values())
    done = 0
    for mb in mailboxes:
        writer.open_folder(mb.name)
        summary.folders += 1
        for info in infos[mb.id]:
            raw = await store.read_message(mb.id, info.uid)
            done += 1
            if raw is None:  # expunged while we exported
                continue
            writer.add(raw, info.flags, info.internal_date, f"{mb.uidvalidity}-{info.uid}")
            summary.messages += 1
            summary.bytes += len(raw)
            if done % 100 == 0 or done == total:
                progress(done, total, "messages")
        writer.close_folder()
    summary.problems.extend(writer.problems)
    summary.seconds = time.monotonic() - started
    return summary


def _check_empty_target(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise TransferError(f"{dest} exists and is not an empty folder; export into a new one")


# import -------------------------------------------------------------------------------


def maildir_folders(root: Path) -> Iterator[tuple[str, Path] | Problem]:
    """(mailbox name, folder path) for the root (INBOX) and every Maildir++ subfolder."""
    if is_maildir(root):
        yield "INBOX", root
    for sub in sorted(root.iterdir()):
        if not sub.name.startswith(".") or sub.name in (".", "..") or not sub.is_dir():
            continue
        if not is_maildir(sub):
            continue
        try:
            yield folder_name(sub.name), sub
        except ValueError as exc:
            yield Problem(str(sub), f"folder name not decodable ({exc}); folder skipped")


def read_maildir(root: Path) -> Iterator[SourceMessage | Problem]:
    for item in maildir_folders(root):
        if isinstance(item, Problem):
            yield item
            continue
        name, folder = item
        keywords = read_keywords(folder)
        for sub in ("new", "cur"):
            directory = folder / sub
            if not directory.is_dir():
                continue
            for path in sorted(directory.iterdir()):
                if path.name.startswith("."):
                    continue
                yield from _read_entry(name, path, keywords, sub == "cur")


def _read_entry(
    folder: str, path: Path, keywords: dict[str, str], in_cur: bool
) -> Iterator[SourceMessage | Problem]:
    origin = str(path)
    if not path.is_file():
        yield Problem(origin, "not a regular file")
        return
    try:
        raw = path.read_bytes()
        mtime = int(path.stat().st_mtime)
    except OSError as exc:
        yield Problem(origin, f"unreadable ({exc.strerror})")
        return
    if not raw.strip():
        yield Problem(origin, "empty message")
        return
    if not _HEADER_START_RE.match(raw):
        yield Problem(origin, "does not start with a header field: not a message")
        return
    flags: frozenset[str] = frozenset()
    if in_cur:
        flags, warnings = parse_filename(path.name, keywords)
        for warning in warnings:
            yield Problem(origin, warning, skipped=False)
    yield SourceMessage(folder, raw, flags, mtime, origin)


async def import_maildir(
    store: Store, address: str, src: Path, progress: Progress = no_progress
) -> TransferSummary:
    account = await get_account(store, address)
    if not is_maildir(src) and not any(True for _ in maildir_folders(src)):
        raise TransferError(f"{src} is not a Maildir (no cur/ or new/, no .Folder/)")
    return await AccountImporter(store, account, progress).run(read_maildir(src))
