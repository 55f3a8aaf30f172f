"""Every command parses to the right dataclass: RFC 9051 §6/§8 and RFC 3501 examples."""

from __future__ import annotations

import datetime

import pytest

from postier.imap import commands as c
from postier.imap.parser import Command, CommandParser, ParseError
from tests.unit.imap.feeding import commands, feed_bytewise, feed_whole, parse_one

S = c.SequenceSet
R = c.SeqRange


def seq(*ranges: tuple[int | None, int | None]) -> c.SequenceSet:
    return S(tuple(R(a, b) for a, b in ranges))


# --------------------------------------------------------------- RFC 9051 §8 sample session


def test_rfc9051_sample_session() -> None:
    data = (
        b"a001 login mrc secret\r\n"
        b"a002 select inbox\r\n"
        b"a003 fetch 12 full\r\n"
        b"a004 fetch 12 body[header]\r\n"
        b"a005 store 12 +flags \\deleted\r\n"
        b"a006 logout\r\n"
    )
    events = feed_whole(data)
    assert events == [
        Command("a001", c.Login(b"mrc", b"secret")),
        Command("a002", c.Select("INBOX")),
        Command("a003", c.Fetch(seq((12, 12)), c.FETCH_MACROS["FULL"])),
        Command(
            "a004", c.Fetch(seq((12, 12)), (c.FetchBody(c.Section(text=c.SectionText.HEADER)),))
        ),
        Command("a005", c.Store(seq((12, 12)), c.StoreMode.ADD, ("\\Deleted",))),
        Command("a006", c.Logout()),
    ]


# --------------------------------------------------------------- any state (§6.1)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"abcd CAPABILITY\r\n", c.Capability()),
        (b"a002 NOOP\r\n", c.Noop()),
        (b"A023 LOGOUT\r\n", c.Logout()),
        (b"a001 STARTTLS\r\n", c.StartTLS()),
        (b"A02 NAMESPACE\r\n", c.Namespace()),
        (b"a IDLE\r\n", c.Idle()),
        (b"FXXZ CHECK\r\n", c.Check()),
        (b"A341 CLOSE\r\n", c.Close()),
        (b"A342 UNSELECT\r\n", c.Unselect()),
        (b"A202 EXPUNGE\r\n", c.Expunge()),
        (b"a1 noop\n", c.Noop()),  # bare LF tolerated
    ],
)
def test_commands_without_arguments(line: bytes, expected: c.ImapCommand) -> None:
    assert parse_one(line) == expected


def test_command_without_arguments_rejects_extra() -> None:
    assert feed_whole(b"a1 NOOP now\r\n") == [
        ParseError("a1", "unexpected characters at end of command")
    ]


# --------------------------------------------------------------- authentication (§6.2)


def test_authenticate() -> None:
    assert parse_one(b"A001 AUTHENTICATE GSSAPI\r\n") == c.Authenticate("GSSAPI", None)
    assert parse_one(b"A01 AUTHENTICATE plain dGVzdAB0ZXN0AHRlc3Q=\r\n") == c.Authenticate(
        "PLAIN", b"test\x00test\x00test"
    )
    assert parse_one(b"A01 AUTHENTICATE EXTERNAL =\r\n") == c.Authenticate("EXTERNAL", b"")


def test_authenticate_bad_base64() -> None:
    [event] = feed_whole(b"A01 AUTHENTICATE PLAIN d$$\r\n")
    assert isinstance(event, ParseError) and event.tag == "A01"


def test_login_forms() -> None:
    assert parse_one(b"a001 LOGIN SMITH SESAME\r\n") == c.Login(b"SMITH", b"SESAME")
    assert parse_one(b'a001 LOGIN "fred smith" "pa\\"ss\\\\"\r\n') == c.Login(
        b"fred smith", b'pa"ss\\'
    )
    assert parse_one(b"a001 LOGIN {4}\r\nfr d {3+}\r\n\xc3\xa9!\r\n") == c.Login(
        b"fr d", b"\xc3\xa9!"
    )


def test_login_password_not_in_repr() -> None:
    assert "SESAME" not in repr(c.Login(b"SMITH", b"SESAME"))


def test_enable() -> None:
    assert parse_one(b"t2 ENABLE CONDSTORE X-GOOD-IDEA utf8=accept\r\n") == c.Enable(
        ("CONDSTORE", "X-GOOD-IDEA", "UTF8=ACCEPT")
    )
    assert isinstance(feed_whole(b"t2 ENABLE\r\n")[0], ParseError)


