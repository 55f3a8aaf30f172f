"""The RFC 7208 test suite (openspf.org, release 2014.04) run against the fake resolver.

tests/data/spf/rfc7208-tests.yml holds scenarios, each with zone data and test cases; every
case gives an SMTP client address, HELO, MAIL FROM and the allowed results.  The suite's
driver conventions, as in pyspf's testspf.py: a name's SPF (type 99) records are served
as TXT when it has no TXT records of its own ("TXT: NONE" means none at all), and a
TIMEOUT entry makes every query for a type the name has no records of time out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, a dev dependency

from postier.mailauth.dns import FakeResolver, FakeValue
from postier.mailauth.spf import check_host

SUITE = Path(__file__).parents[2] / "data" / "spf" / "rfc7208-tests.yml"


def _resolver(zonedata: dict[str, list[Any]]) -> FakeResolver:
    zones: dict[str, list[tuple[str, FakeValue]]] = {}
    for name, records in zonedata.items():
        out: list[tuple[str, FakeValue]] = []
        spf: list[FakeValue] = []
        has_txt = False
        for record in records:
            if record == "TIMEOUT":
                out.append(("TIMEOUT", None))
                continue
            ((rtype, value),) = record.items()
            if rtype == "SPF":
                spf.append(tuple(value) if isinstance(value, list) else value)
            elif rtype == "TXT":
                has_txt = True
                if value != "NONE":
                    out.append(("TXT", tuple(value) if isinstance(value, list) else value))
            elif rtype == "MX":
                out.append(("MX", (int(value[0]), str(value[1]))))
            else:
                out.append((rtype, str(value)))
        if not has_txt:
            out.extend(("TXT", value) for value in spf)
        zones[name] = out
    return FakeResolver(zones)


def _cases() -> list[Any]:
    cases = []
    with SUITE.open(encoding="utf-8") as f:
        for scenario in yaml.safe_load_all(f):
            for name, case in scenario["tests"].items():
                cases.append(pytest.param(scenario["zonedata"], case, id=name))
    return cases


@pytest.mark.parametrize(("zonedata", "case"), _cases())
async def test_rfc7208_case(zonedata: dict[str, list[Any]], case: dict[str, Any]) -> None:
    resolver = _resolver(zonedata)
    helo = case["helo"]
    sender = case["mailfrom"] or f"postmaster@{helo}"
    domain = sender.rpartition("@")[2]
    result = await check_host(case["host"], domain, sender, helo, resolver)
    allowed = case["result"] if isinstance(case["result"], list) else [case["result"]]
    assert result.result in allowed, (case.get("description"), result)
    expected_exp = case.get("explanation")
    if expected_exp is not None and result.result == "fail":
        assert result.explanation == ("" if expected_exp == "DEFAULT" else expected_exp)
