"""Building events for tests the way intake builds them."""

import uuid
from datetime import UTC, datetime

from agency_shared.chain import GENESIS
from agency_shared.events import (
    AgreementRecorded,
    ApplicationSubmitted,
    EnquiryReceived,
    NotificationSettled,
    NotificationSettledData,
)
from agency_shared.forms import ApplicationForm, EnquiryForm
from agreements.recording import acceptance_link, agreement_recorded, record_from_event
from intake.submission import RequestContext, submit_application, submit_enquiry
from tests.support.data import CURRENT, application


def application_submitted(locale: str = "en", correlation_id: str | None = None) -> ApplicationSubmitted:
    form = ApplicationForm.model_validate(application({"locale": locale}))
    context = RequestContext(
        client_ip="198.51.100.20",
        user_agent="Mozilla/5.0 (test)",
        correlation_id=correlation_id or uuid.uuid4().hex,
        idempotency_key=None,
    )
    return submit_application(form, CURRENT, context)


ENQUIRY = {
    "name": "王芳",
    "email": "wang.fang@example.cn",
    "company": "Fang Trading 芳贸易",
    "services": ["pay_ecommerce", "official_account"],
    "message": "我们想在微信上开店。\nWe would like to open a WeChat shop.",
}


def enquiry_received(locale: str = "en") -> EnquiryReceived:
    form = EnquiryForm.model_validate({**ENQUIRY, "locale": locale})
    context = RequestContext("198.51.100.20", "Mozilla/5.0 (test)", uuid.uuid4().hex, idempotency_key=None)
    return submit_enquiry(form, context)


def agreement_recorded_event(locale: str = "en") -> AgreementRecorded:
    """agreement.recorded as the agreements service publishes it, for the first link of a fresh chain."""
    submitted = application_submitted(locale=locale)
    record = record_from_event(submitted, now=submitted.occurred_at)
    return agreement_recorded(record, acceptance_link(record, GENESIS))


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
