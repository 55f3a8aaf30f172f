"""DKIM signing (ours) and verification (dkimpy behind our resolver): RFC 6376, RFC 8463."""

from __future__ import annotations

import base64
import hashlib
import time

import dkim as dkimpy  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from postier.mailauth import dkim
from postier.mailauth.dkim import (
    DkimKey,
    DkimResult,
    DkimStatus,
    canonicalize_body,
    dns_name,
    dns_record,
    generate_key,
    sign,
    verify,
)
from postier.mailauth.dns import FakeResolver

NOW = time.time()  # dkimpy refuses t= more than 10 h in the future, by the real clock

MESSAGE = (
    b"Received: from x by y; Fri, 27 Nov 2026 08:00:00 +0000\r\n"
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@example.net>,\r\n"
    b"\tCarol <carol@example.net>\r\n"
    b"Subject: a folded\r\n   subject  with   spaces\r\n"
    b"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\n"
    b"Message-ID: <1@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"List-Id: <news.example.org>\r\n"
    b"List-Unsubscribe: <https://example.org/u>\r\n"
    b"\r\n"
    b"Hello  Bob, \r\n"
    b"\tcaf\xc3\xa9 \xe2\x82\xac 8-bit\r\n"
    b"\r\n"
    b"\r\n"
)

