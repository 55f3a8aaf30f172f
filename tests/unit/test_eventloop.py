"""Choosing the event loop `postier serve` runs on (server.event_loop)."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest

from postier.eventloop import EventLoopUnavailable, choose_event_loop, describe_loop, run

uvloop = pytest.importorskip("uvloop")


async def running_loop_description() -> str:
    return describe_loop(asyncio.get_running_loop())


def test_uvloop_and_auto_run_on_uvloop() -> None:
    for setting in ("uvloop", "auto"):
        choice = choose_event_loop(setting)
        assert choice.name == "uvloop"
        assert run(running_loop_description(), choice).startswith("uvloop 0.")


def test_asyncio_runs_on_the_standard_loop() -> None:
    choice = choose_event_loop("asyncio")
    assert (choice.name, choice.factory) == ("asyncio", None)
    assert run(running_loop_description(), choice).startswith("asyncio (_UnixSelectorEventLoop")


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError("No module named 'uvloop'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert choose_event_loop("auto").name == "asyncio"
    with pytest.raises(EventLoopUnavailable, match="pip install uvloop"):
        choose_event_loop("uvloop")


def test_unknown_setting() -> None:
    with pytest.raises(ValueError, match="unknown event loop"):
        choose_event_loop("trio")
