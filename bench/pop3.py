"""POP3 benchmark: concurrent clients looping login / STAT / UIDL / RETR all / QUIT.

    .venv/bin/python bench/pop3.py [--clients 10 50] [--seconds 10] [--mailboxes 100]

Setup: ``--mailboxes`` accounts, each with ~30 messages of 10-20 KB, in a fresh SqliteStore
in a temporary folder.  The server runs in this process on 127.0.0.1; the clients run in a
separate process (``--client`` mode, asyncio, raw sockets) so that this process's CPU time
is the server's.  Each client uses its own slice of the mailboxes, so no session waits for
another's maildrop lock ([IN-USE]).

Reported per run: sessions/s, messages/s, server CPU ms per session.  Passwords use cheap
argon2 parameters; with production parameters the Authenticator's credential cache makes
repeated logins of the same account cost about the same after the first.

Not done yet: Dovecot side by side in the same run (issue 5 asks for it; to come with a
bench script that configures Debian's dovecot-pop3d on loopback).  Figures go to
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

PASSWORD = "bench password"


def address(i: int) -> str:
    return f"user{i}@bench.example"


def make_message(rng: random.Random, i: int, n: int) -> bytes:
    size = rng.randint(10_000, 20_000)
    head = (
        f"From: sender{n}@example.net\r\nTo: {address(i)}\r\nSubject: bench {i}/{n}\r\n"
        f"Message-ID: <{i}.{n}@bench.example>\r\n\r\n"
    ).encode()
    line = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghij\r\n"
    body = line * (size // len(line) + 1)
    return head + body[: size - len(head)]


async def setup(data_dir: Path, mailboxes: int, per_box: int) -> object:
    from postier.auth.passwords import CHEAP_ARGON2, hash_password
    from postier.delivery import Delivery
    from postier.store.sqlite import SqliteStore

    store = await SqliteStore.open(data_dir)
    await store.add_domain("bench.example")
    pw_hash = hash_password(PASSWORD, CHEAP_ARGON2)
    rng = random.Random(5)
    delivery = Delivery(store)
    for i in range(mailboxes):
        await store.create_account(address(i), pw_hash, None)
    for n in range(per_box):
        await asyncio.gather(
            *(delivery.deliver(make_message(rng, i, n), "s@example.net", [address(i)])
              for i in range(mailboxes))
        )
    return store


# ------------------------------------------------------------------ client side


async def one_session(port: int, user: str) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()
        writer.write(f"USER {user}\r\nPASS {PASSWORD}\r\nSTAT\r\nUIDL\r\n".encode())
        for _ in range(2):
            line = await reader.readline()
            assert line.startswith(b"+OK"), line
        stat = await reader.readline()
        count = int(stat.split()[1])
        await reader.readline()
        await reader.readuntil(b"\r\n.\r\n") if count else await reader.readline()
        writer.write(b"".join(f"RETR {n}\r\n".encode() for n in range(1, count + 1)))
        for _ in range(count):
            status = await reader.readline()
            assert status.startswith(b"+OK"), status
            await reader.readuntil(b"\r\n.\r\n")
        writer.write(b"QUIT\r\n")
        await reader.readline()
        return count
    finally:
        writer.close()


async def client_main(port: int, clients: int, seconds: float, mailboxes: int) -> dict[str, float]:
    deadline = time.monotonic() + seconds
    sessions = 0
    messages = 0

    async def worker(k: int) -> None:
        nonlocal sessions, messages
        mine = [address(i) for i in range(k, mailboxes, clients)] or [address(k % mailboxes)]
        j = 0
        while time.monotonic() < deadline:
            got = await one_session(port, mine[j % len(mine)])
            messages += got  # not "+= await": that would read the total before awaiting
            sessions += 1
            j += 1

    start = time.monotonic()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    return {"sessions": sessions, "messages": messages, "elapsed_s": time.monotonic() - start}


# ------------------------------------------------------------------ server side


async def run(clients_list: list[int], seconds: float, mailboxes: int, per_box: int) -> None:
    from tests.integration.test_pop3_support import port_of, start_server

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        store = await setup(Path(tmp) / "data", mailboxes, per_box)
        print(f"setup: {mailboxes} mailboxes x {per_box} messages in {time.monotonic() - t0:.1f} s")
        server = await start_server(store)  # type: ignore[arg-type]
        port = port_of(server)
        try:
            for clients in clients_list:
                cpu0 = time.process_time()
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--client", str(port), str(clients),
                    str(seconds), str(mailboxes), stdout=subprocess.PIPE,
                )
                out, _ = await proc.communicate()
                cpu = time.process_time() - cpu0
                r = json.loads(out)
                per_s = r["sessions"] / r["elapsed_s"]
                print(
                    f"postier  clients={clients:3d}  sessions/s={per_s:7.1f}  "
                    f"messages/s={r['messages'] / r['elapsed_s']:8.1f}  "
                    f"server CPU/session={1000 * cpu / max(1, r['sessions']):6.2f} ms"
                )
        finally:
            await server.stop()
            await store.close()  # type: ignore[attr-defined]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        port, clients, seconds, mailboxes = sys.argv[2:6]
        result = asyncio.run(client_main(int(port), int(clients), float(seconds), int(mailboxes)))
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mailboxes", type=int, default=100)
    parser.add_argument("--messages", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(run(args.clients, args.seconds, args.mailboxes, args.messages))


if __name__ == "__main__":
    main()