# RFC 8463 Appendix A: keys (A.2) and the signed message (A.3).
RFC8463_ED25519_SEED = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
RFC8463_DNS = {
    "brisbane._domainkey.football.example.com": [
        ("TXT", "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    ],
    "test._domainkey.football.example.com": [
        (
            "TXT",
            "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3id"
            "Y6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1L"
            "xj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB",
        )
    ],
}
RFC8463_ED25519_SIGNATURE = (
    b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    b" subject : date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    b" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
)
RFC8463_RSA_SIGNATURE = (
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    b" date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    b" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    b" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
)
RFC8463_MESSAGE = (
    b"From: Joe SixPack <joe@football.example.com>\r\n"
    b"To: Suzie Q <suzie@shopping.example.net>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    b"\r\n"
    b"Hi.\r\n"
    b"\r\n"
    b"We lost the game.  Are you hungry yet?\r\n"
    b"\r\n"
    b"Joe.\r\n"
)


@pytest.fixture(scope="module")
def rsa_key() -> DkimKey:
    return generate_key("example.org", "rsa2026")


@pytest.fixture(scope="module")
def ed_key() -> DkimKey:
    return generate_key("example.org", "ed2026", "ed25519-sha256")


@pytest.fixture(scope="module")
def keys(rsa_key: DkimKey, ed_key: DkimKey) -> list[DkimKey]:
    return [rsa_key, ed_key]


def resolver_for(*keys: DkimKey) -> FakeResolver:
    return FakeResolver({dns_name(k): [("TXT", dns_record(k))] for k in keys})


def dkimpy_dnsfunc(*keys: DkimKey):
    records = {(dns_name(k) + ".").encode(): dns_record(k).encode() for k in keys}
    return lambda name, timeout=5: records.get(name)


def as_sent(message: bytes) -> bytes:
    """What a receiver gets: SMTP DATA ends the content with CRLF (RFC 5321 §4.1.1.4)."""
    return message if message.endswith(b"\n") else message + b"\r\n"


def statuses(results: list[DkimResult]) -> list[str]:
    return [r.result.value for r in results]


# --------------------------------------------------------------------------- round trips

MESSAGES = {
    "folded": MESSAGE,
    "lf_only": MESSAGE.replace(b"\r\n", b"\n"),
    "empty_body": b"From: a@example.org\r\nSubject: x\r\n\r\n",
    "no_body_separator": b"From: a@example.org\r\nSubject: x\r\n",
    "no_final_newline": b"From: a@example.org\r\n\r\nlast line  ",  # SMTP adds the CRLF
    "trailing_blank_lines": b"From: a@example.org\r\n\r\nbody\r\n \r\n\t\r\n\r\n",
    "eight_bit": b"From: =?utf-8?q?Jos=C3=A9?= <j@example.org>\r\n\r\n\xff\xfe\x80 \xc3\xa9\r\n",
}
CANONS = [
    ("relaxed", "relaxed"),
    ("simple", "simple"),
    ("relaxed", "simple"),
    ("simple", "relaxed"),
]


@pytest.mark.parametrize("name", sorted(MESSAGES))
@pytest.mark.parametrize("canon", CANONS, ids="/".join)
async def test_sign_then_verify_round_trip(keys, name, canon) -> None:
    message = MESSAGES[name]
    signed = sign(message, keys, NOW, canonicalization=canon) + as_sent(message)
    assert statuses(await verify(signed, resolver_for(*keys))) == ["pass", "pass"]


@pytest.mark.parametrize("name", sorted(MESSAGES))
@pytest.mark.parametrize("canon", CANONS, ids="/".join)
def test_dkimpy_verifies_our_signatures(keys, name, canon) -> None:
    message = MESSAGES[name]
    signed = sign(message, keys, NOW, canonicalization=canon) + as_sent(message)
    checker = dkimpy.DKIM(signed)
    for idx in range(2):
        assert checker.verify(idx=idx, dnsfunc=dkimpy_dnsfunc(*keys))


@pytest.mark.parametrize("canon", CANONS, ids="/".join)
async def test_we_verify_dkimpy_signatures(rsa_key, ed_key, canon) -> None:
    c = tuple(x.encode() for x in canon)
    rsa_pem = rsa_key.private_key.private_bytes(  # dkimpy wants PKCS#1 for RSA
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert isinstance(ed_key.private_key, ed25519.Ed25519PrivateKey)
    seed = ed_key.private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    sig_rsa = dkimpy.sign(MESSAGE, b"rsa2026", b"example.org", rsa_pem, canonicalize=c)
    sig_ed = dkimpy.DKIM(MESSAGE, signature_algorithm=b"ed25519-sha256").sign(
        b"ed2026", b"example.org", base64.b64encode(seed), canonicalize=c
    )
    results = await verify(sig_ed + sig_rsa + MESSAGE, resolver_for(rsa_key, ed_key))
    assert [(r.selector, r.result) for r in results] == [
        ("ed2026", DkimStatus.PASS),
        ("rsa2026", DkimStatus.PASS),
    ]


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=200).map(
        lambda b: bytes(b" \t\r\nax\xe9"[c % 7] for c in b)  # whitespace-heavy bodies
    ),
    canon=st.sampled_from(CANONS),
)
def test_body_canonicalisation_agrees_with_dkimpy(body, canon) -> None:
    message = b"From: a@example.org\r\n\r\n" + body
    key = _ED_KEY  # hypothesis and function-scoped fixtures do not mix
    signed = sign(message, [key], NOW, canonicalization=canon) + as_sent(message)
    assert dkimpy.DKIM(signed).verify(dnsfunc=dkimpy_dnsfunc(key))


_ED_KEY = generate_key("example.org", "prop", "ed25519-sha256")


async def test_large_message_is_verified_off_the_loop(ed_key) -> None:
    message = MESSAGE + (b"x" * 70 + b"\r\n") * 2000
    assert len(message) > dkim.THREAD_THRESHOLD_BYTES
    signed = sign(message, [ed_key], NOW) + message
    assert statuses(await verify(signed, resolver_for(ed_key))) == ["pass"]


# --------------------------------------------------------------------------- RFC 8463 A


async def test_rfc8463_example_verifies() -> None:
    signed = RFC8463_ED25519_SIGNATURE + RFC8463_RSA_SIGNATURE + RFC8463_MESSAGE
    results = await verify(signed, FakeResolver(RFC8463_DNS))
    assert [(r.selector, r.algorithm, r.result) for r in results] == [
        ("brisbane", "ed25519-sha256", DkimStatus.PASS),
        ("test", "rsa-sha256", DkimStatus.PASS),
    ]
    assert results[0].domain == "football.example.com"
    assert results[0].identity == "@football.example.com"
    assert results[0].header_b.startswith("/gCrinpc")


def test_rfc8463_example_reproduced_by_our_canonicalisation_and_signer() -> None:
    """Ed25519 is deterministic: our canonical header data + the RFC key give the RFC's b=."""
    seed = base64.b64decode(RFC8463_ED25519_SEED)
    pem = ed25519.Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = DkimKey("brisbane", "football.example.com", "ed25519-sha256", pem)
    assert dns_record(key) == RFC8463_DNS["brisbane._domainkey.football.example.com"][0][1]
    fields, body = dkim._split(RFC8463_MESSAGE)
    body_hash = hashlib.sha256(canonicalize_body(body, "relaxed")).digest()
    assert base64.b64encode(body_hash) == b"2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
    names = ["from", "to", "subject", "date", "message-id", "from", "subject", "date"]
    data = b"".join(dkim._canon_header_relaxed(r) for r in dkim._select_headers(fields, names))
    unsigned = RFC8463_ED25519_SIGNATURE.split(b" b=")[0] + b" b=\r\n"
    data += dkim._canon_header_relaxed(unsigned)[:-2]
    b = base64.b64encode(dkim._sign_data(key, data))
    assert (
        b
        == b"/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw=="
    )


def test_rfc6376_3_4_5_canonicalisation_examples() -> None:
    header = b"A: X\r\nB : Y\t\r\n\tZ  \r\n"
    fields, _ = dkim._split(header + b"\r\n")
    assert b"".join(dkim._canon_header_relaxed(raw) for _, raw in fields) == b"a:X\r\nb:Y Z\r\n"
    assert b"".join(dkim._canon_header(raw, "simple") for _, raw in fields) == header
    body = b" C \r\nD \t E\r\n\r\n\r\n"
    assert canonicalize_body(body, "relaxed") == b" C\r\nD E\r\n"
    assert canonicalize_body(body, "simple") == b" C \r\nD \t E\r\n"
    assert canonicalize_body(b"", "relaxed") == b""
    assert canonicalize_body(b"", "simple") == b"\r\n"  # RFC 6376 §3.4.3
    assert canonicalize_body(b"\r\n\r\n", "simple") == b"\r\n"
    assert canonicalize_body(b"x\r\r\n\r\n", "simple") == b"x\r\r\n"  # a bare CR stays


# --------------------------------------------------------------------------- the signature field


def test_signature_field_shape(rsa_key) -> None:
    field = sign(MESSAGE, [rsa_key], 1_800_000_000)
    assert field.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;")
    assert field.endswith(b"\r\n") and field.count(b"DKIM-Signature:") == 1
    assert all(len(line) <= 78 for line in field.split(b"\r\n"))
    assert all(line.startswith(b" ") for line in field.split(b"\r\n")[1:-1])  # folded
    tags = dkimpy.util.parse_tag_value(field.split(b":", 1)[1])
    assert tags[b"t"] == b"1800000000"
    assert b"l" not in tags and b"x" not in tags
    h = [n.strip().lower() for n in tags[b"h"].split(b":")]
    assert h == [
        b"from", b"from", b"to", b"subject", b"date", b"message-id", b"mime-version",
        b"content-type", b"content-transfer-encoding", b"list-id", b"list-unsubscribe",
    ]  # fmt: skip


def test_expiry_adds_x_tag(ed_key) -> None:
    field = sign(MESSAGE, [ed_key], 1_800_000_000, expire_after_s=86400)
    tags = dkimpy.util.parse_tag_value(field.split(b":", 1)[1])
    assert tags[b"x"] == b"1800086400"


def test_signing_without_from_is_refused(ed_key) -> None:
    with pytest.raises(ValueError, match="From"):
        sign(MESSAGE, [ed_key], NOW, headers=["Subject"])
    with pytest.raises(ValueError, match="header field name"):
        sign(MESSAGE, [ed_key], NOW, headers=["From", "X;y"])


# --------------------------------------------------------------------------- keys


def test_dns_records(rsa_key, ed_key) -> None:
    assert dns_name(rsa_key) == "rsa2026._domainkey.example.org"
    rec = dns_record(rsa_key)
    assert rec.startswith("v=DKIM1; k=rsa; p=")
    public = serialization.load_der_public_key(base64.b64decode(rec.split("p=")[1]))
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    rec = dns_record(ed_key)
    assert rec.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(rec.split("p=")[1])) == 32  # RFC 8463 §4.2: bare key


