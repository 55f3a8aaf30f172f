"""Drive a sans-IO ServerConnection with bytes only (no loop, no sockets)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from postier.smtp.core import (
    Auth,
    AuthResponse,
    Closed,
    CoreSettings,
    Event,
    Message,
    Mode,
    NeedData,
    Paused,
    Reply,
    ServerConnection,
)

# A decider returns None to accept, a Reply to reject, or DEFER when it already answered
# (auth_challenge, respond_per_recipient).
DEFER = Reply(0, "", "deferred")
Decider = Callable[[ServerConnection, Event], Reply | None]


def accept_all(conn: ServerConnection, event: Event) -> Reply | None:
    return None


@dataclass
class Session:
    conn: ServerConnection
    decide: Decider = accept_all
    events: list[Event] = field(default_factory=list)
    out: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> bytes:
        """Feed ``data``; handle events until the core needs data; return the new output."""
        self.conn.receive_data(data)
        return self.pump()

    def pump(self) -> bytes:
        start = len(self.out)
        while True:
            event = self.conn.next_event()
            if isinstance(event, NeedData | Closed):
                break
            assert not isinstance(event, Paused), "a decision was not given"
            self.events.append(event)
            if _needs_decision(event):
                reply = self.decide(self.conn, event)
                if reply is None:
                    self.conn.accept()
                elif reply is not DEFER:
                    self.conn.reject(reply)
        self.out += self.conn.data_to_send()
        return bytes(self.out[start:])

    def feed_bytewise(self, data: bytes) -> bytes:
        start = len(self.out)
        for i in range(len(data)):
            self.feed(data[i : i + 1])
        return bytes(self.out[start:])

    def of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]


def _needs_decision(event: Event) -> bool:
    from postier.smtp.core import Ehlo, Helo, MailFrom, RcptTo, StartTls

    return isinstance(event, Helo | Ehlo | MailFrom | RcptTo | Message | StartTls | Auth | AuthResponse)


def new_session(
    mode: Mode = Mode.MTA,
    decide: Decider = accept_all,
    *,
    tls_available: bool = False,
    tls_active: bool = False,
    auth_without_tls: bool = False,
    greet: bool = True,
    **settings: object,
) -> Session:
    base: dict[str, object] = {"hostname": "mx.example.org", "mode": mode}
    if mode is Mode.SUBMISSION:
        base.update(normalize_bare_lf=True, auth_mechanisms=("PLAIN", "LOGIN"), require_auth=True)
    base.update(settings)
    conn = ServerConnection(
        CoreSettings(**base),  # type: ignore[arg-type]
        tls_available=tls_available,
        tls_active=tls_active,
        auth_without_tls=auth_without_tls,
    )
    session = Session(conn, decide)
    if greet:
        conn.greeting()
        session.out += conn.data_to_send()
    return session


def codes(output: bytes) -> list[str]:
    """The final-line reply codes (with enhanced code when present) in ``output``."""
    result = []
    for line in output.split(b"\r\n"):
        if len(line) >= 4 and line[3:4] == b" ":
            parts = line.decode("utf-8", "replace").split(" ")
            code = parts[0]
            if len(parts) > 1 and parts[1][:1].isdigit() and "." in parts[1]:
                code += " " + parts[1]
            result.append(code)
    return result
