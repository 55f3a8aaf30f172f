"""Helpers to drive a CommandParser in tests: feed bytes, collect events."""

from __future__ import annotations

from postier.imap import commands as c
from postier.imap.parser import (
    Command,
    CommandParser,
    ContinuationNeeded,
    Event,
    Limits,
    LiteralMode,
    NeedData,
)


def drain(parser: CommandParser) -> list[Event]:
    """Every event until NeedData (excluded)."""
    events: list[Event] = []
    while not isinstance(event := parser.next_event(), NeedData):
        events.append(event)
        if len(events) > 100_000:  # pragma: no cover - a parser loop would hang the suite
            raise AssertionError("parser does not stop producing events")
    return events


def feed_whole(data: bytes, parser: CommandParser | None = None) -> list[Event]:
    parser = parser or CommandParser()
    parser.receive_data(data)
    return drain(parser)


def feed_bytewise(data: bytes, parser: CommandParser | None = None) -> list[Event]:
    parser = parser or CommandParser()
    events: list[Event] = []
    for i in range(len(data)):
        parser.receive_data(data[i : i + 1])
        events.extend(drain(parser))
    return events


def commands(events: list[Event]) -> list[Command]:
    return [e for e in events if isinstance(e, Command)]


def parse_one(
    line: bytes,
    *,
    utf8: bool = False,
    limits: Limits | None = None,
    mode: LiteralMode = LiteralMode.PLUS,
) -> c.ImapCommand:
    """Parse exactly one command (literals auto-continued) and return it."""
    parser = CommandParser(limits, mode)
    parser.utf8 = utf8
    events = [e for e in feed_whole(line, parser) if not isinstance(e, ContinuationNeeded)]
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, Command), event
    return event.command
