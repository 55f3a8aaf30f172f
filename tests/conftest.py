"""Shared fixtures: a real store in a temporary data folder, delivery, test accounts.

The store fixture is parametrised over backends; a PostgreSQL backend (later) joins by
adding a parameter here, and every store test then runs against it too.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postier.delivery import Delivery
from postier.store.sqlite import SqliteStore
from postier.store.sqlite.indexer import Indexer
from postier.store.types import Account

# Nothing a test starts may contact anything but loopback (inherited by subprocesses):
# see src/postier/net/guard.py.
os.environ["POSTIER_LOOPBACK_ONLY"] = "1"



def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--event-loop", choices=("asyncio", "uvloop"), default="asyncio",
        help="Event loop for async tests and fixtures (uvloop: as `postier serve` runs).",
    )


class _UvloopTests:
    """Runs every pytest-asyncio test on a uvloop loop (`pytest --event-loop uvloop`)."""

    @staticmethod
    def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> object:
        import uvloop

        return {"uvloop": uvloop.new_event_loop}


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--event-loop") == "uvloop":
        config.pluginmanager.register(_UvloopTests(), "postier-uvloop-tests")


# argon2id with tiny parameters keeps tests fast; production parameters are measured in
# bench/auth.py.  The hash format is the same.
TEST_PASSWORD = "correct horse battery staple"


def own_indexer(store: SqliteStore) -> Indexer:
    """The indexer thread of a store opened with its own (the default)."""
    assert store.indexer is not None
    return store.indexer


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    assert request.param == "sqlite"
    s = await SqliteStore.open(tmp_path / "data")
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def delivery(store: SqliteStore) -> Delivery:
    return Delivery(store)


def cheap_hash(password: str) -> str:
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=64, parallelism=1).hash(password)


@pytest.fixture
async def account(store: SqliteStore) -> Account:
    """alice@example.org with TEST_PASSWORD, in domain example.org."""
    await store.add_domain("example.org")
    return await store.create_account("alice@example.org", cheap_hash(TEST_PASSWORD), None)
