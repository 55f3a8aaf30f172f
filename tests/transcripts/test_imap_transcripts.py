"""Transcript tests: ``tests/transcripts/imap/*.txt`` replayed against an in-process IMAP
server (the real SqliteStore, delivery and Authenticator) over a loopback socket.

Format, one item a line (blank lines and ``#`` comments are skipped):

* ``C: text`` — *text* + CRLF sent verbatim (``${PASSWORD}`` is replaced by the test
  password).  A literal's content is the next ``C:`` line(s); each line adds its CRLF.
* ``S: text`` — the next line the server sends must be *text* (without its CRLF).
  ``<*>`` matches any run of characters within the line (UIDVALIDITY, dates, sizes).
* ``C2:`` / ``S2:`` … — the same on a second (third …) connection, opened on first use.
* ``! deliver NAME`` — deliver ``imap/messages/NAME`` to alice@example.org (LF → CRLF).
* ``! sleep SECONDS`` — wait, e.g. so that an IDLE command is running before a delivery.

Each connection ends with nothing unread: output the transcript does not expect fails it.
Set ``TRANSCRIPT_RECORD=1`` to print what the server says after each ``C:`` line instead of
checking (to write a new transcript; then check every line against RFC 9051 §9 by hand).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from postier.delivery import Delivery
from postier.imap.server import ImapServer
from postier.store.sqlite import SqliteStore
from postier.store.types import Account
from tests.conftest import TEST_PASSWORD
from tests.integration.test_imap_support import port_of, start_server

HERE = Path(__file__).parent / "imap"
TRANSCRIPTS = sorted(HERE.glob("*.txt"))
USER = "alice@example.org"
WILDCARD = "<*>"
READ_TIMEOUT_S = 5.0
QUIET_S = 0.3  # record mode, and the final "nothing unread" check
_ITEM = re.compile(r"^([CS])(\d*):(?: (.*))?$")
RECORD = os.environ.get("TRANSCRIPT_RECORD") == "1"


def expected_pattern(text: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in text.split(WILDCARD)) + r"\Z", re.DOTALL)


@dataclass
class Peer:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    seen: list[str] = field(default_factory=list)

    async def line(self, timeout_s: float) -> str | None:
        try:
            raw = await asyncio.wait_for(self.reader.readline(), timeout_s)
        except TimeoutError:
            return None
        if not raw:
            return None
        text = raw.decode("utf-8", "surrogateescape")
        assert text.endswith("\r\n"), f"line not ended by CRLF: {text!r}"
        self.seen.append(text[:-2])
        return text[:-2]


async def replay(path: Path, port: int, delivery: Delivery) -> None:
    peers: dict[str, Peer] = {}

    async def peer(name: str) -> Peer:
        if name not in peers:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            peers[name] = Peer(reader, writer)
        return peers[name]

    for number, raw_line in enumerate(path.read_text("utf-8").splitlines(), 1):
        where = f"{path.name}:{number}"
        if not raw_line.strip() or raw_line.startswith("#"):
            continue
        if RECORD and raw_line.startswith("!"):
            print(raw_line)
        if raw_line.startswith("! "):
            verb, _, arg = raw_line[2:].partition(" ")
            if verb == "deliver":
                raw = (HERE / "messages" / arg).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                await delivery.deliver(raw, "bob@example.net", [USER])
            elif verb == "sleep":
                await asyncio.sleep(float(arg))
            else:
                raise AssertionError(f"{where}: unknown directive {raw_line!r}")
            continue
        m = _ITEM.match(raw_line)
        assert m is not None, f"{where}: not a C:/S:/! line: {raw_line!r}"
        kind, name, text = m.group(1), m.group(2) or "1", m.group(3) or ""
        p = await peer(name)
        if kind == "C":
            if RECORD and not p.seen:
                while (got := await p.line(QUIET_S)) is not None:
                    print(f"S{'' if name == '1' else name}: {got}")
            if RECORD:
                print(raw_line)
            p.writer.write(text.replace("${PASSWORD}", TEST_PASSWORD).encode("utf-8") + b"\r\n")
            await p.writer.drain()
            if RECORD:
                while (got := await p.line(QUIET_S)) is not None:
                    print(f"S{'' if name == '1' else name}: {got}")
            continue
        if RECORD:
            continue
        got = await p.line(READ_TIMEOUT_S)
        assert got is not None, f"{where}: expected {text!r}, server sent nothing more"
        assert expected_pattern(text).match(got), (
            f"{where}:\n expected {text!r}\n got      {got!r}\n session so far:\n  "
            + "\n  ".join(p.seen)
        )
    for name, p in peers.items():
        extra = await p.line(QUIET_S)
        assert extra is None or RECORD, f"{path.name}: connection {name}: unexpected {extra!r}"
        p.writer.close()


@pytest.fixture
async def server(store: SqliteStore, account: Account) -> AsyncIterator[ImapServer]:
    srv = await start_server(store)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.stem for p in TRANSCRIPTS])
async def test_transcript(path: Path, server: ImapServer, delivery: Delivery) -> None:
    await replay(path, port_of(server), delivery)
