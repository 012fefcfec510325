"""Email-verification links: a signed token naming the application or enquiry, the address and the language, with
an expiry.

An application's token carries its id as ``a`` (as before enquiries had links, so those links keep
working); an enquiry's carries ``k: "enquiry"`` and its id as ``i``, never ``a``, so no checker
can take it for an application's.

Notifications signs the token it puts in the link; intake checks it when the applicant
confirms. Both hold the same secret (``EMAIL_VERIFICATION_SECRET``), and the token carries
everything needed to check it, so any replica of either service can issue or check any link:
nothing is stored. Signed (HMAC-SHA256 by itsdangerous), not encrypted: the token is only
ever sent to the address it names.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from agency_chassis.signed_links import SignedLinkTokens
from agency_shared.forms import Locale

# Keeps a token of this purpose from being accepted as any other signed value made with the same secret.
PURPOSE = "wechat-agency.email-verification.v1"
# What a link verifies an address for: the applicant of an application, or the sender of an enquiry.
Kind = Literal["application", "enquiry"]


class InvalidToken(Exception):
    """Not a token we signed: mangled, tampered with, or signed with another secret."""


class ExpiredToken(Exception):
    """A token we signed whose time is up; the claim says what it was for."""

    def __init__(self, claim: "VerificationClaim") -> None:
        super().__init__(f"the link for {claim.kind} {claim.subject_id} expired at {claim.expires_at}")
        self.claim = claim


@dataclass(frozen=True)
class VerificationClaim:
    """What a verification link vouches for: who submitted this application (or enquiry) can read mail here."""

    subject_id: uuid.UUID
    email: str
    locale: Locale
    issued_at: datetime
    expires_at: datetime
    kind: Kind = "application"

    @property
    def application_id(self) -> uuid.UUID | None:
        return self.subject_id if self.kind == "application" else None

    @property
    def enquiry_id(self) -> uuid.UUID | None:
        return self.subject_id if self.kind == "enquiry" else None


class VerificationTokens(SignedLinkTokens[VerificationClaim]):
    """Issues and checks the tokens of verification links, valid for ``valid_for`` after issue."""

    purpose = PURPOSE
    invalid = InvalidToken
    kind_of_link = "a verification"
    unkeyed = "an email-verification secret is required"

    def issue(
        self, subject_id: uuid.UUID, email: str, locale: Locale, now: datetime, kind: Kind = "application"
    ) -> str:
        """A token for the application (or, with ``kind="enquiry"``, the enquiry) ``subject_id``."""
        named: dict[str, str] = {"a": str(subject_id)} if kind == "application" else {"k": kind, "i": str(subject_id)}
        return self._sign({**named, "e": email}, locale, now)

    def _claim(self, payload: Any, locale: Locale, issued_at: datetime, expires_at: datetime) -> VerificationClaim:
        kind = payload.get("k", "application")
        if kind == "application":
            subject_id = payload["a"]
        elif kind == "enquiry" and "a" not in payload:
            subject_id = payload["i"]
        else:
            raise ValueError(kind)
        return VerificationClaim(uuid.UUID(str(subject_id)), str(payload["e"]), locale, issued_at, expires_at, kind)

    def _expired(self, claim: VerificationClaim) -> Exception:
        return ExpiredToken(claim)
