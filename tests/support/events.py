"""Building events for tests the way intake builds them."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from agency_shared.chain import GENESIS
from agency_shared.events import (
    AcceptanceConfirmed,
    AgreementRecorded,
    ApplicationSubmitted,
    CaseClient,
    CaseStatusChanged,
    CaseStatusChangedData,
    EmailVerified,
    EmailVerifiedData,
    EnquiryConfirmed,
    EnquiryReceived,
    HumanCheck,
    NotificationSettled,
    NotificationSettledData,
    derived_id,
)
from agency_shared.forms import ApplicationForm, EnquiryForm
from agreements.recording import acceptance_link, agreement_recorded, record_from_event
from agreements.verification import VerificationEvidence, acceptance_confirmed, enquiry_confirmed, verification_link
from intake.submission import RequestContext, submit_application, submit_enquiry
from tests.support.data import CURRENT, application


def application_submitted(
    locale: str = "en", correlation_id: str | None = None, human_check: HumanCheck = "off"
) -> ApplicationSubmitted:
    """As intake publishes it; by default with the CAPTCHA off, as the test settings run intake ("none" is held)."""
    form = ApplicationForm.model_validate(application({"locale": locale}))
    context = RequestContext(
        client_ip="198.51.100.20",
        user_agent="Mozilla/5.0 (test)",
        correlation_id=correlation_id or uuid.uuid4().hex,
        idempotency_key=None,
    )
    return submit_application(form, CURRENT, context, human_check)


ENQUIRY = {
    "name": "王芳",
    "email": "wang.fang@example.cn",
    "company": "Fang Trading 芳贸易",
    "services": ["pay_ecommerce", "official_account"],
    "message": "我们想在微信上开店。\nWe would like to open a WeChat shop.",
}


def enquiry_received(locale: str = "en", human_check: HumanCheck = "off") -> EnquiryReceived:
    form = EnquiryForm.model_validate({**ENQUIRY, "locale": locale})
    context = RequestContext("198.51.100.20", "Mozilla/5.0 (test)", uuid.uuid4().hex, idempotency_key=None)
    return submit_enquiry(form, context, human_check)


def agreement_recorded_event(locale: str = "en", submitted: ApplicationSubmitted | None = None) -> AgreementRecorded:
    """agreement.recorded as the agreements service publishes it, for the first link of a fresh chain."""
    submitted = submitted or application_submitted(locale=locale)
    record = record_from_event(submitted, now=submitted.occurred_at)
    return agreement_recorded(record, acceptance_link(record, GENESIS))


def recorded(submitted: ApplicationSubmitted) -> AgreementRecorded:
    """The agreement.recorded that follows ``submitted`` (its id is the same every time)."""
    return agreement_recorded_event(submitted=submitted)


def email_verified(
    application_id: uuid.UUID, email: str = "li.wei@mapletea.example", verified_at: datetime | None = None
) -> EmailVerified:
    """email.verified as intake publishes it when the applicant presses the button of the link."""
    return EmailVerified(
        event_id=derived_id(EmailVerified.routing_key, str(application_id)),
        correlation_id=uuid.uuid4().hex,
        data=EmailVerifiedData(
            application_id=application_id,
            email=email,
            verified_at=verified_at or datetime.now(UTC),
            client_ip="198.51.100.99",
            user_agent="Mozilla/5.0 (the mail link)",
        ),
    )


def enquiry_verified(
    enquiry_id: uuid.UUID, email: str = "wang.fang@example.cn", verified_at: datetime | None = None
) -> EmailVerified:
    """email.verified as intake publishes it when an enquirer presses the button of the link."""
    return EmailVerified(
        event_id=derived_id(EmailVerified.routing_key, "enquiry", str(enquiry_id)),
        correlation_id=uuid.uuid4().hex,
        data=EmailVerifiedData(
            enquiry_id=enquiry_id,
            email=email,
            verified_at=verified_at or datetime.now(UTC),
            client_ip="198.51.100.99",
            user_agent="Mozilla/5.0 (the mail link)",
        ),
    )


def enquiry_confirmed_event(
    enquiry_id: uuid.UUID, email: str = "wang.fang@example.cn", verified_at: datetime | None = None
) -> EnquiryConfirmed:
    """enquiry.confirmed as agreements passes an enquirer's email.verified on."""
    return enquiry_confirmed(enquiry_verified(enquiry_id, email, verified_at), enquiry_id)


def acceptance_confirmed_event(
    locale: str = "en", submitted: ApplicationSubmitted | None = None
) -> AcceptanceConfirmed:
    """acceptance.confirmed as agreements publishes it: a fresh chain of an acceptance and its verification."""
    submitted = submitted or application_submitted(locale=locale)
    record = record_from_event(submitted, now=submitted.occurred_at)
    acceptance = acceptance_link(record, GENESIS)
    verified = email_verified(record.application_id, verified_at=submitted.occurred_at + timedelta(hours=1))
    evidence = VerificationEvidence(
        event_id=verified.event_id,
        correlation_id=submitted.correlation_id,
        email=verified.data.email,
        verified_at=verified.data.verified_at.replace(microsecond=0),
        client_ip=verified.data.client_ip,
        user_agent=verified.data.user_agent,
        recorded_at=verified.data.verified_at.replace(microsecond=0),
    )
    verification = verification_link(record, acceptance, evidence, acceptance.head)
    return acceptance_confirmed(record, acceptance, verification, evidence)


def notification_settled(application_id: uuid.UUID | None) -> NotificationSettled:
    """notification.settled for a client confirmation sent (a fresh key each time)."""
    return NotificationSettled(
        event_id=uuid.uuid4(),
        correlation_id="c-1",
        data=NotificationSettledData(
            notification_key=f"{uuid.uuid4()}/client_confirmation/li.wei@mapletea.example",
            source_event_id=uuid.uuid4(),
            source_event_type="agreement.recorded",
            application_id=application_id,
            template="client_confirmation",
            recipient="li.wei@mapletea.example",
            state="sent",
            settled_at=datetime(2026, 12, 1, 20, 0, tzinfo=UTC),
        ),
    )


# What a staff member writes as the reason of a move: an internal note that must never reach the client.
HOSTILE_REASON = "INTERNAL: client is rude <script>alert(1)</script>\r\nBcc: victim@evil.example =?utf-8?b?SGk=?="


def case_status_changed(to: str, locale: str = "en", **data: Any) -> CaseStatusChanged:
    """case.status-changed as casework publishes it when a staff member moves an application's case to ``to``."""
    values: dict[str, Any] = {
        "case_id": uuid.uuid4(),
        "application_id": uuid.uuid4(),
        "from": "triage",
        "to": to,
        "action": f"move-to-{to}",
        "reason": HOSTILE_REASON,
        "staff_member": "ops@agency.example",
        "changed_at": datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        "locale": locale,
        "client": CaseClient(name="Li Wei", email="li.wei@mapletea.example"),
        "consultant": "Zhang Min",
        "account_name": "Maple Tea 枫叶茶",
        **data,
    }
    event_id = uuid.uuid4()
    return CaseStatusChanged(
        event_id=event_id,
        correlation_id=uuid.uuid4().hex,
        data=CaseStatusChangedData.model_validate(values),
    )