# --------------------------------------------------------------- mailboxes (§6.3)


def test_select_examine() -> None:
    assert parse_one(b"A142 SELECT INBOX\r\n") == c.Select("INBOX")
    assert parse_one(b"A142 SELECT iNbOx\r\n") == c.Select("INBOX")
    assert parse_one(b"A932 EXAMINE blurdybloop\r\n") == c.Examine("blurdybloop")
    assert parse_one(b"A1 SELECT INBOX (CONDSTORE)\r\n") == c.Select("INBOX", condstore=True)


def test_select_qresync() -> None:
    # RFC 7162 §3.2.5.2 example
    cmd = parse_one(
        b"A02 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n"
    )
    assert cmd == c.Select(
        "INBOX",
        qresync=c.QResync(67890007, 20050715194045000, seq((41, 41), (43, 211), (214, 541))),
    )
    cmd = parse_one(
        b"B04 SELECT INBOX (QRESYNC (67890007 90060115194045000 1:29997 "
        b"(5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976:29979)))\r\n"
    )
    assert isinstance(cmd, c.Select) and cmd.qresync is not None
    assert cmd.qresync.known_uids == seq((1, 29997))
    assert cmd.qresync.known_seqs is not None and cmd.qresync.known_seq_uids is not None
    assert cmd.qresync.known_seqs.expand(10000)[:3] == [5000, 7500, 9000]
    assert parse_one(b"A1 EXAMINE x (QRESYNC (1 2))\r\n") == c.Examine("x", qresync=c.QResync(1, 2))


def test_select_unknown_parameter_is_bad() -> None:
    [event] = feed_whole(b"A1 SELECT INBOX (FOO)\r\n")
    assert isinstance(event, ParseError) and event.tag == "A1"


def test_create_delete_rename_subscribe() -> None:
    assert parse_one(b"A003 CREATE owatagusiam/\r\n") == c.Create("owatagusiam/")
    assert parse_one(b"A004 CREATE owatagusiam/blurdybloop\r\n") == c.Create(
        "owatagusiam/blurdybloop"
    )
    # RFC 6154 §5.2
    assert parse_one(b't1 CREATE "Important Messages" (USE (\\Important))\r\n') == c.Create(
        "Important Messages", ("\\Important",)
    )
    assert parse_one(b"A683 DELETE blurdybloop\r\n") == c.Delete("blurdybloop")
    assert parse_one(b"A683 RENAME blurdybloop sarasoop\r\n") == c.Rename("blurdybloop", "sarasoop")
    assert parse_one(b"A002 SUBSCRIBE #news.comp.mail.mime\r\n") == c.Subscribe(
        "#news.comp.mail.mime"
    )
    assert parse_one(b"A002 UNSUBSCRIBE #news.comp.mail.mime\r\n") == c.Unsubscribe(
        "#news.comp.mail.mime"
    )


def test_mailbox_modified_utf7_decoded() -> None:
    # RFC 3501 §5.1.3 example
    cmd = parse_one(b"A1 SELECT ~peter/mail/&U,BTFw-/&ZeVnLIqe-\r\n")
    assert cmd == c.Select("~peter/mail/台北/日本語")
    assert parse_one(b'A1 SELECT "Tom &- Jerry"\r\n') == c.Select("Tom & Jerry")


def test_mailbox_utf8_when_enabled() -> None:
    assert parse_one('A1 SELECT "Envoyés &-"\r\n'.encode(), utf8=True) == c.Select("Envoyés &-")
    # Without UTF8=ACCEPT, raw UTF-8 is still accepted leniently (IMAP4rev2 names).
    assert parse_one('A1 SELECT "Envoyés"\r\n'.encode()) == c.Select("Envoyés")


