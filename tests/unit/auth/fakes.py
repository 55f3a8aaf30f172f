"""Fakes of auth's dependencies: a clock and an in-memory credential source."""

from postier.auth.authenticator import AccountCredentials


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemorySource:
    def __init__(self) -> None:
        self.accounts: dict[str, AccountCredentials] = {}
        self.lookups: list[str] = []

    def add(self, creds: AccountCredentials) -> None:
        self.accounts[creds.address] = creds

    async def get_credentials(self, login: str) -> AccountCredentials | None:
        self.lookups.append(login)
        return self.accounts.get(login)
