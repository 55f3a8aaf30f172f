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
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, TypeVar

import click

from postier import __version__, eventloop
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
    """Run ``fn`` on the store; changes it made are told to a running server (relay.py)."""
    from postier.store import relay
    from postier.store.bus import Event

    config = ctx.config()
    data_dir = ctx.data_dir(config)
    store = await SqliteStore.open(  # the running server catches up on the index, not us
        data_dir, readers=1, group_commit_max=config.store.group_commit_max, catch_up=False
    )
    changes: list[Event] = []
    store.bus.taps.append(changes.append)
    try:
        return await fn(store)
    finally:
        await asyncio.sleep(0)  # let post-commit publications run
        await store.close()
        relay.forward(data_dir, changes)


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
@click.option("--worker", "worker", type=int, default=None, hidden=True)
@click.option("--workers", "workers_option", type=int, default=None, hidden=True)
@pass_ctx
def serve(ctx: Context, config_path: Path | None, data: str | None, demo: bool,
          serve_log_level: str | None, worker: int | None, workers_option: int | None) -> None:
    """Run the mail server in the foreground until Ctrl-C or SIGTERM.

    With `[server] workers` > 1 it starts that many processes sharing the ports and the
    data folder, and restarts any that dies.
    """
    from postier.app import App
    from postier.app import serve as serve_app

    ctx = _merge(ctx, config_path, data)
    config = ctx.config()
    data_dir = ctx.data_dir(config)
    level = serve_log_level or ctx.log_level or config.server.log_level
    setup_logging(level)
    workers = workers_option or config.server.workers or os.cpu_count() or 1
    try:
        loop = eventloop.choose_event_loop(config.server.event_loop)
    except eventloop.EventLoopUnavailable as exc:
        fail(str(exc), EX_CONFIG)
    if demo and worker is None:
        run(_ensure_demo(ctx))
    if workers > 1 and worker is None:
        _serve_workers(ctx, config, data_dir, workers, level)
        return

    def ready(app: App) -> None:
        click.echo(f"postier {__version__} serving data in {data_dir.resolve()}")
        for line in app.listening:
            click.echo(f"  {line}")
        if not app.listening:
            click.echo("  (no listeners configured)")
        click.echo("Press Ctrl-C to stop.")

    app = App(config, data_dir, worker=worker or 0, workers=workers if worker is not None else 1)
    try:
        eventloop.run(serve_app(app, ready), loop)
    except PostierError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot start: {exc}")
    click.echo("postier stopped.")


def _serve_workers(ctx: Context, config: Config, data_dir: Path, workers: int, level: str) -> None:
    """The supervisor: prepare the data folder once, then run and watch the workers."""
    from postier.app import prepare_data_dir
    from postier.supervisor import Supervisor

    for section in (config.smtp.listen, config.smtp.submission_listen,
                    config.smtp.submissions_listen, config.imap.listen, config.imap.tls_listen,
                    config.pop3.listen, config.pop3.tls_listen):
        if any(a.port == 0 and not a.is_unix for a in section):
            fail("several workers need fixed ports (port 0 picks a different one per process)",
                 EX_CONFIG)
    run(prepare_data_dir(config, data_dir))

    def command(index: int) -> list[str]:
        argv = [sys.executable, "-m", "postier.cli", "serve", "--data", str(data_dir),
                "--worker", str(index), "--workers", str(workers), "--log-level", level]
        if ctx.config_path is not None:
            argv += ["--config", str(ctx.config_path)]
        return argv

    supervisor = Supervisor(command, workers)
    try:
        lines = supervisor.start()
    except RuntimeError as exc:
        fail(str(exc))
    for line in lines:
        if "Press Ctrl-C" in line:
            click.echo(f"  ({workers} worker processes)")
        click.echo(line)
    status = supervisor.run()
    click.echo("postier stopped.")
    sys.exit(status)


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
@click.option("--no-dkim", is_flag=True, help="Do not create DKIM signing keys.")
@pass_ctx
def domain_add(ctx: Context, name: str, no_dkim: bool) -> None:
    """Host mail for domain NAME (and create its DKIM keys; `postier dns NAME` shows
    the DNS records to publish)."""

    async def fn(s: SqliteStore) -> list[str]:
        d = await s.add_domain(name)
        return [] if no_dkim else await _new_dkim_keys(s, d.name)

    selectors = run(with_store(ctx, fn))
    click.echo(f"domain {name.lower().rstrip('.')} added")
    if selectors:
        click.echo(f"DKIM keys created (selectors {', '.join(selectors)}); "
                   f"publish them: postier dns {name.lower()}")


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


