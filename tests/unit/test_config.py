"""Configuration loading and validation: every error kind names its key and line."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.config import (
    Config,
    ConfigError,
    ConfigIssue,
    check_config_text,
    load_config,
    parse_config_text,
    resolve_data_dir,
    resolve_hostname,
)
from postier.net.addresses import ListenAddress, parse_listen_address


def only_issue(text: str) -> ConfigIssue:
    issues = check_config_text(text, "postier.toml")
    assert len(issues) == 1, issues
    return issues[0]


# --- defaults -----------------------------------------------------------------------


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml") == Config()
    assert load_config(None) == Config()


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "postier.toml"
    path.write_text("# nothing here\n")
    assert load_config(path) == Config()


def test_defaults_are_development_ports_on_loopback() -> None:
    config = Config()
    assert config.smtp.listen == (ListenAddress("tcp", host="127.0.0.1", port=2525),)
    assert [str(a) for a in config.smtp.submission_listen] == ["127.0.0.1:2587"]
    assert [str(a) for a in config.smtp.submissions_listen] == ["127.0.0.1:2465"]
    assert config.smtp.lmtp_listen == ()
    assert [str(a) for a in config.imap.listen] == ["127.0.0.1:2143"]
    assert [str(a) for a in config.imap.tls_listen] == ["127.0.0.1:2993"]
    assert [str(a) for a in config.pop3.listen] == ["127.0.0.1:2110"]
    assert [str(a) for a in config.pop3.tls_listen] == ["127.0.0.1:2995"]
    all_listeners = [
        *config.smtp.listen,
        *config.smtp.submission_listen,
        *config.smtp.submissions_listen,
        *config.imap.listen,
        *config.imap.tls_listen,
        *config.pop3.listen,
        *config.pop3.tls_listen,
    ]
    assert all(a.is_loopback for a in all_listeners)


def test_documented_default_values() -> None:
    c = Config()
    assert (c.server.log_level, c.server.event_loop, c.server.max_connections) == ("info", "auto", 1000)
    assert c.smtp.max_message_bytes == 52_428_800
    assert (c.smtp.max_recipients, c.smtp.max_line_bytes, c.smtp.max_errors) == (100, 1000, 10)
    assert (c.smtp.command_timeout_s, c.smtp.data_timeout_s) == (300, 600)
    assert c.smtp.bare_lf == "reject"
    assert c.smtp.require_tls_for_auth and c.smtp.sender_must_match
    assert (c.imap.max_line_bytes, c.imap.idle_timeout_s) == (65_536, 1800)
    assert (c.pop3.delete_mode, c.pop3.retention_days, c.pop3.idle_timeout_s) == ("expunge", 0, 600)
    assert (c.tls.cert, c.tls.key, c.tls.min_version) == ("", "", "TLSv1.2")
    assert (c.auth.failed_login_free, c.auth.failed_login_window_s) == (3, 900)
    assert (c.store.backend, c.store.readers, c.store.group_commit_max) == ("sqlite", 4, 256)
    assert (c.delivery.default_quota_bytes, c.delivery.add_delivered_to) == (0, True)


def test_values_are_applied() -> None:
    config = parse_config_text(
        """
[server]
hostname = "mx.example.org"

[smtp]
listen = ["0.0.0.0:25", "[::]:25"]
lmtp_listen = ["unix:/run/postier/lmtp.sock"]
max_recipients = 500
bare_lf = "normalize"

