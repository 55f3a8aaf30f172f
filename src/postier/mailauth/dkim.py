"""DKIM: signing of outbound mail and verification of inbound mail.

Standards:

- RFC 6376 (DKIM): §3.2 tag lists, §3.4 canonicalisation (simple and relaxed, headers and
  body), §3.5 the DKIM-Signature tags, §3.6 key records, §3.7 hash computation, §5 signer
  actions (§5.4.2 header selection bottom-up, over-signing), §6 verifier actions.
- RFC 8463: ed25519-sha256 (the signature covers the SHA-256 hash of the header data; the
  key record holds the bare 32-byte public key, §4.2).
- RFC 8301: rsa-sha1 is neither produced nor accepted; RSA keys are at least 1024 bits
  (we generate 2048).
- RFC 8601 result names (pass, fail, neutral, temperror, permerror, none).

Signing is ours, on `cryptography` (OpenSSL: constant-time RSA, ~1 ms per RSA-2048
signature; dkimpy signs with pure-Python RSA).  We never emit l= (body length limits let a
forwarder append content) and over-sign From so that a second From cannot be added.

Verification is dkimpy's (a widely deployed verifier), run synchronously on key records
that our async `Resolver` fetched first: every signature's ``<s>._domainkey.<d>`` is looked
up concurrently, the key record is checked here (revoked key, key type against a=, missing
record) so each failure gets a precise result, and dkimpy then checks body hash and
signature with a dict-backed ``dnsfunc`` — in a worker thread when the message is large.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal, TypeAlias

import dkim as dkimpy  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from dkim.util import (  # type: ignore[import-untyped]
    InvalidTagValueList,
    parse_tag_value,
)

from postier.mailauth.dns import DnsTempError, Resolver

log = logging.getLogger(__name__)

Algorithm: TypeAlias = Literal["rsa-sha256", "ed25519-sha256"]
Canonicalization: TypeAlias = Literal["simple", "relaxed"]
PrivateKey: TypeAlias = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

ALGORITHMS: tuple[Algorithm, ...] = ("rsa-sha256", "ed25519-sha256")
RSA_GENERATED_BITS = 2048  # RFC 8301 §3.2: signers SHOULD use at least 2048 bits
RSA_MIN_BITS = 1024  # RFC 8301 §3.2: keys below 1024 bits MUST NOT be used / accepted
MAX_SIGNATURES = 8  # RFC 6376 §6.1: a verifier MAY limit the signatures it checks (DNS cost)
THREAD_THRESHOLD_BYTES = 128 * 1024  # larger messages are verified in a worker thread
FOLD_WIDTH = 78  # RFC 5322 §2.1.1: lines SHOULD NOT exceed 78 characters

# RFC 6376 §5.4.1: fields that identify the message and its content; each is signed as
# many times as it occurs.  List-* fields (RFC 2369, RFC 2919, RFC 8058) are added below.
DEFAULT_SIGNED_HEADERS: tuple[str, ...] = (
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
    "Resent-Date",
    "Resent-Message-ID",
)
# RFC 6376 §8.15: signing a field one more time than it occurs forbids adding another one.
DEFAULT_OVERSIGNED_HEADERS: tuple[str, ...] = ("From",)

_NAME_RE = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*"
)
_WSP_RUN = re.compile(rb"[ \t]+")
_LAST_HEADER_EOL = re.compile(rb"\r?\n(?=\r?\n)")
_FIELD_NAME = re.compile(r"[!-9<-~]+")  # RFC 5322 §3.6.8 ftext, less ";" (h= separator)


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True)
class DkimKey:
    """One signing key: ``<selector>._domainkey.<domain>`` publishes its public half.

    The PEM (PKCS#8 or traditional, unencrypted) is parsed once, here; a key that does not
    match `algorithm`, or an RSA key under 1024 bits, is refused with `ValueError`.
    """

    selector: str
    domain: str
    algorithm: Algorithm
    private_key_pem: bytes = field(repr=False)
    _private: PrivateKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # selector and domain go into a header field: RFC 6376 §3.1 / §3.5 d= syntax only,
        # which also keeps CR, LF and ";" (header or tag injection) out.
        for what, name in (("selector", self.selector), ("domain", self.domain)):
            if len(name) > 253 or not _NAME_RE.fullmatch(name):
                raise ValueError(f"invalid DKIM {what}: {name!r}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported DKIM algorithm: {self.algorithm!r}")
        key = serialization.load_pem_private_key(self.private_key_pem, password=None)
        if self.algorithm == "rsa-sha256":
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError("rsa-sha256 needs an RSA private key")
            if key.key_size < RSA_MIN_BITS:
                raise ValueError(f"RSA key of {key.key_size} bits is too small (RFC 8301)")
        elif not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("ed25519-sha256 needs an Ed25519 private key")
        object.__setattr__(self, "_private", key)

    @property
    def private_key(self) -> PrivateKey:
        return self._private


def generate_key(domain: str, selector: str, algorithm: Algorithm = "rsa-sha256") -> DkimKey:
    """A new key: RSA 2048 (RFC 8301 §3.2) or Ed25519 (RFC 8463)."""
    private: PrivateKey
    if algorithm == "rsa-sha256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_GENERATED_BITS)
    elif algorithm == "ed25519-sha256":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported DKIM algorithm: {algorithm!r}")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return DkimKey(selector, domain, algorithm, pem)


def dns_name(key: DkimKey) -> str:
    """Where the key record lives (RFC 6376 §3.6.2.1)."""
    return f"{key.selector}._domainkey.{key.domain}"


def public_key_b64(key: DkimKey) -> str:
    """The p= value: DER SubjectPublicKeyInfo for RSA (RFC 6376 §3.6.1), the bare 32-byte
    key for Ed25519 (RFC 8463 §4.2)."""
    public = key.private_key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return base64.b64encode(raw).decode("ascii")


def dns_record(key: DkimKey) -> str:
    """The TXT record to publish at `dns_name(key)` (RFC 6376 §3.6.1).

    An RSA-2048 record is longer than 255 octets: a zone file must split it into several
    character-strings (RFC 6376 §3.6.2.2), which verifiers concatenate.
    """
    k = "rsa" if key.algorithm == "rsa-sha256" else "ed25519"
    return f"v=DKIM1; k={k}; p={public_key_b64(key)}"


# --------------------------------------------------------------------------- canonicalisation


def _to_crlf(message: bytes) -> bytes:
    """Bare LF → CRLF (messages from files or local submission); bare CR is left alone."""
    if message.count(b"\n") == message.count(b"\r\n"):
        return message
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _split(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Header fields as (lowercase name, raw field with its CRLF) and the body (CRLF input)."""
    if message.startswith(b"\r\n"):
        return [], message[2:]
    end = message.find(b"\r\n\r\n")
    if end < 0:
        block, body = message, b""
        if not block.endswith(b"\r\n"):
            block += b"\r\n"
    else:
        block, body = message[: end + 2], message[end + 4 :]
    fields: list[tuple[bytes, bytes]] = []
    current: list[bytes] = []
    for line in block.split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t") and current:
            current.append(line)  # RFC 5322 §2.2.3: folded continuation
            continue
        if current:
            raw = b"\r\n".join(current) + b"\r\n"
            fields.append((raw.split(b":", 1)[0].rstrip(b" \t").lower(), raw))
        current = [line]
    if current:
        raw = b"\r\n".join(current) + b"\r\n"
        fields.append((raw.split(b":", 1)[0].rstrip(b" \t").lower(), raw))
    return fields, body


def _canon_header_relaxed(raw: bytes) -> bytes:
    """RFC 6376 §3.4.2: lowercase name, unfold, WSP runs → one SP, trim around the value."""
    name, _, value = raw.partition(b":")
    value = _WSP_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" ")
    return name.rstrip(b" \t").lower() + b":" + value + b"\r\n"


