"""Client-portal links: a signed token naming a case, the link's generation and the language, with an expiry.

Notifications puts one in the applicant's confirmation email, the case's news and the client's reminders; casework
signs the ones a client asks for again; casework checks them when the client opens the portal. Both hold the same
secret (``PORTAL_LINK_SECRET``) and the token carries everything needed to check it, so any replica can issue or
check any link.

A link is revocable: the case keeps the generation of its links (0 until staff revoke them), and casework refuses
a token whose generation is not the case's current one. Signed (HMAC-SHA256 by itsdangerous), not encrypted: the
token is only ever sent to the client's address.
"""

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agency_chassis.signed_links import SignedLinkTokens
from agency_shared.forms import Locale

# Keeps a token of this purpose from being accepted as any other signed value made with the same secret.
PURPOSE = "wechat-agency.client-portal.v1"
CSRF_PURPOSE = b"wechat-agency.client-portal.csrf.v1"


class InvalidPortalLink(Exception):
    """Not a portal token we signed: mangled, tampered with, or signed with another secret."""


class ExpiredPortalLink(Exception):
    """A portal token we signed whose time is up; the claim says which case it was for."""

    def __init__(self, claim: "PortalClaim") -> None:
        super().__init__(f"the portal link of case {claim.case_id} expired at {claim.expires_at}")
        self.claim = claim


@dataclass(frozen=True)
class PortalClaim:
    """What a portal link vouches for: its holder is the client of this case (as of this link generation)."""

    case_id: uuid.UUID
    generation: int
    locale: Locale
    issued_at: datetime
    expires_at: datetime


class PortalLinks(SignedLinkTokens[PortalClaim]):
    """Issues and checks the tokens of portal links, valid for ``valid_for`` after issue."""

    purpose = PURPOSE
    invalid = InvalidPortalLink
    kind_of_link = "a portal link"
    unkeyed = "a portal-link secret is required"

    def __init__(self, secret: str, valid_for: timedelta) -> None:
        super().__init__(secret, valid_for)
        self._secret = secret.encode()

    def issue(self, case_id: uuid.UUID, generation: int, locale: Locale, now: datetime) -> str:
        return self._sign({"c": str(case_id), "g": generation}, locale, now)

    def csrf_token(self, token: str) -> str:
        """The CSRF token of the portal's forms for the session holding ``token`` (its HMAC: nothing stored)."""
        return hmac.new(self._secret, CSRF_PURPOSE + token.encode(), hashlib.sha256).hexdigest()

    def csrf_matches(self, token: str, offered: str) -> bool:
        return hmac.compare_digest(self.csrf_token(token), offered)

    def _claim(self, payload: Any, locale: Locale, issued_at: datetime, expires_at: datetime) -> PortalClaim:
        generation = payload["g"]
        if not isinstance(generation, int) or isinstance(generation, bool) or generation < 0:
            raise ValueError(generation)
        case_id = uuid.UUID(str(payload["c"]))
        return PortalClaim(case_id, generation, locale, issued_at, expires_at)

    def _expired(self, claim: PortalClaim) -> Exception:
        return ExpiredPortalLink(claim)
