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

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from itsdangerous import BadData, URLSafeSerializer

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


class VerificationTokens:
    """Issues and checks the tokens of verification links, valid for ``valid_for`` after issue."""

    def __init__(self, secret: str, valid_for: timedelta) -> None:
        if not secret:
            raise ValueError("an email-verification secret is required")
        self._serializer = URLSafeSerializer(
            secret, salt=PURPOSE, signer_kwargs={"digest_method": hashlib.sha256, "key_derivation": "hmac"}
        )
        self._valid_for = valid_for

    def issue(
        self, subject_id: uuid.UUID, email: str, locale: Locale, now: datetime, kind: Kind = "application"
    ) -> str:
        """A token for the application (or, with ``kind="enquiry"``, the enquiry) ``subject_id``."""
        named: dict[str, str] = {"a": str(subject_id)} if kind == "application" else {"k": kind, "i": str(subject_id)}
        payload = {**named, "e": email, "l": locale, "t": int(now.timestamp())}
        return self._serializer.dumps(payload)

    def check(self, token: str, now: datetime) -> VerificationClaim:
        """The claim of a valid token; ``InvalidToken`` or ``ExpiredToken`` otherwise."""
        try:
            payload = self._serializer.loads(token)
        except BadData as exc:
            raise InvalidToken("the link's signature does not match") from exc
        claim = self._claim(payload)
        if now >= claim.expires_at:
            raise ExpiredToken(claim)
        return claim

    def _claim(self, payload: Any) -> VerificationClaim:
        # Signed by us, so well formed unless the format changed: still, never trust a shape blindly.
        try:
            locale = payload["l"]
            if locale not in get_args(Locale):
                raise ValueError(locale)
            issued_at = datetime.fromtimestamp(int(payload["t"]), UTC)
            kind = payload.get("k", "application")
            if kind == "application":
                subject_id = payload["a"]
            elif kind == "enquiry" and "a" not in payload:
                subject_id = payload["i"]
            else:
                raise ValueError(kind)
            return VerificationClaim(
                subject_id=uuid.UUID(str(subject_id)),
                email=str(payload["e"]),
                locale=locale,
                issued_at=issued_at,
                expires_at=issued_at + self._valid_for,
                kind=kind,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidToken("the link's content is not a verification") from exc
