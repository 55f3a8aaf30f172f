"""The error kinds that cross layers (see docs/architecture.md, "Errors").

Protocol cores never raise these for peer mistakes: a parse failure is a value they
return.  Between layers (store, delivery, auth, policy) these three kinds are used, and
each protocol renders them to replies in one function.
"""


class PostierError(Exception):
    """Base of the errors that cross layers."""


class UserError(PostierError):
    """The request cannot succeed as made (5xx in SMTP, NO in IMAP, -ERR in POP3)."""


class TemporaryError(PostierError):
    """The request may succeed later (4xx in SMTP, NO [UNAVAILABLE] in IMAP)."""


class ServerBug(PostierError):
    """Our fault; logged with a traceback, the client sees only a generic reply."""


class QuotaExceeded(UserError):
    """The account is over its quota (RFC 3463 X.2.2, IMAP [OVERQUOTA], RFC 9208)."""


class UnknownAccount(UserError):
    """No account by that address (RFC 3463 X.1.1)."""


class CopyFailed(PostierError):
    """One copy of an all-or-nothing delivery failed; nothing was stored (Store.deliver)."""

    def __init__(self, index: int, cause: PostierError) -> None:
        super().__init__(f"copy {index}: {cause}")
        self.index = index
        self.cause = cause
