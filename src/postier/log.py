"""Human-readable, single-line logs with a connection id and peer on every line.

    2026-11-27 08:00:01.123 INFO  smtp [c7f3a1] 127.0.0.1:51234 connected

- :func:`setup_logging` installs that format on the root logger (idempotent).
- :func:`get_logger` returns ``postier.<name>``; the ``postier.`` prefix is not printed.
- :class:`ConnectionLogger` is a :class:`logging.LoggerAdapter` that stamps each record
  with the connection id (:func:`new_connection_id`) and the peer; every protocol server
  makes one per connection.
- Expected disconnects (reset, broken pipe, EOF in TLS, timeouts) are one line at INFO;
  :meth:`ConnectionLogger.connection_lost` adds the traceback only at DEBUG.
- Messages are kept on one line: CR, LF and other control characters coming from peers are
  escaped, so a client cannot forge log lines (log injection).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import ssl
import sys
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, Final, TextIO

__all__ = [
    "LOG_FORMAT_DATE",
    "ConnectionLogger",
    "LineFormatter",
    "format_peer",
    "get_logger",
    "is_expected_disconnect",
    "new_connection_id",
    "setup_logging",
]

ROOT_LOGGER_NAME: Final = "postier"
LOG_FORMAT_DATE: Final = "%Y-%m-%d %H:%M:%S"
LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# Connection ids: 24 bits, a random start and an odd stride, so ids look unrelated yet
# never repeat within a process before 2**24 connections (an odd stride is a bijection
# modulo 2**24).
_ID_BITS: Final = 24
_ID_MASK: Final = (1 << _ID_BITS) - 1
_ID_STRIDE: Final = 0x9E3779 | 1
_id_start = secrets.randbits(_ID_BITS)
_id_counter = itertools.count()  # next() on a count is atomic in CPython

_CONTROL_ESCAPES: Final = {i: f"\\x{i:02x}" for i in range(32) if i != 9} | {
    10: "\\n",
    13: "\\r",
    127: "\\x7f",
}

_EXPECTED_DISCONNECTS: Final = (
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    asyncio.IncompleteReadError,
    TimeoutError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)

_handler: logging.Handler | None = None


def new_connection_id() -> str:
    """A 6-hex-digit id, unique within this process for the first 16.7 million calls."""
    n = next(_id_counter)
    return f"{(_id_start + n * _ID_STRIDE) & _ID_MASK:06x}"


def format_peer(peername: object) -> str:
    """``"127.0.0.1:51234"``, ``"[::1]:51234"`` or ``"unix"`` from a socket's peername."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host, port = str(peername[0]), peername[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(peername, str | bytes):
        return "unix" if not peername else f"unix:{peername!s}"
    return "-" if peername is None else str(peername)


def is_expected_disconnect(exc: BaseException | None) -> bool:
    """True for the ways a peer ordinarily goes away (not a bug on our side)."""
    return isinstance(exc, _EXPECTED_DISCONNECTS)


def one_line(text: str) -> str:
    """``text`` with CR, LF and other control characters (except TAB) escaped."""
    # The usual line has none: isprintable() says so in one C pass, where translate()
    # with a table of strings looks every character up in a dict.
    return text if text.isprintable() else text.translate(_CONTROL_ESCAPES)