def test_key_validation(rsa_key, ed_key) -> None:
    with pytest.raises(ValueError, match="selector"):
        DkimKey("a;b", "example.org", "ed25519-sha256", ed_key.private_key_pem)
    with pytest.raises(ValueError, match="domain"):
        DkimKey("s", "example.org\r\nBcc: x", "ed25519-sha256", ed_key.private_key_pem)
    with pytest.raises(ValueError, match="Ed25519"):
        DkimKey("s", "example.org", "ed25519-sha256", rsa_key.private_key_pem)
    with pytest.raises(ValueError, match="RSA"):
        DkimKey("s", "example.org", "rsa-sha256", ed_key.private_key_pem)
    assert "PRIVATE" not in repr(rsa_key)


# --------------------------------------------------------------------------- failures


async def test_unsigned_message_gives_no_results() -> None:
    assert await verify(MESSAGE, FakeResolver()) == []


async def test_tampered_body_fails(ed_key, rsa_key) -> None:
    signed = sign(MESSAGE, [ed_key, rsa_key], NOW) + MESSAGE
    results = await verify(signed.replace(b"Hello", b"Hallo"), resolver_for(ed_key, rsa_key))
    assert [(r.result, r.reason) for r in results] == [
        (DkimStatus.FAIL, "body hash mismatch"),
        (DkimStatus.FAIL, "body hash mismatch"),
    ]


