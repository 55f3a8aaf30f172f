"""Self-signed certificate generation, server contexts and TLS descriptions."""

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from postier.net.tls import TlsSetupError, describe_tls, ensure_certificate, server_context


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    data_dir = tmp_path_factory.mktemp("data")
    cert, key = ensure_certificate(data_dir, "mx.example.org")
    return data_dir, cert, key


def test_certificate_files_exist_with_private_key(cert_pair: tuple[Path, Path, Path]) -> None:
    data_dir, cert, key = cert_pair
    assert cert.is_file() and key.is_file()
    assert cert.parent == key.parent == data_dir / "tls"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_certificate_names_host_and_loopback(cert_pair: tuple[Path, Path, Path]) -> None:
    _, cert_path, _ = cert_pair
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"mx.example.org", "localhost"}
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days >= 3649


def test_certificate_reused_on_second_call(cert_pair: tuple[Path, Path, Path]) -> None:
    data_dir, cert, key = cert_pair
    before = (cert.read_bytes(), key.read_bytes())
    assert ensure_certificate(data_dir, "mx.example.org") == (cert, key)
    assert (cert.read_bytes(), key.read_bytes()) == before


def test_certificate_regenerated_for_new_hostname(tmp_path: Path) -> None:
    cert, _ = ensure_certificate(tmp_path, "a.example.org")
    first = cert.read_bytes()
    ensure_certificate(tmp_path, "b.example.org")
    assert cert.read_bytes() != first


def test_corrupt_certificate_is_replaced(tmp_path: Path) -> None:
    cert, key = ensure_certificate(tmp_path, "mx.example.org")
    cert.write_text("garbage")
    ensure_certificate(tmp_path, "mx.example.org")
    server_context(cert, key)  # loads


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[str, str]:
    a, b = socket.socketpair()
    a.settimeout(10)
    b.settimeout(10)
    result: dict[str, str] = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                result["server"] = describe_tls(s)
                s.sendall(b"+OK\r\n")
        except (ssl.SSLError, OSError) as exc:
            result["server_error"] = str(exc)
            a.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname="mx.example.org") as c:
            assert c.recv(5) == b"+OK\r\n"
            client = describe_tls(c)
    finally:
        thread.join(10)
    return result["server"], client


def test_handshake_with_generated_context(cert_pair: tuple[Path, Path, Path]) -> None:
    _, cert, key = cert_pair
    client_ctx = ssl.create_default_context(cafile=str(cert))  # verifies name and chain
    server, client = _handshake(server_context(cert, key), client_ctx)
    assert server == client
    assert server.startswith("TLSv1.3 ")


def test_min_version_refuses_older_clients(cert_pair: tuple[Path, Path, Path]) -> None:
    _, cert, key = cert_pair
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        _handshake(server_context(cert, key, "TLSv1.3"), client_ctx)


def test_tls12_handshake_uses_aead_cipher(cert_pair: tuple[Path, Path, Path]) -> None:
    _, cert, key = cert_pair
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    server, _ = _handshake(server_context(cert, key), client_ctx)
    assert server.startswith("TLSv1.2 ECDHE-")
    assert "GCM" in server or "CHACHA20" in server


def test_context_disables_compression(cert_pair: tuple[Path, Path, Path]) -> None:
    _, cert, key = cert_pair
    ctx = server_context(cert, key)
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_server_context_errors_are_clear(
    tmp_path: Path, cert_pair: tuple[Path, Path, Path]
) -> None:
    _, cert, key = cert_pair
    with pytest.raises(TlsSetupError, match="not found"):
        server_context(tmp_path / "missing.pem", key)
    with pytest.raises(TlsSetupError, match="unknown TLS version"):
        server_context(cert, key, "TLSv1.0")
    other_cert, _ = ensure_certificate(tmp_path, "other.example.org")
    with pytest.raises(TlsSetupError, match="cannot use certificate"):
        server_context(other_cert, key)


def test_describe_tls_without_tls() -> None:
    assert describe_tls(None) == ""
