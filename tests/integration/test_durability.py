"""A delivery that reported success survives SIGKILL of the process, whole and once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from postier.store.sqlite import SqliteStore
from tests.conftest import cheap_hash
from tests.integration.burst_deliver import message
from tests.integration.serving import loopback_config, start_serve

HERE = Path(__file__).parent


async def test_acknowledged_deliveries_survive_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = await SqliteStore.open(data)
    await store.add_domain("example.org")
    await store.create_account("alice@example.org", cheap_hash("pw"), None)
    await store.close()

    proc = subprocess.Popen(
        [sys.executable, str(HERE / "burst_deliver.py"), str(data), "5000"],
        stdout=subprocess.PIPE, cwd=HERE.parent.parent,
        env={**os.environ, "PYTHONPATH": str(HERE.parent.parent)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"READY"
    acked: set[int] = set()
    deadline = time.monotonic() + 60
    while len(acked) < 300 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.add(int(line.split()[1]))
    proc.send_signal(signal.SIGKILL)  # in the middle of the burst
    rest = proc.stdout.read()
    proc.wait()
    acked.update(int(line.split()[1]) for line in rest.splitlines() if line.startswith(b"ACK"))
    assert len(acked) >= 300, "the burst was too slow to test anything"
    assert len(acked) < 5000, "the process finished before it was killed"

    store = await SqliteStore.open(data)
    try:
        account = await store.get_account("alice@example.org")
        assert account is not None
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        infos = await store.list_messages(inbox.id)
        seen: dict[int, int] = {}
        for info in infos:
            raw = await store.read_message(inbox.id, info.uid)
            assert raw is not None
            prefix, _, rest_of = raw.partition(b"Subject: burst ")
            n = int(rest_of.split(b"\r\n", 1)[0])
            assert raw == prefix + message(n), f"message {n} is not whole"
            assert info.size == len(raw)
            seen[n] = seen.get(n, 0) + 1
        missing = acked - set(seen)
        assert not missing, f"{len(missing)} acknowledged messages lost"
        assert all(c == 1 for c in seen.values()), "a message was stored twice"
    finally:
        await store.close()


async def test_messages_acknowledged_over_smtp_survive_sigkill_of_the_server(tmp_path: Path) -> None:
    """`postier serve` is SIGKILLed during a burst from 8 SMTP clients: every message that
    got its 250 is on disk, whole, exactly once."""
    import re
    import smtplib
    import threading

    data = tmp_path / "data"
    store = await SqliteStore.open(data)
    await store.add_domain("example.org")
    await store.create_account("alice@example.org", cheap_hash("pw"), None)
    await store.close()
    config = tmp_path / "postier.toml"
    config.write_text(loopback_config(smtp="127.0.0.1:0"))
    server = start_serve(config, data, stderr=subprocess.DEVNULL)
    assert server.stdout is not None
    port = 0
    deadline = time.monotonic() + 30
    while not port and time.monotonic() < deadline:
        line = server.stdout.readline().decode()
        m = re.match(r"\s+SMTP\s+127\.0\.0\.1:(\d+)", line)
        port = int(m.group(1)) if m else 0
    assert port, "server did not start"

    acked: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def client(first: int) -> None:
        n = first
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                while not stop.is_set():
                    s.sendmail("burst@example.net", ["alice@example.org"], message(n))
                    with lock:
                        acked.add(n)
                    n += 8
        except (smtplib.SMTPException, OSError):
            pass  # the server died under us: unacknowledged messages may be lost

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    while len(acked) < 300 and time.monotonic() < deadline + 60:
        await asyncio.sleep(0.01)
    server.send_signal(signal.SIGKILL)
    server.wait()
    stop.set()
    for t in threads:
        t.join(20)
    assert len(acked) >= 300

    store = await SqliteStore.open(data)
    try:
        account = await store.get_account("alice@example.org")
        assert account is not None
        inbox = await store.get_mailbox(account.id, "INBOX")
        assert inbox is not None
        seen: dict[int, int] = {}
        for info in await store.list_messages(inbox.id):
            raw = await store.read_message(inbox.id, info.uid)
            assert raw is not None and info.size == len(raw)
            head, _, rest = raw.partition(b"Subject: burst ")
            n = int(rest.split(b"\r\n", 1)[0])
            assert raw == head + message(n), f"message {n} is not whole"
            seen[n] = seen.get(n, 0) + 1
        assert not acked - set(seen), f"{len(acked - set(seen))} acknowledged messages lost"
        assert all(c == 1 for c in seen.values()), "a message was stored twice"
    finally:
        await store.close()
