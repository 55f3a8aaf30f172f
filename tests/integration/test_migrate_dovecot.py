"""postier migrate against a real Dovecot (Debian's dovecot-imapd) on 127.0.0.1.

A private Dovecot instance runs from a temporary folder (its own dovecot.conf, base_dir,
state_dir, log, passwd-file and Maildirs) with IMAP on a free port of 127.0.0.1 only, and
is stopped at the end even when the test fails.  It is filled over IMAP (APPEND with flags
and internal dates) with INBOX, Sent, a nested folder (Dovecot's Maildir separator is
".", so "Projects.2026" must arrive as "Projects/2026"), a non-ASCII folder (modified
UTF-7 on the wire), an empty folder, \\Seen/\\Flagged/\\Answered/\\Draft/\\Deleted,
keywords, distinct internal dates, 8-bit and large messages and a message stored twice.

Plain IMAP (``imap+plain://``, no TLS) on loopback: the TLS paths of ``ImapSource`` are
the stdlib's and are exercised against postier's own server elsewhere; this test is
about what Dovecot says (separators, LIST attributes, FETCH layout, \\Recent).

Needs Dovecot (``/usr/sbin/dovecot``, ``/usr/lib/dovecot/imap``: Debian packages
dovecot-core and dovecot-imapd) and root (the instance switches to ``nobody`` for the
mail, as Debian's Dovecot expects).  When Dovecot is missing the test installs
dovecot-imapd with apt-get if it can, and otherwise skips with the reason.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from postier.admin import migrate as migrate_mod
from postier.admin import transfer
from postier.admin.migrate import ImapSource, migrate_account
from postier.admin.transfer import TransferError
from postier.imap.wire import encode_mutf7
from postier.store.sqlite import SqliteStore
from postier.store.types import Account

DOVECOT = Path("/usr/sbin/dovecot")
DOVECOT_IMAP = Path("/usr/lib/dovecot/imap")
PACKAGES = ("dovecot-imapd",)  # pulls dovecot-core
USER = "alice@example.org"
PASSWORD = "dovecot-secret"
MAIL_USER = "nobody"

Row = tuple[list[str], int, bytes]  # sorted flags, internal date, message bytes


# ---------------------------------------------------------------- a private Dovecot


def _ensure_dovecot() -> None:
    """Install dovecot-imapd with apt-get when missing; pytest.skip when that is impossible."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run a private Dovecot (mail owned by nobody)")
    if DOVECOT.exists() and DOVECOT_IMAP.exists():
        return
    if shutil.which("apt-get") is None:
        pytest.skip("Dovecot is not installed and there is no apt-get to install dovecot-imapd")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", *PACKAGES]
    try:
        done = subprocess.run(install, env=env, capture_output=True, timeout=600)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300)
            done = subprocess.run(install, env=env, capture_output=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Dovecot is not installed and apt-get failed: {exc}")
    if done.returncode != 0 or not (DOVECOT.exists() and DOVECOT_IMAP.exists()):
        tail = done.stderr.decode(errors="replace").strip()[-300:]
        pytest.skip(f"Dovecot is not installed and `apt-get install dovecot-imapd` failed: {tail}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Dovecot:
    dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    expected: dict[str, list[Row]] = field(default_factory=dict)

    def log_tail(self) -> str:
        parts = []
        for name in ("dovecot.stderr", "dovecot.log"):
            path = self.dir / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def write_config(self) -> Path:
        pw = pwd.getpwnam(MAIL_USER)
        os.chmod(self.dir, 0o755)  # the login processes (dovenull) reach base_dir/login
        mail = self.dir / "mail"
        mail.mkdir()
        os.chown(mail, pw.pw_uid, pw.pw_gid)
        (self.dir / "state").mkdir()
        users = self.dir / "users"
        users.write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        os.chmod(users, 0o644)
        conf = self.dir / "dovecot.conf"
        conf.write_text(f"""\
instance_name = postier-test-{os.getpid()}-{self.port}
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{mail}/%d/%n/Maildir
first_valid_uid = {pw.pw_uid}
first_valid_gid = {pw.pw_gid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = static
  args = uid={pw.pw_uid} gid={pw.pw_gid} home={mail}/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")
        return conf

    def start(self) -> None:
        conf = self.write_config()
        check = subprocess.run(["doveconf", "-c", str(conf), "-n"], capture_output=True,
                               timeout=30)
        assert check.returncode == 0, check.stderr.decode(errors="replace")
        with (self.dir / "dovecot.stderr").open("wb") as err:
            self.proc = subprocess.Popen([str(DOVECOT), "-F", "-c", str(conf)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited with {self.proc.returncode}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"dovecot not listening after 20 s\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the master stops its children
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4("127.0.0.1", self.port, timeout=30)
        conn.login(USER, PASSWORD)
        return conn

    def source(self, password: str = PASSWORD) -> ImapSource:
        return ImapSource.from_url(
            f"imap+plain://{USER.replace('@', '%40')}@127.0.0.1:{self.port}", password)

    def append(self, conn: imaplib.IMAP4, folder: str, raw: bytes, flags: list[str],
               date: int) -> None:
        """APPEND to ``folder`` (postier spelling, "/"-separated) and remember it.

        ``date`` must be in the past: Dovecot stores a future internal date as "now"."""
        wire = '"' + encode_mutf7(folder.replace("/", ".")).decode() + '"'
        typ, data = conn.append(wire, f"({' '.join(flags)})" if flags else None,
                                imaplib.Time2Internaldate(date), raw)
        assert typ == "OK", data
        self.expected.setdefault(folder, []).append((sorted(flags), date, raw))


def _message(n: int, folder: str, extra: bytes = b"") -> bytes:
    return (
        f"From: Bob <bob{n % 7}@example.net>\r\nTo: {USER}\r\n"
        f"Subject: {folder} #{n}\r\nMessage-ID: <{n}.{folder.replace('/', '-')}@example.net>\r\n"
        "Date: Fri, 27 Nov 2026 08:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + f"Hello {n} in {folder}.\r\n".encode() + extra


def _fill(dc: Dovecot) -> None:
    conn = dc.client()
    try:
        for folder in ("Sent", "Projects/2026", "Archiv/Grüße", "Empty"):
            wire = '"' + encode_mutf7(folder.replace("/", ".")).decode() + '"'
            typ, data = conn.create(wire)
            assert typ == "OK", data
        dc.expected["Empty"] = []
        base = 1_600_000_000
        dc.append(conn, "INBOX", _message(1, "INBOX"), ["\\Seen"], base)
        dc.append(conn, "INBOX", _message(2, "INBOX"), ["\\Flagged", "\\Answered", "$Work"],
                  base + 86_400)
        dc.append(conn, "INBOX", _message(3, "INBOX", "Grüße, señor — ✓\r\n".encode()), [],
                  base - 3 * 86_400 + 17)
        big = b"".join(b"line %06d of a large attachment ...........................\r\n" % i
                       for i in range(4000))
        dc.append(conn, "INBOX", _message(4, "INBOX", big), ["\\Seen", "NonJunk"], base + 5)
        twice = _message(5, "INBOX")
        dc.append(conn, "INBOX", twice, ["\\Seen"], base + 6)  # really there twice: both kept
        dc.append(conn, "INBOX", twice, [], base + 7)
        dc.append(conn, "INBOX", _message(6, "INBOX"), ["\\Deleted", "\\Seen"], base + 8)
        dc.append(conn, "Sent", _message(7, "Sent"), ["\\Seen", "$Forwarded"], base - 1_000_000)
        dc.append(conn, "Sent", _message(8, "Sent"), ["\\Seen", "\\Draft"], base - 999_000)
        dc.append(conn, "Archiv/Grüße", _message(9, "Archiv/Grüße"), ["\\Seen", "$Work"],
                  1_262_304_000)
        flag_cycle = [[], ["\\Seen"], ["\\Seen", "\\Answered"], ["\\Flagged"], ["$Label1"]]
        for i in range(60):  # more than one FETCH batch (50)
            dc.append(conn, "Projects/2026", _message(100 + i, "Projects/2026"),
                      flag_cycle[i % len(flag_cycle)], 1_700_000_000 + 3_600 * i)
    finally:
        conn.logout()


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    _ensure_dovecot()
    # Not pytest's tmp_path: its parents are 0700, and Dovecot's unprivileged processes
    # (dovenull, nobody) must reach the instance's folder.
    workdir = Path(tempfile.mkdtemp(prefix="postier-dovecot-"))
    dc = Dovecot(workdir, _free_port())
    try:
        dc.start()
        _fill(dc)
        yield dc
    except BaseException:
        print(dc.log_tail())
        raise
    finally:
        dc.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- comparison


async def _contents(store: SqliteStore, address: str) -> dict[str, list[Row]]:
    account = await store.get_account(address)
    assert account is not None
    out: dict[str, list[Row]] = {}
    for mb in await store.list_mailboxes(account.id):
        rows: list[Row] = []
        for info in await store.list_messages(mb.id):
            raw = await store.read_message(mb.id, info.uid)
            assert raw is not None
            rows.append((sorted(info.flags), info.internal_date, raw))
        out[mb.name] = rows
    return out


async def _assert_same(store: SqliteStore, expected: dict[str, list[Row]]) -> None:
    got = await _contents(store, USER)
    for folder, rows in expected.items():
        assert folder in got, f"folder {folder!r} missing; have {sorted(got)}"
        assert [r[:2] for r in got[folder]] == [r[:2] for r in rows], folder  # readable diff
        assert got[folder] == rows, folder
    extra = {name: rows for name, rows in got.items() if name not in expected and rows}
    assert not extra, f"unexpected messages in {sorted(extra)}"


# ---------------------------------------------------------------- tests


async def test_migrate_from_dovecot_copies_everything_once(
    dovecot: Dovecot, store: SqliteStore, account: Account
) -> None:
    total = sum(len(rows) for rows in dovecot.expected.values())
    calls: list[tuple[int, int, str]] = []
    summary = await migrate_account(store, USER, dovecot.source(),
                                    lambda n, t, w: calls.append((n, t, w)))
    assert not summary.problems, summary.describe()
    assert (summary.messages, summary.duplicates) == (total, 0)
    assert calls and calls[-1][0] == calls[-1][1] == total
    await _assert_same(store, dovecot.expected)
    # The source is untouched: BODY.PEEK[] set no \Seen, the EXAMINEs expunged nothing.
    conn = dovecot.client()
    try:
        typ, data = conn.select("INBOX", readonly=True)
        assert typ == "OK" and data[0] == str(len(dovecot.expected["INBOX"])).encode()
        typ, data = conn.uid("SEARCH", "UNSEEN")
        unseen = sum(1 for flags, _, _ in dovecot.expected["INBOX"] if "\\Seen" not in flags)
        assert typ == "OK" and len((data[0] or b"").split()) == unseen == 3
    finally:
        conn.logout()

    again = await migrate_account(store, USER, dovecot.source())
    assert (again.messages, again.duplicates, again.problems) == (0, total, [])
    await _assert_same(store, dovecot.expected)

    # New mail at the old server (in a new nested folder too): only it is copied.
    conn = dovecot.client()
    try:
        assert conn.create('"Projects.2027"')[0] == "OK"
        dovecot.append(conn, "Projects/2027", _message(500, "Projects/2027"), ["\\Seen"],
                       1_750_000_000)
        dovecot.append(conn, "INBOX", _message(501, "INBOX"), [], 1_750_000_001)
    finally:
        conn.logout()
    third = await migrate_account(store, USER, dovecot.source())
    assert (third.messages, third.duplicates, third.problems) == (2, total, [])
    await _assert_same(store, dovecot.expected)


async def test_migrate_from_dovecot_resumes_after_a_dropped_connection(
    dovecot: Dovecot, store: SqliteStore, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = sum(len(rows) for rows in dovecot.expected.values())
    monkeypatch.setattr(transfer, "IMPORT_BATCH", 10)  # commit in small transactions
    monkeypatch.setattr(migrate_mod, "FETCH_BATCH", 10)
    original = migrate_mod.ImapReader.bodies
    calls = [0]

    def dropping(self: migrate_mod.ImapReader, uids: list[int]) -> dict[int, bytes]:
        calls[0] += 1
        if calls[0] == 4:  # the network goes away in the middle of the migration
            assert self.conn is not None
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        return original(self, uids)

    monkeypatch.setattr(migrate_mod.ImapReader, "bodies", dropping)
    with pytest.raises(TransferError, match="run the migration again"):
        await migrate_account(store, USER, dovecot.source())
    partial = sum(len(rows) for rows in (await _contents(store, USER)).values())
    assert 0 < partial < total

    monkeypatch.setattr(migrate_mod.ImapReader, "bodies", original)
    resumed = await migrate_account(store, USER, dovecot.source())
    assert (resumed.messages, resumed.duplicates, resumed.problems) == (total - partial,
                                                                         partial, [])
    await _assert_same(store, dovecot.expected)


async def test_migrate_from_dovecot_wrong_password(
    dovecot: Dovecot, store: SqliteStore, account: Account
) -> None:
    with pytest.raises(TransferError, match="cannot log in"):
        await migrate_account(store, USER, dovecot.source("wrong"))