def test_mailbox_invalid_encoding() -> None:
    for line in (b"A1 SELECT &Jjo\r\n", b'A1 SELECT "\xff\xfe"\r\n', b"A1 SELECT &AGE-\r\n"):
        [event] = feed_whole(line)
        assert isinstance(event, ParseError) and event.tag == "A1", line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'A101 LIST "" ""\r\n', c.List("", ("",))),
        (b'A682 LIST "" *\r\n', c.List("", ("*",))),
        (b"A202 LIST ~/Mail/ %\r\n", c.List("~/Mail/", ("%",))),
        (b'A102 LIST #news.comp.mail.misc ""\r\n', c.List("#news.comp.mail.misc", ("",))),
        (b'A1 LIST "" INBOX.]foo*\r\n', c.List("", ("INBOX.]foo*",))),
        (
            b'A01 LIST () "" %\r\n',
            c.List("", ("%",), extended=True),
        ),
        (
            b'A02 LIST (SUBSCRIBED) "" "*"\r\n',
            c.List("", ("*",), select=frozenset({c.ListSelect.SUBSCRIBED}), extended=True),
        ),
        (
            b'A03 LIST () "" % RETURN (CHILDREN)\r\n',
            c.List("", ("%",), returns=frozenset({c.ListReturn.CHILDREN}), extended=True),
        ),
        (
            b'A04 LIST (REMOTE SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" "foo/%")\r\n',
            c.List(
                "",
                ("INBOX", "foo/%"),
                select=frozenset(
                    {c.ListSelect.REMOTE, c.ListSelect.SUBSCRIBED, c.ListSelect.RECURSIVEMATCH}
                ),
                extended=True,
            ),
        ),
        (
            b'A05 LIST (SPECIAL-USE) "" * RETURN (SUBSCRIBED SPECIAL-USE STATUS (MESSAGES UNSEEN))\r\n',
            c.List(
                "",
                ("*",),
                select=frozenset({c.ListSelect.SPECIAL_USE}),
                returns=frozenset(
                    {c.ListReturn.SUBSCRIBED, c.ListReturn.SPECIAL_USE, c.ListReturn.STATUS}
                ),
                status_items=(c.StatusItem.MESSAGES, c.StatusItem.UNSEEN),
                extended=True,
            ),
        ),
    ],
)
def test_list(line: bytes, expected: c.List) -> None:
    assert parse_one(line) == expected


def test_list_recursivematch_alone_is_bad() -> None:
    [event] = feed_whole(b'A1 LIST (RECURSIVEMATCH) "" %\r\n')
    assert isinstance(event, ParseError)


def test_lsub_status() -> None:
    assert parse_one(b'A002 LSUB "#news." "comp.mail.*"\r\n') == c.Lsub("#news.", "comp.mail.*")
    assert parse_one(b"A042 STATUS blurdybloop (UIDNEXT MESSAGES)\r\n") == c.Status(
        "blurdybloop", (c.StatusItem.UIDNEXT, c.StatusItem.MESSAGES)
    )
    assert parse_one(b"A1 STATUS inbox (SIZE DELETED HIGHESTMODSEQ APPENDLIMIT)\r\n") == c.Status(
        "INBOX",
        (
            c.StatusItem.SIZE,
            c.StatusItem.DELETED,
            c.StatusItem.HIGHESTMODSEQ,
            c.StatusItem.APPENDLIMIT,
        ),
    )
    assert isinstance(feed_whole(b"A1 STATUS inbox (FOO)\r\n")[0], ParseError)
    assert isinstance(feed_whole(b"A1 STATUS inbox ()\r\n")[0], ParseError)


RFC_MESSAGE = (
    b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\n"
    b"From: Fred Foobar <foobar@Blurdybloop.example>\r\n"
    b"Subject: afternoon meeting\r\n"
    b"To: mooch@owatagu.siam.edu.example\r\n"
    b"Message-Id: <B27397-0100000@Blurdybloop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
    b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
)


def test_append_rfc_example() -> None:
    data = (
        b"A003 APPEND saved-messages (\\Seen) {%d}\r\n" % len(RFC_MESSAGE) + RFC_MESSAGE + b"\r\n"
    )
    assert parse_one(data) == c.Append(
        "saved-messages", (c.AppendMessage(("\\Seen",), None, RFC_MESSAGE),)
    )


def test_append_date_time_and_multiappend() -> None:
    data = (
        b'A1 APPEND INBOX (\\Seen \\flagged $Label1) " 7-Feb-1994 21:52:25 -0800" {3}\r\nabc'
        b' "17-Jul-1996 02:44:25 +0200" {1+}\r\nx ~{2+}\r\n\x00\x01 () {0+}\r\n\r\n'
    )
    cmd = parse_one(data)
    pst = datetime.timezone(datetime.timedelta(hours=-8))
    cest = datetime.timezone(datetime.timedelta(hours=2))
    assert cmd == c.Append(
        "INBOX",
        (
            c.AppendMessage(
                ("\\Seen", "\\Flagged", "$Label1"),
                datetime.datetime(1994, 2, 7, 21, 52, 25, tzinfo=pst),
                b"abc",
            ),
            c.AppendMessage((), datetime.datetime(1996, 7, 17, 2, 44, 25, tzinfo=cest), b"x"),
            c.AppendMessage((), None, b"\x00\x01", binary=True),
            c.AppendMessage((), None, b""),
        ),
    )


