"""The ``postier`` command: run the server and administer domains, users and aliases.

Every command that touches data takes ``--data DIR`` (or ``POSTIER_DATA``) and
``--config FILE`` (or ``POSTIER_CONFIG``).  Errors are one clear line on stderr and a
non-zero exit; ``postier deliver`` exits with sysexits codes so an MTA can act on them.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from postier import __version__
from postier.auth.passwords import generate_password, hash_password, scram_credentials
from postier.config import (
    Config,
    ConfigError,
    check_config_text,
    default_config_path,
    load_config,
    resolve_data_dir,
)
from postier.errors import PostierError
from postier.log import setup_logging
from postier.store.sqlite import SqliteStore

T = TypeVar("T")

# sysexits.h, as MTAs expect from a local delivery agent.
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78

DEMO_DOMAIN = "localhost"
DEMO_ACCOUNT = "demo@localhost"
MAX_DELIVER_BYTES = 512 * 1024 * 1024

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """ "0", "none", "500K", "100M", "1.5G" → bytes (powers of 1024; 0 = unlimited)."""
    if text.strip().lower() in ("none", "unlimited"):
        return 0
    m = _SIZE_RE.match(text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a size (examples: 500M, 2G, 0 for unlimited)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_size(size: int) -> str:
    if size == 0:
        return "unlimited"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


@dataclass
class Context:
    config_path: Path | None
    data_option: str | None
    log_level: str | None

    def config(self) -> Config:
        path = self.config_path or default_config_path()
        try:
            return load_config(path if path.exists() or self.config_path else None)
        except ConfigError as exc:
            fail(f"configuration errors:\n{exc}", EX_CONFIG)

    def data_dir(self, config: Config) -> Path:
        return resolve_data_dir(config, self.data_option, os.environ)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"postier: {message}", err=True)
    sys.exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except PostierError as exc:
        fail(str(exc))


async def with_store(ctx: Context, fn: Callable[[SqliteStore], Awaitable[T]]) -> T:
    config = ctx.config()
    store = await SqliteStore.open(
        ctx.data_dir(config), readers=1, group_commit_max=config.store.group_commit_max
    )
    try:
        return await fn(store)
    finally:
        await store.close()


pass_ctx = click.make_pass_decorator(Context)


def _data_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--data", "data", metavar="DIR", envvar="POSTIER_DATA",
        help="Data folder (default: server.data_dir from the config, else ./data).",
    )(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="postier")
@click.option("--config", "config_path", type=click.Path(path_type=Path), envvar="POSTIER_CONFIG",
              metavar="FILE", help="Configuration file (default: ./postier.toml if present).")
@_data_options
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Log verbosity (default: server.log_level from the config).")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, data: str | None, log_level: str | None) -> None:
    """postier: a complete, self-hosted mail server (SMTP, IMAP, POP3) in one process.

    Quick start: `postier serve --demo` creates a demo account and runs on loopback
    development ports.  `postier COMMAND --help` explains each command.
    """
    ctx.obj = Context(config_path, data, log_level)


def _sub_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Accept --data/--config after the subcommand too (`postier serve --data d`)."""
    f = click.option("--config", "config_path", type=click.Path(path_type=Path),
                     metavar="FILE", help="Configuration file.", default=None)(f)
    f = click.option("--data", "data", metavar="DIR", default=None,
                     help="Data folder (or POSTIER_DATA).")(f)
    return f


def _merge(ctx: Context, config_path: Path | None, data: str | None) -> Context:
    return Context(config_path or ctx.config_path, data or ctx.data_option, ctx.log_level)


# serve ------------------------------------------------------------------------------


@main.command()
@_sub_options
@click.option("--demo", is_flag=True,
              help=f"On an empty data folder, create domain {DEMO_DOMAIN} and account "
                   f"{DEMO_ACCOUNT}, and print its password once.")
@click.option("--log-level", "serve_log_level",
              type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="Log verbosity.")
@pass_ctx
def serve(ctx: Context, config_path: Path | None, data: str | None, demo: bool,
          serve_log_level: str | None) -> None:
    """Run the mail server in the foreground until Ctrl-C or SIGTERM."""
    from postier.app import App
    from postier.app import serve as serve_app

    ctx = _merge(ctx, config_path, data)
    config = ctx.config()
    data_dir = ctx.data_dir(config)
    setup_logging(serve_log_level or ctx.log_level or config.server.log_level)
    if demo:
        run(_ensure_demo(ctx))

    def ready(app: App) -> None:
        click.echo(f"postier {__version__} serving data in {data_dir.resolve()}")
        for line in app.listening:
            click.echo(f"  {line}")
        if not app.listening:
            click.echo("  (no listeners configured)")
        click.echo("Press Ctrl-C to stop.")

    try:
        asyncio.run(serve_app(App(config, data_dir), ready))
    except PostierError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot start: {exc}")
    click.echo("postier stopped.")


