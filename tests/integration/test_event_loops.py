"""`postier serve` on each event loop ([server] event_loop): uvloop and asyncio.

Each run starts the server as a subprocess and exercises every kind of listener the loop
has to handle: SMTP with STARTTLS (loop.start_tls), submission over implicit TLS, LMTP on
a Unix socket, IMAP with STARTTLS and over implicit TLS, POP3 with STLS and over implicit
TLS; then SIGTERM must stop it cleanly.
"""

from __future__ import annotations

import imaplib
import os
import poplib
import signal
import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from postier import compiled
from tests.conftest import TEST_PASSWORD
from tests.integration.serving import READY, free_ports, make_data, wait_ready

try:
    import uvloop  # noqa: F401

    HAVE_UVLOOP = True
except ImportError:
    HAVE_UVLOOP = False

needs_uvloop = pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's generated self-signed certificate
    return ctx


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    ports: dict[str, int]
    lmtp: Path
    stdout: str
    stderr_path: Path

    def stop(self) -> str:
        """SIGTERM, wait, and return everything the server logged."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.stderr_path.read_text()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    started: list[Served] = []

    def start(event_loop: str) -> Served:
        data = tmp_path / f"data-{event_loop}"
        make_data(data)
        names = ("smtp", "submissions", "imap", "imaps", "pop3", "pop3s")
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        lmtp = tmp_path / f"lmtp-{event_loop}.sock"
        config = tmp_path / f"postier-{event_loop}.toml"
        config.write_text(f"""
[server]
hostname = "mx.example.org"
event_loop = "{event_loop}"
[smtp]
listen = ["127.0.0.1:{ports['smtp']}"]
submission_listen = []
submissions_listen = ["127.0.0.1:{ports['submissions']}"]
lmtp_listen = ["unix:{lmtp}"]
check_spf = false
check_dkim = false
check_dmarc = false
check_arc = false
[imap]
listen = ["127.0.0.1:{ports['imap']}"]
tls_listen = ["127.0.0.1:{ports['imaps']}"]
[pop3]
listen = ["127.0.0.1:{ports['pop3']}"]
tls_listen = ["127.0.0.1:{ports['pop3s']}"]
[queue]
enabled = false
""")
        stderr_path = tmp_path / f"stderr-{event_loop}.log"
        with stderr_path.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "postier.cli", "serve", "--config", str(config),
                 "--data", str(data)],
                stdout=subprocess.PIPE, stderr=stderr,
            )
        out = wait_ready(proc)
        served = Served(proc, ports, lmtp, out, stderr_path)
        started.append(served)
        assert READY in out, served.stop()
        return served

    yield start
    for served in started:
        served.stop()


def loop_line(log: str) -> str:
    lines = [line for line in log.splitlines() if " event loop: " in line]
    assert len(lines) == 1, log
    return lines[0].split(" event loop: ", 1)[1]


def round_trip(served: Served) -> None:
    ports, tls = served.ports, client_tls()
    message = b"From: bob@example.net\r\nSubject: %s\r\n\r\n" + b"body line\r\n" * 2000
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as s:
        s.starttls(context=tls)
        s.sendmail("bob@example.net", ["alice@example.org"], message % b"smtp")
    with smtplib.SMTP_SSL("127.0.0.1", ports["submissions"], timeout=10, context=tls) as s:
        s.login("alice@example.org", TEST_PASSWORD)
        s.sendmail("alice@example.org", ["alice@example.org"],
                   b"From: alice@example.org\r\nSubject: submissions\r\n\r\nbody\r\n")
    with smtplib.LMTP(str(served.lmtp), timeout=10) as s:
        s.sendmail("bob@example.net", ["alice@example.org"], message % b"lmtp")

    imap = imaplib.IMAP4("127.0.0.1", ports["imap"], timeout=10)
    imap.starttls(tls)
    imap.login("alice@example.org", TEST_PASSWORD)
    typ, count = imap.select("INBOX")
    assert (typ, count) == ("OK", [b"3"])
    typ, fetched = imap.fetch("1:3", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = sorted(bytes(part[1]).strip() for part in fetched if isinstance(part, tuple))
    assert subjects == [b"Subject: lmtp", b"Subject: smtp", b"Subject: submissions"]
    typ, body = imap.fetch("1", "(BODY.PEEK[TEXT])")
    assert isinstance(body[0], tuple) and body[0][1] == b"body line\r\n" * 2000
    imap.logout()
    imaps = imaplib.IMAP4_SSL("127.0.0.1", ports["imaps"], ssl_context=tls, timeout=10)
    imaps.login("alice@example.org", TEST_PASSWORD)
    assert imaps.select("INBOX", readonly=True) == ("OK", [b"3"])
    imaps.logout()

    pops = poplib.POP3_SSL("127.0.0.1", ports["pop3s"], context=tls, timeout=10)
    pops.user("alice@example.org")
    pops.pass_(TEST_PASSWORD)
    assert pops.stat()[0] == 3
    pops.quit()
    pop = poplib.POP3("127.0.0.1", ports["pop3"], timeout=10)
    pop.stls(tls)
    pop.user("alice@example.org")
    pop.pass_(TEST_PASSWORD)
    _, lines, _ = pop.retr(1)
    assert b"body line" in lines
    pop.quit()


@pytest.mark.parametrize(
    "event_loop",
    [pytest.param("uvloop", marks=needs_uvloop), "asyncio"],
)
def test_round_trip_on_each_event_loop(serve, event_loop: str) -> None:  # type: ignore[no-untyped-def]
    served = serve(event_loop)
    round_trip(served)
    log = served.stop()
    assert served.proc.returncode == 0, log
    expected = "uvloop " if event_loop == "uvloop" else "asyncio (_UnixSelectorEventLoop"
    assert loop_line(log).startswith(expected)
    # the whole round trip above ran through the compiled parser and SMTP core
    assert loop_line(log).endswith(
        f"; parser and SMTP core: compiled (mypyc): {len(compiled.MODULES)} modules"
        "; text scans: C")
    assert "Traceback" not in log and " ERROR " not in log, log
    assert not served.lmtp.exists()  # the Unix socket is removed on stop


def test_auto_prefers_uvloop(serve) -> None:  # type: ignore[no-untyped-def]
    served = serve("auto")
    with smtplib.SMTP("127.0.0.1", served.ports["smtp"], timeout=10) as s:
        assert s.noop()[0] == 250
    log = served.stop()
    assert served.proc.returncode == 0, log
    assert loop_line(log).startswith("uvloop " if HAVE_UVLOOP else "asyncio ")


def test_uvloop_asked_for_but_missing_is_a_clear_error(tmp_path: Path) -> None:
    # A stub that fails to import stands in for a machine without uvloop.
    stub = tmp_path / "stub"
    (stub / "uvloop").mkdir(parents=True)
    (stub / "uvloop" / "__init__.py").write_text("raise ImportError('uvloop: not here')\n")
    config = tmp_path / "postier.toml"
    config.write_text('[server]\nevent_loop = "uvloop"\n[smtp]\nlisten = []\n'
                      'submission_listen = []\nsubmissions_listen = []\n'
                      '[imap]\nlisten = []\ntls_listen = []\n[pop3]\nlisten = []\ntls_listen = []\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stub), *sys.path])}
    proc = subprocess.run(
        [sys.executable, "-m", "postier.cli", "serve", "--config", str(config),
         "--data", str(tmp_path / "data")],
        capture_output=True, env=env, timeout=60,
    )
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert "uvloop: not here" in err and "pip install uvloop" in err
    assert "Traceback" not in err
