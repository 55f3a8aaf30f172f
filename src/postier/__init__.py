"""postier: a complete, self-hosted mail server in one Python process."""

__version__ = "0.1.0"
