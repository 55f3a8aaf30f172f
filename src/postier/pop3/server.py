"""POP3 server: the asyncio adapter around :mod:`postier.pop3.core`.

Reads bytes, feeds the core, answers its events with the store and the Authenticator,
writes what the core returns.  Listeners:

* ``listen`` — port-110 style, clear text with STLS (RFC 2595 §4) when a TLS context is
  given; passwords are refused before TLS (RFC 2595 §2.3) except from a loopback peer
  when ``allow_plaintext_auth_on_loopback`` is set.
* ``tls_listen`` — port-995 style, implicit TLS (RFC 8314 §3.3).

The maildrop (RFC 1939 §8) is the account's INBOX, snapshotted at login.  UIDL values come
from (UIDVALIDITY, UID) so they survive sessions, restarts and backup/restore.  DELE only
marks; QUIT in TRANSACTION (RFC 1939 §6) removes the marked messages, durably, before the
+OK, according to ``delete_mode``: ``expunge`` (default), ``trash`` (move to the Trash
mailbox) or ``keep`` (leave everything, whatever the client says).  A dropped connection
or an idle timeout (RFC 1939 §3: no UPDATE, no reply) removes nothing.

One POP3 session per maildrop at a time (RFC 1939 §8 exclusive-access lock; RFC 2449 §8.1.2
``[IN-USE]``): an in-process lock per account, so per node.  IMAP may work on the same INBOX
meanwhile; a message it expunged since the snapshot gets ``-ERR`` on RETR/TOP.

Retention (RFC 2449 §6.7 EXPIRE): with ``retention_days > 0``, messages delivered more than
that many days ago are removed *at login*, before the snapshot (with ``delete_mode``'s
action; ``keep`` expunges, because the admin asked for retention), and CAPA advertises
``EXPIRE <days>``.  Without retention CAPA says ``EXPIRE NEVER``.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from postier.auth.authenticator import Authenticator, Failed, Ok, Refused
from postier.auth.sasl import Cancelled, Malformed
from postier.log import ConnectionLogger, format_peer, get_logger
from postier.net.addresses import ListenAddress, is_loopback
from postier.net.closing import close_handler_writer
from postier.net.listeners import Listeners
from postier.net.tls import describe_tls
from postier.pop3.core import (
    ConnectionClosed,
    LoginFailure,
    Maildrop,
    MaildropMessage,
    NeedData,
    PasswordLogin,
    Pop3Connection,
    Quit,
    Retrieve,
    SaslResponse,
    SaslStart,
    StartTls,
)
from postier.store.interface import Store
from postier.store.types import AccountId, Mailbox, MessageInfo, Uid

DeleteMode = Literal["expunge", "trash", "keep"]
READ_BYTES = 64 * 1024
DAY_S = 86_400
TRASH_SPECIAL_USE = "\\Trash"  # RFC 6154 §2
DELETED_FLAG = "\\Deleted"

log = get_logger("pop3")


@dataclass(frozen=True, slots=True)
class Pop3Settings:
    """What the POP3 server needs; app.py fills it from ``config.pop3``."""

    listen: tuple[ListenAddress, ...] = ()
    tls_listen: tuple[ListenAddress, ...] = ()
    delete_mode: DeleteMode = "expunge"
    retention_days: int = 0  # 0: never
    # RFC 1939 §3: an autologout timer MUST be of at least 10 minutes.
    idle_timeout_s: float = 600.0
    allow_plaintext_auth_on_loopback: bool = True
    sasl_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    tls_handshake_timeout_s: float = 30.0
    trash_name: str = "Trash"  # created with \Trash when the account has no \Trash mailbox
    reuse_port: bool = False  # several worker processes share the listening ports
    # Maildrop locks shared by every process on the data folder (flock files); None: in
    # this process only.
    lock_dir: Path | None = None


class _IdleTimeout(Exception):
    pass


class Pop3Server:
    """Listeners and sessions.  ``await start()`` binds; ``await stop()`` closes everything.

    ``tls_context`` (from :func:`postier.net.tls.server_context`) enables STLS on ``listen``
    and is required for ``tls_listen``."""

    def __init__(
        self,
        store: Store,
        authenticator: Authenticator,
        settings: Pop3Settings,
        tls_context: ssl.SSLContext | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.tls_listen and tls_context is None:
            raise ValueError("pop3: tls_listen needs a TLS context")
        self.store = store
        self.authenticator = authenticator
        self.settings = settings
        self.tls_context = tls_context
        self.clock = clock
        self._listeners = Listeners("postier.pop3")
        self._sessions: set[asyncio.Task[None]] = set()
        self._locks: dict[AccountId, str] = {}  # account → connection id holding the maildrop
        self._lock_files: dict[AccountId, int] = {}  # account → fd holding its flock
        self._stopping = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        try:
            await self._listeners.start(
                self._handle, self.settings.listen, self.settings.tls_listen, self.tls_context,
                reuse_port=self.settings.reuse_port,
            )
        except BaseException:
            await self.stop()
            raise

    @property
    def bound(self) -> list[tuple[str, int, bool]]:
        """``(host, port, implicit_tls)`` of every TCP socket (ports chosen by the OS too)."""
        return self._listeners.bound

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop listening, end every session (nothing is deleted for unfinished ones)."""
        self._stopping = True
        await self._listeners.close()
        tasks = list(self._sessions)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)

    # ------------------------------------------------------------ locks

    def _lock(self, account_id: AccountId, conn_id: str) -> bool:
        """RFC 1939 §8: one session per maildrop, across every worker process."""
        if account_id in self._locks:
            return False
        lock_dir = self.settings.lock_dir
        if lock_dir is not None:
            lock_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_dir / f"pop3-{int(account_id)}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False  # held by a session in another worker
            self._lock_files[account_id] = fd
        self._locks[account_id] = conn_id
        return True

    def _unlock(self, account_id: AccountId, conn_id: str) -> None:
        if self._locks.get(account_id) == conn_id:
            del self._locks[account_id]
            fd = self._lock_files.pop(account_id, None)
            if fd is not None:
                os.close(fd)  # closing releases the flock (and a crash releases it too)

    # ------------------------------------------------------------ sessions

    async def _handle(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        implicit_tls: bool,
        listener: str,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        peername = writer.get_extra_info("peername")
        sock = writer.get_extra_info("socket")
        local = sock is not None and sock.family == socket.AF_UNIX
        ip = str(peername[0]) if isinstance(peername, tuple) else ""
        clog = ConnectionLogger("pop3", peer=format_peer(peername))
        session = _Session(self, reader, writer, clog, ip, implicit_tls, local or is_loopback(ip))
        clog.info(
            "connected to %s%s", listener,
            f" TLS {describe_tls(writer.get_extra_info('ssl_object'))}" if implicit_tls else "",
        )
        error: BaseException | None = None
        try:
            await session.run()
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Cancelled by stop(): end normally (3.11's stream callback logs a cancelled
            # handler task as an error).
            clog.info("server stopping: session ended, nothing deleted")
        except Exception as exc:
            error = exc
        finally:
            if session.account_id is not None:
                self._unlock(session.account_id, clog.conn_id)
            await close_handler_writer(writer, lambda: self._stopping)
            self._sessions.discard(task)
            clog.connection_lost(error)


class _Session:
    """One connection: the loop of STYLE.md, read → feed core → await → write."""

    def __init__(
        self,
        server: Pop3Server,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        clog: ConnectionLogger,
        ip: str,
        implicit_tls: bool,
        local_peer: bool,
    ) -> None:
        self.server = server
        self.store = server.store
        self.settings = server.settings
        self.reader = reader
        self.writer = writer
        self.log = clog
        self.ip = ip
        self.account_id: AccountId | None = None  # set while holding the maildrop lock
        self.address = ""
        self.inbox: Mailbox | None = None
        retention = self.settings.retention_days
        self.conn = Pop3Connection(
            tls_active=implicit_tls,
            tls_available=server.tls_context is not None and not implicit_tls,
            plaintext_auth_allowed=local_peer and self.settings.allow_plaintext_auth_on_loopback,
            sasl_mechanisms=self.settings.sasl_mechanisms,
            expire_days=retention if retention > 0 else None,
        )

    async def run(self) -> None:
        conn = self.conn
        try:
            while True:
                event = conn.next_event()
                await self._flush()
                match event:
                    case NeedData():
                        conn.receive_data(await self._read())
                    case ConnectionClosed(reason=reason):
                        self.log.info("closing: %s", reason)
                        return
                    case PasswordLogin(user=user, password=password):
                        result = await self.server.authenticator.check_password(
                            user, password, self.ip
                        )
                        await self._login_result(result, user)
                    case SaslStart(mechanism=mechanism, initial_response=initial):
                        outcome = await self.server.authenticator.authenticate(
                            mechanism, initial, self.ip, self._exchange
                        )
                        if not conn.closed:
                            await self._login_result(outcome, f"AUTH {mechanism}")
                    case Retrieve():
                        await self._retrieve(event)
                    case StartTls():
                        await self._start_tls()
                    case Quit(deleted=deleted):
                        await self._update(deleted)
                    case _:  # Paused / SaslResponse outside an exchange: our bug
                        raise RuntimeError(f"pop3: unexpected core event {event!r}")
        except _IdleTimeout:
            # RFC 1939 §3: the autologout timer closes without UPDATE and without a reply.
            self.log.info("idle for %.0f s: closing, nothing deleted", self.settings.idle_timeout_s)

    # ------------------------------------------------------------ I/O

    async def _read(self) -> bytes:
        try:  # asyncio.timeout: a timer, not wait_for's extra task per read
            async with asyncio.timeout(self.settings.idle_timeout_s):
                return await self.reader.read(READ_BYTES)
        except TimeoutError:
            raise _IdleTimeout() from None

    async def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)
            await self._drain()

    async def _drain(self) -> None:
        transport = self.writer.transport
        if transport.get_write_buffer_size() == 0 and not transport.is_closing():
            # All sent already (the usual case on a RETR): nothing to wait for, and
            # wait_for's task and timer per RETR were a tenth of the session's CPU.
            return
        try:
            await asyncio.wait_for(self.writer.drain(), self.settings.idle_timeout_s)
        except TimeoutError:
            raise _IdleTimeout() from None

    # ------------------------------------------------------------ login

    async def _exchange(self, challenge: bytes) -> bytes | Cancelled | Malformed:
        """The Authenticator's SASL callback: one challenge out, one decoded response in."""
        self.conn.sasl_challenge(challenge)
        while True:
            event = self.conn.next_event()
            await self._flush()
            match event:
                case NeedData():
                    self.conn.receive_data(await self._read())
                case SaslResponse(data=data):
                    return data
                case _:  # ConnectionClosed: the peer went away mid-exchange
                    return Cancelled()

    async def _login_result(
        self, result: Ok | Failed | Refused | Cancelled | Malformed, who: str
    ) -> None:
        conn = self.conn
        match result:
            case Ok(account_id=account_id, address=address, final_data=final_data):
                if final_data is not None:
                    # RFC 5034 §4: no "success with data"; send it as a challenge and expect
                    # an empty response.
                    reply = await self._exchange(final_data)
                    if conn.closed:
                        return
                    if reply != b"":
                        conn.login_failed(LoginFailure.MALFORMED)
                        return
                await self._open_maildrop(AccountId(account_id), address)
            case Failed(delay_s=delay_s, reason=reason):
                self.log.info("login failed for %r: %s", who, reason or "bad credentials")
                if delay_s > 0:
                    await asyncio.sleep(delay_s)
                conn.login_failed(LoginFailure.CREDENTIALS)
            case Refused(retry_after_s=retry):
                self.log.info("login refused for %r: too many failures, retry in %.0f s", who, retry)
                conn.login_failed(LoginFailure.REFUSED)
            case Cancelled():
                self.log.info("authentication cancelled by the client")
                conn.login_failed(LoginFailure.CANCELLED)
            case Malformed(reason=reason):
                self.log.info("malformed authentication exchange: %s", reason)
                conn.login_failed(LoginFailure.MALFORMED)

    async def _open_maildrop(self, account_id: AccountId, address: str) -> None:
        if not self.server._lock(account_id, self.log.conn_id):
            self.log.info("login as %s refused: maildrop in use by another session", address)
            self.conn.login_failed(LoginFailure.IN_USE)
            return
        self.account_id = account_id
        self.address = address
        try:
            inbox = await self.store.get_mailbox(account_id, "INBOX")
            infos = await self.store.list_messages(inbox.id) if inbox is not None else []
            if inbox is not None and self.settings.retention_days > 0:
                infos = await self._apply_retention(inbox, infos)
        except Exception:
            self.log.exception("opening the maildrop of %s failed", address)
            self.server._unlock(account_id, self.log.conn_id)
            self.account_id = None
            self.conn.login_failed(LoginFailure.TEMPORARY)
            return
        self.inbox = inbox
        uidvalidity = inbox.uidvalidity if inbox is not None else 0
        maildrop = Maildrop(
            uidvalidity, tuple(MaildropMessage(int(i.uid), i.size) for i in infos)
        )
        self.log.info(
            "login as %s: %d messages, %d octets",
            address, len(maildrop.messages), sum(m.size_bytes for m in maildrop.messages),
        )
        self.conn.login_succeeded(maildrop)

    async def _apply_retention(self, inbox: Mailbox, infos: list[MessageInfo]) -> list[MessageInfo]:
        cutoff = self.server.clock() - self.settings.retention_days * DAY_S
        old = [i.uid for i in infos if i.internal_date < cutoff]
        if not old:
            return infos
        mode: DeleteMode = "expunge" if self.settings.delete_mode == "keep" else self.settings.delete_mode
        await self._remove(inbox, old, mode)
        self.log.info(
            "retention: removed %d messages older than %d days (%s)",
            len(old), self.settings.retention_days, mode,
        )
        gone = set(old)
        return [i for i in infos if i.uid not in gone]

    # ------------------------------------------------------------ transaction

    async def _retrieve(self, event: Retrieve) -> None:
        inbox = self.inbox
        try:
            data = await self.store.read_message(inbox.id, Uid(event.uid)) if inbox else None
        except Exception:
            self.log.exception("reading message uid %d failed", event.uid)
            self.conn.command_failed()
            return
        if data is None:
            self.log.info("message %d (uid %d) was expunged meanwhile", event.number, event.uid)
            self.conn.message_gone()
            return
        if event.top_lines is None and len(data) != event.size_bytes:
            self.log.warning(
                "uid %d: listed %d octets, stored %d", event.uid, event.size_bytes, len(data)
            )
        # One copy of the message (from the store) plus one slice at a time.
        for chunk in self.conn.send_message(data):
            self.writer.write(chunk)
            await self._drain()

    async def _start_tls(self) -> None:
        ctx = self.server.tls_context
        assert ctx is not None
        # Anything still buffered by the stream came in clear text after STLS: drop it
        # (RFC 2595 §4; the STARTTLS command-injection class, CVE-2011-0411).
        buffered = getattr(self.reader, "_buffer", None)
        if isinstance(buffered, bytearray) and buffered:
            self.log.warning("discarding %d octets pipelined after STLS", len(buffered))
            buffered.clear()
        if self.conn.discarded_after_stls:
            self.log.warning(
                "discarding %d octets pipelined after STLS", self.conn.discarded_after_stls
            )
        await self.writer.start_tls(
            ctx, ssl_handshake_timeout=self.settings.tls_handshake_timeout_s
        )
        self.conn.tls_started()
        self.log.info("STLS: %s", describe_tls(self.writer.get_extra_info("ssl_object")))

    async def _update(self, deleted: tuple[int, ...]) -> None:
        """RFC 1939 §6 UPDATE: remove the marked messages durably, release the maildrop,
        then +OK: a client that logs in again as soon as it has the reply must find the
        maildrop free, whichever worker process its new connection reaches."""
        mode = self.settings.delete_mode
        try:
            if deleted and self.inbox is not None:
                await self._remove(self.inbox, [Uid(u) for u in deleted], mode)
        except Exception:
            self.log.exception("QUIT: removing %d messages failed", len(deleted))
            self.conn.update_failed()
            return
        finally:
            if self.account_id is not None:
                self.server._unlock(self.account_id, self.log.conn_id)
                self.account_id = None
        self.log.info("QUIT: %d messages deleted (delete_mode=%s)", len(deleted), mode)
        self.conn.update_done()

    async def _remove(self, inbox: Mailbox, uids: list[Uid], mode: DeleteMode) -> None:
        if not uids or mode == "keep":
            return
        if mode == "trash":
            trash = await self._trash(inbox.account_id)
            await self.store.copy(inbox.id, uids, trash.id, move=True)
            return
        await self.store.expunge(inbox.id, uids, only_deleted=False)  # one transaction

    async def _trash(self, account_id: AccountId) -> Mailbox:
        mailboxes = await self.store.list_mailboxes(account_id)
        for mb in mailboxes:
            if mb.special_use == TRASH_SPECIAL_USE:
                return mb
        for mb in mailboxes:
            if mb.name == self.settings.trash_name:
                return mb
        return await self.store.create_mailbox(account_id, self.settings.trash_name, TRASH_SPECIAL_USE)