def test_append_utf8_data_item_whole_and_bytewise() -> None:
    """RFC 6855 §4: ``"UTF8" SP "(" literal8 ")"``, also in MULTIAPPEND and with LITERAL+."""
    msg = "Subject: café\r\n\r\nbody".encode()
    data = (
        b"A1 APPEND INBOX (\\Seen) UTF8 (~{%d+}\r\n" % len(msg) + msg + b") UTF8 (~{1}\r\nx)\r\n"
    )
    expected = c.Append(
        "INBOX",
        (
            c.AppendMessage(("\\Seen",), None, msg, binary=True, utf8=True),
            c.AppendMessage((), None, b"x", binary=True, utf8=True),
        ),
    )
    assert parse_one(data) == expected
    assert commands(feed_bytewise(data))[0].command == expected


@pytest.mark.parametrize(
    "line",
    [
        b"A1 APPEND INBOX UTF8 ({1+}\r\nx)\r\n",  # RFC 6855 §4: literal8 only
        b"A1 APPEND INBOX UTF8 (~{1+}\r\nx\r\n",  # no closing parenthesis
        b"A1 APPEND INBOX UTF8 ~{1+}\r\nx\r\n",
        b"A1 APPEND INBOX\r\n",
        b'A1 APPEND INBOX "hello"\r\n',
        b'A1 APPEND INBOX "31-Feb-1994 21:52:25 -0800" {1+}\r\nx\r\n',
        b"A1 APPEND INBOX (\\Recent) {1+}\r\nx\r\n",
    ],
)
def test_append_invalid(line: bytes) -> None:
    events = feed_whole(line)
    assert len(events) == 1 and isinstance(events[0], ParseError), events


# --------------------------------------------------------------- selected state (§6.4)


def test_uid_expunge() -> None:
    assert parse_one(b"A003 UID EXPUNGE 3000:3002\r\n") == c.UidExpunge(seq((3000, 3002)))


def test_copy_move() -> None:
    assert parse_one(b"A003 COPY 2:4 MEETING\r\n") == c.Copy(seq((2, 4)), "MEETING")
    assert parse_one(b"a UID MOVE 42:69 foo\r\n") == c.Move(seq((42, 69)), "foo", uid=True)
    assert parse_one(b"a MOVE $ inbox\r\n") == c.Move(S(saved=True), "INBOX")
    assert parse_one(b"a UID COPY 1,3:* Archive\r\n") == c.Copy(
        seq((1, 1), (3, None)), "Archive", uid=True
    )


def test_uid_unknown_subcommand() -> None:
    [event] = feed_whole(b"a UID LIST 1\r\n")
    assert isinstance(event, ParseError) and event.tag == "a"


# -- SEARCH


def test_search_rfc9051_examples() -> None:
    flagged_since_not_smith = c.SearchAnd(
        (
            c.SearchFlag("\\Flagged"),
            c.SearchDate(c.DateField.INTERNAL, c.DateOp.SINCE, datetime.date(1994, 2, 1)),
            c.SearchNot(c.SearchHeader("from", "Smith")),
        )
    )
    assert parse_one(
        b'A282 SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n'
    ) == c.Search(
        flagged_since_not_smith,
        returns=frozenset({c.SearchReturn.MIN, c.SearchReturn.COUNT}),
    )
    assert parse_one(
        b'A283 SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"\r\n'
    ) == c.Search(flagged_since_not_smith, returns=frozenset({c.SearchReturn.ALL}))
    assert parse_one(b'A284 SEARCH TEXT "string not in mailbox"\r\n') == c.Search(
        c.SearchText("string not in mailbox")
    )
    text = "Bücher".encode()
    assert parse_one(
        b"A285 SEARCH CHARSET UTF-8 TEXT {%d}\r\n" % len(text) + text + b"\r\n"
    ) == c.Search(c.SearchText("Bücher"), charset="UTF-8")
    # RFC 3501 example with ISO-8859-1 data in a literal
    assert parse_one(b"A1 SEARCH CHARSET ISO-8859-1 SUBJECT {6}\r\nB\xfccher\r\n") == c.Search(
        c.SearchHeader("subject", "Bücher"), charset="ISO-8859-1"
    )