# DKIM -------------------------------------------------------------------------------


async def _new_dkim_keys(store: SqliteStore, domain: str) -> list[str]:
    """An RSA-2048 and an Ed25519 key (RFC 8463 §4: sign with both) under new selectors."""
    import time as _time

    from postier.mailauth.dkim import generate_key
    from postier.store.types import DkimKeyRecord

    existing = {k.selector for k in await store.list_dkim_keys(domain)}
    stamp = _time.strftime("%Y%m%d", _time.gmtime())
    n = 1
    while f"s{stamp}{n}r" in existing or f"s{stamp}{n}e" in existing:
        n += 1
    made = []
    algorithms: tuple[tuple[Literal["rsa-sha256", "ed25519-sha256"], str], ...] = (
        ("rsa-sha256", "r"), ("ed25519-sha256", "e"),
    )
    for algorithm, suffix in algorithms:
        selector = f"s{stamp}{n}{suffix}"
        key = await asyncio.to_thread(generate_key, domain, selector, algorithm)
        await store.add_dkim_key(DkimKeyRecord(
            domain, selector, algorithm, key.private_key_pem.decode(), int(_time.time()), True
        ))
        made.append(selector)
    return made


@main.group()
def dkim() -> None:
    """List and rotate the DKIM keys that sign outbound mail."""


@dkim.command("list")
@click.argument("domain", required=False)
@pass_ctx
def dkim_list(ctx: Context, domain: str | None) -> None:
    """List DKIM keys (active ones sign)."""
    for k in run(with_store(ctx, lambda s: s.list_dkim_keys(domain))):
        state = "active" if k.active else "retired"
        click.echo(f"{k.domain}\t{k.selector}\t{k.algorithm}\t{state}")


@dkim.command("rotate")
@click.argument("domain")
@pass_ctx
def dkim_rotate(ctx: Context, domain: str) -> None:
    """Create new keys for DOMAIN and retire the old ones.

    Publish the new records (postier dns DOMAIN) and keep the old ones in DNS for a few
    days, so that mail signed before the rotation still verifies.
    """

    async def fn(s: SqliteStore) -> list[str]:
        if await s.get_domain(domain) is None:
            fail(f"no such domain: {domain}")
        made = await _new_dkim_keys(s, domain.lower())
        await s.deactivate_dkim_keys(domain, made)
        return made

    made = run(with_store(ctx, fn))
    click.echo(f"new selectors for {domain.lower()}: {', '.join(made)}; publish them: "
               f"postier dns {domain.lower()}")


# DNS --------------------------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": False})
@click.argument("words", nargs=-1, required=True, metavar="[check] DOMAIN")
@pass_ctx
def dns(ctx: Context, words: tuple[str, ...]) -> None:
    """Print the DNS records DOMAIN needs, ready to paste into a zone (`postier dns
    DOMAIN`), or compare them with what DNS answers (`postier dns check DOMAIN`)."""
    if len(words) == 2 and words[0] == "check":
        _dns_check(ctx, words[1])
        return
    if len(words) != 1:
        fail("usage: postier dns DOMAIN  |  postier dns check DOMAIN", EX_USAGE)
    for record in run(_dns_records(ctx, words[0])):
        click.echo(record.zone_line())