def _canon_header(raw: bytes, canon: Canonicalization) -> bytes:
    return raw if canon == "simple" else _canon_header_relaxed(raw)  # §3.4.1: simple = as is


def _strip_trailing_crlfs(body: bytes) -> bytes:
    """Remove every empty line at the end (RFC 6376 §3.4.3, §3.4.4 b), not bare CRs."""
    floor = len(body.rstrip(b"\r\n"))
    end = len(body)
    while end - 2 >= floor and body[end - 2 : end] == b"\r\n":
        end -= 2
    return body[:end]


def canonicalize_body(body: bytes, canon: Canonicalization) -> bytes:
    """RFC 6376 §3.4.3 (simple) and §3.4.4 (relaxed) body canonicalisation (CRLF input)."""
    if canon == "relaxed":
        if b"\t" in body or b"  " in body:
            body = _WSP_RUN.sub(b" ", body)  # §3.4.4 a: WSP runs → one SP
        if b" \r\n" in body:
            body = body.replace(b" \r\n", b"\r\n")  # §3.4.4 a: no WSP at end of line
        if body.endswith(b" "):
            body = body[:-1]  # the same for a last line without CRLF
        body = _strip_trailing_crlfs(body)
        return body + b"\r\n" if body else b""  # §3.4.4 b: CRLF added to a non-empty body
    return _strip_trailing_crlfs(body) + b"\r\n"  # §3.4.3: an empty body becomes one CRLF


