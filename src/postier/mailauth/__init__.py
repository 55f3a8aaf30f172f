"""Mail authentication: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) and the
Authentication-Results header (RFC 8601), over the async `Resolver` of `mailauth.dns`."""
