"""ARC (RFC 8617) verification of received mail: the chain of ARC sets a forwarder or
mailing list added, reported as ``arc=pass|fail|none`` in Authentication-Results.

Like DKIM (mailauth/dkim.py), the cryptography is dkimpy's (``ARC.verify``) and the key
records are fetched first by our async `Resolver`: every ``<s>._domainkey.<d>`` named by an
ARC-Message-Signature or ARC-Seal is looked up concurrently, and dkimpy gets a dict-backed
``dnsfunc`` that never touches the network.  Large messages are verified in a worker thread.

Results (RFC 8617 §5.2, §4.4): no ARC set → none; every set valid, the newest AMS valid and
the cv= values consistent (i=1 "none", later "pass") → pass; anything else → fail, with
the reason.  A DNS failure while fetching a key is reported as fail with a reason saying
so (the arc method has no temperror).  ARC results change no policy yet: they are only
reported.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import dkim as dkimpy  # type: ignore[import-untyped]

from postier.mailauth.dkim import RSA_MIN_BITS, THREAD_THRESHOLD_BYTES
from postier.mailauth.dns import DnsTempError, Resolver

log = logging.getLogger("postier.mailauth.arc")

MAX_INSTANCES = 50  # RFC 8617 §4.2.1: i= is 1..50
_ARC_FIELDS = (b"arc-seal", b"arc-message-signature", b"arc-authentication-results")
_LAST_HEADER_EOL = re.compile(rb"\r?\n(?=\r?\n)")


class ArcStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ArcResult:
    result: ArcStatus
    reason: str = ""
    instances: int = 0  # the highest i= of the chain (0: no ARC set)
    sealer: str = ""  # d= of the newest ARC-Seal, when the chain passed


def _header_block(message: bytes) -> bytes:
    if message.startswith((b"\r\n", b"\n")):
        return b""
    m = _LAST_HEADER_EOL.search(message)
    return message if m is None else message[: m.end()]


def _key_names(headers: list[tuple[bytes, bytes]]) -> set[str]:
    names: set[str] = set()
    for name, value in headers:
        if name.lower() not in (b"arc-seal", b"arc-message-signature"):
            continue
        try:
            tags = dkimpy.parse_tag_value(value)
        except Exception:
            continue  # dkimpy reports the malformed field itself
        d = tags.get(b"d", b"").strip().decode("ascii", "replace").lower().rstrip(".")
        s = tags.get(b"s", b"").strip().decode("ascii", "replace").lower()
        if d and s:
            names.add(f"{s}._domainkey.{d}")
    return names


def _dnsfunc(records: dict[str, bytes]) -> Callable[..., bytes | None]:
    def txt(name: bytes, timeout: float = 5) -> bytes | None:
        key = name.decode("ascii", "replace").lower().rstrip(".")
        return records.get(key)

    return txt


_DKIMPY_LOG = logging.getLogger(__name__ + ".dkimpy")
_DKIMPY_LOG.setLevel(logging.CRITICAL)


def _verify_with_dkimpy(message: bytes, records: dict[str, bytes]) -> tuple[object, str, int, str]:
    try:
        cv, data, reason = dkimpy.arc_verify(message, logger=_DKIMPY_LOG,
                                             dnsfunc=_dnsfunc(records), minkey=RSA_MIN_BITS)
    except Exception as exc:  # hostile input inside a foreign parser
        log.warning("dkimpy ARC verification failed", exc_info=True)
        return dkimpy.CV_Fail, f"verifier error: {type(exc).__name__}", 0, ""
    instances = max((int(r.get("instance", 0)) for r in data), default=0)
    sealer = ""
    if data:
        as_domain = data[0].get("as-domain", b"")
        sealer = as_domain.decode("ascii", "replace") if isinstance(as_domain, bytes) else ""
    return cv, str(reason), instances, sealer


async def verify(message: bytes, resolver: Resolver) -> ArcResult:
    """The ARC chain validation status of ``message`` (RFC 8617 §5.2)."""
    block = _header_block(message)
    if not any(f in block.lower() for f in _ARC_FIELDS):
        return ArcResult(ArcStatus.NONE)
    try:
        headers, _ = dkimpy.rfc822_parse(block)
    except Exception as exc:  # dkimpy raises IndexError on a leading continuation line
        return ArcResult(ArcStatus.FAIL, f"malformed header: {type(exc).__name__} {exc}")
    if not any(name.lower() in _ARC_FIELDS for name, _ in headers):
        return ArcResult(ArcStatus.NONE)
    names = sorted(_key_names(headers))
    if len(names) > 2 * MAX_INSTANCES:
        return ArcResult(ArcStatus.FAIL, "too many ARC keys")
    answers = await asyncio.gather(*(resolver.txt(n) for n in names), return_exceptions=True)
    records: dict[str, bytes] = {}
    for name, answer in zip(names, answers, strict=True):
        if isinstance(answer, DnsTempError):
            return ArcResult(ArcStatus.FAIL, f"temporary DNS failure for {name}")
        if isinstance(answer, BaseException):
            return ArcResult(ArcStatus.FAIL, f"DNS lookup of {name} failed: {answer}")
        keys = [r for r in answer if b"p=" in r]
        if len(keys) == 1:  # none or several: dkimpy reports the key as missing
            records[name] = keys[0]
    if len(message) > THREAD_THRESHOLD_BYTES:
        cv, reason, instances, sealer = await asyncio.to_thread(
            _verify_with_dkimpy, message, records)
    else:
        cv, reason, instances, sealer = _verify_with_dkimpy(message, records)
    if cv == dkimpy.CV_Pass:
        return ArcResult(ArcStatus.PASS, "", instances, sealer)
    if cv == dkimpy.CV_None:
        return ArcResult(ArcStatus.NONE, reason, instances)
    return ArcResult(ArcStatus.FAIL, reason or "chain did not validate", instances)