def test_search_unknown_charset_is_no_badcharset() -> None:
    [event] = feed_whole(b'A286 SEARCH CHARSET WHATEVER text "foo"\r\n')
    assert isinstance(event, ParseError)
    assert event.status == "NO" and event.message.startswith("[BADCHARSET")


ALL_KEYS = (
    b"ALL ANSWERED BCC b BEFORE 1-Jan-2000 BODY x CC c DELETED DRAFT FLAGGED FROM f "
    b'HEADER Message-ID "<a@b>" KEYWORD $Junk LARGER 100 NEW NOT SEEN OLD ON "2-Feb-2001" '
    b"OR 1 2 RECENT SEEN SENTBEFORE 3-Mar-2002 SENTON 4-Apr-2003 SENTSINCE 5-May-2004 "
    b"SINCE 6-Jun-2005 SMALLER 200 SUBJECT s TEXT t TO o UID 1:5,7 UNANSWERED UNDELETED "
    b"UNDRAFT UNFLAGGED UNKEYWORD foo UNSEEN 1:* (SEEN DELETED) MODSEQ 620162338 "
    b'MODSEQ "/flags/\\\\draft" all 620162338 OLDER 3600 YOUNGER 60 SAVEDATESUPPORTED '
    b"SAVEDBEFORE 1-Jan-2020 SAVEDON 1-Jan-2020 SAVEDSINCE 1-Jan-2020 $ "
    b"EMAILID M6d99ac3275bb4e THREADID T64b478a75b7ea9"
)


def test_search_every_key() -> None:
    cmd = parse_one(b"A1 UID SEARCH " + ALL_KEYS + b"\r\n")
    assert isinstance(cmd, c.Search) and cmd.uid
    assert isinstance(cmd.criteria, c.SearchAnd)
    d = datetime.date
    INTERNAL, SENT, SAVED = c.DateField.INTERNAL, c.DateField.SENT, c.DateField.SAVED
    assert cmd.criteria.keys == (
        c.SearchAll(),
        c.SearchFlag("\\Answered"),
        c.SearchHeader("bcc", "b"),
        c.SearchDate(INTERNAL, c.DateOp.BEFORE, d(2000, 1, 1)),
        c.SearchBody("x"),
        c.SearchHeader("cc", "c"),
        c.SearchFlag("\\Deleted"),
        c.SearchFlag("\\Draft"),
        c.SearchFlag("\\Flagged"),
        c.SearchHeader("from", "f"),
        c.SearchHeader("message-id", "<a@b>"),
        c.SearchFlag("$Junk"),
        c.SearchSize(True, 100),
        c.SearchAnd((c.SearchFlag("\\Recent"), c.SearchFlag("\\Seen", False))),
        c.SearchNot(c.SearchFlag("\\Seen")),
        c.SearchNot(c.SearchFlag("\\Recent")),
        c.SearchDate(INTERNAL, c.DateOp.ON, d(2001, 2, 2)),
        c.SearchOr(c.SearchSeq(seq((1, 1))), c.SearchSeq(seq((2, 2)))),
        c.SearchFlag("\\Recent"),
        c.SearchFlag("\\Seen"),
        c.SearchDate(SENT, c.DateOp.BEFORE, d(2002, 3, 3)),
        c.SearchDate(SENT, c.DateOp.ON, d(2003, 4, 4)),
        c.SearchDate(SENT, c.DateOp.SINCE, d(2004, 5, 5)),
        c.SearchDate(INTERNAL, c.DateOp.SINCE, d(2005, 6, 6)),
        c.SearchSize(False, 200),
        c.SearchHeader("subject", "s"),
        c.SearchText("t"),
        c.SearchHeader("to", "o"),
        c.SearchUid(seq((1, 5), (7, 7))),
        c.SearchFlag("\\Answered", False),
        c.SearchFlag("\\Deleted", False),
        c.SearchFlag("\\Draft", False),
        c.SearchFlag("\\Flagged", False),
        c.SearchFlag("foo", False),
        c.SearchFlag("\\Seen", False),
        c.SearchSeq(seq((1, None))),
        c.SearchAnd((c.SearchFlag("\\Seen"), c.SearchFlag("\\Deleted"))),
        c.SearchModSeq(620162338),
        c.SearchModSeq(620162338, "/flags/\\draft", "all"),
        c.SearchAge(True, 3600),
        c.SearchAge(False, 60),
        c.SearchSaveDateSupported(),
        c.SearchDate(SAVED, c.DateOp.BEFORE, d(2020, 1, 1)),
        c.SearchDate(SAVED, c.DateOp.ON, d(2020, 1, 1)),
        c.SearchDate(SAVED, c.DateOp.SINCE, d(2020, 1, 1)),
        c.SearchSeq(S(saved=True)),
        c.SearchObjectId("EMAILID", "M6d99ac3275bb4e"),
        c.SearchObjectId("THREADID", "T64b478a75b7ea9"),
    )


