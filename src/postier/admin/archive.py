"""``postier export`` / ``postier import``: an account to or from Maildir or mbox.

Chooses the format module (:mod:`postier.admin.maildir`, :mod:`postier.admin.mbox`) and,
on import, detects the format of the source: a folder with ``cur/``/``new/`` or Maildir++
``.Folder/`` subfolders is a Maildir; a file starting with ``From `` or a folder of such
files (``*.mbox``) is mbox.
"""

from __future__ import annotations

import enum
from pathlib import Path

from postier.admin import maildir, mbox
from postier.admin.transfer import Progress, TransferError, TransferSummary, no_progress
from postier.store.interface import Store


class Format(enum.Enum):
    MAILDIR = "maildir"
    MBOX = "mbox"


def detect_format(src: Path) -> Format:
    if not src.exists():
        raise TransferError(f"{src} does not exist")
    if src.is_dir() and any(True for _ in maildir.maildir_folders(src)):
        return Format.MAILDIR
    if mbox.mbox_files(src):
        return Format.MBOX
    raise TransferError(
        f"{src} is neither a Maildir (cur/, new/, .Folder/) nor mbox (files starting 'From ')"
    )


async def export_account(
    store: Store, address: str, dest: Path, format: Format | str = Format.MAILDIR,
    progress: Progress = no_progress,
) -> TransferSummary:
    """Write every mailbox of ``address`` under ``dest`` (which must be new or empty)."""
    if Format(format) is Format.MAILDIR:
        return await maildir.export_maildir(store, address, dest, progress)
    return await mbox.export_mbox(store, address, dest, progress)


async def import_account(
    store: Store, address: str, src: Path, progress: Progress = no_progress,
    format: Format | str | None = None,
) -> TransferSummary:
    """Import a Maildir or mbox source into ``address``; running it twice adds nothing."""
    fmt = Format(format) if format is not None else detect_format(src)
    if fmt is Format.MAILDIR:
        return await maildir.import_maildir(store, address, src, progress)
    return await mbox.import_mbox(store, address, src, progress)
