"""Two postier servers on loopback talking SMTP to each other through a loopback DNS.

example.org (127.0.0.1) submits mail for remote.test (its MX at 127.0.0.2): the message
leaves through the outbound queue DKIM-signed, arrives with spf=pass dkim=pass dmarc=pass,
a refused recipient comes back as a DSN, and a forgery of example.org is refused by DMARC.
Nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from postier.app import App
from postier.config import parse_config_text
from postier.dnsrecords import required_records
from postier.mailauth.dkim import generate_key
from postier.store.types import DkimKeyRecord
from tests.conftest import TEST_PASSWORD, cheap_hash
from tests.integration.dnsstub import LoopbackDns, loopback_dns

SENDER_CONFIG = """
[server]
hostname = "mail.example.org"
[smtp]
listen = []
submission_listen = ["127.0.0.1:0"]
submissions_listen = []
[imap]
listen = []
tls_listen = []
[pop3]
listen = []
tls_listen = []
[dns]
nameservers = ["{ns}"]
[queue]
remote_port = {port}
"""

RECEIVER_CONFIG = """
[server]
hostname = "mx.remote.test"
[smtp]
listen = ["127.0.0.2:0"]
submission_listen = []
submissions_listen = []
[imap]
listen = []
tls_listen = []
[pop3]
listen = []
tls_listen = []
[dns]
nameservers = ["{ns}"]
[queue]
enabled = false
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
    with loopback_dns(
        "remote.test. 60 IN MX 10 mx.remote.test.\n"
        "mx.remote.test. 60 IN A 127.0.0.2\n"
        'example.org. 60 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"\n'
        'remote.test. 60 IN TXT "v=spf1 ip4:127.0.0.2 -all"\n'
    ) as server:
        yield server


@pytest.fixture
async def servers(tmp_path: Path, dns: LoopbackDns) -> AsyncIterator[tuple[App, App]]:
    receiver = App(parse_config_text(RECEIVER_CONFIG.replace("{ns}", dns.nameserver)), tmp_path / "b")
    await receiver.start()
    assert receiver.store is not None
    await receiver.store.add_domain("remote.test")
    await receiver.store.create_account("bob@remote.test", cheap_hash(TEST_PASSWORD), None)
    config = SENDER_CONFIG.replace("{ns}", dns.nameserver).replace(
        "{port}", str(port_of(receiver, "SMTP"))
    )
    sender = App(parse_config_text(config), tmp_path / "a")
    await sender.start()
    store = sender.store
    assert store is not None
    await store.add_domain("example.org")
    await store.create_account("alice@example.org", cheap_hash(TEST_PASSWORD), None)
    for algorithm, selector in (("rsa-sha256", "s1r"), ("ed25519-sha256", "s1e")):
        key = generate_key("example.org", selector, algorithm)  # type: ignore[arg-type]
        await store.add_dkim_key(DkimKeyRecord("example.org", selector, algorithm,
                                               key.private_key_pem.decode(), 0, True))
    keys = await store.list_dkim_keys("example.org", active_only=True)
    for record in required_records("example.org", "mail.example.org", keys):
        if "_domainkey" in record.name:
            dns.add(record.zone_line())
    dns.add('_dmarc.example.org. 60 IN TXT "v=DMARC1; p=reject"')
    try:
        yield sender, receiver
    finally:
        await sender.stop()
        await receiver.stop()


async def inbox(app: App, address: str, mailbox: str = "INBOX") -> list[bytes]:
    assert app.store is not None
    account = await app.store.get_account(address)
    assert account is not None
    box = await app.store.get_mailbox(account.id, mailbox)
    assert box is not None
    out = []
    for info in await app.store.list_messages(box.id):
        raw = await app.store.read_message(box.id, info.uid)
        assert raw is not None
        out.append(raw)
    return out


async def wait_for(predicate, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)


async def test_signed_mail_crosses_and_refused_recipient_bounces(servers: tuple[App, App]) -> None:
    sender, receiver = servers
    submission = port_of(sender, "Submission")
    message = (b"From: Alice <alice@example.org>\r\nTo: bob@remote.test, nobody@remote.test\r\n"
               b"Subject: across the loopback\r\n\r\nHello Bob.\r\n")

    def submit() -> None:
        with smtplib.SMTP("127.0.0.1", submission, timeout=10) as s:
            s.login("alice@example.org", TEST_PASSWORD)
            s.sendmail("alice@example.org", ["bob@remote.test", "nobody@remote.test"], message)

    await asyncio.to_thread(submit)

    async def arrived() -> bool:
        return bool(await inbox(receiver, "bob@remote.test"))

    await wait_for(arrived)
    (received,) = await inbox(receiver, "bob@remote.test")
    assert received.endswith(b"Subject: across the loopback\r\n\r\nHello Bob.\r\n")
    head = received.split(b"\r\n\r\n", 1)[0].decode()
    assert "DKIM-Signature:" in head
    results = re.search(r"Authentication-Results: mx\.remote\.test;(.*?)\r\n(?! )(?!\t)", head, re.S)
    assert results, head
    text = " ".join(results.group(1).split())
    assert "spf=pass" in text and "dkim=pass" in text and "dmarc=pass" in text

    async def bounced() -> bool:
        return any(b"multipart/report" in m for m in await inbox(sender, "alice@example.org"))

    await wait_for(bounced)
    dsn = next(m for m in await inbox(sender, "alice@example.org") if b"multipart/report" in m)
    assert b"nobody@remote.test" in dsn and b"Action: failed" in dsn
    assert b"bob@remote.test" not in dsn.split(b"Content-Type: message/", 1)[0].split(b"Final-Recipient", 1)[-1]
    assert sender.store is not None
    await wait_for(lambda: _queue_empty(sender))


async def _queue_empty(app: App) -> bool:
    assert app.store is not None
    return not await app.store.list_queue()


async def test_forgery_of_a_dmarc_reject_domain_is_refused(servers: tuple[App, App]) -> None:
    _sender, receiver = servers
    port = port_of(receiver, "SMTP")
    forged = b"From: alice@example.org\r\nTo: bob@remote.test\r\nSubject: pay me\r\n\r\nforged\r\n"

    def send() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.2", port, timeout=10) as s:
            s.ehlo("attacker.test")
            s.mail("spoof@elsewhere.test")
            s.rcpt("bob@remote.test")
            return s.data(forged)

    code, text = await asyncio.to_thread(send)
    assert code == 550 and b"DMARC" in text
    assert await inbox(receiver, "bob@remote.test") == []
