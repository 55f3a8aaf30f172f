"""mboxrd export and import, with Status/X-Status/X-Keywords flags.

One file per folder: ``DEST/INBOX.mbox``, ``DEST/Sent.mbox``, ``DEST/Archive/2024.mbox``.
Format (mboxrd, https://www.loc.gov/preservation/digital/formats/fdd/fdd000385.shtml and
RFC 4155): each message starts with a ``From <sender> <asctime date>`` line carrying the
internal date (UTC); a body line matching ``>*From `` gets one more ``>`` on export and
loses one on import; each message is followed by an empty line.  Lines end in LF, as mbox
readers expect; import turns line ends back into CRLF (the form IMAP serves), so a CRLF
message round-trips byte for byte.

Flags (the convention of mutt, UW-IMAP and Dovecot): ``Status: R`` is \\Seen (``O`` = not
new); ``X-Status:`` ``A`` \\Answered, ``F`` \\Flagged, ``T`` \\Draft, ``D`` \\Deleted;
``X-Keywords:`` the keywords.  Export adds these fields at the end of the header and
import removes them, so message bytes are unchanged.
"""

from __future__ import annotations

import calendar
import email.utils
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Final

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
from postier.store.interface import Store
from postier.store.types import HIERARCHY_SEPARATOR

SUFFIX: Final = ".mbox"
X_STATUS_FLAGS: Final = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}
FLAG_X_STATUS: Final = {flag: letter for letter, flag in X_STATUS_FLAGS.items()}
FLAG_FIELDS: Final = (b"status", b"x-status", b"x-keywords")
_FROM_ESCAPED_RE: Final = re.compile(rb"^(>*From )", re.MULTILINE)
_FROM_UNESCAPE_RE: Final = re.compile(rb"^>(>*From )", re.MULTILINE)
_FIELD_RE: Final = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_MONTHS: Final = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
# "From sender Mon Jan  2 15:04:05 2006", optionally with a zone before or after the year.
_FROM_DATE_RE: Final = re.compile(
    rb"(?:[A-Za-z]{3},? +)?([A-Za-z]{3}) +(\d{1,2}) +(\d{1,2}):(\d{2})(?::(\d{2}))?"
    rb"(?: +([+-]\d{4}|[A-Z]{1,5}))? +(\d{4})(?: +([+-]\d{4}))?\s*$"
)
_RETURN_PATH_RE: Final = re.compile(rb"^Return-Path:[ \t]*<([^>\s]*)>", re.IGNORECASE | re.MULTILINE)


def folder_filename(name: str) -> str:
    """"Archive/2024" → "Archive/2024.mbox" (folders as directories)."""
    parts = [p.replace("\\", "_") for p in name.split(HIERARCHY_SEPARATOR)]
    return "/".join(parts) + SUFFIX


def is_mbox_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(5) == b"From "
    except OSError:
        return False


# export -------------------------------------------------------------------------------


def from_line(raw: bytes, internal_date: int) -> bytes:
    m = _RETURN_PATH_RE.search(raw[: raw.find(b"\r\n\r\n") + 2 if b"\r\n\r\n" in raw else None])
    sender = (m.group(1) if m and m.group(1) else b"MAILER-DAEMON").replace(b" ", b"_")
    date = time.strftime("%a %b %e %H:%M:%S %Y", time.gmtime(internal_date)).encode()
    return b"From " + sender + b" " + date + b"\n"


def flag_fields(flags: frozenset[str]) -> bytes:
    status = b"RO" if "\\Seen" in flags else b"O"
    x_status = "".join(letter for flag, letter in sorted(FLAG_X_STATUS.items()) if flag in flags)
    keywords = sorted(f for f in flags if not f.startswith("\\"))
    out = b"Status: " + status + b"\n"
    if x_status:
        out += b"X-Status: " + x_status.encode() + b"\n"
    if keywords:
        out += b"X-Keywords: " + " ".join(keywords).encode("utf-8") + b"\n"
    return out


def encode_entry(raw: bytes, flags: frozenset[str], internal_date: int) -> bytes:
    """One mboxrd entry: From_ line, header + flag fields, escaped body, empty line."""
    text = raw.replace(b"\r\n", b"\n")
    end = text.find(b"\n\n")
    if end < 0:  # header only
        header, body = (text if text.endswith(b"\n") else text + b"\n"), b""
    else:
        header, body = text[: end + 1], text[end + 1:]
    body = body if not body or body.endswith(b"\n") else body + b"\n"
    header = _FROM_ESCAPED_RE.sub(rb">\1", header)
    body = _FROM_ESCAPED_RE.sub(rb">\1", body)
    return from_line(raw, internal_date) + header + flag_fields(flags) + (body or b"\n") + b"\n"