async def _dns_records(ctx: Context, domain: str) -> list[Any]:
    from postier.config import resolve_hostname
    from postier.dnsrecords import required_records

    config = ctx.config()

    async def fn(s: SqliteStore) -> list[Any]:
        if await s.get_domain(domain) is None:
            fail(f"no such domain: {domain}")
        keys = await s.list_dkim_keys(domain, active_only=True)
        return required_records(domain.lower(), resolve_hostname(config), keys)

    return await with_store(ctx, fn)


def _dns_check(ctx: Context, domain: str) -> None:
    """Look up every record DOMAIN needs and say which are missing or different."""
    from postier.dnsrecords import check_records, resolver_from_config

    async def fn() -> list[Any]:
        records = await _dns_records(ctx, domain)
        return await check_records(records, resolver_from_config(ctx.config()))

    results = run(fn())
    bad = 0
    for r in results:
        click.echo(f"{'ok     ' if r.ok else 'MISSING' if not r.found else 'DIFFERS'} "
                   f"{r.record.name} {r.record.rtype}")
        if not r.ok:
            bad += 1
            click.echo(f"        want: {r.record.value}")
            for got in r.found:
                click.echo(f"        have: {got}")
    if bad:
        fail(f"{bad} record(s) to fix")


# queue ------------------------------------------------------------------------------


@main.group()
def index() -> None:
    """The full-text index that answers IMAP SEARCH."""


@index.command("status")
@pass_ctx
def index_status(ctx: Context) -> None:
    """How many message bodies the index holds; the rest are indexed in the background by
    the running server, and SEARCH reads them whole meanwhile (slower, still exact)."""
    st = run(with_store(ctx, lambda s: s.index_status()))
    waiting = st.bodies - st.indexed
    share = f" ({st.indexed * 100 // st.bodies} %)" if st.bodies else ""
    click.echo(f"bodies:        {st.bodies}")
    click.echo(f"indexed:       {st.indexed}{share}")
    click.echo(f"waiting:       {waiting}" + (" (indexed by the running server)" if waiting else ""))
    click.echo(f"over 64 KiB of text (searched whole past that): {st.cut}")
    click.echo(f"index.db:      {format_size(st.index_bytes)}")


@main.group()
def queue() -> None:
    """Inspect and steer the outbound queue (mail for other servers)."""


def _when(ts: int) -> str:
    import time as _time

    return _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(ts))


@queue.command("list")
@pass_ctx
def queue_list(ctx: Context) -> None:
    """One line per queued message: id, age, size, sender, recipients, next attempt."""
    from postier.store.sqlite.queue import SqliteQueue

    entries = run(with_store(ctx, lambda s: SqliteQueue(s).list()))
    if not entries:
        click.echo("the queue is empty")
        return
    for e in entries:
        rcpts = ", ".join(f"{r.address} ({r.status.value})" for r in e.recipients)
        click.echo(f"{e.id}\t{_when(e.created)}\t{format_size(e.size)}\t<{e.sender}>\t{rcpts}"
                   f"\tnext {_when(e.next_attempt)}, {e.attempts} attempt(s)")


@queue.command("show")
@click.argument("queue_id", type=int)
@pass_ctx
def queue_show(ctx: Context, queue_id: int) -> None:
    """Everything about one queued message, with its header."""
    from postier.store.sqlite.queue import SqliteQueue

    async def fn(s: SqliteStore) -> tuple[Any, bytes]:
        q = SqliteQueue(s)
        entry = await q.get(queue_id)
        if entry is None:
            fail(f"no queued message {queue_id}")
        return entry, await q.read_body(entry)

    entry, body = run(with_store(ctx, fn))
    click.echo(f"id:           {entry.id}")
    click.echo(f"sender:       <{entry.sender}>")
    click.echo(f"queued:       {_when(entry.created)}")
    click.echo(f"size:         {format_size(entry.size)}")
    click.echo(f"attempts:     {entry.attempts}, next {_when(entry.next_attempt)}")
    if entry.last_error:
        click.echo(f"last error:   {entry.last_error}")
    for r in entry.recipients:
        click.echo(f"recipient:    {r.address}  {r.status.value}  {r.last_error}")
    header = body.split(b"\r\n\r\n", 1)[0]
    click.echo("")
    click.echo(header.decode("utf-8", "replace"))


