"""POP3 with real Debian clients: fetchmail and getmail6 (packages ``fetchmail``,
``getmail6``), in keep and delete modes; every message must arrive byte-identical.

Both clients hand messages to an MDA with LF line endings (the Unix convention), so the
comparison is of the bytes with CRLF turned into LF; nothing else may differ (no added
Received: header, no re-folding, no lost dot).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from postier.delivery import Delivery
from postier.store.sqlite import SqliteStore
from postier.store.types import Account
from tests.conftest import TEST_PASSWORD
from tests.integration.test_pop3 import MESSAGES, USER, deliver_all, stored
from tests.integration.test_pop3_support import port_of, start_server

SAVE_SCRIPT = """\
import os, sys, time
data = sys.stdin.buffer.read()
name = os.path.join(sys.argv[1], f"{time.time_ns()}-{os.getpid()}.eml")
with open(name, "wb") as f:
    f.write(data)
"""

CLIENT_MESSAGES = [
    *MESSAGES,
    b"From: c@example.net\r\nTo: alice@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\ncaf\xc3\xa9\r\n.\r\n..\r\n",
]


def fetchmail_rc(tmp: Path, port: int, keep: bool, out: Path, save: Path) -> list[str]:
    rc = tmp / "fetchmailrc"
    rc.write_text(
        "set no bouncemail\n"
        f"poll 127.0.0.1 with proto POP3 port {port} timeout 20\n"
        f'  user "{USER}" there with password "{TEST_PASSWORD}" is "nobody" here\n'
        f"  {'keep' if keep else 'no keep'} fetchall no rewrite sslproto ''\n"
        f'  mda "{sys.executable} {save} {out}"\n'
    )
    rc.chmod(0o600)
    return ["fetchmail", "--invisible", "--nodetach", "-f", str(rc), "--pidfile", str(tmp / "pid")]


def getmail_rc(tmp: Path, port: int, keep: bool, out: Path, save: Path) -> list[str]:
    rc = tmp / "getmailrc"
    rc.write_text(
        "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\n"
        f"port = {port}\nusername = {USER}\npassword = {TEST_PASSWORD}\n"
        "[destination]\ntype = MDA_external\n"
        f'path = {sys.executable}\narguments = ("{save}", "{out}")\n'
        "allow_root_commands = true\n"  # test containers run as root
        f"[options]\ndelete = {'false' if keep else 'true'}\nread_all = true\n"
        "received = false\ndelivered_to = false\nverbose = 0\n"
    )
    return ["getmail", "--getmaildir", str(tmp), "--rcfile", str(rc)]


@pytest.mark.parametrize("tool", ["fetchmail", "getmail"])
@pytest.mark.parametrize("keep", [True, False], ids=["keep", "delete"])
async def test_client_fetches_byte_identical(
    tool: str, keep: bool, store: SqliteStore, account: Account, delivery: Delivery, tmp_path: Path
) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian package {tool if tool == 'fetchmail' else 'getmail6'})")
    await deliver_all(delivery, CLIENT_MESSAGES)
    expected = await stored(store, account)
    out = tmp_path / "out"
    out.mkdir()
    save = tmp_path / "save.py"
    save.write_text(SAVE_SCRIPT)
    srv = await start_server(store)
    make = fetchmail_rc if tool == "fetchmail" else getmail_rc
    argv = make(tmp_path, port_of(srv), keep, out, save)
    env = {**os.environ, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        await srv.stop()
    assert proc.returncode == 0, output.decode(errors="replace")
    got = sorted(p.read_bytes() for p in out.iterdir())
    want = sorted(e.replace(b"\r\n", b"\n") for e in expected)
    assert [g.replace(b"\r\n", b"\n") for g in got] == want
    left = await stored(store, account)
    assert left == (expected if keep else [])
