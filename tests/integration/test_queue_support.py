"""Helpers of the queue integration tests: remote MX servers on 127.0.0.2, .3 … (Linux
routes all of 127/8 to lo), the same port on each, and a fake resolver pointing at them.
Nothing leaves 127.0.0.0/8."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from postier.mailauth.dns import FakeResolver


def free_port(hosts: list[str]) -> int:
    """A port free on every one of ``hosts``."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = int(s.getsockname()[1])
        ok = True
        for h in hosts:
            with socket.socket() as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise RuntimeError("no common free port")


@dataclass
class Received:
    sender: str
    rcpts: list[str]
    data: bytes


@dataclass
class Recorder:
    """aiosmtpd handler: records messages; rejects or temp-fails on demand."""

    reject: set[str] = field(default_factory=set)
    tempfail: bool = False
    messages: list[Received] = field(default_factory=list)

    async def handle_RCPT(self, server: SMTP, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.tempfail:
            return "451 4.3.0 try again later"
        if address in self.reject:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      bytes(envelope.original_content)))
        return "250 2.0.0 queued"


def start_aiosmtpd(host: str, port: int, handler: Recorder) -> Controller:
    c = Controller(handler, hostname=host, port=port, enable_SMTPUTF8=True,
                   ready_timeout=5.0)
    c.start()
    return c


class RawMx:
    """A hand-written remote MX with PIPELINING and CHUNKING; ``drop_in_data`` closes
    the connection after part of the message (the next connections then succeed)."""

    def __init__(self, host: str, port: int, drop_in_data: int = 0,
                 extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME", "SIZE 100000000",
                                                "CHUNKING", "SMTPUTF8")) -> None:
        self.host, self.port = host, port
        self.drop_in_data = drop_in_data
        self.extensions = extensions
        self.messages: list[Received] = []
        self.transcripts: list[list[bytes]] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._session, self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _session(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        lines: list[bytes] = []
        self.transcripts.append(lines)
        try:
            w.write(b"220 raw.test ESMTP\r\n")
            sender, rcpts = "", list[str]()
            while True:
                line = await r.readline()
                if not line:
                    return
                lines.append(line)
                verb = line[:4].upper()
                if verb == b"EHLO":
                    ext = ["raw.test", *self.extensions]
                    w.write(b"".join(
                        f"250{'-' if i < len(ext) - 1 else ' '}{e}\r\n".encode()
                        for i, e in enumerate(ext)))
                elif verb == b"MAIL":
                    sender = line.split(b"<", 1)[1].split(b">", 1)[0].decode()
                    rcpts = []
                    w.write(b"250 2.1.0 ok\r\n")
                elif verb == b"RCPT":
                    rcpts.append(line.split(b"<", 1)[1].split(b">", 1)[0].decode())
                    w.write(b"250 2.1.5 ok\r\n")
                elif verb == b"DATA":
                    w.write(b"354 go\r\n")
                    await w.drain()
                    if self.drop_in_data:
                        await r.readexactly(self.drop_in_data)
                        self.drop_in_data = 0
                        return  # connection dropped mid-DATA: nothing stored
                    buf = b""
                    while not buf.endswith(b"\r\n.\r\n"):
                        buf += await r.readline()
                    body = buf[:-3].replace(b"\r\n..", b"\r\n.")
                    if body.startswith(b".."):
                        body = body[1:]
                    self.messages.append(Received(sender, rcpts, body))
                    w.write(b"250 2.0.0 stored\r\n")
                elif verb == b"BDAT":
                    size = int(line.split()[1])
                    if self.drop_in_data:
                        await r.readexactly(min(size, self.drop_in_data))
                        self.drop_in_data = 0
                        return
                    body = await r.readexactly(size)
                    self.messages.append(Received(sender, rcpts, body))
                    w.write(b"250 2.0.0 stored\r\n")
                elif verb == b"QUIT":
                    w.write(b"221 bye\r\n")
                    await w.drain()
                    return
                elif verb == b"RSET":
                    w.write(b"250 ok\r\n")
                else:
                    w.write(b"502 5.5.1 unknown\r\n")
                await w.drain()
        finally:
            w.close()


def resolver(zones: dict[str, str], extra: Callable[[FakeResolver], None] | None = None
             ) -> FakeResolver:
    """Each domain gets "MX 10 mx.<domain>" and mx.<domain> the given address."""
    r = FakeResolver()
    for domain, address in zones.items():
        r.add(domain, "MX", (10, f"mx.{domain}"))
        r.add(f"mx.{domain}", "A", address)
    if extra is not None:
        extra(r)
    return r