def _select_headers(fields: Sequence[tuple[bytes, bytes]], names: Sequence[str]) -> list[bytes]:
    """RFC 6376 §5.4.2: the h= names pick instances from the bottom up; a name listed more
    often than it occurs contributes nothing for the extra entries (over-signing)."""
    positions: dict[bytes, list[bytes]] = {}
    for name, raw in fields:
        positions.setdefault(name, []).append(raw)
    out: list[bytes] = []
    for wanted in names:
        stack = positions.get(wanted.lower().encode("ascii"))
        if stack:
            out.append(stack.pop())
    return out


def _header_names(
    fields: Sequence[tuple[bytes, bytes]], headers: Sequence[str], oversign: Sequence[str]
) -> list[str]:
    counts: dict[bytes, int] = {}
    spelling: dict[bytes, str] = {}
    for name, raw in fields:
        counts[name] = counts.get(name, 0) + 1
        spelling.setdefault(name, raw.split(b":", 1)[0].rstrip(b" \t").decode("latin-1"))
    wanted = list(headers)
    wanted_lower = {h.lower() for h in headers}
    for spelled in spelling.values():  # List-* in order of appearance (RFC 2369, 8058)
        lower = spelled.lower()
        if (
            lower.startswith("list-")
            and lower not in wanted_lower
            and _FIELD_NAME.fullmatch(spelled)
        ):
            wanted.append(spelled)
            wanted_lower.add(lower)
    oversigned = {h.lower() for h in oversign}
    out: list[str] = []
    for h in wanted:
        n = counts.get(h.lower().encode("ascii"), 0)
        out.extend([h] * (n + (1 if h.lower() in oversigned else 0)))
    return out


# --------------------------------------------------------------------------- signing


def _fold_signature(tags: Sequence[tuple[str, str]]) -> bytes:
    """``DKIM-Signature: v=1; a=...`` folded at FOLD_WIDTH, ending with ``\\r\\n b=`` (the b=
    value on lines of its own is appended after signing; no trailing CRLF)."""
    out = "DKIM-Signature:"
    col = len(out)
    for tag, value in tags:
        pieces = [f"{tag}={value}"]
        if tag == "h":  # may fold before any ":" (RFC 6376 §3.5 sig-h-tag)
            names = value.split(":")
            pieces = [f"h={names[0]}"] + [f":{n}" for n in names[1:]]
        pieces[-1] += ";"
        for i, piece in enumerate(pieces):
            sep = " " if i == 0 else ""
            if col + len(sep) + len(piece) > FOLD_WIDTH:
                out += "\r\n " + piece  # RFC 6376 §3.2: FWS allowed around tags and in h=
                col = 1 + len(piece)
            else:
                out += sep + piece
                col += len(sep) + len(piece)
    return (out + "\r\n b=").encode("ascii")


def _fold_b64(value: str) -> bytes:
    first = FOLD_WIDTH - len(" b=")
    lines = [value[:first]] + [
        value[i : i + FOLD_WIDTH - 1] for i in range(first, len(value), FOLD_WIDTH - 1)
    ]
    return "\r\n ".join(line for line in lines if line).encode("ascii")