def test_search_nested_parentheses_and_or() -> None:
    cmd = parse_one(b"A1 SEARCH OR (FROM a (TO b)) NOT (OR SEEN DELETED)\r\n")
    assert cmd == c.Search(
        c.SearchOr(
            c.SearchAnd((c.SearchHeader("from", "a"), c.SearchHeader("to", "b"))),
            c.SearchNot(c.SearchOr(c.SearchFlag("\\Seen"), c.SearchFlag("\\Deleted"))),
        )
    )


@pytest.mark.parametrize(
    "line",
    [
        b"A1 SEARCH\r\n",
        b"A1 SEARCH FOO\r\n",
        b"A1 SEARCH SINCE 31-Feb-2000\r\n",
        b"A1 SEARCH SINCE 1-Foo-2000\r\n",
        b"A1 SEARCH OR SEEN\r\n",
        b"A1 SEARCH (SEEN\r\n",
        b"A1 SEARCH ()\r\n",
        b"A1 SEARCH 0:4\r\n",
        b"A1 SEARCH RETURN (BOGUS) ALL\r\n",
        b"A1 SEARCH LARGER x\r\n",
        b"A1 SEARCH SEEN  DELETED\r\n",
    ],
)
def test_search_invalid(line: bytes) -> None:
    [event] = feed_whole(line)
    assert isinstance(event, ParseError) and event.tag == "A1", event


def test_search_res_save() -> None:
    assert parse_one(b"A1 SEARCH RETURN (SAVE) FLAGGED\r\n") == c.Search(
        c.SearchFlag("\\Flagged"), returns=frozenset({c.SearchReturn.SAVE})
    )


# -- FETCH


def test_fetch_rfc_examples() -> None:
    assert parse_one(b"A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])\r\n") == c.Fetch(
        seq((2, 4)),
        (
            c.FetchAttr.FLAGS,
            c.FetchBody(c.Section(text=c.SectionText.HEADER_FIELDS, fields=("DATE", "FROM"))),
        ),
    )
    assert parse_one(b"A999 UID FETCH 4827313:4828442 FLAGS\r\n") == c.Fetch(
        seq((4827313, 4828442)), (c.FetchAttr.FLAGS,), uid=True
    )


def test_fetch_macros() -> None:
    all_, fast = c.FETCH_MACROS["ALL"], c.FETCH_MACROS["FAST"]
    assert parse_one(b"a FETCH 1 all\r\n") == c.Fetch(seq((1, 1)), all_)
    assert parse_one(b"a FETCH 1 FAST\r\n") == c.Fetch(seq((1, 1)), fast)
    assert len(all_) == 4 and c.FetchAttr.ENVELOPE in all_


def test_fetch_every_item() -> None:
    cmd = parse_one(
        b"a FETCH 1:*,3 (ENVELOPE FLAGS INTERNALDATE RFC822.SIZE RFC822 RFC822.HEADER "
        b"RFC822.TEXT BODY BODYSTRUCTURE UID MODSEQ EMAILID THREADID SAVEDATE BODY[] "
        b"BODY.PEEK[TEXT]<0.2048> BODY[1.2.MIME] BODY[3.HEADER] BODY[4.1] "
        b"BODY[HEADER.FIELDS.NOT (Received {8}\r\nX-Spam ()] "
        b"BINARY[1] BINARY.PEEK[2.1]<10.20> BINARY.SIZE[3] BINARY[])\r\n"
    )
    assert isinstance(cmd, c.Fetch)
    assert cmd.seqset == seq((1, None), (3, 3))
    A = c.FetchAttr
    assert cmd.items == (
        A.ENVELOPE,
        A.FLAGS,
        A.INTERNALDATE,
        A.RFC822_SIZE,
        A.RFC822,
        A.RFC822_HEADER,
        A.RFC822_TEXT,
        A.BODY,
        A.BODYSTRUCTURE,
        A.UID,
        A.MODSEQ,
        A.EMAILID,
        A.THREADID,
        A.SAVEDATE,
        c.FetchBody(c.Section()),
        c.FetchBody(c.Section(text=c.SectionText.TEXT), c.Partial(0, 2048), peek=True),
        c.FetchBody(c.Section((1, 2), c.SectionText.MIME)),
        c.FetchBody(c.Section((3,), c.SectionText.HEADER)),
        c.FetchBody(c.Section((4, 1))),
        c.FetchBody(
            c.Section(text=c.SectionText.HEADER_FIELDS_NOT, fields=("Received", "X-Spam ("))
        ),
        c.FetchBinary((1,)),
        c.FetchBinary((2, 1), c.Partial(10, 20), peek=True),
        c.FetchBinarySize((3,)),
        c.FetchBinary(()),
    )


