"""TLS: the self-signed fallback certificate, server contexts, and one-line descriptions.

- :func:`ensure_certificate` creates a self-signed certificate and key in the data folder
  the first time and reuses them afterwards (regenerated only when unreadable, expiring
  within 30 days, or not covering the host name).  The key file is mode 0600.
- :func:`server_context` builds the :class:`ssl.SSLContext` used for implicit TLS
  (RFC 8314: 465, 993, 995) and STARTTLS/STLS (RFC 3207, RFC 9051 §6.2.1, RFC 2595):
  TLS 1.2 or newer, forward-secret AEAD ciphers for TLS 1.2, no compression (CRIME),
  no renegotiation.
- :func:`describe_tls` renders a handshake as ``"TLSv1.3 TLS_AES_256_GCM_SHA384"`` for
  ``Received:`` headers (RFC 5321 §4.4) and logs.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "CERT_FILENAME",
    "KEY_FILENAME",
    "TLS_DIRNAME",
    "TlsSetupError",
    "describe_tls",
    "ensure_certificate",
    "server_context",
]

TLS_DIRNAME: Final = "tls"
CERT_FILENAME: Final = "selfsigned-cert.pem"
KEY_FILENAME: Final = "selfsigned-key.pem"
VALIDITY: Final = datetime.timedelta(days=3650)  # 10 years
RENEW_BEFORE: Final = datetime.timedelta(days=30)

TLS_VERSIONS: Final = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}

# TLS 1.2 suites: ECDHE/DHE key exchange with AEAD only (Mozilla "intermediate", 2024).
# TLS 1.3 suites are all AEAD and are not affected by this string.
TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!SHA1"


class TlsSetupError(Exception):
    """A certificate, key or TLS setting cannot be used; the message says which and why."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _san_names(hostname: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()

    def add_dns(name: str) -> None:
        try:
            ascii_name = name.encode("idna").decode("ascii") if not name.isascii() else name
        except UnicodeError:
            return
        if ascii_name and ascii_name.lower() not in seen:
            seen.add(ascii_name.lower())
            names.append(x509.DNSName(ascii_name))

    extra_ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    if hostname:
        try:
            extra_ips.append(ipaddress.ip_address(hostname))
        except ValueError:
            add_dns(hostname.rstrip("."))
    add_dns("localhost")
    ips = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"), *extra_ips]
    for ip in dict.fromkeys(ips):
        names.append(x509.IPAddress(ip))
    return names


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` atomically to ``path`` with ``mode`` from the first byte on."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _generate(cert_path: Path, key_path: Path, hostname: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = (hostname or "localhost")[:64]
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "postier self-signed"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_san_names(hostname)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Key first: a certificate on disk without its key would be reused and then fail.
    _write_private(key_path, key_pem, 0o600)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _reusable(cert_path: Path, key_path: Path, hostname: str) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    if cert.public_key() != key.public_key():
        return False
    if cert.not_valid_after_utc - RENEW_BEFORE < _now():
        return False
    if not hostname:
        return True
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    wanted = {str(n.value).lower() for n in _san_names(hostname)}
    present = {str(n.value).lower() for n in san}
    return wanted <= present


def ensure_certificate(data_dir: Path, hostname: str) -> tuple[Path, Path]:
    """Return ``(cert_path, key_path)`` of the self-signed pair in ``data_dir/tls``.

    Generated once (EC P-256, SHA-256, 10 years; SAN: ``hostname``, ``localhost``,
    127.0.0.1, ::1) and reused on later calls while valid for ``hostname``.
    """
    tls_dir = data_dir / TLS_DIRNAME
    try:
        tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise TlsSetupError(f"cannot create {tls_dir}: {exc.strerror}")
    cert_path = tls_dir / CERT_FILENAME
    key_path = tls_dir / KEY_FILENAME
    if not _reusable(cert_path, key_path, hostname):
        try:
            _generate(cert_path, key_path, hostname)
        except OSError as exc:
            raise TlsSetupError(f"cannot write the self-signed certificate in {tls_dir}: {exc}")
    elif key_path.stat().st_mode & 0o077:
        os.chmod(key_path, 0o600)  # repair a key made readable by others
    return cert_path, key_path


def server_context(cert: Path, key: Path, min_version: str = "TLSv1.2") -> ssl.SSLContext:
    """A server-side context for ``cert`` and ``key`` (PEM; the cert file may hold the chain).

    Raises :class:`TlsSetupError` for an unknown ``min_version`` or unusable files.
    """
    version = TLS_VERSIONS.get(min_version)
    if version is None:
        allowed = ", ".join(TLS_VERSIONS)
        raise TlsSetupError(f"unknown TLS version {min_version!r} (use one of {allowed})")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = version
    ctx.options |= ssl.OP_NO_COMPRESSION  # CRIME
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= ssl.OP_SINGLE_ECDH_USE | ssl.OP_SINGLE_DH_USE
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.verify_mode = ssl.CERT_NONE  # mail clients do not present certificates
    try:
        ctx.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except FileNotFoundError as exc:
        raise TlsSetupError(f"cannot read {exc.filename or cert}: file not found")
    except PermissionError as exc:
        raise TlsSetupError(f"cannot read {exc.filename or key}: permission denied")
    except ssl.SSLError as exc:
        raise TlsSetupError(f"cannot use certificate {cert} with key {key}: {exc.reason or exc}")
    return ctx


def describe_tls(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> str:
    """``"TLSv1.3 TLS_AES_256_GCM_SHA384"``; ``""`` without TLS or before the handshake."""
    if ssl_object is None:
        return ""
    version = ssl_object.version()
    cipher = ssl_object.cipher()
    if version is None or cipher is None:
        return ""
    return f"{version} {cipher[0]}"
