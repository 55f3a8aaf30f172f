"""Sans-IO SASL mechanisms (RFC 4422) shared by SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH.

Mechanisms:

* ``PLAIN`` — RFC 4616.
* ``LOGIN`` — draft-murchison-sasl-login-00 (challenges ``Username:`` / ``Password:``).
* ``SCRAM-SHA-256`` — RFC 5802 / RFC 7677 through ``scramp``, without channel binding
  (``-PLUS`` is not offered, so a client's gs2 flag is ``n`` or ``y``).

A mechanism never does I/O, never awaits and never verifies a password itself: each call
returns a typed *step*.  ``Credentials`` asks the caller to verify a password;
``NeedScramCredentials`` asks it to look up stored SCRAM credentials and pass them to
:meth:`Mechanism.provide_scram`.  Anything a peer sends gives a step (``Failure`` for garbage),
never an exception; calling the object out of order is our bug and raises
:class:`MechanismMisuse`.

Framing (base64, ``*`` to cancel, ``=`` for an empty initial response) belongs to the
protocols; :func:`decode_client_data`, :func:`decode_initial_response` and
:func:`encode_server_data` are the shared helpers (RFC 4954 §4, RFC 9051 §6.2.2,
RFC 5034 §4).

Server-final data with SCRAM (``v=…``, RFC 5802 §3) comes back in ``Success.final_data``.
IMAP may send it in the tagged OK's challenge or as a last ``+`` continuation; SMTP
(RFC 4954 §4) must send it as a ``334`` challenge and wait for an empty response before 235.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import scramp

from postier.auth.passwords import (
    DEFAULT_SCRAM_ITERATIONS,
    SCRAM_KEY_BYTES,
    SCRAM_SALT_BYTES,
    parse_scram_credentials,
)

MECHANISMS: tuple[str, ...] = ("PLAIN", "LOGIN", "SCRAM-SHA-256")

# A bound on one decoded client message.  RFC 4616 §2 asks servers to accept 255 octets for
# each of authzid/authcid/passwd; 4 KiB is far above any honest exchange of these mechanisms.
MAX_CLIENT_MESSAGE_BYTES = 4096

LOGIN_USERNAME_CHALLENGE = b"Username:"  # draft-murchison-sasl-login §2.1
LOGIN_PASSWORD_CHALLENGE = b"Password:"


# ---------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``data`` to the client (the protocol base64-encodes it) and feed back the reply."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Credentials:
    """The exchange is over; the caller must verify this password (PLAIN, LOGIN)."""

    authcid: str
    password: str = field(repr=False)  # never in logs


@dataclass(frozen=True, slots=True)
class NeedScramCredentials:
    """Look up SCRAM stored credentials for ``username`` and call ``provide_scram``."""

    username: str


@dataclass(frozen=True, slots=True)
class Success:
    """Authenticated as ``username``; send ``final_data`` to the client when not None."""

    username: str
    final_data: bytes | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """Authentication failed.  ``reason`` is for the log, never for the client."""

    reason: str


Step = Challenge | Credentials | NeedScramCredentials | Success | Failure


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The client sent ``*`` (RFC 4422 §3.5)."""


@dataclass(frozen=True, slots=True)
class Malformed:
    """The client data was not valid base64."""

    reason: str


class MechanismMisuse(RuntimeError):
    """The caller used a mechanism out of order (our bug, never the peer's)."""


class UnknownMechanism(ValueError):
    """``new_mechanism`` got a name not in :data:`MECHANISMS`."""


# ---------------------------------------------------------------- framing helpers


def _b64decode(data: bytes) -> bytes | Malformed:
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        return Malformed("invalid base64")


def decode_client_data(line: bytes) -> bytes | Cancelled | Malformed:
    """Decode one client response line of an exchange (CRLF optional).

    ``*`` cancels (RFC 4422 §3.5, RFC 4954 §4, RFC 9051 §6.2.2); an empty line is an empty
    response; anything else must be strict base64."""
    line = line.rstrip(b"\r\n")
    if line == b"*":
        return Cancelled()
    if not line:
        return b""
    return _b64decode(line)


def decode_initial_response(arg: bytes) -> bytes | Malformed:
    """Decode an initial response argument (SMTP AUTH, IMAP SASL-IR, POP3 AUTH).

    ``=`` is an empty initial response (RFC 4954 §4, RFC 4959 §3, RFC 5034 §4)."""
    if arg == b"=":
        return b""
    if not arg:
        return Malformed("empty initial response argument")
    return _b64decode(arg)


def encode_server_data(data: bytes) -> bytes:
    """Base64 of a challenge (no line break); empty data gives an empty string."""
    return binascii.b2a_base64(data, newline=False)


# ---------------------------------------------------------------- mechanisms


def default_normalize(login: str) -> str:
    return login.lower()


class Mechanism:
    """One SASL exchange.  ``start`` once, then ``respond``/``provide_scram`` as steps ask."""

    name: ClassVar[str]

    def start(self, initial_response: bytes | None) -> Step:
        raise NotImplementedError

    def respond(self, data: bytes) -> Step:
        raise NotImplementedError

    def provide_scram(self, stored: str | None) -> Step:
        raise MechanismMisuse(f"{self.name} does not use SCRAM credentials")


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class _State(enum.Enum):
    NEW = enum.auto()
    WAIT_RESPONSE = enum.auto()  # PLAIN: message; LOGIN: username; SCRAM: client-first
    WAIT_PASSWORD = enum.auto()  # LOGIN
    WAIT_STORED = enum.auto()  # SCRAM: caller looks up credentials
    WAIT_FINAL = enum.auto()  # SCRAM: client-final
    DONE = enum.auto()


class _Base(Mechanism):
    def __init__(self) -> None:
        self._state = _State.NEW

    def _expect(self, *states: _State) -> None:
        if self._state not in states:
            raise MechanismMisuse(f"{self.name}: call not allowed in state {self._state.name}")

    def _fail(self, reason: str) -> Failure:
        self._state = _State.DONE
        return Failure(reason)


class PlainMechanism(_Base):
    """RFC 4616: ``message = [authzid] UTF8NUL authcid UTF8NUL passwd``."""

    name = "PLAIN"

    def __init__(self, normalize: Callable[[str], str] = default_normalize) -> None:
        super().__init__()
        self._normalize = normalize

    def start(self, initial_response: bytes | None) -> Step:
        self._expect(_State.NEW)
        self._state = _State.WAIT_RESPONSE
        if initial_response is None:
            return Challenge(b"")  # RFC 4422 §5: empty challenge, client sends the message
        return self.respond(initial_response)

    def respond(self, data: bytes) -> Step:
        self._expect(_State.WAIT_RESPONSE)
        self._state = _State.DONE
        if len(data) > MAX_CLIENT_MESSAGE_BYTES:
            return self._fail("PLAIN message too long")
        parts = data.split(b"\x00")
        if len(parts) != 3:  # RFC 4616 §2: exactly two NULs
            return self._fail("PLAIN message needs exactly two NUL separators")
        texts = [_utf8(p) for p in parts]
        authzid, authcid, password = texts
        if authzid is None or authcid is None or password is None:
            return self._fail("PLAIN message is not UTF-8")  # RFC 4616 §2
        if not authcid or not password:
            return self._fail("PLAIN empty authcid or password")  # RFC 4616 §2: 1*SAFE
        # RFC 4616 §2: authzid, when present, is the identity to act as.  We allow no proxy
        # authorization: it must name the authenticated identity itself.
        if authzid and self._normalize(authzid) != self._normalize(authcid):
            return self._fail("PLAIN authzid differs from authcid (proxy auth not allowed)")
        return Credentials(authcid, password)


class LoginMechanism(_Base):
    """draft-murchison-sasl-login-00: ``Username:`` then ``Password:`` challenges.

    Some clients send the user name as an initial response (``AUTH LOGIN dXNlcg==``);
    it is accepted and only ``Password:`` is asked."""

    name = "LOGIN"

    def __init__(self) -> None:
        super().__init__()
        self._username = ""

    def start(self, initial_response: bytes | None) -> Step:
        self._expect(_State.NEW)
        self._state = _State.WAIT_RESPONSE
        if initial_response is None:
            return Challenge(LOGIN_USERNAME_CHALLENGE)
        return self.respond(initial_response)

    def respond(self, data: bytes) -> Step:
        self._expect(_State.WAIT_RESPONSE, _State.WAIT_PASSWORD)
        if len(data) > MAX_CLIENT_MESSAGE_BYTES:
            return self._fail("LOGIN response too long")
        text = _utf8(data)
        if text is None:
            return self._fail("LOGIN response is not UTF-8")
        if "\x00" in text:
            return self._fail("LOGIN response contains NUL")
        if self._state is _State.WAIT_RESPONSE:
            if not text:
                return self._fail("LOGIN empty username")
            self._username = text
            self._state = _State.WAIT_PASSWORD
            return Challenge(LOGIN_PASSWORD_CHALLENGE)
        self._state = _State.DONE
        if not text:
            return self._fail("LOGIN empty password")
        return Credentials(self._username, text)


# Key for the fake SCRAM salts given to unknown users (RFC 5802 §5.1: the server should not
# reveal whether a user exists; a stable per-user fake salt looks like a real account).
_FAKE_SALT_KEY = secrets.token_bytes(32)


def _fake_scram_auth_info(username: str) -> tuple[bytes, bytes, bytes, int]:
    salt = hmac.new(_FAKE_SALT_KEY, username.encode("utf-8", "replace"), hashlib.sha256)
    return (
        salt.digest()[:SCRAM_SALT_BYTES],
        secrets.token_bytes(SCRAM_KEY_BYTES),
        secrets.token_bytes(SCRAM_KEY_BYTES),
        DEFAULT_SCRAM_ITERATIONS,
    )


class _UsernameSeen(Exception):
    pass


