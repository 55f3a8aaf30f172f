"""The whole server as `postier serve` builds it: every service wired to one store."""

from __future__ import annotations

import asyncio
import poplib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from postier.app import App
from postier.config import parse_config_text
from tests.conftest import TEST_PASSWORD, cheap_hash
from tests.integration.dnsstub import LoopbackDns, loopback_dns

CONFIG = """
[server]
hostname = "mail.example.org"
[dns]
nameservers = ["{nameserver}"]
[smtp]
listen = ["127.0.0.1:0"]
submission_listen = ["127.0.0.1:0"]
submissions_listen = ["127.0.0.1:0"]
[imap]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
[pop3]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
"""


def port_of(app: App, label: str) -> int:
    for line in app.listening:
        if line.startswith(label):
            m = re.search(r":(\d+)", line)
            assert m
            return int(m.group(1))
    raise AssertionError(f"{label} not in {app.listening}")


@pytest.fixture
def dns() -> Iterator[LoopbackDns]:
    with loopback_dns() as server:
        yield server


@pytest.fixture
async def app(tmp_path: Path, dns: LoopbackDns) -> AsyncIterator[App]:
    a = App(parse_config_text(CONFIG.replace("{nameserver}", dns.nameserver)), tmp_path / "data")
    await a.start()
    assert a.store is not None
    await a.store.add_domain("example.org")
    await a.store.create_account("alice@example.org", cheap_hash(TEST_PASSWORD), None)
    try:
        yield a
    finally:
        await a.stop()


async def test_every_service_reports_where_it_listens(app: App) -> None:
    text = "\n".join(app.listening)
    for label in ("SMTP", "Submission", "IMAP", "POP3"):
        assert label in text
    assert (app.data_dir / "tls").exists()  # a self-signed certificate was made


async def test_delivered_mail_is_read_over_pop3(app: App) -> None:
    assert app.delivery is not None
    raw = b"From: bob@example.net\r\nSubject: wired\r\n\r\nhello over pop3\r\n"
    (result,) = await app.delivery.deliver(raw, "bob@example.net", ["alice@example.org"])
    assert result.ok
    port = port_of(app, "POP3")

    def fetch() -> list[bytes]:
        pop = poplib.POP3("127.0.0.1", port, timeout=10)
        pop.user("alice@example.org")
        pop.pass_(TEST_PASSWORD)
        count, _ = pop.stat()
        lines = pop.retr(1)[1] if count else []
        pop.quit()
        return lines

    lines = await asyncio.to_thread(fetch)
    assert b"hello over pop3" in lines and b"Delivered-To: alice@example.org" in lines


async def test_mail_received_over_smtp_and_submission_is_read_over_pop3(app: App) -> None:
    import smtplib

    mta, submission = port_of(app, "SMTP"), port_of(app, "Submission")
    assert "Submission" in "\n".join(app.listening) and "(implicit TLS)" in "\n".join(app.listening)
    inbound = b"From: bob@example.net\r\nTo: alice@example.org\r\nSubject: inbound\r\n\r\nfrom afar\r\n"

    def send() -> None:
        with smtplib.SMTP("127.0.0.1", mta, timeout=10) as s:
            s.sendmail("bob@example.net", ["alice@example.org"], inbound)
            s.docmd("MAIL FROM:<bob@example.net>")
            code, _ = s.docmd("RCPT TO:<someone@elsewhere.test>")
            assert code in (550, 554)  # never an open relay
        with smtplib.SMTP("127.0.0.1", submission, timeout=10) as s:
            s.login("alice@example.org", TEST_PASSWORD)
            s.sendmail("alice@example.org", ["alice+notes@example.org"],
                       b"From: alice@example.org\r\nSubject: note to self\r\n\r\nremember\r\n")

    await asyncio.to_thread(send)
    port = port_of(app, "POP3")

    def fetch() -> list[bytes]:
        pop = poplib.POP3("127.0.0.1", port, timeout=10)
        pop.user("alice@example.org")
        pop.pass_(TEST_PASSWORD)
        count, _ = pop.stat()
        messages = [b"\r\n".join(pop.retr(i + 1)[1]) for i in range(count)]
        pop.quit()
        return messages

    first, second = await asyncio.to_thread(fetch)
    assert first.endswith(inbound.rstrip(b"\r\n")) and b"Received: " in first
    assert b"Subject: note to self" in second and b"Message-ID: " in second


