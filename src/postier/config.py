"""Typed settings loaded from one TOML file, with validation that names key and line.

The whole configuration is one TOML file (parsed with the standard ``tomllib``).  Every
key has a default, so a missing file gives a working development server on loopback
ports; production ports are one setting away (see docs/configuration.md).

- :func:`load_config` reads a file (or nothing) and returns a frozen :class:`Config`, or
  raises :class:`ConfigError` carrying every problem found, not only the first.
- :func:`check_config_text` returns the list of :class:`ConfigIssue` for a text (the
  ``postier config check`` command and the tests use it).
- :func:`resolve_data_dir` and :func:`resolve_hostname` apply the documented fallbacks.

Validation reports unknown tables and keys (with a "did you mean" hint), wrong types,
out-of-range values, bad listen addresses and TOML syntax errors.  ``tomllib`` gives no
line numbers for values, so :class:`KeyLocator` finds them by scanning the text for the
table headers and ``key =`` lines (dotted keys and inline tables best-effort).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import socket
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from postier.net.addresses import (
    ListenAddress,
    ListenAddressError,
    is_valid_hostname,
    parse_listen_address,
)

__all__ = [
    "DATA_DIR_ENV",
    "DEFAULT_DATA_DIR",
    "EVENT_LOOPS",
    "AuthConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "DeliveryConfig",
    "ImapConfig",
    "Pop3Config",
    "ServerConfig",
    "SmtpConfig",
    "StoreConfig",
    "TlsConfig",
    "check_config_text",
    "default_config_path",
    "load_config",
    "parse_config_text",
    "resolve_data_dir",
    "resolve_hostname",
]

DATA_DIR_ENV: Final = "POSTIER_DATA"
DEFAULT_DATA_DIR: Final = Path("data")

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
EVENT_LOOPS: Final = ("auto", "asyncio", "uvloop")
BARE_LF_MODES: Final = ("reject", "normalize")
POP3_DELETE_MODES: Final = ("expunge", "trash", "keep")
TLS_VERSIONS: Final = ("TLSv1.2", "TLSv1.3")
STORE_BACKENDS: Final = ("sqlite",)
INDEXER_MODES: Final = ("process", "thread")

# Keys accepted under an older name: dotted old name → current key in the same table.
RENAMED_KEYS: Final = {"server.loop": "event_loop"}

_MAX_INT: Final = 2**62
_DAY_S: Final = 86_400

# --------------------------------------------------------------------------- schema
#
# Each setting is a dataclass field whose metadata says how to validate a TOML value:
# "kind" (int, bool, str, choice, listen), and for ints "min"/"max", for choices "choices".


def _int(default: int, *, minimum: int = 0, maximum: int = _MAX_INT, why: str = "") -> int:
    meta = {"kind": "int", "min": minimum, "max": maximum, "why": why}
    return field(default=default, metadata=meta)  # type: ignore[no-any-return]


def _bool(default: bool) -> bool:
    return field(default=default, metadata={"kind": "bool"})  # type: ignore[no-any-return]


def _str(default: str) -> str:
    return field(default=default, metadata={"kind": "str"})  # type: ignore[no-any-return]


def _strlist(*default: str) -> tuple[str, ...]:
    return field(default=tuple(default), metadata={"kind": "strlist"})  # type: ignore[no-any-return]


def _hostname(default: str) -> str:
    return field(default=default, metadata={"kind": "hostname"})  # type: ignore[no-any-return]


def _choice(default: str, choices: tuple[str, ...]) -> Any:
    return field(default=default, metadata={"kind": "choice", "choices": choices})


def _listen(*entries: str) -> tuple[ListenAddress, ...]:
    value = tuple(parse_listen_address(e) for e in entries)
    return field(default=value, metadata={"kind": "listen"})  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """``[server]``: identity, data folder, logging, event loop, global connection limits."""

    hostname: str = _hostname("")  # "" → socket.getfqdn(), see resolve_hostname()
    data_dir: str = _str("")  # "" → --data, POSTIER_DATA or ./data, see resolve_data_dir()
    log_level: Literal["debug", "info", "warning", "error", "critical"] = _choice(
        "info", LOG_LEVELS
    )
    # "auto": uvloop when it can be imported, else asyncio (see postier/eventloop.py).
    event_loop: Literal["auto", "asyncio", "uvloop"] = _choice("auto", EVENT_LOOPS)
    max_connections: int = _int(1000, minimum=1)
    max_connections_per_ip: int = _int(20, minimum=1)
    # Processes serving the same data folder (SO_REUSEPORT listeners); 0 = one per CPU.
    workers: int = _int(1, minimum=0, maximum=64)


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """``[smtp]``: inbound (25), submission (587), submissions (465) and LMTP listeners."""

    listen: tuple[ListenAddress, ...] = _listen("127.0.0.1:2525")
    submission_listen: tuple[ListenAddress, ...] = _listen("127.0.0.1:2587")
    submissions_listen: tuple[ListenAddress, ...] = _listen("127.0.0.1:2465")
    lmtp_listen: tuple[ListenAddress, ...] = _listen()
    max_message_bytes: int = _int(52_428_800, minimum=1024)
    # Messages being received are held in memory; all connections together hold at most
    # this much (one message alone may reach max_message_bytes), past it: 452 4.3.1.
    max_buffered_bytes: int = _int(536_870_912, minimum=1024)
    # RFC 5321 §4.5.3.1.8 asks servers to accept at least 100 recipients; lower is allowed.
    max_recipients: int = _int(100, minimum=1)
    # RFC 5321 §4.5.3.1.6: a text line is at least 1000 octets including the CRLF.
    max_line_bytes: int = _int(1000, minimum=1000, maximum=1_048_576, why="RFC 5321 §4.5.3.1.6")
    max_errors: int = _int(10, minimum=1)
    # RFC 5321 §4.5.3.2.7 (server timeout: 5 minutes) and §4.5.3.2.6 (DATA: 10 minutes).
    command_timeout_s: int = _int(300, minimum=1, maximum=_DAY_S)
    data_timeout_s: int = _int(600, minimum=1, maximum=_DAY_S)
    bare_lf: Literal["reject", "normalize"] = _choice("reject", BARE_LF_MODES)
    require_tls_for_auth: bool = _bool(True)
    allow_plaintext_auth_on_loopback: bool = _bool(True)
    sender_must_match: bool = _bool(True)
    max_connections_per_ip: int = _int(20, minimum=1)
    # Checks of mail received on port 25 (RFC 7208, 6376, 7489), written into an
    # Authentication-Results header (RFC 8601).
    check_spf: bool = _bool(True)
    check_dkim: bool = _bool(True)
    check_dmarc: bool = _bool(True)
    check_arc: bool = _bool(True)  # RFC 8617, reported only
    # What to do with mail failing DMARC whose domain asks for p=reject / p=quarantine.
    dmarc_reject: bool = _bool(True)  # refuse with 550 5.7.1
    dmarc_quarantine_to_junk: bool = _bool(True)  # deliver into the Junk mailbox


@dataclass(frozen=True, slots=True)
class ImapConfig:
    """``[imap]``: IMAP (143, STARTTLS) and IMAPS (993) listeners and limits."""

    listen: tuple[ListenAddress, ...] = _listen("127.0.0.1:2143")
    tls_listen: tuple[ListenAddress, ...] = _listen("127.0.0.1:2993")
    # RFC 7162 §4: servers SHOULD accept command lines of at least 8192 octets.
    max_line_bytes: int = _int(65_536, minimum=8192, maximum=16_777_216, why="RFC 7162 §4")
    max_literal_bytes: int = _int(52_428_800, minimum=1024)
    # RFC 9051 §5.4: an inactivity autologout timer MUST be at least 30 minutes.
    idle_timeout_s: int = _int(1800, minimum=1800, maximum=_DAY_S, why="RFC 9051 §5.4")
    allow_plaintext_auth_on_loopback: bool = _bool(True)


@dataclass(frozen=True, slots=True)
class Pop3Config:
    """``[pop3]``: POP3 (110, STLS) and POP3S (995) listeners, deletion and retention."""

    listen: tuple[ListenAddress, ...] = _listen("127.0.0.1:2110")
    tls_listen: tuple[ListenAddress, ...] = _listen("127.0.0.1:2995")
    delete_mode: Literal["expunge", "trash", "keep"] = _choice("expunge", POP3_DELETE_MODES)
    retention_days: int = _int(0, minimum=0, maximum=36_500)  # 0: never
    # RFC 1939 §3: an autologout timer MUST be of at least 10 minutes' duration.
    idle_timeout_s: int = _int(600, minimum=600, maximum=_DAY_S, why="RFC 1939 §3")
    allow_plaintext_auth_on_loopback: bool = _bool(True)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """``[tls]``: certificate and key (PEM); empty means a generated self-signed pair."""

    cert: str = _str("")
    key: str = _str("")
    min_version: Literal["TLSv1.2", "TLSv1.3"] = _choice("TLSv1.2", TLS_VERSIONS)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """``[auth]``: login names, credential cache and failed-login limits."""

    default_domain: str = _hostname("")
    cache_ttl_s: int = _int(300, minimum=0, maximum=_DAY_S)
    failed_login_free: int = _int(3, minimum=0)
    failed_login_max_per_ip: int = _int(10, minimum=1)
    failed_login_max_per_account: int = _int(20, minimum=1)
    failed_login_window_s: int = _int(900, minimum=1, maximum=30 * _DAY_S)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """``[store]``: the storage backend and its concurrency."""

    backend: Literal["sqlite"] = _choice("sqlite", STORE_BACKENDS)
    readers: int = _int(4, minimum=1, maximum=64)
    group_commit_max: int = _int(256, minimum=1, maximum=100_000)
    # Where `postier serve` runs the full-text indexer: its own process (another core), or
    # a thread of worker 0 (one process less, ~25 MB, for a small machine).
    indexer: Literal["process", "thread"] = _choice("process", INDEXER_MODES)


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """``[delivery]``: local delivery defaults."""

    default_quota_bytes: int = _int(0, minimum=0)  # 0: unlimited
    add_delivered_to: bool = _bool(True)


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """``[dns]``: the resolver used for MX, SPF, DKIM and DMARC lookups."""

    # "ip" or "ip:port" ("[ipv6]:port"); empty: the system's resolvers (/etc/resolv.conf).
    nameservers: tuple[str, ...] = _strlist()
    timeout_s: int = _int(5, minimum=1, maximum=60)


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """``[queue]``: outbound delivery to other servers."""

    enabled: bool = _bool(True)
    remote_port: int = _int(25, minimum=1, maximum=65535)  # tests and smarthosts: other ports
    max_connections: int = _int(50, minimum=1, maximum=10_000)
    max_connections_per_domain: int = _int(2, minimum=1, maximum=100)
    max_age_days: int = _int(5, minimum=1, maximum=30)  # then the message bounces
    delay_warning_hours: int = _int(4, minimum=0, maximum=24 * 30)  # 0: no delay warnings
    mta_sts: bool = _bool(True)  # RFC 8461: apply destinations' published TLS policies


@dataclass(frozen=True, slots=True)
class DkimConfig:
    """``[dkim]``: signing of outbound mail from hosted domains (RFC 6376, RFC 8463)."""

    sign: bool = _bool(True)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration: one attribute per TOML table."""

    server: ServerConfig = field(default_factory=ServerConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    imap: ImapConfig = field(default_factory=ImapConfig)
    pop3: Pop3Config = field(default_factory=Pop3Config)
    tls: TlsConfig = field(default_factory=TlsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    dkim: DkimConfig = field(default_factory=DkimConfig)


SECTIONS: Final[dict[str, type[Any]]] = {
    "server": ServerConfig,
    "smtp": SmtpConfig,
    "imap": ImapConfig,
    "pop3": Pop3Config,
    "tls": TlsConfig,
    "auth": AuthConfig,
    "store": StoreConfig,
    "delivery": DeliveryConfig,
    "dns": DnsConfig,
    "queue": QueueConfig,
    "dkim": DkimConfig,
}


# --------------------------------------------------------------------------- issues


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file.

    ``key`` is dotted (``"smtp.max_recipients"``; ``""`` for the file as a whole),
    ``line`` is 1-based or None when it cannot be found.
    """

    key: str
    line: int | None
    message: str
    filename: str = ""
    column: int | None = None

    def __str__(self) -> str:
        where = self.filename or "<config>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """The configuration cannot be used; ``errors`` lists every problem found."""

    def __init__(self, errors: list[ConfigIssue]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


# --------------------------------------------------------------------------- line finder

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED_KEY = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_TABLE_RE = re.compile(rf"^\s*\[\s*({_DOTTED_KEY})\s*\]\s*(?:#.*)?$")
_ARRAY_TABLE_RE = re.compile(rf"^\s*\[\[\s*({_DOTTED_KEY})\s*\]\]\s*(?:#.*)?$")
_KEYVAL_RE = re.compile(rf"^\s*({_DOTTED_KEY})\s*=\s*(.*)$")
_INLINE_KEY_RE = re.compile(rf"[{{,]\s*({_DOTTED_KEY})\s*=")
_KEY_PART_RE = re.compile(_KEY_PART)
_TOML_POS_RE = re.compile(r"\(at line (\d+), column (\d+)\)")


def _split_key(dotted: str) -> list[str]:
    parts = []
    for m in _KEY_PART_RE.finditer(dotted):
        part = m.group(0)
        if part[:1] in ('"', "'"):
            part = part[1:-1]
        parts.append(part)
    return parts


class KeyLocator:
    """Finds the line of a dotted key in a TOML text, best-effort.

    It records the first line of every ``[table]`` header and every ``key = value`` line,
    prefixed with the current table; inside an inline table on one line, the keys get that
    line too.  Lines inside multi-line strings are skipped.
    """

    def __init__(self, text: str) -> None:
        self.lines: dict[str, int] = {}
        table: list[str] = []
        in_string: str | None = None
        for lineno, line in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            if m := _ARRAY_TABLE_RE.match(line):
                table = _split_key(m.group(1))
                self._record(table, lineno)
                continue
            if m := _TABLE_RE.match(line):
                table = _split_key(m.group(1))
                self._record(table, lineno)
                continue
            if m := _KEYVAL_RE.match(line):
                key = [*table, *_split_key(m.group(1))]
                self._record(key, lineno)
                value = m.group(2)
                if value.lstrip().startswith("{"):
                    for inner in _INLINE_KEY_RE.finditer(value):
                        self._record([*key, *_split_key(inner.group(1))], lineno)
                for quote in ('"""', "'''"):
                    if value.count(quote) % 2 == 1:
                        in_string = quote
                        break

    def _record(self, parts: list[str], lineno: int) -> None:
        # Intermediate tables of a dotted key ("[a.b]" defines "a" too).
        for i in range(1, len(parts) + 1):
            self.lines.setdefault(".".join(parts[:i]), lineno)

    def line_of(self, key: str) -> int | None:
        """The line of ``key``, else of its nearest enclosing table, else None."""
        parts = key.split(".")
        while parts:
            found = self.lines.get(".".join(parts))
            if found is not None:
                return found
            parts.pop()
        return None


# --------------------------------------------------------------------------- validation


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return "date/time"


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Checker:
    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.text = text
        self.issues: list[ConfigIssue] = []
        self._locator: KeyLocator | None = None

    def issue(self, key: str, message: str) -> None:
        if self._locator is None:
            self._locator = KeyLocator(self.text)
        line = self._locator.line_of(key) if key else None
        self.issues.append(ConfigIssue(key, line, message, self.filename))

    def check_value(self, key: str, meta: Mapping[str, Any], value: object) -> object | None:
        """Return the typed value, or None after recording an issue."""
        kind = meta["kind"]
        got = _toml_type(value)
        if kind == "bool":
            if not isinstance(value, bool):
                self.issue(key, f"expected a boolean (true or false), got {got}")
                return None
            return value
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                self.issue(key, f"expected an integer, got {got}")
                return None
            low, high, why = meta["min"], meta["max"], meta["why"]
            if not low <= value <= high:
                bound = f"at least {low}" if value < low else f"at most {high}"
                reason = f" ({why})" if why and value < low else ""
                self.issue(key, f"{value} is out of range, must be {bound}{reason}")
                return None
            return value
        if kind in ("str", "choice", "hostname"):
            if not isinstance(value, str):
                self.issue(key, f"expected a string, got {got}")
                return None
            if kind == "choice":
                choices: tuple[str, ...] = meta["choices"]
                if value not in choices:
                    allowed = ", ".join(repr(c) for c in choices)
                    self.issue(key, f"{value!r} is not one of {allowed}")
                    return None
            if kind == "hostname" and value and not is_valid_hostname(value):
                self.issue(
                    key,
                    f"{value!r} is not a valid host name (letters, digits, '-' and '.';"
                    " give international names in their xn-- form)",
                )
                return None
            return value
        if kind == "strlist":
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                self.issue(key, f"expected an array of strings, got {got}")
                return None
            return tuple(value)
        if kind == "listen":
            if isinstance(value, str):
                value = [value]  # a single entry is accepted for convenience
            if not isinstance(value, list):
                self.issue(key, f"expected an array of listen addresses, got {got}")
                return None
            parsed: list[ListenAddress] = []
            ok = True
            for index, entry in enumerate(value):
                if not isinstance(entry, str):
                    self.issue(key, f"item {index}: expected a string, got {_toml_type(entry)}")
                    ok = False
                    continue
                try:
                    parsed.append(parse_listen_address(entry))
                except ListenAddressError as exc:
                    self.issue(key, f"bad listen address: {exc}")
                    ok = False
            return tuple(parsed) if ok else None
        raise AssertionError(f"unknown setting kind {kind!r}")  # pragma: no cover

    def check_section(self, name: str, cls: type[Any], table: Mapping[str, object]) -> Any:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        for key, value in table.items():
            dotted = f"{name}.{key}"
            spec = fields.get(key)
            if spec is None and (renamed := RENAMED_KEYS.get(dotted)):
                if renamed in table:
                    self.issue(dotted, f"old name of {name}.{renamed}, which is set too")
                    continue
                key, spec = renamed, fields[renamed]
            if spec is None:
                what = "table" if isinstance(value, dict) else "key"
                self.issue(dotted, f"unknown {what} {dotted!r}{_suggest(key, fields)}")
                continue
            checked = self.check_value(dotted, spec.metadata, value)
            if checked is not None:
                values[key] = checked
        return cls(**values)

    def check_document(self, doc: Mapping[str, object]) -> Config:
        sections: dict[str, Any] = {}
        for name, table in doc.items():
            cls = SECTIONS.get(name)
            if cls is None:
                if isinstance(table, dict):
                    self.issue(name, f"unknown table [{name}]{_suggest(name, SECTIONS)}")
                else:
                    self.issue(
                        name,
                        f"unknown key {name!r}: settings belong in a table such as [server]"
                        f"{_suggest(name, SECTIONS)}",
                    )
                continue
            if not isinstance(table, dict):
                self.issue(name, f"expected a table [{name}], got {_toml_type(table)}")
                continue
            sections[name] = self.check_section(name, cls, table)
        config = Config(**sections)
        if not self.issues:  # cross-checks on half-applied settings would mislead
            self.check_cross(config)
        return config

    def check_cross(self, config: Config) -> None:
        """Rules that involve several keys."""
        if bool(config.tls.cert) != bool(config.tls.key):
            missing = "tls.key" if config.tls.cert else "tls.cert"
            present = "tls.cert" if config.tls.cert else "tls.key"
            self.issue(missing, f"{present} is set, so {missing} must be set too")
        # The same TCP port or socket path cannot be bound by two listeners.
        seen: dict[tuple[str, str, int], str] = {}
        for section_name, section in (
            ("smtp", config.smtp),
            ("imap", config.imap),
            ("pop3", config.pop3),
        ):
            for f in dataclasses.fields(section):
                if f.metadata.get("kind") != "listen":
                    continue
                key = f"{section_name}.{f.name}"
                for addr in getattr(section, f.name):
                    ident = (
                        ("unix", addr.path, 0) if addr.is_unix else ("tcp", addr.host, addr.port)
                    )
                    if ident[0] == "tcp" and ident[2] == 0:
                        continue
                    other = seen.setdefault(ident, key)
                    if other != key:
                        self.issue(key, f"{str(addr)!r} is already used by {other}")


def _check(text: str, filename: str) -> tuple[Config | None, list[ConfigIssue]]:
    checker = _Checker(text, filename)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line: int | None
        column: int | None = None
        if m := _TOML_POS_RE.search(message):
            line, column = int(m.group(1)), int(m.group(2))
            message = message[: m.start()].rstrip()
        elif "(at end of document)" in message:
            line = max(1, len(text.splitlines()))
            message = message.replace("(at end of document)", "").rstrip() + " at end of file"
        else:
            line = None
        issue = ConfigIssue("", line, f"TOML syntax error: {message}", filename, column)
        return None, [issue]
    config = checker.check_document(doc)
    return (config if not checker.issues else None), checker.issues


# --------------------------------------------------------------------------- public API


def check_config_text(text: str, filename: str = "<config>") -> list[ConfigIssue]:
    """Every problem in a configuration text; an empty list means it is valid."""
    return _check(text, filename)[1]


def parse_config_text(text: str, filename: str = "<config>") -> Config:
    """The :class:`Config` for a text, or :class:`ConfigError` with every problem."""
    config, issues = _check(text, filename)
    if config is None:
        raise ConfigError(issues)
    return config


def load_config(path: Path | None) -> Config:
    """Load the configuration file; None or a missing file gives all defaults.

    Raises :class:`ConfigError` for an unreadable file or any problem in it.
    """
    if path is None:
        return Config()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError([ConfigIssue("", None, f"cannot read: {exc.strerror}", str(path))])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            [ConfigIssue("", line, "not valid UTF-8 (TOML files are UTF-8)", str(path))]
        )
    return parse_config_text(text, str(path))


def resolve_data_dir(config: Config, cli_value: str | None, env: Mapping[str, str]) -> Path:
    """The data folder: ``--data``, then ``$POSTIER_DATA``, then ``server.data_dir``, then
    ``./data``.  Empty values are skipped; ``~`` is expanded; relative paths stay relative
    to the current directory."""
    for candidate in (cli_value, env.get(DATA_DIR_ENV), config.server.data_dir):
        if candidate:
            return Path(candidate).expanduser()
    return DEFAULT_DATA_DIR


def resolve_hostname(config: Config) -> str:
    """``server.hostname``, or the machine's fully qualified name when it is empty."""
    return config.server.hostname or socket.getfqdn()


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$POSTIER_CONFIG`` when set, else ``postier.toml`` in the current directory."""
    env = os.environ if env is None else env
    return Path(env.get("POSTIER_CONFIG") or "postier.toml")
