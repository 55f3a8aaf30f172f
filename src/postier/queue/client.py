"""A small SMTP client for relaying to other servers, on asyncio streams.

Why our own and not aiosmtplib: relaying needs PIPELINING (RFC 2920) and CHUNKING/BDAT
(RFC 3030), per-recipient replies kept as values (never an exception when some RCPTs
fail), DSN parameters passed through (RFC 3461), and raw bytes sent unchanged — the
client is ~300 lines and keeps all of that in one place.

Implements: RFC 5321 (EHLO with HELO fallback, MAIL/RCPT/DATA, dot-stuffing, reply
parsing, §4.5.3.2 timeouts), RFC 3207 STARTTLS, RFC 2920 PIPELINING, RFC 1870 SIZE,
RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, RFC 3030 CHUNKING, RFC 3461 DSN parameters,
RFC 2034/3463 enhanced status codes in replies.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

from postier.net.guard import check_destination

MAX_REPLY_LINE_BYTES = 4096  # RFC 5321 §4.5.3.1.5 says 512; be lenient with peers
MAX_REPLY_LINES = 200
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")
_LEADING_DOT = re.compile(rb"(?m)^\.")  # after CRLF normalisation, ^ is a line start


class SmtpClientError(Exception):
    """The connection failed or the peer broke the protocol (a 4.4.x situation)."""

    def __init__(self, message: str, status: str = "4.4.2") -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 status code the reply starts with, if any (RFC 2034)."""
        m = _ENHANCED.match(self.lines[0]) if self.lines else None
        if m is None or m.group(1) != str(self.code)[0]:
            return None
        return m.group(0)

    def status(self) -> str:
        """An RFC 3463 status for the reply: its own, or one derived from the code."""
        if self.enhanced:
            return self.enhanced
        return f"{str(self.code)[0]}.0.0"

    def __str__(self) -> str:
        return f"{self.code} " + " ".join(line for line in self.lines if line)


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    notify: str = ""  # passed on as NOTIFY= when the peer offers DSN
    orcpt: str = ""  # "rfc822;addr", passed on as ORCPT= when the peer offers DSN


@dataclass(frozen=True, slots=True)
class Envelope:
    sender: str
    recipients: tuple[Recipient, ...]
    ret: str = ""
    envid: str = ""
    smtputf8: bool = False  # the envelope or headers need RFC 6531
    eight_bit: bool = False  # the body has 8-bit octets: BODY=8BITMIME


@dataclass(slots=True)
class Transaction:
    """Replies of one mail transaction; ``final(i)`` is what happened to recipient i."""

    mail: Reply
    rcpts: list[Reply] = field(default_factory=list)
    data: Reply | None = None

    def final(self, index: int) -> Reply:
        if not self.mail.ok:
            return self.mail
        rcpt = self.rcpts[index]
        if not rcpt.ok or self.data is None:
            return rcpt
        return self.data