[pop3]
delete_mode = "keep"
"""
    )
    assert config.server.hostname == "mx.example.org"
    assert config.smtp.listen == (
        parse_listen_address("0.0.0.0:25"),
        parse_listen_address("[::]:25"),
    )
    assert config.smtp.lmtp_listen[0].path == "/run/postier/lmtp.sock"
    assert config.smtp.max_recipients == 500
    assert config.smtp.bare_lf == "normalize"
    assert config.pop3.delete_mode == "keep"
    assert config.imap == Config().imap


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.smtp.max_recipients = 5  # type: ignore[misc]


# --- every error kind, with key and line ------------------------------------------------


def test_unknown_key_names_key_line_and_suggestion() -> None:
    issue = only_issue("[server]\nhostname = 'a'\n\nhostnme = 'b'\n")
    assert issue.key == "server.hostnme"
    assert issue.line == 4
    assert "unknown key" in issue.message
    assert "did you mean 'hostname'" in issue.message


def test_unknown_table() -> None:
    issue = only_issue("[server]\nloop = 'auto'\n\n[smtpd]\nlisten = []\n")
    assert (issue.key, issue.line) == ("smtpd", 4)
    assert "unknown table [smtpd]" in issue.message
    assert "did you mean 'smtp'" in issue.message


def test_unknown_subtable() -> None:
    issue = only_issue("[smtp]\nmax_errors = 3\n[smtp.limits]\nx = 1\n")
    assert (issue.key, issue.line) == ("smtp.limits", 3)
    assert "unknown table" in issue.message


def test_top_level_key_is_unknown() -> None:
    issue = only_issue("hostname = 'mx'\n")
    assert (issue.key, issue.line) == ("hostname", 1)
    assert "unknown key" in issue.message


def test_wrong_type_integer() -> None:
    issue = only_issue('[smtp]\n# limits\nmax_recipients = "100"\n')
    assert (issue.key, issue.line) == ("smtp.max_recipients", 3)
    assert issue.message == "expected an integer, got string"


def test_wrong_type_boolean_and_string() -> None:
    issues = check_config_text("[smtp]\nsender_must_match = 1\n[tls]\ncert = 5\n")
    assert [(i.key, i.line, i.message) for i in issues] == [
        ("smtp.sender_must_match", 2, "expected a boolean (true or false), got integer"),
        ("tls.cert", 4, "expected a string, got integer"),
    ]


def test_boolean_is_not_an_integer() -> None:
    issue = only_issue("[store]\nreaders = true\n")
    assert issue.message == "expected an integer, got boolean"


def test_section_that_is_not_a_table() -> None:
    issue = only_issue("smtp = 5\n")
    assert (issue.key, issue.line) == ("smtp", 1)
    assert "expected a table" in issue.message


def test_bad_listen_address() -> None:
    issue = only_issue('[imap]\nlisten = [\n  "127.0.0.1:143",\n  "::1:143",\n]\n')
    assert (issue.key, issue.line) == ("imap.listen", 2)
    assert "bad listen address" in issue.message
    assert "brackets" in issue.message


def test_listen_item_of_wrong_type() -> None:
    issue = only_issue("[pop3]\nlisten = [110]\n")
    assert (issue.key, issue.line) == ("pop3.listen", 2)
    assert "expected a string, got integer" in issue.message


def test_out_of_range_cites_rfc() -> None:
    issue = only_issue("[smtp]\nmax_line_bytes = 512\n")
    assert (issue.key, issue.line) == ("smtp.max_line_bytes", 2)
    assert "at least 1000" in issue.message
    assert "RFC 5321" in issue.message


def test_out_of_range_upper_bound() -> None:
    issue = only_issue("[store]\nreaders = 1000\n")
    assert issue.key == "store.readers"
    assert "at most 64" in issue.message


def test_negative_value_is_out_of_range() -> None:
    issue = only_issue("[pop3]\nretention_days = -1\n")
    assert (issue.key, issue.line) == ("pop3.retention_days", 2)
    assert "out of range" in issue.message


def test_invalid_choice_lists_valid_values() -> None:
    issue = only_issue('[smtp]\nbare_lf = "accept"\n')
    assert (issue.key, issue.line) == ("smtp.bare_lf", 2)
    assert "'reject'" in issue.message and "'normalize'" in issue.message


def test_event_loop_choices() -> None:
    for value in ("auto", "asyncio", "uvloop"):
        assert parse_config_text(f'[server]\nevent_loop = "{value}"\n').server.event_loop == value
    issue = only_issue('[server]\nhostname = "mx.example.org"\nevent_loop = "trio"\n')
    assert (issue.key, issue.line) == ("server.event_loop", 3)
    assert "'trio' is not one of 'auto', 'asyncio', 'uvloop'" in issue.message


def test_event_loop_old_name_loop_is_accepted() -> None:
    assert parse_config_text('[server]\nloop = "asyncio"\n').server.event_loop == "asyncio"
    issue = only_issue("[server]\nloop = 'trio'\n")
    assert (issue.key, issue.line) == ("server.loop", 2)
    issue = only_issue("[server]\nevent_loop = 'auto'\nloop = 'asyncio'\n")
    assert (issue.key, issue.line) == ("server.loop", 3)
    assert "server.event_loop" in issue.message


def test_toml_syntax_error_reports_line_and_column() -> None:
    issue = only_issue("[smtp]\nmax_errors = 3\nmax_errors = 4\n")
    assert issue.line == 3
    assert issue.column is not None
    assert issue.message.startswith("TOML syntax error")


def test_toml_syntax_error_at_end_of_file() -> None:
    issue = only_issue("[smtp]\nmax_errors =\n")
    assert issue.line == 2
    assert "TOML syntax error" in issue.message


def test_all_errors_are_reported_at_once() -> None:
    text = "[server]\nevent_loop = 'trio'\nfoo = 1\n[smtp]\nmax_errors = 0\n[bar]\n"
    assert [i.key for i in check_config_text(text)] == [
        "server.event_loop",
        "server.foo",
        "smtp.max_errors",
        "bar",
    ]


def test_cert_without_key() -> None:
    issue = only_issue("[tls]\ncert = '/etc/ssl/mx.pem'\n")
    assert (issue.key, issue.line) == ("tls.key", 1)


def test_same_port_used_twice() -> None:
    issue = only_issue("[smtp]\nlisten = ['*:25']\n[imap]\nlisten = ['*:25']\n")
    assert (issue.key, issue.line) == ("imap.listen", 4)
    assert "already used by smtp.listen" in issue.message


def test_dotted_keys_and_inline_tables_are_located() -> None:
    assert only_issue("smtp.max_errors = 'x'\n").line == 1
    issues = check_config_text("[server]\n\nimap = 1\n[pop3]\n\nx = { a = 1 }\n")
    assert [(i.key, i.line) for i in issues] == [("server.imap", 3), ("pop3.x", 6)]
    issue = only_issue("\n\nstore = { readers = 'many' }\n")
    assert (issue.key, issue.line) == ("store.readers", 3)


def test_multiline_string_content_is_not_mistaken_for_keys() -> None:
    text = '[tls]\ncert = """\nmax_recipients = 1\n"""\nkey = "k"\n[smtp]\nmax_recipients = "x"\n'
    issues = check_config_text(text)
    assert [(i.key, i.line) for i in issues] == [("smtp.max_recipients", 7)]


def test_issue_renders_file_line_key_and_message() -> None:
    issue = only_issue("[smtp]\nmax_recipients = 'x'\n")
    assert str(issue) == "postier.toml:2: smtp.max_recipients: expected an integer, got string"


def test_load_config_raises_with_every_issue(tmp_path: Path) -> None:
    path = tmp_path / "postier.toml"
    path.write_text("[smtp]\nmax_recipients = 'x'\n[nope]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [(e.key, e.line, e.filename) for e in info.value.errors] == [
        ("smtp.max_recipients", 2, str(path)),
        ("nope", 3, str(path)),
    ]


def test_load_config_rejects_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "postier.toml"
    path.write_bytes(b"[server]\nhostname = '\xff'\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors[0].line == 2


# --- data dir and hostname ------------------------------------------------------------


def test_data_dir_priority() -> None:
    configured = parse_config_text("[server]\ndata_dir = '/srv/from-config'\n")
    env = {"POSTIER_DATA": "/srv/from-env"}
    assert resolve_data_dir(configured, "/srv/from-cli", env) == Path("/srv/from-cli")
    assert resolve_data_dir(configured, None, env) == Path("/srv/from-env")
    assert resolve_data_dir(configured, None, {}) == Path("/srv/from-config")
    assert resolve_data_dir(Config(), None, {}) == Path("data")
    assert resolve_data_dir(Config(), "", {"POSTIER_DATA": ""}) == Path("data")


def test_hostname_falls_back_to_fqdn() -> None:
    assert resolve_hostname(parse_config_text("[server]\nhostname = 'mx.example.org'\n")) == (
        "mx.example.org"
    )
    assert resolve_hostname(Config())  # socket.getfqdn(), never empty


def test_documented_example_is_valid() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    if not docs.exists():
        pytest.skip("docs/configuration.md not written yet")
    text = docs.read_text()
    blocks = text.split("```toml\n")[1:]
    assert blocks
    for block in blocks:
        toml = block.split("```", 1)[0]
        assert check_config_text(toml, "docs/configuration.md") == []


@pytest.mark.parametrize("name", ["mx\r\nX-Injected: 1", "bad host", "mél.example.org", "-a.org"])
def test_hostname_must_be_a_host_name(name: str) -> None:
    issue = only_issue(f'[server]\nhostname = "{name}"\n'.replace("\r\n", "\\r\\n"))
    assert (issue.key, issue.line) == ("server.hostname", 2)
    assert "not a valid host name" in issue.message


def test_default_domain_checked_like_hostname() -> None:
    assert only_issue("[auth]\ndefault_domain = 'a b'\n").key == "auth.default_domain"
    assert check_config_text("[auth]\ndefault_domain = 'xn--ml-bia.example'\n") == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_issues_never_an_exception(text: str) -> None:
    for issue in check_config_text(text):
        assert issue.message
        assert issue.line is None or 1 <= issue.line <= max(1, text.count("\n") + 1) + 1


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["server", "smtp", "imap", "pop3", "tls", "auth", "store", "x"]),
        st.dictionaries(
            st.sampled_from(["listen", "hostname", "readers", "max_recipients", "loop", "y"]),
            st.one_of(
                st.integers(),
                st.text(max_size=20),
                st.booleans(),
                st.lists(st.text(max_size=20), max_size=3),
            ),
            max_size=4,
        ),
        max_size=4,
    )
)
def test_structured_documents_never_raise(doc: dict[str, dict[str, object]]) -> None:
    lines = []
    for table, values in doc.items():
        lines.append(f"[{table}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
    issues = check_config_text("\n".join(lines))
    assert all(i.line is not None for i in issues)


def _toml_value(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)