async def test_relaxed_tolerates_whitespace_changes_simple_does_not(ed_key) -> None:
    relaxed = sign(MESSAGE, [ed_key], NOW) + MESSAGE
    simple = sign(MESSAGE, [ed_key], NOW, canonicalization=("simple", "simple")) + MESSAGE
    resolver = resolver_for(ed_key)
    for signed, expected in ((relaxed, "pass"), (simple, "fail")):
        changed = signed.replace(b"Subject: a folded", b"Subject:  a  folded")
        changed = changed.replace(b"Hello  Bob, \r\n", b"Hello Bob,\r\n")
        assert statuses(await verify(changed, resolver)) == [expected]


@pytest.mark.parametrize(
    "change",
    [
        (b"Subject: a folded", b"Subject: a forged"),  # signed header changed
        (b"From: Alice", b"From: Mallory <m@evil.example>\r\nFrom: Alice"),  # From added
        (b"Message-ID: <1@example.org>\r\n", b""),  # signed header removed
        (b"List-Id: <news.example.org>\r\n", b""),
    ],
    ids=["changed", "from_added", "removed", "list_removed"],
)
async def test_tampered_headers_fail(ed_key, rsa_key, change) -> None:
    signed = sign(MESSAGE, [ed_key, rsa_key], NOW) + MESSAGE
    results = await verify(signed.replace(*change), resolver_for(ed_key, rsa_key))
    assert statuses(results) == ["fail", "fail"]
    assert results[0].reason == "signature did not verify"


async def test_unsigned_header_may_be_added(ed_key) -> None:
    signed = sign(MESSAGE, [ed_key], NOW) + MESSAGE
    resolver = resolver_for(ed_key)
    assert statuses(await verify(b"Received: by mx\r\n" + signed, resolver)) == ["pass"]
    # To is not over-signed: a second To above the first is outside the signature (h=To
    # picks the bottom one, RFC 6376 §5.4.2); below the first it replaces it and fails.
    assert statuses(await verify(b"To: x@y\r\n" + signed, resolver)) == ["pass"]
    below = signed.replace(b"\r\nDate: Fri", b"\r\nTo: x@y\r\nDate: Fri")
    assert statuses(await verify(below, resolver)) == ["fail"]


async def test_revoked_key_fails(ed_key) -> None:
    signed = sign(MESSAGE, [ed_key], NOW) + MESSAGE
    resolver = FakeResolver({dns_name(ed_key): [("TXT", "v=DKIM1; k=ed25519; p=")]})
    [result] = await verify(signed, resolver)
    assert (result.result, result.reason) == (DkimStatus.FAIL, "key revoked")


async def test_wrong_key_type_is_permerror(ed_key, rsa_key) -> None:
    signed = sign(MESSAGE, [rsa_key], NOW) + MESSAGE
    resolver = FakeResolver({dns_name(rsa_key): [("TXT", dns_record(ed_key))]})
    [result] = await verify(signed, resolver)
    assert result.result == DkimStatus.PERMERROR
    assert "k=ed25519" in result.reason