async def export_mbox(
    store: Store, address: str, dest: Path, progress: Progress = no_progress
) -> TransferSummary:
    """Write each mailbox of ``address`` as one mboxrd file under ``dest`` (new or empty)."""
    started = time.monotonic()
    account = await get_account(store, address)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise TransferError(f"{dest} exists and is not an empty folder; export into a new one")
    summary = TransferSummary()
    mailboxes = await store.list_mailboxes(account.id)
    infos = {mb.id: await store.list_messages(mb.id) for mb in mailboxes}
    total = sum(len(v) for v in infos.values())
    done = 0
    for mb in mailboxes:
        path = dest / folder_filename(mb.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        summary.folders += 1
        with open(path, "wb") as f:
            for info in infos[mb.id]:
                raw = await store.read_message(mb.id, info.uid)
                done += 1
                if raw is None:
                    continue
                f.write(encode_entry(raw, info.flags, info.internal_date))
                summary.messages += 1
                summary.bytes += len(raw)
                if done % 100 == 0 or done == total:
                    progress(done, total, "messages")
    summary.seconds = time.monotonic() - started
    return summary


# import -------------------------------------------------------------------------------


def parse_from_date(line: bytes) -> int | None:
    """Epoch seconds of a From_ line's date (asctime, UTC unless a numeric zone is given)."""
    m = _FROM_DATE_RE.search(line)
    if not m:
        return None
    mon, day, hh, mm, ss, zone1, year, zone2 = m.groups()
    month = _MONTHS.get(mon.decode().lower())
    if month is None:
        return None
    try:
        stamp = calendar.timegm((int(year), month, int(day), int(hh), int(mm), int(ss or 0)))
    except (ValueError, OverflowError):
        return None
    zone = zone2 or zone1
    if zone and zone[:1] in b"+-":
        offset = int(zone[1:3]) * 3600 + int(zone[3:5]) * 60
        stamp -= offset if zone[:1] == b"+" else -offset
    return stamp


def split_entries(f: BinaryIO) -> Iterator[tuple[int, bytes, list[bytes]]]:
    """(line number, From_ line, message lines) per entry; line number 0: text before any."""
    from_ = b""
    start = 0
    lines: list[bytes] = []
    previous_blank = True
    for number, line in enumerate(f, 1):
        if line.startswith(b"From ") and previous_blank:
            if from_ or any(x.strip() for x in lines):
                yield start, from_, lines
            from_, start, lines = line, number, []
            previous_blank = False
            continue
        lines.append(line)
        previous_blank = line in (b"\n", b"\r\n")
    if from_ or any(x.strip() for x in lines):
        yield start, from_, lines


def decode_entry(lines: list[bytes]) -> tuple[bytes, frozenset[str]]:
    """Message bytes (CRLF, unescaped, flag fields removed) and its flags."""
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines = lines[:-1]  # the separator line
    flags: set[str] = set()
    out: list[bytes] = []
    in_header = True
    skipping = False
    for line in lines:
        line = line[:-2] + b"\n" if line.endswith(b"\r\n") else line
        if in_header:
            if line == b"\n":
                in_header = False
            elif line[:1] in (b" ", b"\t"):
                if skipping:
                    continue
            else:
                m = _FIELD_RE.match(line)
                skipping = bool(m and m.group(1).lower() in FLAG_FIELDS)
                if skipping and m:
                    value = line[m.end():].strip().decode("utf-8", "replace")
                    flags |= _flags_of(m.group(1).lower(), value)
                    continue
        out.append(line)
    text = _FROM_UNESCAPE_RE.sub(rb"\1", b"".join(out))
    raw = text.replace(b"\n", b"\r\n")
    return raw, frozenset(flags)


def _flags_of(field: bytes, value: str) -> set[str]:
    if field == b"status":
        return {"\\Seen"} if "R" in value else set()
    if field == b"x-status":
        return {X_STATUS_FLAGS[c] for c in value if c in X_STATUS_FLAGS}
    return {k for k in re.split(r"[\s,]+", value) if k and not k.startswith("\\")}


def read_mbox_file(path: Path, folder: str) -> Iterator[SourceMessage | Problem]:
    with open(path, "rb") as f:
        for number, from_, lines in split_entries(f):
            origin = f"{path}:{number or 1}"
            if not from_:
                yield Problem(origin, "text before the first From_ line (not an mbox entry)")
                continue
            raw, flags = decode_entry(lines)
            if not raw.strip():
                yield Problem(origin, "empty message")
                continue
            if not _FIELD_RE.match(raw):
                yield Problem(origin, "entry does not start with a header field: not a message")
                continue
            date = parse_from_date(from_.rstrip())
            if date is None:
                date = _header_date(raw)
                yield Problem(origin, "From_ line has no readable date; "
                              + ("used the Date: field" if date else "dated now"), skipped=False)
            yield SourceMessage(folder, raw, flags, date, origin)


def _header_date(raw: bytes) -> int | None:
    m = re.search(rb"^Date:[ \t]*(.*?)\r\n", raw[: raw.find(b"\r\n\r\n") + 2], re.IGNORECASE | re.MULTILINE)
    if not m:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(m.group(1).decode("latin-1")).timestamp())
    except (TypeError, ValueError, IndexError):
        return None


def mbox_files(src: Path) -> list[tuple[str, Path]]:
    """(folder name, file) for a single mbox file or a folder tree of them."""
    if src.is_file():
        stem = src.name[: -len(SUFFIX)] if src.name.endswith(SUFFIX) else src.name
        return [("INBOX" if stem.upper() == "INBOX" else stem, src)]
    out: list[tuple[str, Path]] = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        if path.name.startswith(".") or not (path.name.endswith(SUFFIX) or is_mbox_file(path)):
            continue
        rel = path.relative_to(src).as_posix()
        name = rel[: -len(SUFFIX)] if rel.endswith(SUFFIX) else rel
        out.append(("INBOX" if name.upper() == "INBOX" else name, path))
    return out


def read_mbox(src: Path) -> Iterator[SourceMessage | Problem]:
    for folder, path in mbox_files(src):
        yield from read_mbox_file(path, folder)


async def import_mbox(
    store: Store, address: str, src: Path, progress: Progress = no_progress
) -> TransferSummary:
    account = await get_account(store, address)
    if not mbox_files(src):
        raise TransferError(f"{src}: no mbox file (one starting with 'From ', or *.mbox)")
    return await AccountImporter(store, account, progress).run(read_mbox(src))