def test_fetch_condstore_qresync_modifiers() -> None:
    assert parse_one(b"s100 UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n") == c.Fetch(
        seq((1, None)), (c.FetchAttr.FLAGS,), changedsince=12345, vanished=True, uid=True
    )
    assert parse_one(b"s1 FETCH 1:* FLAGS (CHANGEDSINCE 7)\r\n") == c.Fetch(
        seq((1, None)), (c.FetchAttr.FLAGS,), changedsince=7
    )


@pytest.mark.parametrize(
    "line",
    [
        b"a FETCH 1 (FLAGS) (VANISHED)\r\n",  # VANISHED needs UID and CHANGEDSINCE
        b"a UID FETCH 1 (FLAGS) (VANISHED)\r\n",
        b"a FETCH 1 BODY[MIME]\r\n",
        b"a FETCH 1 BODY[1MIME]\r\n",
        b"a FETCH 1 BODY[1.]\r\n",
        b"a FETCH 1 BODY[0]\r\n",
        b"a FETCH 1 BODY[FOO]\r\n",
        b"a FETCH 1 BODY[]<0.0>\r\n",
        b"a FETCH 1 ()\r\n",
        b"a FETCH 1 (FLAGS\r\n",
        b"a FETCH 1 FOO\r\n",
        b"a FETCH 0 FLAGS\r\n",
        b"a FETCH 1, FLAGS\r\n",
        b"a FETCH 1:2:3 FLAGS\r\n",
        b"a FETCH FLAGS\r\n",
        b"a FETCH 1 UID[1]\r\n",
        b"a FETCH 99999999999 FLAGS\r\n",
    ],
)
def test_fetch_invalid(line: bytes) -> None:
    [event] = feed_whole(line)
    assert isinstance(event, ParseError) and event.tag == "a", event


# -- STORE


def test_store_forms() -> None:
    assert parse_one(b"A003 STORE 2:4 +FLAGS (\\Deleted)\r\n") == c.Store(
        seq((2, 4)), c.StoreMode.ADD, ("\\Deleted",)
    )
    assert parse_one(b"A1 STORE 1 -flags.silent \\seen $Junk\r\n") == c.Store(
        seq((1, 1)), c.StoreMode.REMOVE, ("\\Seen", "$Junk"), silent=True
    )
    assert parse_one(b"A1 STORE 1 FLAGS ()\r\n") == c.Store(seq((1, 1)), c.StoreMode.REPLACE, ())
    # RFC 7162 §3.1.3 example
    assert parse_one(
        b"d105 STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)\r\n"
    ) == c.Store(
        seq((7, 7), (5, 5), (9, 9)),
        c.StoreMode.ADD,
        ("\\Deleted",),
        silent=True,
        unchangedsince=320162338,
    )
    assert parse_one(b"A1 UID STORE 1:* FLAGS (\\Answered)\r\n") == c.Store(
        seq((1, None)), c.StoreMode.REPLACE, ("\\Answered",), uid=True
    )


@pytest.mark.parametrize(
    "line",
    [b"A1 STORE 1 *FLAGS (x)\r\n", b"A1 STORE 1 FLAGS\r\n", b"A1 STORE 1 LABELS (x)\r\n"],
)
def test_store_invalid(line: bytes) -> None:
    [event] = feed_whole(line)
    assert isinstance(event, ParseError)


# -- SORT / THREAD (RFC 5256)


