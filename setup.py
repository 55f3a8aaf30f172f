"""Builds the modules listed in postier/compiled.py as C extensions: MODULES with mypyc,
C_MODULES from their hand-written C.

Everything else is in pyproject.toml.  ``POSTIER_COMPILE=0`` skips the build, and a build
that fails (no C compiler) leaves postier in pure Python with a warning: the compiled
modules are the same source, only faster (see src/postier/compiled.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "src"))
from postier.compiled import C_MODULES, MODULES  # noqa: E402  (stdlib only)


class OptionalBuildExt(build_ext):
    """A failed compile is a warning: postier then runs its modules as Python."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # the rest unbuilt: compiled.py then runs all as Python
            print(f"warning: compiled modules not built ({exc}); postier runs as pure Python",
                  file=sys.stderr)


def remove_old_builds() -> None:
    """Extensions built in place before (pip install -e): a module taken off the list
    would otherwise still load its old extension, which Python prefers to the source."""
    src = HERE / "src"
    for path in [*src.glob("postier/**/*.so"), *src.glob("*__mypyc*.so")]:
        path.unlink()


def c_extensions() -> list[Any]:
    return [
        Extension(name, [str(Path("src", *name.split(".")).with_suffix(".c"))],
                  extra_compile_args=["-O2"])
        for name in C_MODULES
    ]


def extensions() -> list[Any]:
    remove_old_builds()
    if os.environ.get("POSTIER_COMPILE") == "0":
        return []
    return c_extensions() + mypyc_extensions()


def mypyc_extensions() -> list[Any]:
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("warning: mypyc not found; postier runs as pure Python", file=sys.stderr)
        return []
    paths = [str(Path("src", *name.split(".")).with_suffix(".py")) for name in MODULES]
    # mypyc type-checks what it compiles, in pip's build environment, where postier's
    # dependencies are not installed: the modules they reach are read for their types
    # only (``make test`` runs mypy --strict on everything), with a cache of its own.
    config = HERE / "build" / "mypyc.ini"
    config.parent.mkdir(exist_ok=True)
    config.write_text("[mypy]\nignore_missing_imports = True\nfollow_imports = silent\n"
                      f"cache_dir = {HERE / 'build' / 'mypyc-cache'}\n")
    try:
        return list(mypycify(["--config-file", str(config), *paths], opt_level="3"))
    except (Exception, SystemExit) as exc:  # type errors exit; never fail the install
        print(f"warning: mypyc failed ({exc}); postier runs as pure Python", file=sys.stderr)
        return []


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