async def _ensure_demo(ctx: Context) -> None:
    async def fn(store: SqliteStore) -> None:
        if await store.list_domains():
            return
        password = generate_password()
        await store.add_domain(DEMO_DOMAIN)
        await store.create_account(
            DEMO_ACCOUNT, hash_password(password), scram_credentials(password)
        )
        click.echo("Created the demo domain and account (shown once, keep the password):")
        click.echo(f"  login:    {DEMO_ACCOUNT}")
        click.echo(f"  password: {password}")

    await with_store(ctx, fn)


# config -----------------------------------------------------------------------------


@main.group("config")
def config_group() -> None:
    """Check the configuration file."""


@config_group.command("check")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@pass_ctx
def config_check(ctx: Context, file: Path | None) -> None:
    """Check FILE (default: --config, POSTIER_CONFIG or ./postier.toml); list every error."""
    path = file or ctx.config_path or default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", EX_CONFIG)
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text", EX_CONFIG)
    issues = check_config_text(text, str(path))
    for issue in issues:
        click.echo(str(issue), err=True)
    if issues:
        fail(f"{len(issues)} error(s) in {path}", EX_CONFIG)
    click.echo(f"{path}: OK")


# domains ----------------------------------------------------------------------------


@main.group()
def domain() -> None:
    """Add, list and remove the mail domains hosted here."""


@domain.command("add")
@click.argument("name")
@pass_ctx
def domain_add(ctx: Context, name: str) -> None:
    """Host mail for domain NAME."""
    d = run(with_store(ctx, lambda s: s.add_domain(name)))
    click.echo(f"domain {d.name} added")


@domain.command("list")
@pass_ctx
def domain_list(ctx: Context) -> None:
    """List hosted domains."""
    for d in run(with_store(ctx, lambda s: s.list_domains())):
        click.echo(d.name)


@domain.command("remove")
@click.argument("name")
@pass_ctx
def domain_remove(ctx: Context, name: str) -> None:
    """Stop hosting domain NAME (it must have no accounts left)."""
    run(with_store(ctx, lambda s: s.remove_domain(name)))
    click.echo(f"domain {name.lower()} removed")


# users ------------------------------------------------------------------------------


def _read_password(password_stdin: bool, generate: bool, confirm: bool = True) -> tuple[str, bool]:
    if password_stdin and generate:
        fail("--password-stdin and --generate exclude each other", EX_USAGE)
    if generate:
        return generate_password(), True
    if password_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            fail("no password on standard input", EX_USAGE)
        return line, False
    if not sys.stdin.isatty():
        fail("no terminal to ask for a password: use --password-stdin or --generate", EX_USAGE)
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=confirm)
    return value, False


def _credentials(password: str) -> tuple[str, str | None]:
    try:
        scram: str | None = scram_credentials(password)
    except ValueError:
        scram = None  # SASLprep refuses it: PLAIN/LOGIN still work
    return hash_password(password), scram


def _check_address(address: str) -> str:
    local, _, dom = address.rpartition("@")
    if not local or not dom or any(c.isspace() for c in address):
        fail(f"{address!r} is not an address like user@example.org", EX_USAGE)
    return address.lower()


@main.group()
def user() -> None:
    """Manage accounts (mailboxes with a login)."""


@user.command("add")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--generate", is_flag=True, help="Generate a strong password and print it once.")
@click.option("--quota", "quota", default=None, metavar="SIZE", help="Quota, e.g. 2G (default: none).")
@pass_ctx
def user_add(ctx: Context, address: str, password_stdin: bool, generate: bool, quota: str | None) -> None:
    """Create account ADDRESS (its domain must be hosted); asks for a password."""
    address = _check_address(address)
    password, generated = _read_password(password_stdin, generate)
    quota_bytes = parse_size(quota) if quota is not None else -1
    pw_hash, scram = _credentials(password)

    async def fn(s: SqliteStore) -> None:
        config = ctx.config()
        q = quota_bytes if quota_bytes >= 0 else config.delivery.default_quota_bytes
        await s.create_account(address, pw_hash, scram, q)

    run(with_store(ctx, fn))
    click.echo(f"account {address} created")
    if generated:
        click.echo(f"password: {password}")


@user.command("list")
@click.argument("domain", required=False)
@pass_ctx
def user_list(ctx: Context, domain: str | None) -> None:
    """List accounts with their usage and quota."""
    for a in run(with_store(ctx, lambda s: s.list_accounts(domain))):
        click.echo(f"{a.address}\t{format_size(a.used_bytes) if a.used_bytes else '0 B'} used\t"
                   f"quota {format_size(a.quota_bytes)}")


@user.command("remove")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def user_remove(ctx: Context, address: str, yes: bool) -> None:
    """Delete account ADDRESS with all its mail."""
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete {address} and all its mail?", abort=True)
    run(with_store(ctx, lambda s: s.delete_account(address)))
    click.echo(f"account {address.lower()} removed")


