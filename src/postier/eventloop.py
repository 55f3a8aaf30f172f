"""Which asyncio event loop ``postier serve`` runs on: uvloop when available, else asyncio.

``[server] event_loop`` chooses: ``"auto"`` (uvloop when it can be imported, else the
standard loop), ``"uvloop"`` (refuse to start without it) or ``"asyncio"``.  uvloop (libuv,
Cython) spends less CPU per socket read/write, timer and thread wake-up than the
standard loop; see docs/architecture.md for the measured gain and bench/README.md.

- :func:`choose_event_loop` turns the setting into an :class:`EventLoopChoice`.
- :func:`run` runs a coroutine to completion on a new loop of that kind.
- :func:`describe_loop` names a running loop, for the start-up log line.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import platform
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from postier.config import EVENT_LOOPS
from postier.errors import PostierError

__all__ = [
    "EVENT_LOOPS",
    "EventLoopChoice",
    "EventLoopUnavailable",
    "choose_event_loop",
    "describe_loop",
    "run",
]

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


class EventLoopUnavailable(PostierError):
    """``event_loop = "uvloop"`` was asked for but uvloop cannot be imported."""


@dataclass(frozen=True, slots=True)
class EventLoopChoice:
    name: str  # "uvloop" or "asyncio"
    factory: LoopFactory | None  # None: asyncio's default loop


def choose_event_loop(setting: str) -> EventLoopChoice:
    """The loop for ``server.event_loop``; raises :class:`EventLoopUnavailable` when
    ``"uvloop"`` is asked for and not installed (``"auto"`` falls back to asyncio)."""
    if setting not in EVENT_LOOPS:
        raise ValueError(f"unknown event loop {setting!r} (use one of {', '.join(EVENT_LOOPS)})")
    if setting != "asyncio":
        try:
            import uvloop
        except ImportError as exc:
            if setting == "uvloop":
                raise EventLoopUnavailable(
                    f'server.event_loop = "uvloop" but uvloop cannot be imported ({exc});'
                    ' install it (pip install uvloop) or set event_loop = "auto"'
                ) from None
        else:
            return EventLoopChoice("uvloop", uvloop.new_event_loop)
    return EventLoopChoice("asyncio", None)


def run(coro: Coroutine[Any, Any, T], choice: EventLoopChoice) -> T:
    """Like :func:`asyncio.run`, on a new loop of the chosen kind."""
    with asyncio.Runner(loop_factory=choice.factory) as runner:
        return runner.run(coro)


def describe_loop(loop: asyncio.AbstractEventLoop) -> str:
    """``"uvloop 0.23.0"`` or ``"asyncio (_UnixSelectorEventLoop, Python 3.11.7)"``."""
    module = type(loop).__module__
    if module.split(".")[0] == "uvloop":
        return f"uvloop {importlib.metadata.version('uvloop')}"
    return f"asyncio ({type(loop).__name__}, Python {platform.python_version()})"
