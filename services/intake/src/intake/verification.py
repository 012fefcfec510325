"""Confirming an applicant's (or an enquirer's) email address: check the signed link, then announce email.verified.

Intake keeps nothing: the token carries what it vouches for, and the event's id is derived
from the application or enquiry, so a double click (or two replicas taking one click each) is one event.
"""

from datetime import datetime

from agency_chassis.email_verification import VerificationClaim, VerificationTokens
from agency_shared.events import EmailVerified, EmailVerifiedData, derived_id
from intake.accepting import EventSink
from intake.submission import RequestContext


def email_verified(claim: VerificationClaim, request: RequestContext, now: datetime) -> EmailVerified:
    """The event for a confirmed link, with what the server observed of the confirming request as evidence.

    An application's event id is derived from the application id alone (as before enquiries had links).
    """
    named = (str(claim.subject_id),) if claim.kind == "application" else (claim.kind, str(claim.subject_id))
    return EmailVerified(
        event_id=derived_id(EmailVerified.routing_key, *named),
        occurred_at=now,
        correlation_id=request.correlation_id,
        data=EmailVerifiedData(
            application_id=claim.application_id,
            enquiry_id=claim.enquiry_id,
            email=claim.email,
            verified_at=now,
            client_ip=request.client_ip,
            user_agent=request.user_agent,
        ),
    )


class AddressVerifier:
    """Reads verification links and confirms them (publishing with the broker's confirm, as a submission is)."""

    def __init__(self, tokens: VerificationTokens, publisher: EventSink) -> None:
        self._tokens = tokens
        self._publisher = publisher

    def read(self, token: str, now: datetime) -> VerificationClaim:
        """What the link vouches for; ``InvalidToken`` or ``ExpiredToken`` otherwise. Verifies nothing."""
        return self._tokens.check(token, now)

    async def confirm(self, token: str, request: RequestContext, now: datetime) -> EmailVerified:
        """Check the link and announce the verification; ``PublishFailed`` if the broker did not confirm it."""
        event = email_verified(self._tokens.check(token, now), request, now)
        await self._publisher.publish(event)
        return event
