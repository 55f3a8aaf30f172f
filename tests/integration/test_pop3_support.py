"""Shared helpers of the POP3 integration tests and bench/pop3.py: a credential source over
the store and a server started on 127.0.0.1 port 0."""

from __future__ import annotations

from dataclasses import replace

from postier.auth.authenticator import AccountCredentials, Authenticator, AuthSettings
from postier.auth.limiter import LimiterSettings
from postier.auth.passwords import CHEAP_ARGON2
from postier.net.addresses import ListenAddress
from postier.pop3.server import Pop3Server, Pop3Settings
from postier.store.interface import Store

LOOPBACK = ListenAddress(kind="tcp", host="127.0.0.1", port=0)


class StoreCredentials:
    """auth.CredentialSource over the store (app.py will own the real one)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def get_credentials(self, login: str) -> AccountCredentials | None:
        account = await self.store.get_account(login)
        if account is None:
            return None
        return AccountCredentials(
            account.id, account.address, account.password_hash, account.scram, account.enabled
        )


def authenticator(store: Store, *, delay_s: float = 0.0) -> Authenticator:
    limiter = LimiterSettings(free_failures=3, base_delay_s=delay_s, max_delay_s=delay_s)
    return Authenticator(
        StoreCredentials(store), AuthSettings(limiter=limiter, argon2=CHEAP_ARGON2)
    )


async def start_server(store: Store, settings: Pop3Settings | None = None, **kw: object) -> Pop3Server:
    settings = settings or Pop3Settings()
    if not settings.listen and not settings.tls_listen:
        settings = replace(settings, listen=(LOOPBACK,))
    server = Pop3Server(store, authenticator(store), settings, **kw)  # type: ignore[arg-type]
    await server.start()
    return server


def port_of(server: Pop3Server, implicit_tls: bool = False) -> int:
    return next(p for _h, p, tls in server.bound if tls == implicit_tls)
