"""parse_message output is frozen: every field, for the corpus and synthetic messages.

Regenerate the fixture only for an intended output change:
``POSTIER_REGEN_GOLDEN=1 .venv/bin/pytest tests/unit/mail/test_parse_golden.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path

import pytest

from postier.mail.parse import (
    _ASCII_WS_NOT_SPACE,
    _WS,
    collapse_whitespace,
    decode_parts,
    encode_parts,
    extract_texts,
    parse_message,
)
from tests.unit.mail.golden_messages import synthetic_messages

CORPUS = Path(__file__).resolve().parents[2] / "data" / "messages"
GOLDEN = Path(__file__).resolve().parent / "data" / "parse_golden.json"
MAX_INLINE = 2000  # longer values are recorded as length and SHA-256


def _messages() -> dict[str, bytes]:
    out = {
        "corpus/" + str(p.relative_to(CORPUS)): p.read_bytes()
        for p in sorted(CORPUS.rglob("*.eml"))
    }
    out.update(("synthetic/" + k, v) for k, v in synthetic_messages().items())
    return out


def _record(value: object) -> object:
    text = repr(value)
    if len(text) <= MAX_INLINE:
        return text
    return f"{len(text)}:sha256:{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()}"


def _snapshot(raw: bytes) -> dict[str, object]:
    parsed = parse_message(raw)
    out = {f.name: _record(getattr(parsed, f.name)) for f in dataclasses.fields(parsed)}
    out["encode_parts"] = _record(encode_parts(parsed.root))
    return out


MESSAGES = _messages()


@functools.cache
def _golden() -> dict[str, dict[str, object]]:
    data: dict[str, dict[str, object]] = json.loads(GOLDEN.read_text("utf-8"))
    return data


def test_golden_fixture_covers_everything() -> None:
    if os.environ.get("POSTIER_REGEN_GOLDEN"):
        data = {name: _snapshot(raw) for name, raw in MESSAGES.items()}
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", "utf-8")
        _golden.cache_clear()
    golden = _golden()
    assert set(golden) == set(MESSAGES)
    assert len(golden) >= 120


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_parse_message_output_unchanged(name: str) -> None:
    assert _snapshot(MESSAGES[name]) == _golden()[name]


def test_ascii_whitespace_table_is_complete() -> None:
    ascii_ws = {chr(c) for c in range(128) if chr(c).isspace()}
    assert ascii_ws == {" ", *_ASCII_WS_NOT_SPACE}


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "a",
        "a b\r\nc",
        " a b\r\n",
        "a \r\nb",
        "a\r\n\r\nb",
        "a\rb\nc",
        "a\tb\x0bc\x0cd\x1ce\x1df\x1eg\x1fh",
        "a\u00a0b\u2003c\x85d\u3000e\u2028f",
        "caf\u00e9 na\u00efve\r\nx",
        "word " * 100_000,
        "w\r\n" * 100_000,
        "a  b " * 60_000,
        "a  b\r\n\r\n\t\x1c" * 10_000,
        " " * 300_000 + "x",
    ],
)
def test_collapse_whitespace_matches_regex(text: str) -> None:
    assert collapse_whitespace(text) == _WS.sub(" ", text).strip()


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_texts_from_the_stored_tree_are_what_the_parse_gives(name: str) -> None:
    """The indexer extracts the texts later from the tree delivery stored (encode_parts),
    without parsing again: the same texts as a full parse, for every message; delivery's
    parse without texts leaves them empty and everything else the same."""
    raw = MESSAGES[name]
    full = parse_message(raw, 5000)
    root = decode_parts(encode_parts(parse_message(raw, texts=False).root))
    assert extract_texts(raw, root, 5000) == (full.text, full.headers_text)
    assert parse_message(raw, texts=False) == dataclasses.replace(full, text="", headers_text="")
