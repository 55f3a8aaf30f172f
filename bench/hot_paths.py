"""CPU of the per-message pieces that run outside SQLite: the SMTP core and the byte scans.

    .venv/bin/python bench/hot_paths.py [--repeat 5]

Runs against whatever ``postier`` is importable (``PYTHONPATH=old/src`` for another
tree; ``POSTIER_COMPILED=0`` for the pure-Python path) and prints the best of
``--repeat`` rounds, µs per message:

- core: one pipelined transaction through the sans-IO SMTP core (MAIL, RCPT, DATA, a
  10 KB message from bench/smtp.py with its end mark, the 250), replies collected;
- parse: ``parse_message`` of that message with a Received: field on top;
- distinct_terms / add_new_terms: the index's term scans (``_textscan.c``) on the
  lowercased message, English and the bench text; add_new_terms over batches of 20
  messages joined (as ``words.terms`` gives them), per message;
- count_lf / line_ends / find_dot_line: the parser's and the DATA reader's scans, when
  the C module is built (else their Python twins run in the pieces above).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import smtp as load  # bench/smtp.py: make_message, TEXT
from postier import compiled
from postier.mail.parse import parse_message
from postier.smtp.core import CoreSettings, NeedData, ServerConnection

TEXTSCAN = compiled.c_module("postier._textscan")


def best(fn: Callable[[], object], count: int, repeat: int) -> float:
    """µs per call of the fastest round."""
    rounds = []
    for _ in range(repeat):
        start = time.thread_time()
        for _ in range(count):
            fn()
        rounds.append((time.thread_time() - start) / count * 1e6)
    return min(rounds)


def core_transaction(message: bytes) -> Callable[[], None]:
    conn = ServerConnection(CoreSettings(hostname="bench.example.org"), tls_available=False,
                            tls_active=False, auth_without_tls=True)
    conn.greeting()
    conn.receive_data(b"EHLO client.example.net\r\n")
    conn.next_event()
    conn.accept()
    conn.next_event()
    conn.data_to_send()

    def pump() -> None:
        while not isinstance(conn.next_event(), NeedData):
            conn.accept()

    def one() -> None:
        conn.receive_data(b"MAIL FROM:<sender@example.net> SIZE=10240\r\n"
                          b"RCPT TO:<alice@example.org>\r\nDATA\r\n")
        pump()
        conn.data_to_send()
        conn.receive_data(message + b".\r\n")
        pump()
        conn.data_to_send()

    return one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"postier: {compiled.status()}")
    message = load.make_message(5, 10240)
    received = (b"Received: from client.example.net ([127.0.0.1])\r\n\tby bench.example.org"
                b" (postier) with ESMTP id 0123456789ab;\r\n\tSat, 28 Nov 2026 12:00:00 +0000\r\n")
    print(f"core, one transaction   {best(core_transaction(message), 3000, args.repeat):7.1f} µs")
    print(f"parse_message           {best(lambda: parse_message(received + message, texts=False), 3000, args.repeat):7.1f} µs")
    if TEXTSCAN is None:
        print("(_textscan not in use: no C scans to time)")
        return
    ts = TEXTSCAN
    for text in load.TEXTS:
        load.TEXT = text
        docs = [load.make_message(n, 10240).lower() for n in range(200)]
        batches = [b" ".join(docs[i:i + 20]) for i in range(0, len(docs), 20)]

        def distinct(docs: list[bytes] = docs) -> None:
            for doc in docs:
                ts.distinct_terms(doc)

        def add_new(batches: list[bytes] = batches) -> None:
            for batch in batches:
                ts.add_new_terms(batch, frozenset(), set())

        print(f"distinct_terms, {text:<7} {best(distinct, 1, args.repeat) / len(docs):7.1f} µs")
        print(f"add_new_terms, {text:<8} {best(add_new, 1, args.repeat) / len(docs):7.1f} µs")
    body = b"\r\n" + message + b".\r\n"
    lf, dot_line = b"\n", b"\n."
    print(f"count_lf                {best(lambda: ts.count_lf(body, 0, len(body)), 20000, args.repeat):7.1f} µs"
          f"   (bytes.count {best(lambda: body.count(lf), 20000, args.repeat):.1f})")
    print(f"find_dot_line           {best(lambda: ts.find_dot_line(body, 0), 20000, args.repeat):7.1f} µs"
          f"   (bytes.find {best(lambda: body.find(dot_line), 20000, args.repeat):.1f})")
    print(f"line_ends               {best(lambda: ts.line_ends(body, 0, len(body), False), 20000, args.repeat):7.1f} µs")


if __name__ == "__main__":
    main()