def xtext(value: str) -> str:
    """RFC 3461 §4: xtext-encode a DSN parameter value."""
    out = []
    for ch in value:
        if "!" <= ch <= "~" and ch not in "+=":
            out.append(ch)
        else:
            out.extend(f"+{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def canonical(data: bytes) -> bytes:
    """CRLF line ends everywhere and a final CRLF (RFC 5321 §2.3.8, RFC 3030 §3)."""
    if b"\n" in data and _BARE_LF.search(data):
        data = _BARE_LF.sub(b"\r\n", data)
    if b"\r" in data and _BARE_CR.search(data):
        data = _BARE_CR.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2: double a leading dot; append the end-of-data line."""
    return _LEADING_DOT.sub(b"..", data) + b".\r\n"


class SmtpClient:
    """One connection to a remote SMTP server."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer_name: str,
        command_timeout_s: float = 300.0,
        data_timeout_s: float = 600.0,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.peer_name = peer_name
        self.command_timeout_s = command_timeout_s
        self.data_timeout_s = data_timeout_s
        self.extensions: dict[str, str] = {}
        self.tls = False
        self.greeting: Reply | None = None

    @classmethod
    async def connect(
        cls,
        address: str,
        port: int,
        peer_name: str,
        connect_timeout_s: float = 30.0,
        command_timeout_s: float = 300.0,
        data_timeout_s: float = 600.0,
        source_address: str | None = None,
    ) -> SmtpClient:
        try:
            check_destination(address)
            async with asyncio.timeout(connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    address, port, limit=MAX_REPLY_LINE_BYTES * 4,
                    local_addr=(source_address, 0) if source_address else None,
                )
        except (OSError, TimeoutError) as exc:
            raise SmtpClientError(f"cannot connect to {peer_name} [{address}]: {exc or 'timeout'}",
                                  "4.4.1") from exc
        client = cls(reader, writer, peer_name, command_timeout_s, data_timeout_s)
        # RFC 5321 §4.5.3.2.1: initial 220 message, 5 minutes.
        client.greeting = await client.read_reply(command_timeout_s)
        return client

    # wire ------------------------------------------------------------------------------

    async def read_reply(self, timeout_s: float | None = None) -> Reply:
        lines: list[str] = []
        code = 0
        try:
            async with asyncio.timeout(timeout_s or self.command_timeout_s):
                while True:
                    raw = await self.reader.readuntil(b"\n")
                    if len(raw) > MAX_REPLY_LINE_BYTES or len(lines) >= MAX_REPLY_LINES:
                        raise SmtpClientError(f"{self.peer_name}: reply too long", "4.5.0")
                    text = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                    if len(text) < 3 or not text[:3].isdigit() or (len(text) > 3 and text[3] not in " -"):
                        raise SmtpClientError(f"{self.peer_name}: malformed reply {text[:80]!r}", "4.5.0")
                    line_code = int(text[:3])
                    if code and line_code != code:
                        raise SmtpClientError(f"{self.peer_name}: inconsistent reply codes", "4.5.0")
                    code = line_code
                    lines.append(text[4:])
                    if len(text) == 3 or text[3] == " ":
                        return Reply(code, tuple(lines))
        except TimeoutError:
            raise SmtpClientError(f"{self.peer_name}: timeout waiting for a reply", "4.4.2") from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as exc:
            raise SmtpClientError(f"{self.peer_name}: connection lost ({type(exc).__name__})",
                                  "4.4.2") from exc

    async def write(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError as exc:
            raise SmtpClientError(f"{self.peer_name}: connection lost while sending ({exc})",
                                  "4.4.2") from exc

    async def command(self, line: str, timeout_s: float | None = None) -> Reply:
        await self.write(line.encode("utf-8") + b"\r\n")
        return await self.read_reply(timeout_s)

    # session ---------------------------------------------------------------------------

    async def ehlo(self, name: str) -> Reply:
        reply = await self.command(f"EHLO {name}")
        self.extensions = {}
        if reply.code == 250:
            for line in reply.lines[1:]:
                keyword, _, params = line.partition(" ")
                self.extensions[keyword.upper()] = params
            return reply
        if reply.code >= 500:  # RFC 5321 §3.2: fall back to HELO
            return await self.command(f"HELO {name}")
        return reply

    def offers(self, extension: str) -> bool:
        return extension in self.extensions

    @property
    def max_size(self) -> int:
        """RFC 1870: the advertised SIZE limit, 0 when none."""
        value = self.extensions.get("SIZE", "")
        return int(value) if value.isdigit() else 0

    async def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> Reply:
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            return reply
        # RFC 3207 §4.2 / CVE-2011-0411 class: nothing read before TLS may be used after it.
        if self.reader._buffer:  # type: ignore[attr-defined]
            raise SmtpClientError(f"{self.peer_name}: data pipelined after STARTTLS", "4.7.0")
        try:
            async with asyncio.timeout(self.command_timeout_s):
                await self.writer.start_tls(context, server_hostname=server_hostname)
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            raise SmtpClientError(f"{self.peer_name}: TLS handshake failed: {exc}", "4.7.5") from exc
        self.tls = True
        self.extensions = {}
        return reply

    async def quit(self) -> None:
        try:
            await self.write(b"QUIT\r\n")
            await self.read_reply(5.0)
        except SmtpClientError:
            pass
        await self.close()

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5.0)
        except (OSError, TimeoutError, ssl.SSLError):
            pass

    async def rset(self) -> Reply:
        return await self.command("RSET")

    # one message -----------------------------------------------------------------------

    def _mail_line(self, env: Envelope, size: int) -> str:
        params = []
        if self.offers("SIZE"):
            params.append(f"SIZE={size}")
        if env.eight_bit and self.offers("8BITMIME"):
            params.append("BODY=8BITMIME")
        if env.smtputf8 and self.offers("SMTPUTF8"):
            params.append("SMTPUTF8")
        if self.offers("DSN"):
            if env.ret:
                params.append(f"RET={env.ret}")
            if env.envid:
                params.append(f"ENVID={xtext(env.envid)}")
        return f"MAIL FROM:<{env.sender}>" + "".join(" " + p for p in params)

    def _rcpt_line(self, rcpt: Recipient) -> str:
        params = []
        if self.offers("DSN"):
            if rcpt.notify:
                params.append(f"NOTIFY={rcpt.notify.upper()}")
            if rcpt.orcpt:
                kind, _, addr = rcpt.orcpt.partition(";")
                params.append(f"ORCPT={kind};{xtext(addr)}")
        return f"RCPT TO:<{rcpt.address}>" + "".join(" " + p for p in params)

    async def send(self, env: Envelope, data: bytes) -> Transaction:
        """One mail transaction; ``data`` is the message in canonical CRLF form.

        Raises SmtpClientError when the connection fails; the caller does not know then
        whether the message was accepted and must treat its recipients as deferred.
        """
        commands = [self._mail_line(env, len(data))] + [self._rcpt_line(r) for r in env.recipients]
        chunking = self.offers("CHUNKING")
        if self.offers("PIPELINING"):
            # RFC 2920 §3.1: MAIL, RCPTs (and DATA when not chunking) in one write.
            tail = [] if chunking else ["DATA"]
            await self.write("".join(c + "\r\n" for c in commands + tail).encode("utf-8"))
            replies = [await self.read_reply() for _ in commands]
            tx = Transaction(replies[0], replies[1:])
            data_go = None if chunking else await self.read_reply(120.0)
        else:
            tx = Transaction(await self.command(commands[0]))
            if not tx.mail.ok:
                return tx
            for line in commands[1:]:
                tx.rcpts.append(await self.command(line))
            data_go = None
            if not chunking and any(r.ok for r in tx.rcpts):
                data_go = await self.command("DATA", 120.0)  # §4.5.3.2.3: 2 minutes
        accepted = tx.mail.ok and any(r.ok for r in tx.rcpts)
        if chunking:
            if accepted:
                # RFC 3030 §2: one BDAT LAST chunk; no dot-stuffing.
                await self.write(f"BDAT {len(data)} LAST\r\n".encode() + data)
                tx.data = await self.read_reply(self.data_timeout_s)
            elif tx.mail.ok:
                await self.rset()
            return tx
        if data_go is None:
            if tx.mail.ok and not accepted:
                await self.rset()
            return tx
        if data_go.code != 354:
            tx.data = data_go
            return tx
        if not accepted:
            # RFC 2920 §3.1: 354 with no accepted recipient: send only the end of data.
            await self.write(b".\r\n")
            await self.read_reply(self.data_timeout_s)
            return tx
        await self.write(dot_stuff(data))
        tx.data = await self.read_reply(self.data_timeout_s)  # §4.5.3.2.6: 10 minutes
        return tx


def envelope_needs_smtputf8(sender: str, recipients: Sequence[str]) -> bool:
    """RFC 6531 §3.2: a non-ASCII envelope address cannot be sent without SMTPUTF8."""
    return not sender.isascii() or not all(r.isascii() for r in recipients)


def headers_need_smtputf8(data: bytes) -> bool:
    """UTF-8 in the header section (RFC 6532): ask for SMTPUTF8 when the peer offers it."""
    header_end = data.find(b"\r\n\r\n")
    return not (data if header_end < 0 else data[:header_end]).isascii()