async def test_imap_sees_delivered_mail(app: App) -> None:
    import imaplib

    assert app.delivery is not None
    raw = b"From: bob@example.net\r\nSubject: over imap\r\n\r\nhello imap\r\n"
    await app.delivery.deliver(raw, "bob@example.net", ["alice@example.org"])
    port = port_of(app, "IMAP")

    def fetch() -> bytes:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        imap.login("alice@example.org", TEST_PASSWORD)
        imap.select("INBOX")
        _, data = imap.fetch("1", "(BODY.PEEK[])")
        imap.logout()
        item = data[0]
        assert isinstance(item, tuple)
        return item[1]

    body = await asyncio.to_thread(fetch)
    assert body.endswith(raw) and body.startswith(b"Return-Path: <bob@example.net>")


async def test_delivery_by_another_process_wakes_imap_idle(app: App) -> None:
    """`postier deliver` (an MTA's LDA) in its own process: IDLE hears it within a second."""
    import os
    import socket
    import subprocess
    import sys
    import time

    port = port_of(app, "IMAP")

    def idle_until_exists() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            f = sock.makefile("rb")
            f.readline()
            sock.sendall(f'a LOGIN alice@example.org "{TEST_PASSWORD}"\r\n'.encode())
            while not f.readline().startswith(b"a OK"):
                pass
            sock.sendall(b"b SELECT INBOX\r\n")
            while not f.readline().startswith(b"b OK"):
                pass
            sock.sendall(b"c IDLE\r\n")
            assert f.readline().startswith(b"+")
            proc = subprocess.run(
                [sys.executable, "-m", "postier.cli", "deliver", "alice@example.org"],
                input=b"Subject: from an LDA\r\n\r\nhi\r\n", capture_output=True, timeout=60,
                env={**os.environ, "POSTIER_DATA": str(app.data_dir)},
            )
            assert proc.returncode == 0, proc.stderr
            delivered = time.monotonic()
            line = f.readline()
            assert time.monotonic() - delivered < 1.0
            sock.sendall(b"DONE\r\n")
            return line

    line = await asyncio.to_thread(idle_until_exists)
    assert line == b"* 1 EXISTS\r\n"


async def test_accounts_changed_by_the_cli_are_seen_by_the_running_server(app: App) -> None:
    """Recipient resolution is cached in the server; `postier user add` in another process
    is seen at the very next RCPT (a refusal is always checked again), `user remove`
    within the cache's RECHECK_S (then 550 5.1.1)."""
    import os
    import smtplib
    import subprocess
    import sys
    import time

    from postier.delivery import RECHECK_S

    mta = port_of(app, "SMTP")
    env = {**os.environ, "POSTIER_DATA": str(app.data_dir)}

    def cli(*args: str) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "postier.cli", *args], input=b"", capture_output=True,
            timeout=60, env=env,
        )
        assert proc.returncode == 0, proc.stderr

    def rcpt(address: str) -> int:
        with smtplib.SMTP("127.0.0.1", mta, timeout=10) as s:
            s.ehlo("client.example.net")
            s.mail("bob@example.net")
            code, _ = s.rcpt(address)
            return code

    def scenario() -> None:
        assert rcpt("carol@example.org") == 550  # unknown: refused, and now cached
        cli("user", "add", "carol@example.org", "--generate")
        assert rcpt("carol@example.org") == 250  # seen at once
        cli("user", "remove", "carol@example.org", "--yes")
        time.sleep(RECHECK_S + 0.2)
        assert rcpt("carol@example.org") == 550

    await asyncio.to_thread(scenario)
