"""A delivery that reported success survives SIGKILL of the process, whole and once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from postier.store.sqlite import SqliteStore
from tests.conftest import cheap_hash
from tests.integration.burst_deliver import message

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