def _sign_data(key: DkimKey, data: bytes) -> bytes:
    private = key.private_key
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(hashlib.sha256(data).digest())  # RFC 8463 §3: PureEdDSA of the hash
    return private.sign(data, padding.PKCS1v15(), hashes.SHA256())  # RFC 6376 §3.3.1


def sign(
    message: bytes,
    keys: Sequence[DkimKey],
    now: datetime | float,
    *,
    canonicalization: tuple[Canonicalization, Canonicalization] = ("relaxed", "relaxed"),
    headers: Sequence[str] = DEFAULT_SIGNED_HEADERS,
    oversign: Sequence[str] = DEFAULT_OVERSIGNED_HEADERS,
    expire_after_s: int | None = None,
) -> bytes:
    """The DKIM-Signature field(s), folded and CRLF-terminated, one per key, to put in front
    of `message`.

    Each name of `headers` present in the message is signed as often as it occurs (plus
    every List-* field), each name of `oversign` once more.  `now` gives t= (RFC 6376
    §3.5); `expire_after_s` adds x=.  A message with bare LF line ends is signed as if
    they were CRLF — as it will be sent over SMTP.
    """
    if not any(h.lower() == "from" for h in headers):
        raise ValueError("the From field MUST be signed (RFC 6376 §5.4)")
    for h in (*headers, *oversign):
        if not _FIELD_NAME.fullmatch(h):
            raise ValueError(f"invalid header field name: {h!r}")
    header_canon, body_canon = canonicalization
    fields, body = _split(_to_crlf(message))
    body_hash = base64.b64encode(
        hashlib.sha256(canonicalize_body(body, body_canon)).digest()
    ).decode("ascii")
    names = _header_names(fields, headers, oversign)
    signed = b"".join(_canon_header(raw, header_canon) for raw in _select_headers(fields, names))
    timestamp = int(now.timestamp() if isinstance(now, datetime) else now)
    out: list[bytes] = []
    for key in keys:
        tags = [
            ("v", "1"),
            ("a", key.algorithm),
            ("c", f"{header_canon}/{body_canon}"),
            ("d", key.domain),
            ("s", key.selector),
            ("t", str(timestamp)),
        ]
        if expire_after_s is not None:
            tags.append(("x", str(timestamp + expire_after_s)))
        tags += [("h", ":".join(names)), ("bh", body_hash)]
        unsigned = _fold_signature(tags)
        # RFC 6376 §3.7: the signature field itself, b= empty, canonicalised, no final CRLF
        own = _canon_header(unsigned + b"\r\n", header_canon)[:-2]
        b = base64.b64encode(_sign_data(key, signed + own)).decode("ascii")
        out.append(unsigned + _fold_b64(b) + b"\r\n")
    return b"".join(out)


# --------------------------------------------------------------------------- verification


class DkimStatus(StrEnum):
    """RFC 8601 §2.7.1 result names."""

    PASS = "pass"
    FAIL = "fail"
    NEUTRAL = "neutral"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class DkimResult:
    """The outcome of one DKIM-Signature field.

    `header_b` is the start of b= (RFC 6008 header.b, to tell signatures of one domain
    apart in Authentication-Results); `identity` is i= (the AUID, default ``@`` + d=).
    """

    domain: str
    selector: str
    result: DkimStatus
    reason: str = ""
    algorithm: str = ""
    header_b: str = ""
    identity: str = ""


@dataclass(slots=True)
class _Signature:
    index: int
    domain: str = ""
    selector: str = ""
    algorithm: str = ""
    header_b: str = ""
    identity: str = ""
    outcome: tuple[DkimStatus, str] | None = None  # decided before dkimpy runs
    record: bytes = b""

    def result(self) -> DkimResult:
        status, reason = self.outcome or (DkimStatus.PERMERROR, "not verified")
        return DkimResult(
            self.domain,
            self.selector,
            status,
            reason,
            self.algorithm,
            self.header_b,
            self.identity,
        )


def _ascii(value: object) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else ""


_REQUIRED_TAGS = (b"v", b"a", b"b", b"bh", b"d", b"h", b"s")  # RFC 6376 §3.5


