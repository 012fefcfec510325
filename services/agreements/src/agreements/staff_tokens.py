"""The staff API's machine clients: one bearer token each (STAFF_API_TOKENS), found by the token presented."""

import re
import secrets
from collections.abc import Mapping

# The client STAFF_API_TOKEN (the one shared token of earlier versions) stands for.
LEGACY_CLIENT = "staff"
CLIENT_NAME = re.compile(r"[a-z0-9-]+")


class MalformedStaffTokens(ValueError):
    """STAFF_API_TOKENS is not ``name=token,...`` with unique names; the message never quotes a token."""


def parse_staff_tokens(value: str) -> dict[str, str]:
    """``"casework=abc,crm=def"`` -> ``{"casework": "abc", "crm": "def"}``; blanks between commas are ignored.

    A token may contain ``=`` (base64 padding): only the first one separates the name.
    """
    clients: dict[str, str] = {}
    for number, pair in enumerate((part.strip() for part in value.split(",")), start=1):
        if not pair:
            continue
        name, separator, token = pair.partition("=")
        name, token = name.strip(), token.strip()
        if not separator or not token:
            raise MalformedStaffTokens(f"pair {number} is not client=token")
        if not CLIENT_NAME.fullmatch(name):
            raise MalformedStaffTokens(f"pair {number}: a client name is lower-case letters, digits and '-'")
        if name in clients:
            raise MalformedStaffTokens(f"client {name!r} is named twice")
        clients[name] = token
    return clients


class StaffTokens:
    """Which client a presented bearer token belongs to, compared in constant time against every token."""

    def __init__(self, clients: Mapping[str, str]) -> None:
        self._clients = [(name, token.encode()) for name, token in clients.items()]

    @property
    def clients(self) -> list[str]:
        return [name for name, _ in self._clients]

    def client_of(self, presented: str) -> str | None:
        """The client whose token this is, else None. Every token is compared, even after a match, so the time
        taken says neither whether nor which one matched."""
        raw = presented.encode()
        found: str | None = None
        for name, token in self._clients:
            if secrets.compare_digest(raw, token) and found is None:
                found = name
        return found