def test_sort_thread() -> None:
    assert parse_one(b"A282 SORT (SUBJECT) UTF-8 SINCE 1-Feb-1994\r\n") == c.Sort(
        (c.SortCriterion("SUBJECT"),),
        "UTF-8",
        c.SearchDate(c.DateField.INTERNAL, c.DateOp.SINCE, datetime.date(1994, 2, 1)),
    )
    assert parse_one(b"A283 UID SORT RETURN (COUNT) (REVERSE DATE SIZE) US-ASCII ALL\r\n") == (
        c.Sort(
            (c.SortCriterion("DATE", True), c.SortCriterion("SIZE")),
            "US-ASCII",
            c.SearchAll(),
            returns=frozenset({c.SearchReturn.COUNT}),
            uid=True,
        )
    )
    assert parse_one(b"A283 THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000\r\n") == c.Thread(
        "ORDEREDSUBJECT",
        "UTF-8",
        c.SearchDate(c.DateField.INTERNAL, c.DateOp.SINCE, datetime.date(2000, 3, 5)),
    )
    assert parse_one(b'A284 UID THREAD references US-ASCII TEXT "gewp"\r\n') == c.Thread(
        "REFERENCES", "US-ASCII", c.SearchText("gewp"), uid=True
    )
    assert isinstance(feed_whole(b"A1 SORT (FOO) UTF-8 ALL\r\n")[0], ParseError)
    assert isinstance(feed_whole(b"A1 SORT () UTF-8 ALL\r\n")[0], ParseError)


# -- QUOTA / ID / COMPRESS / unknown


def test_quota() -> None:
    assert parse_one(b'G0001 GETQUOTA "!partition/sda4"\r\n') == c.GetQuota("!partition/sda4")
    assert parse_one(b"A003 GETQUOTAROOT INBOX\r\n") == c.GetQuotaRoot("INBOX")
    assert parse_one(b'S0000 SETQUOTA "#user/alice" (STORAGE 510 message 1000)\r\n') == (
        c.SetQuota("#user/alice", (("STORAGE", 510), ("MESSAGE", 1000)))
    )
    assert parse_one(b'S1 SETQUOTA "" ()\r\n') == c.SetQuota("", ())


def test_id() -> None:
    assert parse_one(b"a023 ID NIL\r\n") == c.Id(None)
    assert parse_one(b'a023 ID ("name" "sodr" "version" "19.34" "vendor" NIL)\r\n') == c.Id(
        (("name", "sodr"), ("version", "19.34"), ("vendor", None))
    )
    assert parse_one(b"a1 ID ()\r\n") == c.Id(())


def test_compress() -> None:
    assert parse_one(b"a COMPRESS deflate\r\n") == c.Compress("DEFLATE")


def test_unknown_command() -> None:
    assert feed_whole(b"a1 XYZZY foo {3+}\r\nbar\r\n") == [Command("a1", c.Unknown("XYZZY"))]


def test_all_command_names_covered() -> None:
    """Each command dataclass is produced by at least one of the lines here."""
    lines = [
        b"t CAPABILITY", b"t NOOP", b"t LOGOUT", b"t STARTTLS", b"t AUTHENTICATE PLAIN",
        b"t LOGIN a b", b"t ENABLE X", b"t SELECT a", b"t EXAMINE a", b"t CREATE a",
        b"t DELETE a", b"t RENAME a b", b"t SUBSCRIBE a", b"t UNSUBSCRIBE a", b"t LIST a b",
        b"t LSUB a b", b"t NAMESPACE", b"t STATUS a (MESSAGES)", b"t APPEND a {0+}\r\n",
        b"t IDLE", b"t CHECK", b"t CLOSE", b"t UNSELECT", b"t EXPUNGE", b"t UID EXPUNGE 1",
        b"t SEARCH ALL", b"t FETCH 1 UID", b"t STORE 1 FLAGS x", b"t COPY 1 a", b"t MOVE 1 a",
        b"t SORT (DATE) UTF-8 ALL", b"t THREAD REFERENCES UTF-8 ALL", b"t GETQUOTA a",
        b"t GETQUOTAROOT a", b"t SETQUOTA a ()", b"t ID NIL", b"t COMPRESS DEFLATE", b"t FOO",
    ]  # fmt: skip
    parser = CommandParser()
    kinds = set()
    for line in lines:
        for event in feed_whole(line + b"\r\n", parser):
            assert isinstance(event, Command), (line, event)
            kinds.add(type(event.command))
    assert kinds == set(c.ImapCommand.__args__)  # type: ignore[attr-defined]