def _parse_gs2_authzid(client_first: str) -> str | None:
    """Return the gs2 authzid (unescaped, may be empty) or None when it cannot be parsed."""
    fields = client_first.split(",", 2)
    if len(fields) < 3:
        return None
    authzid = fields[1]
    if not authzid:
        return ""
    if not authzid.startswith("a="):
        return None
    value = authzid[2:]
    # RFC 5802 §5.1 saslname: "=" only as "=2C" or "=3D".
    if value.replace("=2C", "").replace("=3D", "").count("=") or not value:
        return None
    return value.replace("=2C", ",").replace("=3D", "=")


class ScramSha256Mechanism(_Base):
    """RFC 5802 / RFC 7677 server side, no channel binding.

    ``server_nonce`` is for test vectors only (RFC 7677 §3); leave it None."""

    name = "SCRAM-SHA-256"

    def __init__(
        self,
        normalize: Callable[[str], str] = default_normalize,
        server_nonce: str | None = None,
    ) -> None:
        super().__init__()
        self._normalize = normalize
        self._server_nonce = server_nonce
        self._client_first = ""
        self._username = ""
        self._known = False
        self._server: scramp.core.ScramServer | None = None

    def start(self, initial_response: bytes | None) -> Step:
        self._expect(_State.NEW)
        self._state = _State.WAIT_RESPONSE
        if initial_response is None:
            return Challenge(b"")  # client-first comes in the next response
        return self.respond(initial_response)

    def respond(self, data: bytes) -> Step:
        self._expect(_State.WAIT_RESPONSE, _State.WAIT_FINAL)
        if len(data) > MAX_CLIENT_MESSAGE_BYTES:
            return self._fail("SCRAM message too long")
        text = _utf8(data)
        if text is None:
            return self._fail("SCRAM message is not UTF-8")  # RFC 5802 §7: UTF-8
        if self._state is _State.WAIT_RESPONSE:
            return self._client_first_message(text)
        return self._client_final_message(text)

    def _new_server(self, auth_fn: Callable[[str], object]) -> scramp.core.ScramServer:
        mech = scramp.ScramMechanism(self.name)
        server: scramp.core.ScramServer = mech.make_server(auth_fn, s_nonce=self._server_nonce)
        return server

    def _client_first_message(self, text: str) -> Step:
        if text.startswith("p="):
            # RFC 5802 §6: the client wants channel binding, which we do not offer.
            return self._fail("SCRAM channel binding requested but not offered")
        seen: list[str] = []

        def capture(username: str) -> None:
            seen.append(username)
            raise _UsernameSeen

        # Let scramp parse (gs2 header, saslname escapes, SASLprep, nonce); the first server
        # only captures the user name, the real one is built when credentials arrive.
        try:
            self._new_server(capture).set_client_first(text)
        except Exception:  # scramp raises ScramException; capture() aborts on purpose
            pass
        if not seen:
            return self._fail("SCRAM client-first-message malformed")
        # scramp refuses a non-empty gs2 authzid; keep our own check for when it does not.
        authzid = _parse_gs2_authzid(text)
        if authzid is None or (authzid and self._normalize(authzid) != self._normalize(seen[0])):
            return self._fail("SCRAM authzid differs from username (proxy auth not allowed)")
        self._client_first = text
        self._username = seen[0]
        self._state = _State.WAIT_STORED
        return NeedScramCredentials(self._username)

    def provide_scram(self, stored: str | None) -> Step:
        """Continue with the user's RFC 5803 stored credentials, or None for an unknown user
        (the exchange then runs on fake credentials and fails at the proof)."""
        self._expect(_State.WAIT_STORED)
        parsed = parse_scram_credentials(stored) if stored is not None else None
        self._known = parsed is not None
        if parsed is not None:
            info = (parsed.salt, parsed.stored_key, parsed.server_key, parsed.iterations)
        else:
            info = _fake_scram_auth_info(self._username)
        try:
            server = self._new_server(lambda _username: info)
            server.set_client_first(self._client_first)
            server_first: str = server.get_server_first()
        except Exception as exc:  # scramp.ScramException; any library surprise is a failure
            return self._fail(f"SCRAM server-first failed: {exc}")
        self._server = server
        self._state = _State.WAIT_FINAL
        return Challenge(server_first.encode("utf-8"))

    def _client_final_message(self, text: str) -> Step:
        server = self._server
        self._state = _State.DONE
        if server is None:  # pragma: no cover - guarded by the state machine
            return Failure("SCRAM internal state")
        try:
            server.set_client_final(text)
            server_final: str = server.get_server_final()
        except Exception as exc:  # scramp.ScramException: bad proof, nonce, encoding …
            return Failure(f"SCRAM client-final rejected: {exc}")
        if not self._known:
            return Failure("SCRAM unknown user or no SCRAM credentials")
        return Success(self._username, server_final.encode("utf-8"))


def new_mechanism(name: str, *, normalize: Callable[[str], str] = default_normalize) -> Mechanism:
    """A fresh server-side mechanism; ``name`` is matched case-insensitively (RFC 4422 §3.1).

    ``normalize`` maps login names for the authzid == authcid comparison."""
    upper = name.upper()
    if upper == "PLAIN":
        return PlainMechanism(normalize)
    if upper == "LOGIN":
        return LoginMechanism()
    if upper == "SCRAM-SHA-256":
        return ScramSha256Mechanism(normalize)
    raise UnknownMechanism(name)