async def test_other_key_of_same_type_fails(rsa_key) -> None:
    other = generate_key("example.org", "rsa2026", "rsa-sha256")
    signed = sign(MESSAGE, [rsa_key], NOW) + MESSAGE
    assert statuses(await verify(signed, resolver_for(other))) == ["fail"]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (None, "no key record"),
        ("v=DKIM1; k=ed25519", "malformed key record"),
        ("v=DKIM2; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "version"),
        ("v=DKIM1; k=ed25519; h=sha1; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "sha256"),
        ("v=DKIM1; k=ed25519; p=AAAA", "unusable key"),
    ],
)
async def test_bad_key_records_are_permerror(ed_key, record, reason) -> None:
    signed = sign(MESSAGE, [ed_key], NOW) + MESSAGE
    resolver = FakeResolver({dns_name(ed_key): [("TXT", record)] if record else []})
    [result] = await verify(signed, resolver)
    assert result.result == DkimStatus.PERMERROR
    assert reason in result.reason


async def test_dns_failure_is_temperror(ed_key, rsa_key) -> None:
    signed = sign(MESSAGE, [ed_key, rsa_key], NOW) + MESSAGE
    resolver = FakeResolver(
        {dns_name(ed_key): [("TIMEOUT", None)], dns_name(rsa_key): [("TXT", dns_record(rsa_key))]}
    )
    results = await verify(signed, resolver)
    assert statuses(results) == ["temperror", "pass"]
    assert "key lookup failed" in results[0].reason


async def test_signature_without_from_is_permerror(ed_key) -> None:
    field = sign(MESSAGE, [ed_key], NOW).replace(b"h=From:From:To", b"h=To")
    [result] = await verify(field + MESSAGE, resolver_for(ed_key))
    assert (result.result, result.reason) == (DkimStatus.PERMERROR, "From field not signed")


async def test_malformed_signatures_are_permerror(ed_key) -> None:
    field = sign(MESSAGE, [ed_key], NOW)
    resolver = resolver_for(ed_key)
    no_bh = field.replace(b"bh=", b"xx=")
    [result] = await verify(no_bh + MESSAGE, resolver)
    assert (result.result, result.reason) == (DkimStatus.PERMERROR, "missing tag bh=")
    future = field.replace(b"t=%d;" % int(NOW), b"t=%d;" % (int(NOW) + 10**6))
    [result] = await verify(future + MESSAGE, resolver)
    assert result.result == DkimStatus.PERMERROR and "future" in result.reason
    [result] = await verify(b"DKIM-Signature: v=1; a\r\n" + MESSAGE, resolver)
    assert result.result == DkimStatus.PERMERROR
    assert resolver.queries.count((dns_name(ed_key), "TXT")) == 0  # no lookups for these


async def test_rsa_sha1_is_not_accepted(rsa_key) -> None:  # RFC 8301 §3.1
    pem = rsa_key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    field = dkimpy.DKIM(MESSAGE, signature_algorithm=b"rsa-sha1").sign(
        b"rsa2026", b"example.org", pem
    )
    [result] = await verify(field + MESSAGE, resolver_for(rsa_key))
    assert result.result == DkimStatus.PERMERROR and "rsa-sha1" in result.reason


async def test_each_key_record_is_fetched_once(ed_key) -> None:
    resolver = resolver_for(ed_key)
    signed = sign(MESSAGE, [ed_key, ed_key], NOW) + MESSAGE
    assert statuses(await verify(signed, resolver)) == ["pass", "pass"]
    assert resolver.queries == [(dns_name(ed_key), "TXT")]


async def test_signatures_over_the_limit_are_neutral(ed_key) -> None:
    n = dkim.MAX_SIGNATURES + 2
    signed = sign(MESSAGE, [ed_key] * n, NOW) + MESSAGE
    results = await verify(signed, resolver_for(ed_key))
    assert statuses(results) == ["pass"] * dkim.MAX_SIGNATURES + ["neutral"] * 2
    assert results[-1].domain == "example.org"
