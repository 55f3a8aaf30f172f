"""postier: a complete, self-hosted mail server in one Python process."""

from postier import compiled as _compiled

__version__ = "0.1.0"

_compiled.install()  # before any compiled module is imported (compiled.py)