class LineFormatter(logging.Formatter):
    """``date time.ms LEVEL logger [connid] peer message`` on one line.

    The logger name loses its ``postier.`` prefix; ``[connid] peer`` appear when the
    record carries ``conn_id``/``peer`` (see :class:`ConnectionLogger`).  Tracebacks,
    when present, follow on the next lines.
    """

    default_msec_format = "%s.%03d"

    def __init__(self) -> None:
        super().__init__(datefmt=LOG_FORMAT_DATE)
        self.converter = time.localtime
        self._second: tuple[int, str] = (-1, "")  # the last second formatted, and its text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``2026-11-27 08:00:01.123``, local time.  The date and time to the second are
        formatted once a second (a line per message under load: strftime was a quarter of
        the line's cost); called under the handler's lock."""
        if datefmt is not None and datefmt != LOG_FORMAT_DATE:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        cached, text = self._second
        if second != cached:
            text = time.strftime(LOG_FORMAT_DATE, self.converter(second))
            self._second = (second, text)
        return f"{text}.{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        name = record.name
        if name == ROOT_LOGGER_NAME:
            name = "postier"
        elif name.startswith(ROOT_LOGGER_NAME + "."):
            name = name[len(ROOT_LOGGER_NAME) + 1 :]
        parts = [self.formatTime(record), f"{record.levelname:<5}", name]
        conn_id = getattr(record, "conn_id", None)
        if conn_id:
            parts.append(f"[{conn_id}]")
        peer = getattr(record, "peer", None)
        if peer:
            parts.append(one_line(str(peer)))
        parts.append(one_line(record.getMessage()))
        line = " ".join(parts)
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def setup_logging(level: str, stream: TextIO | None = None) -> None:
    """Log to ``stream`` (stderr by default) at ``level`` ("debug" … "critical").

    Calling it again replaces the handler it installed before.  Raises ``ValueError`` for
    an unknown level name.
    """
    global _handler
    numeric = LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r} (use one of {', '.join(LEVELS)})")
    # The line shows none of these, and gathering them is most of a record's cost (the
    # caller's file and line walk the stack): the optimizations of the logging HOWTO.
    # 19–22 → 16–17 µs per line measured (best of 7); a line per message on the SMTP path.
    # LineFormatter took it on to 11 µs (a cached second, isprintable before translate).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(LineFormatter())
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(numeric)
    _handler = handler
    # asyncio logs a reset or half-done TLS connection at ERROR with a traceback; turn
    # those into one INFO line unless debugging.  Other asyncio errors stay as they are.
    asyncio_logger = logging.getLogger("asyncio")
    for old in [f for f in asyncio_logger.filters if isinstance(f, _QuietDisconnects)]:
        asyncio_logger.removeFilter(old)
    if numeric > logging.DEBUG:
        asyncio_logger.addFilter(_QuietDisconnects())


class _QuietDisconnects(logging.Filter):
    """Rewrites records whose exception is an expected disconnect as one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and (is_expected_disconnect(exc) or isinstance(exc, ssl.SSLError)):
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = "INFO"
        return True


def get_logger(name: str) -> logging.Logger:
    """The logger ``postier.<name>`` (``name`` like ``"smtp"`` or ``"imap"``)."""
    if name == ROOT_LOGGER_NAME or name.startswith(ROOT_LOGGER_NAME + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT_LOGGER_NAME}.{name}")


class ConnectionLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger for one connection: every record carries ``conn_id`` and ``peer``.

    >>> log = ConnectionLogger("smtp", peer="127.0.0.1:51234")
    >>> log.info("connected")   # ... INFO  smtp [c7f3a1] 127.0.0.1:51234 connected
    """

    def __init__(
        self,
        logger: logging.Logger | str,
        peer: str = "",
        conn_id: str | None = None,
    ) -> None:
        base = get_logger(logger) if isinstance(logger, str) else logger
        self.conn_id = conn_id or new_connection_id()
        self.peer = peer
        super().__init__(base, {"conn_id": self.conn_id, "peer": peer})

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra: Mapping[str, object] = kwargs.get("extra") or {}
        kwargs["extra"] = {"conn_id": self.conn_id, "peer": self.peer, **extra}
        return msg, kwargs

    def with_peer(self, peer: str) -> ConnectionLogger:
        """The same connection id with another peer text (e.g. after a PROXY header)."""
        return ConnectionLogger(self.logger, peer=peer, conn_id=self.conn_id)

    def connection_lost(self, exc: BaseException | None) -> None:
        """Log the end of the connection.

        ``None`` → "disconnected"; an expected disconnect → one INFO line naming it (the
        traceback only at DEBUG); anything else → ERROR with the traceback (a bug).
        """
        if exc is None:
            self.info("disconnected")
        elif is_expected_disconnect(exc):
            detail = str(exc) or type(exc).__name__
            self.info(
                "disconnected: %s: %s",
                type(exc).__name__,
                detail,
                exc_info=exc if self.isEnabledFor(logging.DEBUG) else None,
            )
        else:
            self.error("connection failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
