"""CPU cost of ``parse_message`` (parse once, at delivery, on the event loop).

    .venv/bin/python bench/parse.py [--repeat 7] [--profile NAME]

Prints the process CPU time of one ``parse_message`` call per message kind: the minimum
and the median of ``--repeat`` rounds, each round averaging many calls (the machine is
shared: the minimum is the steadier figure).

- 10 KB text/plain: ``bench/smtp.py make_message(n, 10240)`` (the SMTP benchmark's message)
- 20 KB multipart/alternative: quoted-printable text + HTML (``golden_messages``), each
  with its own boundary
- 1 MB text/plain: ``make_message(n, 1048576)``
- corpus average: every message of ``tests/data/messages``, each parsed once per round
- 10 MB with three base64 attachments (like the 40 MB message of ``test_parse.py``)

``--profile NAME`` runs cProfile over that case instead (names: see ``CASES``).
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(1, str(ROOT))  # tests.unit.mail.golden_messages
sys.path.insert(0, str(ROOT / "bench"))

from tests.unit.mail.golden_messages import alternative_message  # noqa: E402

from postier.mail.parse import parse_message  # noqa: E402
from smtp import make_message  # noqa: E402  # bench/smtp.py


def ten_megabytes() -> bytes:
    """About 10 MB: a short text part and three 3.3 MB base64 attachments.

    (``test_ten_megabyte_message_parses_fast`` uses four times these attachments: 40 MB.)
    """
    attachment = base64.encodebytes(bytes(range(256)) * 9_600).replace(b"\n", b"\r\n")
    parts = [b"--B\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"]
    for i in range(3):
        parts.append(
            b"--B\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=f%d.bin\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" % i + attachment
        )
    return (
        b"From: a@b.c\r\nSubject: big\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        + b"".join(parts)
        + b"--B--\r\n"
    )


def corpus() -> list[bytes]:
    return [p.read_bytes() for p in sorted((ROOT / "tests" / "data" / "messages").rglob("*.eml"))]


# name → (label, messages parsed per call, calls per round)
CASES: dict[str, tuple[str, Callable[[], list[bytes]], int]] = {
    "plain10k": ("10 KB text/plain", lambda: [make_message(i, 10240) for i in range(50)], 40),
    # 600 boundaries, more than the regex caches hold: each parse meets a new boundary,
    # as at delivery
    "alt20k": (
        "20 KB multipart/alternative",
        lambda: [alternative_message(i) for i in range(600)],
        1,
    ),
    "plain1m": ("1 MB text/plain", lambda: [make_message(i, 1048576) for i in range(3)], 3),
    "corpus": ("corpus average", corpus, 3),
    "mb10": ("10 MB with attachments", lambda: [ten_megabytes()], 30),
}


def measure(messages: list[bytes], calls: int, repeat: int) -> tuple[float, float]:
    """(min, median) CPU milliseconds per parse over ``repeat`` rounds."""
    for raw in messages:  # warm caches (regexes, codecs)
        parse_message(raw)
    rounds: list[float] = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(calls):
            for raw in messages:
                parse_message(raw)
        rounds.append((time.process_time() - start) * 1000 / (calls * len(messages)))
    return min(rounds), statistics.median(rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--profile", choices=sorted(CASES))
    ap.add_argument("cases", nargs="*", help=f"any of {', '.join(CASES)} (default: all)")
    args = ap.parse_args()
    for name in args.cases:
        if name not in CASES:
            ap.error(f"unknown case {name!r}")
    if args.profile:
        import cProfile
        import pstats

        _label, make, calls = CASES[args.profile]
        messages = make()
        with cProfile.Profile() as prof:
            for _ in range(calls):
                for raw in messages:
                    parse_message(raw)
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    print(f"{'message':32} {'min ms':>8} {'median ms':>10}")
    for name in args.cases or CASES:
        label, make, calls = CASES[name]
        best, median = measure(make(), calls, args.repeat)
        print(f"{label:32} {best:8.3f} {median:10.3f}")


if __name__ == "__main__":
    main()
