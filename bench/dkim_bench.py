"""DKIM benchmark: milliseconds per 10 KB message to sign (ours, on `cryptography`) and to
verify (dkimpy behind our resolver), RSA-2048 and Ed25519; dkimpy's own signer for scale.

    .venv/bin/python bench/dkim_bench.py [--messages 500] [--size 10240]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and "import dkim" would
# import this very file instead of dkimpy.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import dkim as dkimpy  # type: ignore[import-untyped]  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: E402

from postier.mailauth.dkim import (  # noqa: E402
    DkimKey,
    dns_name,
    dns_record,
    generate_key,
    sign,
    verify,
)
from postier.mailauth.dns import FakeResolver  # noqa: E402

WORDS = (
    b"alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    b"november oscar papa quebec romeo sierra tango uniform victor whiskey xray"
).split()


def make_message(n: int, size: int) -> bytes:
    header = (
        b"From: Sender <sender%d@example.org>\r\nTo: alice@example.net\r\n"
        b"Subject: benchmark message %d\r\nMessage-ID: <%d@bench.example.org>\r\n"
        b"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" % (n, n, n)
    )
    line = b" ".join(WORDS[(n + i) % len(WORDS)] for i in range(12)) + b"\r\n"
    body = line * (max(0, size - len(header)) // len(line) + 1)
    return header + body[: max(0, size - len(header))]


def per_message_ms(fn: Callable[[bytes], object], messages: list[bytes], rounds: int = 5) -> float:
    """The best of `rounds` passes (the least disturbed by other processes)."""
    fn(messages[0])  # warm up
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for message in messages:
            fn(message)
        best = min(best, time.perf_counter() - start)
    return best * 1000 / len(messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--size", type=int, default=10240)
    args = parser.parse_args()
    messages = [make_message(n, args.size) for n in range(args.messages)]
    rsa_key = generate_key("example.org", "rsa", "rsa-sha256")
    ed_key = generate_key("example.org", "ed", "ed25519-sha256")
    resolver = FakeResolver({dns_name(k): [("TXT", dns_record(k))] for k in (rsa_key, ed_key)})
    now = time.time()
    print(f"{len(messages)} messages of {args.size} bytes, ms per message")

    def sign_with(keys: list[DkimKey]) -> Callable[[bytes], object]:
        return lambda m: sign(m, keys, now)

    for label, keys in (
        ("rsa-2048", [rsa_key]),
        ("ed25519", [ed_key]),
        ("rsa-2048 + ed25519", [rsa_key, ed_key]),
    ):
        print(f"  sign   {label:<22} {per_message_ms(sign_with(keys), messages):7.3f}")

    loop = asyncio.new_event_loop()

    def verify_one(message: bytes) -> object:
        return loop.run_until_complete(verify(message, resolver))

    for label, keys in (("rsa-2048", [rsa_key]), ("ed25519", [ed_key])):
        signed = [sign(m, keys, now) + m for m in messages]
        print(f"  verify {label:<22} {per_message_ms(verify_one, signed):7.3f}")
    loop.close()

    rsa_pem = rsa_key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert isinstance(ed_key.private_key, ed25519.Ed25519PrivateKey)
    seed = base64.b64encode(
        ed_key.private_key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )
    few = messages[: max(1, len(messages) // 10)]
    ms = per_message_ms(
        lambda m: dkimpy.sign(m, b"rsa", b"example.org", rsa_pem, canonicalize=(b"relaxed",) * 2),
        few,
        rounds=1,
    )
    print(f"  dkimpy sign rsa-2048 (scale)  {ms:7.3f}")
    ms = per_message_ms(
        lambda m: dkimpy.DKIM(m, signature_algorithm=b"ed25519-sha256").sign(
            b"ed", b"example.org", seed, canonicalize=(b"relaxed",) * 2
        ),
        few,
        rounds=1,
    )
    print(f"  dkimpy sign ed25519 (scale)   {ms:7.3f}")


if __name__ == "__main__":
    main()
