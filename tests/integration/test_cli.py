"""The `postier` command run as a subprocess, as an admin would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.serving import wait_ready

POSTIER = [sys.executable, "-m", "postier.cli"]


def postier(data: Path, *args: str, stdin: bytes = b"", check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "POSTIER_DATA": str(data)}
    env.pop("POSTIER_CONFIG", None)
    proc = subprocess.run([*POSTIER, *args], input=stdin, capture_output=True, env=env, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"postier {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()}")
    return proc


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_help_explains_every_command(data: Path) -> None:
    out = postier(data, "--help").stdout.decode()
    for command in ("serve", "domain", "user", "alias", "deliver", "config"):
        assert command in out
    assert "--data" in postier(data, "serve", "--help").stdout.decode()
    assert "--password-stdin" in postier(data, "user", "add", "--help").stdout.decode()


def test_domain_user_alias_lifecycle(data: Path) -> None:
    postier(data, "domain", "add", "Example.org")
    assert postier(data, "domain", "list").stdout.decode().split() == ["example.org"]
    postier(data, "user", "add", "bob@example.org", "--password-stdin", stdin=b"s3cret pass\n")
    generated = postier(data, "user", "add", "carol@example.org", "--generate").stdout.decode()
    assert "password: " in generated and len(generated.split("password: ")[1].strip()) >= 16
    postier(data, "user", "quota", "bob@example.org", "10M")
    users = postier(data, "user", "list").stdout.decode()
    assert "bob@example.org" in users and "10.0 MiB" in users and "carol@example.org" in users
    postier(data, "alias", "add", "team@example.org", "bob@example.org", "carol@example.org")
    assert "team@example.org\tbob@example.org, carol@example.org" in postier(data, "alias", "list").stdout.decode()
    postier(data, "alias", "remove", "team@example.org", "carol@example.org")
    assert "carol" not in postier(data, "alias", "list").stdout.decode()
    postier(data, "user", "passwd", "bob@example.org", "--password-stdin", stdin=b"new pass\n")
    # A domain with accounts is not removed; the error says why.
    refused = postier(data, "domain", "remove", "example.org", check=False)
    assert refused.returncode != 0 and b"still has 2 account(s)" in refused.stderr
    postier(data, "user", "remove", "bob@example.org", "--yes")
    postier(data, "user", "remove", "carol@example.org", "--yes")
    postier(data, "domain", "remove", "example.org")
    assert postier(data, "domain", "list").stdout == b""


def test_password_never_only_on_command_line(data: Path) -> None:
    postier(data, "domain", "add", "example.org")
    proc = postier(data, "user", "add", "x@example.org", check=False)  # no tty, no stdin flag
    assert proc.returncode == 64 and b"--password-stdin" in proc.stderr


def test_user_in_unknown_domain_is_a_clear_error(data: Path) -> None:
    proc = postier(data, "user", "add", "x@nowhere.test", "--generate", check=False)
    assert proc.returncode == 1 and b"not hosted here" in proc.stderr


def test_deliver_exit_codes_follow_sysexits(data: Path) -> None:
    postier(data, "domain", "add", "example.org")
    postier(data, "user", "add", "bob@example.org", "--generate")
    msg = b"Subject: piped\nFrom: a@example.net\n\nbody with LF endings\n"
    ok = postier(data, "deliver", "--from", "a@example.net", "bob+x@example.org", stdin=msg)
    assert ok.returncode == 0
    unknown = postier(data, "deliver", "nobody@example.org", stdin=msg, check=False)
    assert unknown.returncode == 67
    postier(data, "user", "quota", "bob@example.org", "100")
    full = postier(data, "deliver", "bob@example.org", stdin=msg, check=False)
    assert full.returncode == 75 and b"over quota" in full.stderr
    empty = postier(data, "deliver", "bob@example.org", stdin=b"", check=False)
    assert empty.returncode == 65
    assert "bob@example.org\t1" in postier(data, "user", "list").stdout.decode()


def test_config_check_reports_key_and_line(tmp_path: Path, data: Path) -> None:
    cfg = tmp_path / "postier.toml"
    cfg.write_text('[smtp]\nmax_recipients = "many"\n\n[imap]\nlisten = ["127.0.0.1:2143"]\nbogus = 1\n')
    proc = postier(data, "config", "check", str(cfg), check=False)
    err = proc.stderr.decode()
    assert proc.returncode == 78
    assert "smtp.max_recipients" in err and ":2:" in err
    assert "imap.bogus" in err and ":6:" in err
    cfg.write_text("[smtp]\nmax_recipients = 50\n")
    assert postier(data, "config", "check", str(cfg)).stdout.decode().endswith("OK\n")


def test_serve_demo_prints_password_once_and_stops_cleanly(tmp_path: Path, data: Path) -> None:
    cfg = tmp_path / "postier.toml"
    cfg.write_text(
        '[smtp]\nlisten = []\nsubmission_listen = []\nsubmissions_listen = []\n'
        '[imap]\nlisten = []\ntls_listen = []\n[pop3]\nlisten = []\ntls_listen = []\n'
    )
    env = {**os.environ, "POSTIER_DATA": str(data)}

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([*POSTIER, "serve", "--demo", "--config", str(cfg)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    proc = start()
    out = wait_ready(proc)
    assert "demo@localhost" in out and "password: " in out
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert b"Traceback" not in stderr and b"postier stopped." in stdout
    # Second run reuses the data: no new password.
    proc = start()
    out = wait_ready(proc)
    assert "password: " not in out and "serving data in" in out
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0 and b"Traceback" not in stderr


def test_domain_add_creates_dkim_keys_and_dns_prints_records(data: Path) -> None:
    postier(data, "domain", "add", "example.org")
    keys = postier(data, "dkim", "list").stdout.decode().splitlines()
    assert len(keys) == 2 and all(k.endswith("\tactive") for k in keys)
    records = postier(data, "dns", "example.org").stdout.decode()
    for needle in ("IN MX 10 ", '"v=spf1 mx -all"', "_domainkey.example.org.", "k=ed25519",
                   "_dmarc.example.org.", "_submissions._tcp.example.org.", "_smtp._tls"):
        assert needle in records
    postier(data, "dkim", "rotate", "example.org")
    states = [line.split("\t")[-1] for line in postier(data, "dkim", "list").stdout.decode().splitlines()]
    assert sorted(states) == ["active", "active", "retired", "retired"]
    assert postier(data, "dns", "nowhere.test", check=False).returncode == 1


def test_dns_check_compares_with_a_loopback_dns_server(tmp_path: Path, data: Path) -> None:
    from tests.integration.dnsstub import loopback_dns

    postier(data, "domain", "add", "example.org")
    cfg = tmp_path / "postier.toml"
    with loopback_dns() as dns:
        cfg.write_text(f'[server]\nhostname = "mail.example.org"\n[dns]\nnameservers = ["{dns.nameserver}"]\n')
        records = postier(data, "--config", str(cfg), "dns", "example.org").stdout.decode()
        missing = postier(data, "--config", str(cfg), "dns", "check", "example.org", check=False)
        assert missing.returncode == 1 and b"MISSING" in missing.stdout
        dns.add("\n".join(line.split("  ;")[0] for line in records.splitlines()
                          if not line.startswith(";")))
        ok = postier(data, "--config", str(cfg), "dns", "check", "example.org")
        assert b"MISSING" not in ok.stdout and b"DIFFERS" not in ok.stdout


def test_backup_verify_restore_export_import(tmp_path: Path, data: Path) -> None:
    postier(data, "domain", "add", "example.org")
    postier(data, "user", "add", "bob@example.org", "--generate")
    for n in range(3):
        postier(data, "deliver", "bob@example.org", stdin=b"Subject: m%d\r\n\r\nbody %d\r\n" % (n, n))
    dest = tmp_path / "backup"
    out = postier(data, "backup", str(dest)).stdout.decode()
    assert "1 accounts, 6 mailboxes, 3 messages" in out
    assert postier(data, "backup", "verify", str(dest)).returncode == 0
    restored = tmp_path / "restored"
    postier(restored, "restore", str(dest))
    assert postier(restored, "user", "list").stdout == postier(data, "user", "list").stdout
    refused = postier(restored, "restore", str(dest), check=False)
    assert refused.returncode != 0  # not into a non-empty folder
    export = tmp_path / "export"
    postier(data, "export", "bob@example.org", str(export), "--format", "mbox")
    postier(restored, "user", "add", "carol@example.org", "--generate")
    first = postier(restored, "import", "carol@example.org", str(export)).stdout.decode()
    assert first.startswith("imported 3 messages")
    again = postier(restored, "import", "carol@example.org", str(export)).stdout.decode()
    assert again.startswith("imported 0 messages") and "3 already present" in again
    users = dict(line.split("\t")[:2] for line in postier(restored, "user", "list").stdout.decode().splitlines())
    assert users["carol@example.org"] == users["bob@example.org"] != "0 B used"


def test_queue_commands_on_an_empty_and_a_full_queue(data: Path) -> None:
    assert postier(data, "queue", "list").stdout == b"the queue is empty\n"
    postier(data, "domain", "add", "example.org")
    postier(data, "alias", "add", "fwd@example.org", "someone@remote.test")
    postier(data, "deliver", "-f", "x@example.net", "fwd@example.org", stdin=b"Subject: fwd\r\n\r\nbody\r\n")
    listing = postier(data, "queue", "list").stdout.decode()
    assert "someone@remote.test (pending)" in listing
    queue_id = listing.split("\t")[0]
    shown = postier(data, "queue", "show", queue_id).stdout.decode()
    assert "sender:       <x@example.net>" in shown and "Subject: fwd" in shown
    assert "1 message(s) due now" in postier(data, "queue", "flush").stdout.decode()
    postier(data, "queue", "delete", queue_id)
    assert postier(data, "queue", "list").stdout == b"the queue is empty\n"


def test_index_status_counts_what_the_index_holds(data: Path) -> None:
    postier(data, "domain", "add", "example.org", "--no-dkim")
    postier(data, "user", "add", "bob@example.org", "--generate")
    postier(data, "deliver", "bob@example.org", stdin=b"Subject: one\r\n\r\nsmall\r\n")
    big = b"Subject: big\r\n\r\n" + b"lorem ipsum dolor sit amet\r\n" * 4000  # > 64 KiB text
    postier(data, "deliver", "bob@example.org", stdin=big)
    out = postier(data, "index", "status").stdout.decode()
    lines = dict(line.split(":", 1) for line in out.splitlines())
    assert lines["bodies"].strip() == "2"
    assert lines["indexed"].strip() == "2 (100 %)"  # `postier deliver` indexed its own mail
    assert lines["waiting"].strip() == "0"
    assert lines["over 64 KiB of text (searched whole past that)"].strip() == "1"
    # The index is derived data: gone, the next store to open starts a new one and marks
    # everything for indexing again (done by the running server, not by this command).
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (data / name).unlink(missing_ok=True)
    out = postier(data, "index", "status").stdout.decode()
    assert "indexed:       0 (0 %)" in out and "waiting:       2 (indexed by the running server)" in out
