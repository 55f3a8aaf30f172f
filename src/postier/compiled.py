"""The modules compiled to C with mypyc, and whether this process runs them compiled.

The message parser and the SMTP core run on every message, and they are plain typed
Python (mypy --strict), which mypyc compiles to C extension
modules: the same source, about twice as fast (parse of a 10 KB message 38 against 74 µs, of the test corpus 75
against 170 µs; end to end 10 % more SMTP messages per second at 10 % less CPU:
bench/README.md, SMTP, session 7).  ``setup.py`` builds them at install (``pip install``,
``make``), next to their sources; Python's import system prefers an extension module to
the ``.py`` of the same name.  Without a C compiler, or with ``POSTIER_COMPILE=0`` at
install, nothing is built and everything runs as Python.

A compiled module calls the others of its group directly in C, not through their module
objects, so the group is used whole or not at all.  Imported by ``postier/__init__.py``
(stdlib only, never compiled itself), :func:`install` falls back to the sources for the
whole group when

- ``POSTIER_COMPILED=0`` is set (tests run the pure-Python path this way too),
- only part of the group was built, or
- a source is newer than its build (edited since: a stale extension would run old code;
  ``make`` builds again).

Frozen dataclasses: mypyc compiles a dataclass's methods, but the ``__init__`` the
decorator generates is Python made at import, and for a frozen class it sets each field
through ``object.__setattr__`` as interpreted calls: 1.1 µs for a 5-field ``Address``,
2.6 µs for a ``MimePart``, 4.9 µs for a ``ParsedMessage``.  The classes made on every
message (``MimePart``, ``ParsedMessage``, ``Address``, and the SMTP core's ``MailFrom``,
``RcptTo``, ``Message`` and ``Reply``) say ``init=False`` and write their ``__init__``
out, the same ``object.__setattr__`` calls, which mypyc compiles to stores: ~0.06 µs.
They stay frozen, hashable and comparable; a test holds each ``__init__`` to the fields'
names, order and defaults.

C_MODULES are hand-written C, each function a faster twin of Python code (tests hold
each pair equal).  Their callers import them through :func:`c_module`: used when built,
not older than the ``.c`` source and not turned off by ``POSTIER_COMPILED=0``, else the
Python runs.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

# Compiled together, in this order (setup.py reads this list).  Candidates are typed,
# CPU-bound and free of what mypyc does not compile (subclasses of builtin exceptions
# other than Exception, classes defined inside functions, functions stored in a class
# body).  The asyncio adapters, and the IMAP and POP3 cores, compile but gained nothing
# measurable (docs/architecture.md, Compiled modules).
MODULES = (
    "postier.mail.parsed",
    "postier.mail.headers",
    "postier.mail.mime",
    "postier.mail.imapfmt",
    "postier.mail.parse",
    "postier.smtp.core",
)
# Hand-written C (setup.py builds them too), with what they do for the log at start.
C_MODULES = {"postier._textscan": "text scans"}  # words.py, mail/parse.py
ENV = "POSTIER_COMPILED"  # "0": run the sources even when the extensions are built
# A build and its sources are written within moments of each other (an install unpacks
# both); a source newer by more than this was edited after the build.
STALE_AFTER_S = 2.0

_ROOT = Path(__file__).resolve().parent.parent  # the folder holding the postier package
_status = "not checked"


def source(name: str) -> Path:
    """The source of a module of MODULES (``.py``) or of C_MODULES (``.c``)."""
    return _ROOT.joinpath(*name.split(".")).with_suffix(".c" if name in C_MODULES else ".py")


def extension(name: str) -> Path | None:
    """The built extension module of ``name``, if any."""
    path = source(name)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return None


def is_stale(name: str) -> bool:
    """Whether the source of ``name`` is newer than its extension (edited since the build)."""
    built, src = extension(name), source(name)
    # no source beside it (an install that ships extensions only): nothing to compare
    return built is not None and src.exists() and (
        src.stat().st_mtime > built.stat().st_mtime + STALE_AFTER_S
    )


def stale() -> list[str]:
    """The modules of MODULES whose source is newer than their extension."""
    return [name for name in MODULES if is_stale(name)]


@functools.cache
def c_module(name: str) -> ModuleType | None:
    """The C module ``name`` (one of C_MODULES) when it is to be used, else None (the
    caller runs its Python twin): not built, built before its source last changed, or
    ``POSTIER_COMPILED=0``.  Decided once per process, so that every caller and the log
    at start (status) agree."""
    if os.environ.get(ENV) == "0" or extension(name) is None or is_stale(name):
        return None
    try:
        return importlib.import_module(name)
    except ImportError:  # built for another Python, or damaged: the twin does the work
        return None


class _SourcesFirst:
    """A meta path finder that loads the compiled group's modules from their sources."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name not in MODULES:
            return None
        return importlib.util.spec_from_file_location(name, source(name))


def install() -> None:
    """Decide, before any of MODULES is imported, whether they run compiled."""
    global _status
    built = [name for name in MODULES if extension(name) is not None]
    if not built:
        _status = "Python (no compiled modules built)"
        return
    reason = ""
    if os.environ.get(ENV) == "0":
        reason = f"{ENV}=0"
    elif len(built) < len(MODULES):
        reason = "only some modules are built; run `make` or `pip install .` again"
    elif old := stale():
        reason = f"{', '.join(old)} changed after the build; run `make` or `pip install .` again"
    if not reason:
        _status = f"compiled (mypyc): {len(MODULES)} modules"
        return
    sys.meta_path.insert(0, _SourcesFirst())
    _status = f"Python ({reason})"


def status() -> str:
    """How MODULES and C_MODULES run in this process, for the log at start."""
    return "; ".join([_status] + [
        f"{what}: {'C' if c_module(name) is not None else 'Python'}"
        for name, what in C_MODULES.items()
    ])


def running_compiled() -> bool:
    """Whether the parser and the cores imported here are the compiled ones."""
    modules = [importlib.import_module(name) for name in MODULES]
    return all(Path(m.__file__ or "").suffix != ".py" for m in modules)
