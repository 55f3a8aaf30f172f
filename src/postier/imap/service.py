"""Starts the IMAP listeners of ``config.imap`` for the app (RFC 9051; RFC 8314 for 993)."""

from __future__ import annotations

from postier.app import App
from postier.imap.server import ImapServer, ImapSettings


def settings_from(app: App) -> ImapSettings:
    cfg = app.config.imap
    return ImapSettings(
        listen=cfg.listen,
        tls_listen=cfg.tls_listen,
        max_line_bytes=cfg.max_line_bytes,
        max_literal_bytes=cfg.max_literal_bytes,
        idle_timeout_s=float(cfg.idle_timeout_s),
        allow_plaintext_auth_on_loopback=cfg.allow_plaintext_auth_on_loopback,
        hostname=app.hostname or "postier",
        reuse_port=app.reuse_port,
        # Per process: with [server] workers > 1 each worker counts its own connections.
        max_connections=app.config.server.max_connections,
        max_connections_per_ip=app.config.server.max_connections_per_ip,
    )


async def start_imap(app: App) -> None:
    """Bind ``listen`` (STARTTLS) and ``tls_listen`` (implicit TLS); register the stop."""
    cfg = app.config.imap
    if not (cfg.listen or cfg.tls_listen):
        return
    assert app.store is not None and app.authenticator is not None
    server = ImapServer(app.store, app.authenticator, settings_from(app), app.tls)
    await server.start()
    app.add_service(
        [
            f"IMAP        {_hostport(h, p)}{' (implicit TLS)' if tls else ' (STARTTLS)'}"
            for h, p, tls in server.bound
        ],
        server.stop,
    )


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