@user.command("passwd")
@click.argument("address")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--generate", is_flag=True, help="Generate a strong password and print it once.")
@pass_ctx
def user_passwd(ctx: Context, address: str, password_stdin: bool, generate: bool) -> None:
    """Set a new password for ADDRESS."""
    password, generated = _read_password(password_stdin, generate)
    pw_hash, scram = _credentials(password)
    run(with_store(ctx, lambda s: s.set_password(address, pw_hash, scram)))
    click.echo(f"password of {address.lower()} changed")
    if generated:
        click.echo(f"password: {password}")


@user.command("quota")
@click.argument("address")
@click.argument("size")
@pass_ctx
def user_quota(ctx: Context, address: str, size: str) -> None:
    """Set the quota of ADDRESS to SIZE (e.g. 500M, 2G; 0 or none = unlimited)."""
    size_bytes = parse_size(size)
    run(with_store(ctx, lambda s: s.set_quota(address, size_bytes)))
    click.echo(f"quota of {address.lower()} set to {format_size(size_bytes)}")


# aliases ----------------------------------------------------------------------------


@main.group()
def alias() -> None:
    """Manage aliases: ALIAS delivers to one or more TARGETs; @domain is a catch-all."""


@alias.command("add")
@click.argument("alias_address", metavar="ALIAS")
@click.argument("targets", nargs=-1, required=True)
@pass_ctx
def alias_add(ctx: Context, alias_address: str, targets: tuple[str, ...]) -> None:
    """Make ALIAS deliver to each TARGET (local accounts, other aliases or remote addresses)."""
    if not alias_address.startswith("@"):
        alias_address = _check_address(alias_address)
    for t in targets:
        _check_address(t)
    run(with_store(ctx, lambda s: s.add_alias(alias_address, targets)))
    click.echo(f"alias {alias_address.lower()} -> {', '.join(t.lower() for t in targets)}")


@alias.command("list")
@click.argument("domain", required=False)
@pass_ctx
def alias_list(ctx: Context, domain: str | None) -> None:
    """List aliases and their targets."""
    grouped: dict[str, list[str]] = {}
    for a in run(with_store(ctx, lambda s: s.list_aliases(domain))):
        grouped.setdefault(a.source, []).append(a.target)
    for source, targets in grouped.items():
        click.echo(f"{source}\t{', '.join(targets)}")


@alias.command("remove")
@click.argument("alias_address", metavar="ALIAS")
@click.argument("targets", nargs=-1)
@pass_ctx
def alias_remove(ctx: Context, alias_address: str, targets: tuple[str, ...]) -> None:
    """Remove ALIAS entirely, or only the TARGETs named."""

    async def fn(s: SqliteStore) -> int:
        if not targets:
            return await s.remove_alias(alias_address)
        return sum([await s.remove_alias(alias_address, t) for t in targets])

    removed = run(with_store(ctx, fn))
    if not removed:
        fail(f"no such alias: {alias_address}")
    click.echo(f"removed {removed} target(s) of {alias_address.lower()}")


# deliver ----------------------------------------------------------------------------


def normalize_line_endings(raw: bytes) -> bytes:
    """Messages piped from an MTA use bare LF; the store keeps CRLF (RFC 5322 §2.1)."""
    if b"\n" not in raw.replace(b"\r\n", b""):
        return raw
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@main.command()
@click.option("--from", "-f", "sender", default="", metavar="SENDER",
              help="Envelope sender (Return-Path); default: the null sender <>.")
@click.argument("addresses", nargs=-1, required=True)
@pass_ctx
def deliver(ctx: Context, sender: str, addresses: tuple[str, ...]) -> None:
    """Deliver the message on stdin to local ADDRESSES (an LDA for Postfix, Exim, procmail).

    Exit status (sysexits): 0 delivered, 67 unknown user, 75 temporary failure (the MTA
    should retry; also for a full mailbox), 65 bad input.
    """
    from postier.delivery import Delivery, Status

    raw = sys.stdin.buffer.read(MAX_DELIVER_BYTES + 1)
    if len(raw) > MAX_DELIVER_BYTES:
        fail("message too large", EX_DATAERR)
    if not raw:
        fail("empty message on standard input", EX_DATAERR)
    raw = normalize_line_endings(raw)

    async def fn(s: SqliteStore) -> list[Any]:
        return await Delivery(s, ctx.config().delivery.add_delivered_to).deliver(
            raw, sender, list(addresses)
        )

    try:
        results = asyncio.run(with_store(ctx, fn))
    except Exception as exc:  # an LDA must always answer with a sysexits code
        fail(f"temporary failure: {exc}", EX_TEMPFAIL)
    code = EX_OK
    for r in results:
        if r.ok:
            click.echo(f"{r.recipient}: delivered", err=True)
            continue
        click.echo(f"{r.recipient}: {r.status.value}{': ' + r.detail if r.detail else ''}", err=True)
        if r.status in (Status.TEMPORARY, Status.OVER_QUOTA):
            code = EX_TEMPFAIL
        elif code == EX_OK:
            code = EX_NOUSER
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
