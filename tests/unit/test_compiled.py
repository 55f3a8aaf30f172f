"""The modules compiled with mypyc and the hand-written C ones (src/postier/compiled.py):
built by the install, in use, and set aside for their sources when those changed after
the build."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from postier import compiled

SRC = Path(compiled.__file__).resolve().parent.parent
PROBE = (
    "import postier.compiled as c, postier.mail.parse as p; "
    "print(c.status()); print(c.running_compiled()); print(p.parse_message(b'Subject: x\\r\\n\\r\\nhi\\r\\n').subject)"
)


def probe(src: Path, **env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k != compiled.ENV}
    environ.update(env, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-c", PROBE], env=environ, capture_output=True,
                         text=True, timeout=60, check=True, cwd=src)
    return out.stdout.splitlines()


TEXTSCAN = "postier._textscan"
C_USED = "; text scans: C"


def test_the_install_built_every_module_and_this_process_runs_them() -> None:
    missing = [name for name in [*compiled.MODULES, *compiled.C_MODULES]
               if compiled.extension(name) is None]
    assert not missing, f"not built: {missing} (make builds them: setup.py)"
    assert compiled.stale() == []
    if os.environ.get(compiled.ENV) == "0":
        assert not compiled.running_compiled()
        assert compiled.c_module(TEXTSCAN) is None
    else:
        assert compiled.running_compiled(), compiled.status()
        assert compiled.status().startswith("compiled")
        assert compiled.status().endswith(C_USED)
        assert compiled.c_module(TEXTSCAN) is not None


def copy_tree(tmp_path: Path) -> Path:
    """src/ with its built extensions (the group's shared library is at the top)."""
    dest = tmp_path / "src"
    shutil.copytree(SRC / "postier", dest / "postier",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for lib in SRC.glob("*__mypyc*"):
        shutil.copy2(lib, dest / lib.name)
    return dest


def test_a_source_edited_after_the_build_runs_the_whole_group_as_python(tmp_path: Path) -> None:
    src = copy_tree(tmp_path)
    assert probe(src) == [f"compiled (mypyc): {len(compiled.MODULES)} modules{C_USED}", "True", "x"]
    edited = src / "postier" / "mail" / "headers.py"
    built = compiled.extension("postier.mail.headers")
    assert built is not None
    later = built.stat().st_mtime + 60  # a minute after the build
    os.utime(edited, (later, later))
    status, running, subject = probe(src)
    assert status == ("Python (postier.mail.headers changed after the build; "
                      f"run `make` or `pip install .` again){C_USED}")
    assert (running, subject) == ("False", "x")


def test_an_incomplete_build_and_the_variable_run_python(tmp_path: Path) -> None:
    src = copy_tree(tmp_path)
    assert probe(src, POSTIER_COMPILED="0")[:2] == [
        "Python (POSTIER_COMPILED=0); text scans: Python", "False"]
    built = compiled.extension("postier.smtp.core")
    assert built is not None
    (src / "postier" / "smtp" / built.name).unlink()
    assert probe(src)[:2] == [
        f"Python (only some modules are built; run `make` or `pip install .` again){C_USED}",
        "False"]


def test_the_c_term_scanner_is_set_aside_when_edited_or_missing(tmp_path: Path) -> None:
    src = copy_tree(tmp_path)
    built = compiled.extension(TEXTSCAN)
    assert built is not None
    edited = src / "postier" / "_textscan.c"
    later = built.stat().st_mtime + 60
    os.utime(edited, (later, later))
    compiled_status = f"compiled (mypyc): {len(compiled.MODULES)} modules"
    assert probe(src)[:2] == [f"{compiled_status}; text scans: Python", "True"]
    os.utime(edited, (built.stat().st_mtime, built.stat().st_mtime))
    assert probe(src)[:2] == [f"{compiled_status}{C_USED}", "True"]
    (src / "postier" / built.name).unlink()
    assert probe(src)[:2] == [f"{compiled_status}; text scans: Python", "True"]


def _pure_tests() -> list[str]:
    """The Makefile's PURE_TESTS: what `make test` runs once more with the sources."""
    for line in (SRC.parent / "Makefile").read_text().splitlines():
        if line.startswith("PURE_TESTS :="):
            return line.partition(":=")[2].split()
    raise AssertionError("no PURE_TESTS in the Makefile")


def _covered(path: str, pure: list[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in pure)


def test_make_runs_the_tests_of_every_compiled_module_also_as_python() -> None:
    """The tests of a module of MODULES (those of its package's unit tests and of the
    property tests that import it) are in PURE_TESTS, and so is every test of a C twin
    (those that ask for the C module): a module added to the lists without its tests
    there would leave the Python it compiles, or stands for, untested."""
    pure = _pure_tests()
    root = SRC.parent
    tests = root / "tests"
    for name in compiled.MODULES:
        package = tests / "unit" / name.split(".")[1]
        own = sorted(
            str(p.relative_to(root)) for p in [*package.glob("test_*.py"), *(tests / "properties").glob("test_*.py")]
            if f"{name} import" in p.read_text() or f"import {name}" in p.read_text()
        )
        assert own, f"{name}: no test imports it"
        uncovered = [path for path in own if not _covered(path, pure)]
        assert not uncovered, f"{name}: add {uncovered} to the Makefile's PURE_TESTS"
    for name in compiled.C_MODULES:
        users = _c_twin_tests(name)
        assert users, f"{name}: no test compares it with its Python twin"
        uncovered = [path for path in users if not _covered(path, pure)]
        assert not uncovered, f"{name}: add {uncovered} to the Makefile's PURE_TESTS"


def _c_twin_tests(name: str) -> list[str]:
    """The test files that hold C module ``name`` to its Python twin (they ask for it)."""
    root = SRC.parent
    return sorted(
        str(p.relative_to(root)) for p in (root / "tests").rglob("test_*.py")
        if f'c_module("{name}")' in p.read_text() and p.name != "test_compiled.py"
    )


def test_the_c_modules_pass_their_tests_under_address_and_undefined_sanitizers(
    tmp_path: Path,
) -> None:
    """Hand-written C reads and writes memory by hand: each C module is built again with
    AddressSanitizer and UndefinedBehaviorSanitizer (gcc, as setup.py builds it) and the
    tests holding it to its Python twin run on that build.  A read or write past a buffer,
    a use after free or undefined behaviour aborts them."""
    gcc = shutil.which("gcc")
    assert gcc is not None, "gcc is missing (the Makefile installs it: BUILD_PACKAGES)"
    runtime = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True,
                             text=True, check=True).stdout.strip()
    assert os.path.isabs(runtime), "gcc has no AddressSanitizer runtime (libasan)"
    src = copy_tree(tmp_path)
    include = sysconfig.get_paths()["include"]
    for name in compiled.C_MODULES:
        built = compiled.extension(name)
        assert built is not None
        target = src / built.relative_to(SRC)
        subprocess.run(
            [gcc, "-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer",
             "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
             f"-I{include}", str(src / compiled.source(name).relative_to(SRC)), "-o", str(target)],
            check=True, timeout=120,
        )
    environ = {k: v for k, v in os.environ.items() if k != compiled.ENV}
    # pymalloc would hand small objects out of its own arenas, where ASan sees no bounds.
    environ.update(PYTHONPATH=str(src), PYTHONMALLOC="malloc", LD_PRELOAD=runtime,
                   ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
    used = subprocess.run(
        [sys.executable, "-c", "import postier.compiled as c; print(c.status()); "
         + "; ".join(f"print(__import__('{name}').__file__)" for name in compiled.C_MODULES)],
        env=environ, capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()
    assert used[0].endswith(C_USED), used
    assert all(path.startswith(str(src)) for path in used[1:]), used
    tests = sorted({path for name in compiled.C_MODULES for path in _c_twin_tests(name)})
    assert tests
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-p", "no:xdist", *tests],
        env=environ, capture_output=True, text=True, timeout=600, cwd=SRC.parent,
    )
    report = next((run.stderr[i:i + 3000] for mark in ("ERROR: AddressSanitizer", "runtime error")
                   if (i := run.stderr.find(mark)) >= 0), run.stderr[-3000:])
    assert run.returncode == 0, run.stdout[-2000:] + report


# The frozen dataclasses whose __init__ is written out (compiled.py, "Frozen dataclasses").
def _written_out() -> list[type]:
    from postier.mail.headers import Address
    from postier.mail.parsed import MimePart, ParsedMessage
    from postier.smtp.core import MailFrom, Message, RcptTo, Reply

    return [MimePart, ParsedMessage, Address, MailFrom, RcptTo, Message, Reply]


def test_written_out_inits_take_the_fields_in_order_with_their_defaults() -> None:
    """Read from the source: a compiled __init__ has no signature to inspect."""
    import ast
    import dataclasses

    for cls in _written_out():
        tree = ast.parse(compiled.source(cls.__module__).read_text())
        node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
        init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
        args = init.args.args[1:]
        defaults = [dataclasses.MISSING] * (len(args) - len(init.args.defaults)) + [
            ast.literal_eval(d) for d in init.args.defaults]
        fields = [f for f in dataclasses.fields(cls) if f.init]
        assert [a.arg for a in args] == [f.name for f in fields], cls
        assert defaults == [f.default for f in fields], cls
        assert not init.args.kwonlyargs and init.args.vararg is None and init.args.kwarg is None
        # every field, the ones kept out of __init__ too, is set
        set_names = [ast.literal_eval(call.args[1]) for call in ast.walk(init)
                     if isinstance(call, ast.Call) and ast.unparse(call.func) == "object.__setattr__"]
        assert set_names == [f.name for f in dataclasses.fields(cls)], cls


def test_written_out_inits_keep_the_classes_frozen_hashable_and_comparable() -> None:
    import dataclasses

    from postier.mail.headers import Address
    from postier.mail.parse import parse_message
    from postier.smtp.core import C250_OK, MailFrom, Reply

    a, b = Address(b"A", None, b"a", b"example.org"), Address(b"A", None, b"a", b"example.org")
    assert a == b and hash(a) == hash(b) and a != dataclasses.replace(a, host=b"example.net")
    assert repr(a) == "Address(name=b'A', adl=None, mailbox=b'a', host=b'example.org', group=False)"
    try:
        a.host = b"x"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:
        raise AssertionError("Address is no longer frozen")
    assert MailFrom("x@example.org") == MailFrom("x@example.org", None, "", False, "", "", "")
    parsed = parse_message(b"Subject: hi\r\nFrom: A <a@example.org>\r\n\r\nbody\r\n")
    assert dataclasses.replace(parsed) == parsed and parsed.subject == "hi"
    # a reply's wire form is kept once made, and takes no part in equality
    sent = Reply(250, "2.0.0", "OK")
    assert sent.to_bytes() == b"250 2.0.0 OK\r\n" and sent == Reply(250, "2.0.0", "OK")
    assert C250_OK.to_bytes() is C250_OK.to_bytes()
    assert "wire" not in repr(sent) and hash(sent) == hash(Reply(250, "2.0.0", "OK"))
