"""Listen addresses and loopback checks.

A listen entry in the configuration is one of:

- ``"127.0.0.1:25"``, ``"0.0.0.0:25"`` — an IPv4 address and a port;
- ``"[::1]:143"``, ``"[::]:143"`` — an IPv6 address in brackets and a port;
- ``"*:25"`` — every address (IPv4 and IPv6) on that port;
- ``"mail.example.org:25"`` — a host name, resolved when the listener starts;
- ``"unix:/run/postier/lmtp.sock"`` — a Unix-domain socket path (absolute).

:func:`parse_listen_address` turns one entry into a typed :class:`ListenAddress` or raises
:class:`ListenAddressError` with a message fit for an operator; configuration validation
uses the same function.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ListenAddress",
    "ListenAddressError",
    "is_loopback",
    "is_valid_hostname",
    "parse_listen_address",
]

UNIX_PREFIX = "unix:"
ALL_ADDRESSES = "*"
MAX_PORT = 65535
MAX_UNIX_PATH_BYTES = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux

# RFC 1123 §2.1 host names: labels of letters, digits and hyphens.
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$"
)


class ListenAddressError(ValueError):
    """A listen entry that cannot be parsed; the message says why."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """One parsed listen entry.

    For ``kind == "tcp"``: ``host`` is an IP literal (without brackets), a host name, or
    ``"*"`` for every address, and ``port`` is 0..65535 (0: the system picks one, useful
    in tests). For ``kind == "unix"``: ``path`` is the socket path.
    """

    kind: Literal["tcp", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def is_unix(self) -> bool:
        return self.kind == "unix"

    @property
    def all_addresses(self) -> bool:
        """True for ``*:port``: bind every IPv4 and IPv6 address."""
        return self.kind == "tcp" and self.host == ALL_ADDRESSES

    @property
    def bind_host(self) -> str | None:
        """The host to give to ``asyncio.start_server`` (None means every address)."""
        if self.kind != "tcp" or self.host == ALL_ADDRESSES:
            return None
        return self.host

    @property
    def is_loopback(self) -> bool:
        """True when only local clients can reach this address (Unix sockets included)."""
        if self.kind == "unix":
            return True
        if self.host == "localhost":
            return True
        return is_loopback(self.host)

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"{UNIX_PREFIX}{self.path}"
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _parse_port(text: str, entry: str) -> int:
    if not text:
        raise ListenAddressError(f"{entry!r}: missing port after ':'")
    if not text.isascii() or not text.isdigit():
        raise ListenAddressError(f"{entry!r}: port {text!r} is not a number")
    port = int(text)
    if port > MAX_PORT:
        raise ListenAddressError(f"{entry!r}: port {port} is out of range (0..{MAX_PORT})")
    return port


def parse_listen_address(entry: str) -> ListenAddress:
    """Parse one listen entry (see the module docstring for the accepted forms)."""
    if not isinstance(entry, str):
        raise ListenAddressError(f"expected a string, got {type(entry).__name__}")
    text = entry.strip()
    if not text:
        raise ListenAddressError("empty listen address")
    if text != entry:
        raise ListenAddressError(f"{entry!r}: leading or trailing spaces")

    if text.startswith(UNIX_PREFIX):
        path = text[len(UNIX_PREFIX) :]
        if not path:
            raise ListenAddressError(f"{entry!r}: missing socket path after 'unix:'")
        if not path.startswith("/"):
            raise ListenAddressError(f"{entry!r}: the socket path must be absolute")
        if "\x00" in path:
            raise ListenAddressError(f"{entry!r}: NUL byte in socket path")
        if len(path.encode("utf-8", "surrogateescape")) > MAX_UNIX_PATH_BYTES:
            raise ListenAddressError(
                f"{entry!r}: socket path longer than {MAX_UNIX_PATH_BYTES} bytes"
            )
        return ListenAddress(kind="unix", path=path)

    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ListenAddressError(f"{entry!r}: missing ']' after IPv6 address")
        host = text[1:close]
        rest = text[close + 1 :]
        if not rest.startswith(":"):
            raise ListenAddressError(
                f"{entry!r}: expected ':port' after ']' (for example '[::1]:143')"
            )
        port = _parse_port(rest[1:], entry)
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise ListenAddressError(f"{entry!r}: {host!r} is not an IPv6 address")
        return ListenAddress(kind="tcp", host=host, port=port)

    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ListenAddressError(
            f"{entry!r}: expected 'host:port', '[ipv6]:port', '*:port' or 'unix:/path'"
        )
    if ":" in host:
        raise ListenAddressError(
            f"{entry!r}: an IPv6 address must be in brackets, for example '[::1]:143'"
        )
    if not host:
        raise ListenAddressError(f"{entry!r}: missing host before ':' (use '*:port' for all)")
    port = _parse_port(port_text, entry)
    if host == ALL_ADDRESSES:
        return ListenAddress(kind="tcp", host=ALL_ADDRESSES, port=port)
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        if all(part.isdigit() for part in host.split(".")):
            raise ListenAddressError(f"{entry!r}: {host!r} is not an IPv4 address")
        if not is_valid_hostname(host):
            raise ListenAddressError(f"{entry!r}: {host!r} is not an IP address or host name")
    return ListenAddress(kind="tcp", host=host, port=port)


def is_valid_hostname(name: str) -> bool:
    """True for an ASCII host name (RFC 1123 §2.1 labels, one trailing dot allowed).

    Internationalised names must be given in their ASCII (``xn--``) form.
    """
    return name.isascii() and _HOSTNAME_RE.match(name) is not None


def is_loopback(ip: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (``::ffff:127.x.y.z``).

    Anything that is not an IP literal (a host name, an empty string) is not loopback:
    this is used for security decisions (plaintext AUTH), so it never resolves names.
    """
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]  # zone index, e.g. "fe80::1%eth0"
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback
