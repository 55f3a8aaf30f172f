"""Helpers of the IMAP integration tests: a server on 127.0.0.1 port 0 over the real store."""

from __future__ import annotations

from dataclasses import replace

from postier.imap.server import ImapServer, ImapSettings
from postier.net.addresses import ListenAddress
from postier.store.interface import Store
from tests.integration.test_pop3_support import authenticator

LOOPBACK = ListenAddress(kind="tcp", host="127.0.0.1", port=0)


async def start_server(store: Store, settings: ImapSettings | None = None, **kw: object) -> ImapServer:
    settings = settings or ImapSettings()
    if not settings.listen and not settings.tls_listen:
        settings = replace(settings, listen=(LOOPBACK,))
    server = ImapServer(store, authenticator(store), settings, **kw)  # type: ignore[arg-type]
    await server.start()
    return server


def port_of(server: ImapServer, implicit_tls: bool = False) -> int:
    return next(p for _h, p, tls in server.bound if tls == implicit_tls)