@queue.command("retry")
@click.argument("queue_ids", type=int, nargs=-1)
@pass_ctx
def queue_retry(ctx: Context, queue_ids: tuple[int, ...]) -> None:
    """Make messages (all without IDs) due now; a running server sends them within seconds."""
    import time as _time

    from postier.store.sqlite.queue import SqliteQueue

    n = run(with_store(ctx, lambda s: SqliteQueue(s).retry(list(queue_ids) or None, int(_time.time()))))
    click.echo(f"{n} message(s) due now")


@queue.command("flush")
@pass_ctx
def queue_flush(ctx: Context) -> None:
    """Make every queued message due now (same as `retry` without IDs)."""
    import time as _time

    from postier.store.sqlite.queue import SqliteQueue

    n = run(with_store(ctx, lambda s: SqliteQueue(s).retry(None, int(_time.time()))))
    click.echo(f"{n} message(s) due now")


@queue.command("delete")
@click.argument("queue_ids", type=int, nargs=-1, required=True)
@pass_ctx
def queue_delete(ctx: Context, queue_ids: tuple[int, ...]) -> None:
    """Drop messages from the queue without sending them or a bounce."""
    from postier.store.sqlite.queue import SqliteQueue

    n = run(with_store(ctx, lambda s: SqliteQueue(s).delete(list(queue_ids))))
    if not n:
        fail("no such queued message")
    click.echo(f"{n} message(s) deleted")


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


# backup / restore / export / import / migrate (issue 7) -----------------------------


def _progress() -> Callable[[int, int, str], None]:
    """A one-line terminal progress display on stderr (silent when not a terminal)."""
    if not sys.stderr.isatty():
        return lambda done, total, what: None
    last = [0.0]

    def show(done: int, total: int, what: str) -> None:
        now = time.monotonic()
        if now - last[0] < 0.1 and done != total:
            return
        last[0] = now
        pct = f"{100 * done / total:5.1f}%" if total else ""
        click.echo(f"\r  {what:<10} {done:>9}/{total or '?':<9} {pct}", nl=False, err=True)
        if total and done == total:
            click.echo("", err=True)

    return show


@main.command("backup")
@_sub_options
@click.argument("dest", type=click.Path(path_type=Path))
@click.argument("verify_dest", required=False, type=click.Path(path_type=Path))
@click.option("--snapshot", default=None, help="With `verify`: the snapshot (default: latest).")
@pass_ctx
def backup_cmd(ctx: Context, config_path: Path | None, data: str | None, dest: Path,
               verify_dest: Path | None, snapshot: str | None) -> None:
    """Back up everything into DEST while the server runs; `backup verify DEST` checks one.

    Backups to the same DEST are incremental: body files already there are not copied.
    """
    from postier.admin.backup import BackupError, backup, verify

    try:
        if str(dest) == "verify" and verify_dest is not None:
            report = verify(verify_dest, snapshot, _progress())
            click.echo(report.describe())
            sys.exit(0 if report.ok else 1)
        if verify_dest is not None:
            fail("usage: postier backup DEST  |  postier backup verify DEST", EX_USAGE)
        ctx = _merge(ctx, config_path, data)
        summary = backup(ctx.data_dir(ctx.config()), dest, _progress())
    except BackupError as exc:
        fail(str(exc))
    click.echo(summary.describe())


