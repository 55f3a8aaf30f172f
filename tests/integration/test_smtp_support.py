"""Shared helpers of the SMTP integration tests and bench/smtp.py: a server on 127.0.0.1
port 0 for each mode, TLS from a trustme CA, and raw-socket helpers."""

from __future__ import annotations

import re
import socket
import ssl
from dataclasses import dataclass, replace
from pathlib import Path

import trustme

from postier.auth.authenticator import AccountCredentials, Authenticator, AuthSettings
from postier.auth.limiter import LimiterSettings
from postier.auth.passwords import CHEAP_ARGON2
from postier.delivery import Delivery
from postier.smtp.server import Mode, SmtpServer, SmtpSettings
from postier.store.interface import Store

HOST = "127.0.0.1"


class StoreCredentials:
    """auth.CredentialSource over the store (app.py owns the real one)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get_credentials(self, login: str) -> AccountCredentials | None:
        account = await self.store.get_account(login)
        if account is None:
            return None
        return AccountCredentials(
            account.id, account.address, account.password_hash, account.scram, account.enabled
        )


def authenticator(store: Store) -> Authenticator:
    limiter = LimiterSettings(free_failures=3, base_delay_s=0.0, max_delay_s=0.0)
    return Authenticator(StoreCredentials(store), AuthSettings(limiter=limiter, argon2=CHEAP_ARGON2))


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


def make_tls() -> Tls:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", HOST)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    client.check_hostname = False
    return Tls(server, client)


@dataclass
class Running:
    server: SmtpServer
    mta: int
    submission: int
    submissions: int
    lmtp: int
    lmtp_path: str
    tls: Tls


async def start(
    store: Store, delivery: Delivery, tmp_path: Path, tls: Tls, **settings: object
) -> Running:
    base = SmtpSettings(hostname="mx.example.org", command_timeout_s=10, data_timeout_s=10)
    server = SmtpServer(
        replace(base, **settings),  # type: ignore[arg-type]
        store,
        delivery,
        authenticator(store),
        tls.server,
    )
    _, mta = await server.listen(Mode.MTA, HOST, 0)
    _, sub = await server.listen(Mode.SUBMISSION, HOST, 0)
    _, subs = await server.listen(Mode.SUBMISSION, HOST, 0, implicit_tls=True)
    _, lmtp = await server.listen(Mode.LMTP, HOST, 0)
    path = str(tmp_path / "lmtp.sock")
    await server.listen_unix(Mode.LMTP, path)
    return Running(server, mta, sub, subs, lmtp, path, tls)


class Raw:
    """A blocking raw-socket SMTP client for byte-exact tests (run it in a thread)."""

    def __init__(self, port: int, timeout_s: float = 10.0) -> None:
        self.sock: socket.socket | ssl.SSLSocket = socket.create_connection((HOST, port), timeout_s)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """One whole (possibly multi-line) reply; b"" at end of stream."""
        lines: list[bytes] = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return b"".join(lines)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line + b"\r\n")
            if len(line) < 4 or line[3:4] == b" ":
                return b"".join(lines)

    def replies(self, n: int) -> list[bytes]:
        return [self.reply() for _ in range(n)]

    def code(self) -> str:
        r = self.reply()
        last = r.split(b"\r\n")[-2] if r else b""
        parts = last.decode().split(" ")
        enhanced = len(parts) > 1 and re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", parts[1])
        return " ".join(parts[:2]) if enhanced else parts[0]

    def codes(self, n: int) -> list[str]:
        return [self.code() for _ in range(n)]

    def starttls(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except (ConnectionError, OSError):
            return True

    def close(self) -> None:
        self.sock.close()
