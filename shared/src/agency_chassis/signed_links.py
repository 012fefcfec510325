"""The signed, expiring tokens of emailed links: what portal links and email-verification links sign and check alike."""

import hashlib
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, Protocol, TypeVar, get_args

from itsdangerous import BadData, URLSafeSerializer

from agency_shared.forms import Locale


class ExpiringClaim(Protocol):
    @property
    def expires_at(self) -> datetime: ...


ClaimT = TypeVar("ClaimT", bound=ExpiringClaim)


class SignedLinkTokens(ABC, Generic[ClaimT]):
    """Signs a link's payload (HMAC-SHA256 by itsdangerous, under the subclass's ``purpose``) with its issue time and
    turns a token back into the subclass's claim, valid for ``valid_for`` after issue.

    Every payload carries its language as ``l`` and its issue time as ``t``; the rest is the subclass's.
    """

    # Keeps a token of this purpose from being accepted as any other signed value made with the same secret.
    purpose: ClassVar[str]
    # Raised, with a reason, for a token we did not sign or whose content is not this kind's.
    invalid: ClassVar[type[Exception]]
    # What an invalid token's message says it is not; the error's message when no secret is given.
    kind_of_link: ClassVar[str]
    unkeyed: ClassVar[str]

    def __init__(self, secret: str, valid_for: timedelta) -> None:
        if not secret:
            raise ValueError(self.unkeyed)
        self._serializer = URLSafeSerializer(
            secret, salt=self.purpose, signer_kwargs={"digest_method": hashlib.sha256, "key_derivation": "hmac"}
        )
        self.valid_for = valid_for

    def check(self, token: str, now: datetime) -> ClaimT:
        """The claim of a valid token; ``invalid`` or the subclass's expiry error otherwise."""
        try:
            payload = self._serializer.loads(token)
        except BadData as exc:
            raise self.invalid("the link's signature does not match") from exc
        # Signed by us, so well formed unless the format changed: still, never trust a shape blindly.
        try:
            locale = payload["l"]
            if locale not in get_args(Locale):
                raise ValueError(locale)
            issued_at = datetime.fromtimestamp(int(payload["t"]), UTC)
            claim = self._claim(payload, locale, issued_at, issued_at + self.valid_for)
        except (KeyError, TypeError, ValueError) as exc:
            raise self.invalid(f"the link's content is not {self.kind_of_link}") from exc
        if now >= claim.expires_at:
            raise self._expired(claim)
        return claim

    def _sign(self, payload: dict[str, object], locale: Locale, now: datetime) -> str:
        return self._serializer.dumps({**payload, "l": locale, "t": int(now.timestamp())})

    @abstractmethod
    def _claim(self, payload: Any, locale: Locale, issued_at: datetime, expires_at: datetime) -> ClaimT:
        """The claim of a payload we signed; KeyError, TypeError or ValueError where its fields are not this kind's."""

    @abstractmethod
    def _expired(self, claim: ClaimT) -> Exception:
        """The error of a valid token whose time is up."""
