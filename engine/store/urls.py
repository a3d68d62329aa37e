"""Store URLs: which backend a URL names, its canonical driver, and masking for logs.

A password never leaves this module in clear: every URL that is logged or put in an error
message goes through :func:`mask_url` first.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url

from engine.errors import ConfigError

DEFAULT_URL = "sqlite:///alphaforge.db"

_PASSWORD_IN_TEXT = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@\s]*(?=@)")


def mask_url(url: str) -> str:
    """Return ``url`` with its password (if any) replaced by ``***``."""
    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy understands: mask textually
        return mask_text(str(url))
    if parsed.password is None:
        return parsed.render_as_string(hide_password=False)
    return parsed.render_as_string(hide_password=True)


def mask_text(text: str) -> str:
    """Mask every ``scheme://user:password@`` password found inside free text."""
    return _PASSWORD_IN_TEXT.sub(r"\g<head>***", text)


def backend_of(url: str) -> str:
    """Return ``"postgresql"`` or ``"sqlite"`` for a store URL, or raise ConfigError."""
    try:
        scheme = make_url(url).drivername
    except Exception as exc:
        raise ConfigError(f"not a database URL: {mask_text(str(url))!r}") from exc
    backend = scheme.split("+", 1)[0]
    if backend in ("postgresql", "postgres"):
        return "postgresql"
    if backend == "sqlite":
        return "sqlite"
    raise ConfigError(
        f"unsupported store URL scheme {scheme!r} in {mask_url(url)!r}: "
        "use postgresql://, postgresql+psycopg:// or sqlite://"
    )


def normalize_url(url: str) -> str:
    """Canonical SQLAlchemy URL: PostgreSQL always through psycopg 3."""
    parsed = make_url(url)
    if backend_of(url) == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)
