"""Login cost: CPU and wall milliseconds per Authenticator.check_password.

Cases: credential cache cold (argon2id verification in a worker thread), cache warm (HMAC
compare only), unknown user (dummy argon2id verification), and a full SCRAM-SHA-256
exchange (server side; the client's PBKDF2 is timed separately).  Run:

    PYTHONPATH=src .venv/bin/python bench/auth.py [--rounds N] [--cheap]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import scramp

from postier.auth import (
    CHEAP_ARGON2,
    DEFAULT_ARGON2,
    AccountCredentials,
    Authenticator,
    AuthSettings,
    LimiterSettings,
    Ok,
    hash_password,
    scram_credentials,
)

PASSWORD = "correct horse battery staple"
LOGIN = "bench@example.org"


class Source:
    def __init__(self, creds: AccountCredentials) -> None:
        self.creds = creds

    async def get_credentials(self, login: str) -> AccountCredentials | None:
        return self.creds if login == self.creds.address else None


async def measure(
    rounds: int, fn: Callable[[], Awaitable[object]], before: Callable[[], None] = lambda: None
) -> tuple[float, float]:
    cpu = wall = 0.0
    for _ in range(rounds):
        before()
        c0, w0 = time.process_time(), time.perf_counter()
        await fn()
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
    return cpu / rounds * 1000, wall / rounds * 1000


async def main(rounds: int, cheap: bool) -> None:
    params = CHEAP_ARGON2 if cheap else DEFAULT_ARGON2
    creds = AccountCredentials(
        1, LOGIN, hash_password(PASSWORD, params), scram_credentials(PASSWORD)
    )
    # The limiter must not get in the way of repeated unknown-user attempts.
    settings = AuthSettings(
        argon2=params,
        limiter=LimiterSettings(
            free_failures=10**6, max_failures_per_ip=10**6, max_failures_per_account=10**6
        ),
    )
    auth = Authenticator(Source(creds), settings)

    async def good() -> None:
        assert isinstance(await auth.check_password(LOGIN, PASSWORD, "192.0.2.1"), Ok)

    async def unknown() -> None:
        await auth.check_password("nobody@example.org", PASSWORD, "192.0.2.1")

    async def scram() -> None:
        client = scramp.ScramClient(["SCRAM-SHA-256"], LOGIN, PASSWORD)

        async def exchange(challenge: bytes) -> bytes:
            client.set_server_first(challenge.decode())
            final: str = client.get_client_final()
            return final.encode()

        res = await auth.authenticate(
            "SCRAM-SHA-256", client.get_client_first().encode(), "192.0.2.1", exchange
        )
        assert isinstance(res, Ok)

    p = params
    print(
        f"argon2id t={p.time_cost} m={p.memory_cost_kib} KiB p={p.parallelism}; "
        f"{rounds} rounds; per login, ms"
    )
    print(f"{'case':<40} {'cpu ms':>8} {'wall ms':>8}")
    await good()  # warm up imports, thread pool
    cases: list[tuple[str, Callable[[], Awaitable[object]], Callable[[], None]]] = [
        ("check_password, cache cold (argon2id)", good, auth.cache.clear),
        ("check_password, cache warm", good, lambda: None),
        ("check_password, unknown user (dummy)", unknown, lambda: None),
        ("SASL SCRAM-SHA-256 (incl. client PBKDF2)", scram, lambda: None),
    ]
    for name, fn, before in cases:
        cpu, wall = await measure(rounds, fn, before)
        print(f"{name:<40} {cpu:8.3f} {wall:8.3f}")
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        scramp.ScramMechanism("SCRAM-SHA-256").make_auth_info(PASSWORD, salt=b"s" * 16)
    print(
        f"{'  of which client PBKDF2 4096 (approx)':<40} "
        f"{(time.process_time() - c0) / rounds * 1000:8.3f} "
        f"{(time.perf_counter() - w0) / rounds * 1000:8.3f}"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--cheap", action="store_true", help="test argon2 parameters")
    args = ap.parse_args()
    asyncio.run(main(args.rounds, args.cheap))