def _check_signature(sig: _Signature, value: bytes) -> None:
    """RFC 6376 §6.1.1: validate the DKIM-Signature field; sets `outcome` on error."""
    try:
        tags = parse_tag_value(value)
    except InvalidTagValueList as exc:
        sig.outcome = (DkimStatus.PERMERROR, f"malformed tag list: {exc}")
        return
    sig.domain = _ascii(tags.get(b"d")).strip().lower()
    sig.selector = _ascii(tags.get(b"s")).strip()
    sig.algorithm = _ascii(tags.get(b"a")).strip().lower()
    sig.header_b = re.sub(r"\s+", "", _ascii(tags.get(b"b")))[:12]
    sig.identity = _ascii(tags.get(b"i")) or (f"@{sig.domain}" if sig.domain else "")
    missing = [t.decode() for t in _REQUIRED_TAGS if t not in tags]
    if missing:
        sig.outcome = (DkimStatus.PERMERROR, f"missing tag {', '.join(missing)}=")
    elif tags[b"v"] != b"1":
        sig.outcome = (DkimStatus.PERMERROR, "unsupported version v=")  # §6.1.1
    elif sig.algorithm == "rsa-sha1":
        sig.outcome = (DkimStatus.PERMERROR, "rsa-sha1 is not accepted (RFC 8301 §3.1)")
    elif sig.algorithm not in ALGORITHMS:
        sig.outcome = (DkimStatus.PERMERROR, f"unknown algorithm a={sig.algorithm}")
    elif b"from" not in [h.strip().lower() for h in tags[b"h"].split(b":")]:
        sig.outcome = (DkimStatus.PERMERROR, "From field not signed")  # §6.1.1 MUST
    elif not _NAME_RE.fullmatch(sig.domain) or not _NAME_RE.fullmatch(sig.selector):
        sig.outcome = (DkimStatus.PERMERROR, "invalid d= or s=")
    else:
        try:
            dkimpy.validate_signature_fields(tags)  # i= within d=, t=/x= times, base64 …
        except dkimpy.DKIMException as exc:
            sig.outcome = (DkimStatus.PERMERROR, str(exc))


def _check_record(sig: _Signature, records: list[bytes] | DnsTempError) -> None:
    """RFC 6376 §6.1.2: pick and check the key record; sets `outcome` or `record`."""
    if isinstance(records, DnsTempError):
        sig.outcome = (DkimStatus.TEMPERROR, f"key lookup failed: {records}")  # §6.1.2 step 2
        return
    parsed: list[tuple[bytes, dict[bytes, bytes]]] = []
    for record in records:
        try:
            parsed.append((record, parse_tag_value(record)))
        except InvalidTagValueList:
            continue
    usable = [(r, t) for r, t in parsed if b"p" in t]
    if not records:
        sig.outcome = (DkimStatus.PERMERROR, "no key record")  # §6.1.2 step 3: no key
        return
    if not usable:
        sig.outcome = (DkimStatus.PERMERROR, "malformed key record")  # §6.1.2 step 4
        return
    record, tags = usable[0]  # §6.1.2 step 3: with several records, the verifier chooses
    if tags.get(b"v", b"DKIM1") != b"DKIM1":
        sig.outcome = (DkimStatus.PERMERROR, "key record version is not DKIM1")  # §3.6.1
    elif not tags[b"p"].strip():
        sig.outcome = (DkimStatus.FAIL, "key revoked")  # §6.1.2 step 6: PERMFAIL (key revoked)
    elif tags.get(b"k", b"rsa").strip().lower() != sig.algorithm.split("-")[0].encode():
        k = _ascii(tags.get(b"k", b"rsa"))
        sig.outcome = (DkimStatus.PERMERROR, f"key type k={k} does not match a={sig.algorithm}")
    elif b"h" in tags and b"sha256" not in [h.strip() for h in tags[b"h"].split(b":")]:
        sig.outcome = (DkimStatus.PERMERROR, "key record does not allow sha256")  # §3.6.1 h=
    else:
        sig.record = record


def _fixed_txt(record: bytes) -> Callable[..., bytes]:
    """A dkimpy ``dnsfunc`` that answers the prefetched key record for any name."""

    def txt(name: bytes, timeout: float = 5) -> bytes:
        return record

    return txt


