"""QueueSettings: every limit and delay of outbound delivery, each with a working default."""

from __future__ import annotations

from dataclasses import dataclass

# Default back-off: 5 m, 10 m, 30 m, 1 h, 2 h, 4 h, then every 4 h until max_age_s.
DEFAULT_RETRY_SCHEDULE_S: tuple[int, ...] = (300, 600, 1800, 3600, 7200, 14400)


@dataclass(frozen=True, slots=True)
class QueueSettings:
    hostname: str = "localhost"  # EHLO name and Reporting-MTA of DSNs
    # Retries (issue 6): 4xx and connection failures wait retry_schedule_s[attempts-1]
    # (the last step repeats); after max_age_s the message fails with 4.4.7.
    retry_schedule_s: tuple[int, ...] = DEFAULT_RETRY_SCHEDULE_S
    max_age_s: int = 5 * 86400
    # RFC 3464 "delayed" DSN once, when a recipient is still queued after this long
    # (0 = never); sent only where NOTIFY allows it (default NOTIFY includes DELAY).
    delay_warning_after_s: int = 4 * 3600
    # Concurrency: connections at once in all, and to one destination domain.
    max_connections: int = 50
    max_connections_per_domain: int = 2
    max_messages_per_connection: int = 100
    claim_batch: int = 1000
    lease_s: int = 900  # a claimed entry is due again after this if we crash meanwhile
    poll_interval_s: float = 5.0  # how often the runner looks for due entries
    # Remote SMTP (RFC 5321 §4.5.3.2 timeouts).
    port: int = 25
    connect_timeout_s: float = 30.0
    command_timeout_s: float = 300.0
    data_timeout_s: float = 600.0
    starttls: bool = True  # opportunistic (RFC 7435): unverified, used when offered
    # MTA-STS (RFC 8461): look up and apply the destination's policy (enforce: only
    # matching MX hosts, verified TLS or a temporary failure; testing: deliver and log).
    mta_sts: bool = True
    mta_sts_fetch_timeout_s: float = 60.0  # the HTTPS policy fetch, all in all
    prefer_ipv6: bool = False
    max_mx_hosts: int = 5  # MX hosts tried per attempt
    source_address: str | None = None  # local address to connect from
    stop_grace_s: float = 10.0  # stop(): how long running transactions may finish
    # DSN: RET=FULL returns the whole message up to this size, headers only above.
    dsn_full_max_bytes: int = 1024 * 1024

    def backoff_s(self, attempts: int) -> int:
        """Delay before the next attempt after ``attempts`` failed ones (1-based)."""
        schedule = self.retry_schedule_s or DEFAULT_RETRY_SCHEDULE_S
        return schedule[min(max(attempts, 1), len(schedule)) - 1]
