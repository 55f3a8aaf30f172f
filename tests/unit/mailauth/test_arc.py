"""ARC verification (RFC 8617): chains sealed by dkimpy's arc_sign, keys served by a
FakeResolver; the arc= resinfo in Authentication-Results."""

from __future__ import annotations

import base64
import types
from typing import Any

import dkim as dkimpy  # type: ignore[import-untyped]
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from postier.mailauth import authres
from postier.mailauth.arc import ArcStatus, verify
from postier.mailauth.dns import FakeResolver
from postier.mailauth.inbound import InboundChecker, InboundSettings

MESSAGE = (
    b"From: Alice <alice@origin.test>\r\nTo: list@lists.test\r\nSubject: arc\r\n"
    b"Message-ID: <arc1@origin.test>\r\nDate: Fri, 27 Nov 2026 08:00:00 +0000\r\n\r\n"
    b"Hello through a mailing list.\r\n"
)


class _Result:
    def __init__(self, r: authres.AuthResult) -> None:
        self.r, self.method, self.result = r, r.method, r.result

    def __str__(self) -> str:
        return authres._resinfo(self.r)


class _Header:
    def __init__(self, authserv_id: str, results: list[_Result]) -> None:
        self.authserv_id, self.results = authserv_id, results

    @classmethod
    def parse(cls, text: str) -> _Header:
        sid, results = authres.parse_value(text)
        return cls(sid, [_Result(r) for r in results])


@pytest.fixture(autouse=True)
def fake_authres_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """dkimpy's arc_sign parses Authentication-Results with the `authres` package, which
    postier does not depend on; our own parser stands in for it (signing is test-only)."""
    mod = types.SimpleNamespace(
        AuthenticationResultsHeader=_Header, AuthresNotFoundError=ImportError,
        core=types.SimpleNamespace(SyntaxError=ValueError))
    monkeypatch.setattr(dkimpy, "authres", mod, raising=False)


class Sealer:
    def __init__(self, domain: str, selector: str = "arc") -> None:
        self.domain, self.selector = domain, selector
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.pem = key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption())
        der = key.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        self.record = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()

    def publish(self, resolver: FakeResolver) -> None:
        resolver.add(f"{self.selector}._domainkey.{self.domain}", "TXT", self.record)

    def seal(self, message: bytes, results: str) -> bytes:
        """Add our Authentication-Results (with ``results``), then an ARC set."""
        ar = f"Authentication-Results: {self.domain}; {results}\r\n".encode()
        message = ar + message
        lines: list[bytes] = dkimpy.arc_sign(
            message, self.selector.encode(), self.domain.encode(), self.pem,
            self.domain.encode(), include_headers=[b"from", b"to", b"subject",
                                                   b"message-id", b"date"])
        assert lines, "arc_sign produced nothing"
        return b"".join(lines) + message


@pytest.fixture
def world() -> tuple[FakeResolver, Sealer, Sealer]:
    res = FakeResolver()
    first, second = Sealer("lists.test"), Sealer("forwarder.test", "s2")
    first.publish(res)
    second.publish(res)
    return res, first, second


async def test_no_arc_is_none_without_dns() -> None:
    res = FakeResolver()
    assert (await verify(MESSAGE, res)).result is ArcStatus.NONE
    assert res.queries == []


async def test_one_set_passes(world: Any) -> None:
    res, first, _ = world
    sealed = first.seal(MESSAGE, "spf=pass smtp.mailfrom=origin.test; arc=none")
    r = await verify(sealed, res)
    assert (r.result, r.instances, r.sealer) == (ArcStatus.PASS, 1, "lists.test")


async def test_two_sets_pass(world: Any) -> None:
    res, first, second = world
    sealed = first.seal(MESSAGE, "dkim=pass header.d=origin.test; arc=none")
    sealed = second.seal(sealed, "dkim=fail; arc=pass")
    r = await verify(sealed, res)
    assert (r.result, r.instances, r.sealer) == (ArcStatus.PASS, 2, "forwarder.test")


async def test_modified_body_fails(world: Any) -> None:
    res, first, _ = world
    sealed = first.seal(MESSAGE, "arc=none") + b"appended footer\r\n"
    r = await verify(sealed, res)
    assert r.result is ArcStatus.FAIL and "ARC-Message-Signature" in r.reason


async def test_missing_key_fails() -> None:
    sealed = Sealer("lists.test").seal(MESSAGE, "arc=none")
    r = await verify(sealed, FakeResolver())
    assert r.result is ArcStatus.FAIL


async def test_dns_timeout_fails_with_reason(world: Any) -> None:
    _, first, _ = world
    res = FakeResolver()
    res.add("arc._domainkey.lists.test", "TIMEOUT")
    r = await verify(first.seal(MESSAGE, "arc=none"), res)
    assert r.result is ArcStatus.FAIL and "temporary DNS failure" in r.reason


async def test_incomplete_set_fails(world: Any) -> None:
    res, first, _ = world
    sealed = first.seal(MESSAGE, "arc=none")
    lines = sealed.split(b"\r\n")
    assert lines[0].lower().startswith(b"arc-seal:")
    end = next(i for i in range(1, len(lines)) if lines[i][:1] not in (b" ", b"\t"))
    r = await verify(b"\r\n".join(lines[end:]), res)  # the whole ARC-Seal field dropped
    assert r.result is ArcStatus.FAIL and "Incomplete ARC set" in r.reason
    # A message starting with a continuation line must not crash the verifier.
    r = await verify(b"\r\n".join(lines[1:]), res)
    assert r.result is ArcStatus.FAIL


async def test_inbound_reports_arc(world: Any) -> None:
    res, first, _ = world
    checker = InboundChecker(InboundSettings("mx.postier.test"), res)
    verdict = await checker.check("192.0.2.1", "lists.test", "bounce@lists.test",
                                  first.seal(MESSAGE, "arc=none"))
    assert verdict.arc is not None and verdict.arc.result is ArcStatus.PASS
    _, results = authres.parse_value(verdict.header.decode())
    [arc] = [r for r in results if r.method == "arc"]
    assert arc.result == "pass"
    plain = await checker.check("192.0.2.1", "origin.test", "alice@origin.test", MESSAGE)
    assert b"\tarc=" not in plain.header  # nothing to report when no ARC set is present
    off = InboundChecker(InboundSettings("mx.postier.test", check_arc=False), res)
    verdict = await off.check("192.0.2.1", "lists.test", "bounce@lists.test",
                              first.seal(MESSAGE, "arc=none"))
    assert verdict.arc is None and b"\tarc=" not in verdict.header


def test_arc_resinfo_rendering() -> None:
    from postier.mailauth.arc import ArcResult

    field = authres.header_field("mx.test", [
        authres.arc_resinfo(ArcResult(ArcStatus.PASS, "", 2, "forwarder.test")),
        authres.arc_resinfo(ArcResult(ArcStatus.FAIL, "ARC-Seal[1] did not validate", 1)),
    ])
    assert field == (b"Authentication-Results: mx.test;\r\n\tarc=pass (i=2 d=forwarder.test);"
                     b"\r\n\tarc=fail (i=1) reason=\"ARC-Seal[1] did not validate\"\r\n")