@main.command("restore")
@_sub_options
@click.argument("src", type=click.Path(path_type=Path, exists=True))
@click.option("--snapshot", default=None, help="Snapshot name under SRC/snapshots (default: latest).")
@click.option("--force", is_flag=True,
              help="Restore into a non-empty data folder (its contents are moved aside).")
@pass_ctx
def restore_cmd(ctx: Context, config_path: Path | None, data: str | None, src: Path,
                snapshot: str | None, force: bool) -> None:
    """Restore a backup into the (empty) data folder; stop the server first.

    The backup is verified before anything is written; IMAP UIDVALIDITY/UIDs and POP3
    UIDLs come back unchanged, so clients do not resync.
    """
    from postier.admin.backup import BackupError, restore

    ctx = _merge(ctx, config_path, data)
    try:
        summary = restore(src, ctx.data_dir(ctx.config()), force=force, progress=_progress(),
                          snapshot=snapshot)
    except BackupError as exc:
        fail(str(exc))
    click.echo(summary.describe())


@main.command("export")
@_sub_options
@click.argument("address")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["maildir", "mbox"]), default="maildir",
              show_default=True)
@pass_ctx
def export_cmd(ctx: Context, config_path: Path | None, data: str | None, address: str,
               dest: Path, fmt: str) -> None:
    """Export every folder of ADDRESS to DEST (Maildir++ or one mbox file per folder)."""
    from postier.admin.archive import export_account

    async def go(store: SqliteStore) -> str:
        return (await export_account(store, address, dest, fmt, _progress())).describe("exported")

    click.echo(run(with_store(_merge(ctx, config_path, data), go)))


@main.command("import")
@_sub_options
@click.argument("address")
@click.argument("src", type=click.Path(path_type=Path, exists=True))
@click.option("--format", "fmt", type=click.Choice(["maildir", "mbox"]), default=None,
              help="Source format (default: detected).")
@pass_ctx
def import_cmd(ctx: Context, config_path: Path | None, data: str | None, address: str,
               src: Path, fmt: str | None) -> None:
    """Import a Maildir or mbox into ADDRESS, keeping flags and dates; safe to repeat."""
    from postier.admin.archive import import_account

    async def go(store: SqliteStore) -> tuple[str, int]:
        summary = await import_account(store, address, src, _progress(), fmt)
        return summary.describe("imported"), summary.skipped

    text, skipped = run(with_store(_merge(ctx, config_path, data), go))
    click.echo(text)
    sys.exit(EX_DATAERR if skipped else EX_OK)


@main.command("migrate")
@_sub_options
@click.option("--from", "url", required=True, metavar="URL",
              help="imaps://user@host[:993] (or imap://user@host for STARTTLS).")
@click.option("--to", "address", default=None, help="Local account (default: the remote user).")
@click.option("--password-stdin", is_flag=True, help="Read the remote password from stdin.")
@click.option("--insecure", is_flag=True, help="Do not verify the remote certificate.")
@pass_ctx
def migrate_cmd(ctx: Context, config_path: Path | None, data: str | None, url: str,
                address: str | None, password_stdin: bool, insecure: bool) -> None:
    """Copy a whole account from another IMAP server; resumable, safe to repeat."""
    import ssl

    from postier.admin.migrate import ImapSource, migrate_account

    password = (sys.stdin.readline().rstrip("\r\n") if password_stdin
                else click.prompt("remote password", hide_input=True))
    context = None
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        source = ImapSource.from_url(url, password, context)
    except PostierError as exc:
        fail(str(exc))
    target = address or source.user

    async def go(store: SqliteStore) -> tuple[str, int]:
        summary = await migrate_account(store, target, source, _progress())
        return summary.describe("migrated"), summary.skipped

    text, skipped = run(with_store(_merge(ctx, config_path, data), go))
    click.echo(text)
    sys.exit(EX_DATAERR if skipped else EX_OK)


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
