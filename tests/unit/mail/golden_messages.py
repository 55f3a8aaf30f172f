"""Synthetic messages for the parse_message golden test and the parse benchmark."""

from __future__ import annotations

import base64
import quopri

WORDS = (
    b"alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    b"november oscar papa quebec romeo sierra tango uniform victor whiskey xray"
).split()


def plain_message(n: int, size: int = 10_000) -> bytes:
    """The message of bench/store.py ``make_message``: single-part text/plain UTF-8."""
    header = (
        b"From: Sender %d <sender%d@example.net>\r\nTo: alice@example.org\r\n"
        b"Subject: benchmark message %d about %s\r\nMessage-ID: <%d@bench.example.net>\r\n"
        b"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        % (n % 97, n % 97, n, WORDS[n % len(WORDS)], n)
    )
    line = b" ".join(WORDS[(n + i) % len(WORDS)] for i in range(12)) + b"\r\n"
    body = line * (max(0, size - len(header)) // len(line) + 1)
    return header + body[: max(0, size - len(header))]


def alternative_message(n: int, size: int = 20_000) -> bytes:
    """A typical multipart/alternative (quoted-printable text + HTML), about ``size`` bytes."""
    lines = [
        b" ".join(WORDS[(n + i + j) % len(WORDS)] for j in range(10)) for i in range(size // 160)
    ]
    text = b"\r\n".join(lines) + b"\r\n"
    html_body = (
        b"<html><head><style>p { margin: 0 }</style></head><body>\r\n"
        + b"".join(b"<p>" + ln + b" &amp; <b>bold</b></p>\r\n" for ln in lines)
        + b"</body></html>\r\n"
    )
    qp_text = quopri.encodestring(text.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n")
    return (
        b"From: =?utf-8?Q?J=C3=BCrgen?= <jurgen@example.net>\r\n"
        b'To: "Alice A." <alice@example.org>, bob@example.org\r\n'
        b"Cc: carol@example.org\r\n"
        b"Subject: =?utf-8?B?UsOpdW5pb24=?= report %d\r\n"
        b"Message-ID: <%d.alt@example.net>\r\n"
        b"In-Reply-To: <parent@example.net>\r\n"
        b"References: <root@example.net> <parent@example.net>\r\n"
        b"Date: Fri, 27 Nov 2026 08:00:00 +0100\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="==alt%d=="\r\n'
        b"\r\n"
        b"--==alt%d==\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n"
        b"\r\n" % (n, n, n, n)
        + qp_text
        + b"\r\n--==alt%d==\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n" % n
        + html_body
        + b"\r\n--==alt%d==--\r\n" % n
    )


def synthetic_messages() -> dict[str, bytes]:
    """Named synthetic messages covering the text paths (whitespace, charsets, CTEs)."""
    ws = "a\u00a0b\u2003c\x1cd\x1fe\x85f\u3000g\tx\x0by\x0cz  \r\n\r\n  end\u2028 \u2029"
    out: dict[str, bytes] = {
        "plain-10k": plain_message(7),
        "plain-10k-b": plain_message(12345),
        "plain-1k": plain_message(3, 1_000),
        "plain-100k": plain_message(5, 100_000),
        "alternative-20k": alternative_message(1),
        "alternative-5k": alternative_message(2, 5_000),
        "empty": b"",
        "header-only": b"Subject: x\r\nFrom: a@b",
        "body-only": b"\r\nhello\r\n",
        "bare-lf": b"Subject: lf\nFrom: a@b\n\n  line one \n\n\tline  two\n",
        "unicode-ws-utf8": b"Subject: ws\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + ws.encode("utf-8"),
        "unicode-ws-default": b"Subject: ws\r\n\r\n" + ws.encode("utf-8"),
        "latin1": b"Subject: l\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\n"
        b"caf\xe9 \xa0 na\xefve\x85 \x80\x9f\r\n",
        "bad-utf8": b"Subject: b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"ok \xff\xfe \xc3 bad\r\n \xe2\x80\xa8 x\r\n",
        "8bit-default-charset": b"Subject: d\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"J\xc3\xbcrgen  was  here\r\n",
        "7bit-us-ascii": b"Subject: a\r\nContent-Type: text/plain; charset=us-ascii\r\n"
        b"Content-Transfer-Encoding: 7bit\r\n\r\nplain ascii\r\ntext\r\n",
        "qp": b"Subject: q\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9 soft=\r\nbreak =\r\n",
        "base64": b"Subject: b64\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes("r\u00e9sum\u00e9\t\u00a0ok\n".encode() * 50),
        "utf-7": b"Subject: u7\r\nContent-Type: text/plain; charset=utf-7\r\n\r\nHi +2D3cAA- x\r\n",
        "unknown-charset": b"Subject: u\r\nContent-Type: text/plain; charset=x-bogus\r\n\r\nhi\r\n",
        "html-only": b"Subject: h\r\nContent-Type: text/html\r\n\r\n"
        b"<p>a&nbsp;b</p><script>x<y</script><style>z</style>&#x2003;end&lt;",
        "whitespace-only": b"Subject: w\r\n\r\n \r\n\t\r\n",
        "cr-only": b"Subject: c\r\n\r\na\rb\r\rc",
        "folded-headers": b"Subject: =?utf-8?Q?a?=\r\n =?utf-8?Q?b?=\r\nX-Long: one\r\n\ttwo\r\n"
        b"To: group: a@b, c@d;, e@f\r\nFrom \r\nBogus line\r\n\r\nbody\r\n",
        "nul-and-controls": b"Subject: n\r\n\r\na\x00b\x01c\x7f\r\n",
    }
    long_text = b"word " * 300_000  # 1.5 MB: crosses MAX_TEXT_CHARS
    out["capped"] = b"Subject: big\r\n\r\n" + long_text
    out["capped-spaces"] = b"Subject: big\r\n\r\n" + b" " * 3_000_000 + b"x"
    return out
