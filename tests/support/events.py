"""Building events for tests the way intake builds them."""

import uuid

from agency_shared.events import AgreementRecorded, ApplicationSubmitted, EnquiryReceived
from agency_shared.forms import ApplicationForm, EnquiryForm
from agency_shared.receipt_verifier import GENESIS_HASH, record_hash
from agreements.recording import LedgerEntry, acceptance_record, agreement_recorded, record_from_event
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


def agreement_recorded_event(locale: str = "en", sequence: int = 1) -> AgreementRecorded:
    """agreement.recorded as the agreements service publishes it, for the link ``sequence`` of a fresh chain."""
    submitted = application_submitted(locale=locale)
    record = record_from_event(submitted, now=submitted.occurred_at)
    canonical = acceptance_record(record, sequence, GENESIS_HASH)
    entry = LedgerEntry(sequence=sequence, prev_hash=GENESIS_HASH, record_hash=record_hash(canonical), record=canonical)
    return agreement_recorded(record, entry)