def _verify_with_dkimpy(message: bytes, sigs: Sequence[_Signature]) -> None:
    """Body hash and signature of each remaining signature, by dkimpy (synchronous)."""
    try:
        checker = dkimpy.DKIM(message, logger=_DKIMPY_LOG, minkey=RSA_MIN_BITS)
    except dkimpy.DKIMException as exc:
        for sig in sigs:
            sig.outcome = (DkimStatus.PERMERROR, f"malformed message: {exc}")
        return
    for sig in sigs:
        try:
            dkimpy.evaluate_pk(sig.domain, sig.record)
            ok = checker.verify(idx=sig.index, dnsfunc=_fixed_txt(sig.record))
        except dkimpy.ValidationError as exc:
            if str(exc).startswith("body hash mismatch"):
                sig.outcome = (DkimStatus.FAIL, "body hash mismatch")
            else:
                sig.outcome = (DkimStatus.PERMERROR, str(exc))
        except (dkimpy.KeyFormatError, binascii.Error) as exc:
            sig.outcome = (DkimStatus.PERMERROR, f"unusable key: {exc}")
        except dkimpy.DKIMException as exc:
            sig.outcome = (DkimStatus.PERMERROR, str(exc))
        except Exception as exc:
            # Hostile input inside a foreign parser: one broken signature must not cost
            # the delivery of the message.
            log.warning(
                "dkimpy failed on signature %d of d=%s", sig.index, sig.domain, exc_info=True
            )
            sig.outcome = (DkimStatus.PERMERROR, f"verifier error: {type(exc).__name__}")
        else:
            sig.outcome = (
                (DkimStatus.PASS, "") if ok else (DkimStatus.FAIL, "signature did not verify")
            )


_DKIMPY_LOG = logging.getLogger(__name__ + ".dkimpy")
_DKIMPY_LOG.setLevel(logging.CRITICAL)  # dkimpy logs every bad key as an error; we report it


def _header_block(message: bytes) -> bytes:
    """The header section with its last line end, as dkimpy splits it (CRLF or LF)."""
    if message.startswith((b"\r\n", b"\n")):
        return b""
    m = _LAST_HEADER_EOL.search(message)
    return message if m is None else message[: m.end()]


async def _fetch(resolver: Resolver, name: str) -> list[bytes] | DnsTempError:
    try:
        return await resolver.txt(name)
    except DnsTempError as exc:
        return exc


async def verify(message: bytes, resolver: Resolver) -> list[DkimResult]:
    """Check every DKIM-Signature field of `message`, top to bottom (RFC 6376 §6).

    An unsigned message gives ``[]`` (Authentication-Results: ``dkim=none``).  Only the
    first MAX_SIGNATURES are checked; the others are reported ``neutral``.
    """
    try:
        headers, _ = dkimpy.rfc822_parse(_header_block(message))
    except (dkimpy.DKIMException, IndexError, ValueError) as exc:
        # dkimpy raises IndexError on a header section starting with a continuation line.
        if b"dkim-signature" in _header_block(message).lower():
            return [DkimResult("", "", DkimStatus.PERMERROR, f"malformed header: {exc}")]
        return []
    values = [value for name, value in headers if name.lower() == b"dkim-signature"]
    sigs = [_Signature(i) for i in range(len(values))]
    for sig, value in zip(sigs, values, strict=True):
        _check_signature(sig, value)
        if sig.index >= MAX_SIGNATURES:
            sig.outcome = (DkimStatus.NEUTRAL, f"not checked: over {MAX_SIGNATURES} signatures")
    pending = [s for s in sigs if s.outcome is None]
    names = sorted({f"{s.selector}._domainkey.{s.domain}" for s in pending})
    answers = dict(
        zip(names, await asyncio.gather(*(_fetch(resolver, n) for n in names)), strict=True)
    )
    for sig in pending:
        _check_record(sig, answers[f"{sig.selector}._domainkey.{sig.domain}"])
    pending = [s for s in pending if s.outcome is None]
    if pending:
        if len(message) > THREAD_THRESHOLD_BYTES:
            await asyncio.to_thread(_verify_with_dkimpy, message, pending)
        else:
            _verify_with_dkimpy(message, pending)
    return [s.result() for s in sigs]
