"""Secrets kept out of what a service shows: passwords in URLs and values named like secrets become ``***``."""

import re
from typing import Any

from pydantic import SecretBytes, SecretStr

MASK = "***"
SECRET_NAMES = re.compile(r"pass|secret|token|key", re.IGNORECASE)
# scheme://user:password@host...: everything up to the last "@" of the authority is userinfo.
URL_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@]*):(?P<password>[^/]*)@")


def mask_url(text: str) -> str:
    """``amqp://user:secret@host/`` -> ``amqp://user:***@host/``; query parameters named like secrets too."""
    masked = URL_USERINFO.sub(lambda match: f"{match['scheme']}{match['user']}:{MASK}@", text)
    if "://" not in masked or "?" not in masked:
        return masked
    base, _, query = masked.partition("?")
    parameters = [
        f"{key}={MASK}" if SECRET_NAMES.search(key) else f"{key}{sep}{value}"
        for key, sep, value in (pair.partition("=") for pair in query.split("&"))
    ]
    return f"{base}?{'&'.join(parameters)}"


def masked_value(name: str, value: Any) -> Any:
    """The setting ``name`` as it may be shown: JSON-ready, a secret (by type or name) as ``***``."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, SecretStr | SecretBytes) or SECRET_NAMES.search(name):
        return MASK
    if isinstance(value, list | tuple | set | frozenset):
        return [masked_value(name, item) for item in value]
    return mask_url(str(value))
