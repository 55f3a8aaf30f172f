"""A deterministic fake adapter for the POP3 core: feeds bytes, answers every event.

Used by the unit tests and the hypothesis fuzz test; no sockets, no loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from postier.auth.sasl import Cancelled, Malformed
from postier.pop3.core import (
    ConnectionClosed,
    LoginFailure,
    Maildrop,
    MaildropMessage,
    NeedData,
    PasswordLogin,
    Paused,
    Pop3Connection,
    Quit,
    Retrieve,
    SaslResponse,
    SaslStart,
    StartTls,
)

GOOD_USER = "alice@example.org"
GOOD_PASSWORD = "secret"
MESSAGES: dict[int, bytes] = {
    10: b"Subject: one\r\n\r\nhello\r\n",
    11: b"Subject: two\r\nX: y\r\n\r\n.dot line\r\nline 2\r\n..two dots\r\nlast\r\n",
    13: b"Subject: three\r\n\r\nbody without final newline",
}
UIDVALIDITY = 1234


def maildrop() -> Maildrop:
    return Maildrop(
        UIDVALIDITY, tuple(MaildropMessage(uid, len(data)) for uid, data in MESSAGES.items())
    )


@dataclass
class FakeAdapter:
    """Answers events like the server would, against MESSAGES; records what happened."""

    conn: Pop3Connection
    gone: set[int] = field(default_factory=set)  # uids "expunged by IMAP"
    in_use: bool = False
    events: list[object] = field(default_factory=list)
    out: bytearray = field(default_factory=bytearray)
    closed: ConnectionClosed | None = None
    updates: list[tuple[int, ...]] = field(default_factory=list)

    def feed(self, data: bytes) -> bytes:
        """Feed ``data`` and run until more is needed; returns what was written."""
        start = len(self.out)
        self.conn.receive_data(data)
        self.run()
        return bytes(self.out[start:])

    def run(self) -> None:
        while True:
            event = self.conn.next_event()
            self.out += self.conn.data_to_send()
            self.events.append(event)
            if isinstance(event, NeedData):
                return
            if isinstance(event, ConnectionClosed):
                self.closed = event
                return
            assert not isinstance(event, Paused)
            self.answer(event)
            self.out += self.conn.data_to_send()

    def answer(self, event: object) -> None:
        conn = self.conn
        match event:
            case PasswordLogin(user=user, password=password):
                self._login(user == GOOD_USER and password == GOOD_PASSWORD)
            case SaslStart(mechanism="PLAIN", initial_response=initial):
                if initial is None:
                    conn.sasl_challenge(b"")
                    return  # the SaslResponse event comes next
                self._login(initial == f"\0{GOOD_USER}\0{GOOD_PASSWORD}".encode())
            case SaslStart():
                conn.sasl_challenge(b"Username:")
            case SaslResponse(data=data):
                if isinstance(data, Cancelled):
                    conn.login_failed(LoginFailure.CANCELLED)
                elif isinstance(data, Malformed):
                    conn.login_failed(LoginFailure.MALFORMED)
                else:
                    self._login(data == f"\0{GOOD_USER}\0{GOOD_PASSWORD}".encode())
            case Retrieve(uid=uid):
                if uid in self.gone:
                    conn.message_gone()
                else:
                    for chunk in conn.send_message(MESSAGES[uid]):
                        self.out += chunk
            case StartTls():
                conn.tls_started()
            case Quit(deleted=deleted):
                self.updates.append(deleted)
                conn.update_done()
            case _:
                raise AssertionError(f"unexpected event {event!r}")

    def _login(self, ok: bool) -> None:
        if not ok:
            self.conn.login_failed(LoginFailure.CREDENTIALS)
        elif self.in_use:
            self.conn.login_failed(LoginFailure.IN_USE)
        else:
            self.conn.login_succeeded(maildrop())


def new_session(
    *, tls_active: bool = False, tls_available: bool = True, plaintext: bool = True
) -> FakeAdapter:
    conn = Pop3Connection(
        tls_active=tls_active, tls_available=tls_available, plaintext_auth_allowed=plaintext
    )
    adapter = FakeAdapter(conn)
    adapter.out += conn.data_to_send()
    return adapter


def logged_in() -> FakeAdapter:
    a = new_session()
    a.feed(f"USER {GOOD_USER}\r\nPASS {GOOD_PASSWORD}\r\n".encode())
    assert a.out.endswith(b"+OK logged in\r\n"), bytes(a.out)
    a.out.clear()
    return a
