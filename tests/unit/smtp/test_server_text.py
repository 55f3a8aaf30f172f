"""Text the SMTP server copies from the client into the Received: field."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from postier.smtp.server import _printable_without


def test_printable_text_passes_and_the_rest_is_dropped() -> None:
    assert _printable_without("mail.example.net", "()") == "mail.example.net"
    assert _printable_without("evil)\r\n\tby forged (x", "()") == "evilby forged x"
    assert _printable_without("bob@example.net", "<>") == "bob@example.net"
    assert _printable_without("<bob>\x00@x", "<>") == "bob@x"


@given(st.text(), st.sampled_from(["()", "<>"]))
def test_the_check_agrees_with_the_character_loop(text: str, banned: str) -> None:
    expected = "".join(c for c in text if c.isprintable() and c not in banned)
    assert _printable_without(text, banned) == expected
