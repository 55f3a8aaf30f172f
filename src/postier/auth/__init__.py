"""postier.auth: accounts' credentials, password hashing, SASL and failed-login limits.

Shared by SMTP submission (RFC 4954), IMAP (RFC 9051 §6.2), POP3 (RFC 1939, RFC 5034) and,
later, ManageSieve (RFC 5804).  See the module docstrings for the RFCs each implements:
``passwords`` (RFC 9106, RFC 5802, RFC 5803), ``sasl`` (RFC 4422, RFC 4616, RFC 5802,
RFC 7677, draft-murchison-sasl-login), ``limiter``, ``cache``, ``authenticator``.
"""

from postier.auth.authenticator import (
    AccountCredentials,
    Authenticator,
    AuthResult,
    AuthSettings,
    ChallengeFn,
    CredentialSource,
    Failed,
    Ok,
    Refused,
    SaslOutcome,
    normalize_login,
)
from postier.auth.cache import CredentialCache
from postier.auth.limiter import Clock, LimiterSettings, LoginLimiter
from postier.auth.passwords import (
    CHEAP_ARGON2,
    DEFAULT_ARGON2,
    Argon2Params,
    generate_password,
    hash_password,
    needs_rehash,
    scram_credentials,
    verify_password,
)
from postier.auth.sasl import MECHANISMS, new_mechanism

__all__ = [
    "CHEAP_ARGON2",
    "DEFAULT_ARGON2",
    "MECHANISMS",
    "AccountCredentials",
    "Argon2Params",
    "AuthResult",
    "AuthSettings",
    "Authenticator",
    "ChallengeFn",
    "Clock",
    "CredentialCache",
    "CredentialSource",
    "Failed",
    "LimiterSettings",
    "LoginLimiter",
    "Ok",
    "Refused",
    "SaslOutcome",
    "generate_password",
    "hash_password",
    "needs_rehash",
    "new_mechanism",
    "normalize_login",
    "scram_credentials",
    "verify_password",
]
