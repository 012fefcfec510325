"""Turning a validated application form into the application.submitted event."""

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agency_shared.agreement_documents import AgreementDocument
from agency_shared.events import (
    AcceptanceEvidence,
    ApplicationSubmitted,
    ApplicationSubmittedData,
    EnquiryReceived,
    EnquiryReceivedData,
    HumanCheck,
    derived_id,
    utc_now,
)
from agency_shared.forms import ApplicationForm, EnquiryForm


class AgreementNotCurrent(Exception):
    """The applicant accepted a version (or a text) of the agreement that is not the current one."""

    def __init__(self, current: AgreementDocument) -> None:
        super().__init__(f"the current agreement is version {current.version}")
        self.current = current


@dataclass(frozen=True)
class RequestContext:
    """Evidence the server itself observes about the request, never taken from the body."""

    client_ip: str
    user_agent: str
    correlation_id: str
    idempotency_key: str | None
    # The ALTCHA solution posted with the submission (field or key ``altcha``), if any.
    captcha_solution: object = None


def canonical_fingerprint(value: Any) -> str:
    """SHA-256 of ``value`` as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def fingerprint(form: BaseModel) -> str:
    """SHA-256 of the validated form's canonical JSON: JSON and form-encoded posts of the same data agree,
    whatever the key order or the encoding of a value (``"on"`` and ``true``, an omitted default)."""
    return canonical_fingerprint(form.model_dump(mode="json"))


def id_for(kind: str, idempotency_key: str | None, data_fingerprint: str) -> uuid.UUID:
    """The id of a submission of ``kind``: without a key, a new one; with one, derived from the key AND the data.

    The same key with the same data (a retry, a double click) always names the same submission, so its
    event has the same event id and consumers drop the repeat. Once the key's claim has expired
    (``IDEMPOTENCY_KEY_TTL_SECONDS``), the key may be claimed again for other data: that data gets a
    new id, and so a new event id, instead of being dropped downstream as a repeat of the first.
    """
    if idempotency_key is None:
        return uuid.uuid4()
    return derived_id(kind, idempotency_key, data_fingerprint)


def application_id_for(form: ApplicationForm, idempotency_key: str | None) -> uuid.UUID:
    return id_for("application", idempotency_key, fingerprint(form))


def enquiry_id_for(form: EnquiryForm, idempotency_key: str | None) -> uuid.UUID:
    return id_for("enquiry", idempotency_key, fingerprint(form))


def ensure_current(form: ApplicationForm, current: AgreementDocument) -> None:
    if form.agreement.version != current.version or form.agreement.sha256 != current.sha256:
        raise AgreementNotCurrent(current)


def submit_application(
    form: ApplicationForm,
    current: AgreementDocument,
    request: RequestContext,
    human_check: HumanCheck = "none",
    application_id: uuid.UUID | None = None,
) -> ApplicationSubmitted:
    """The event of an accepted application; ``application_id`` defaults to ``application_id_for`` its key."""
    ensure_current(form, current)
    if application_id is None:
        application_id = application_id_for(form, request.idempotency_key)
    received_at = utc_now()
    return ApplicationSubmitted(
        event_id=derived_id(ApplicationSubmitted.routing_key, str(application_id)),
        occurred_at=received_at,
        correlation_id=request.correlation_id,
        data=ApplicationSubmittedData(
            application_id=application_id,
            application=form,
            acceptance=AcceptanceEvidence(
                agreement_id=current.id,
                agreement_version=current.version,
                agreement_sha256=current.sha256,
                accepted_at=received_at,
                client_ip=request.client_ip,
                user_agent=request.user_agent,
            ),
            locale=form.locale,
            human_check=human_check,
        ),
    )


def submit_enquiry(
    form: EnquiryForm, request: RequestContext, human_check: HumanCheck = "none", enquiry_id: uuid.UUID | None = None
) -> EnquiryReceived:
    """The event of an accepted enquiry; ``enquiry_id`` defaults to ``enquiry_id_for`` its key."""
    if enquiry_id is None:
        enquiry_id = enquiry_id_for(form, request.idempotency_key)
    received_at = utc_now()
    return EnquiryReceived(
        event_id=derived_id(EnquiryReceived.routing_key, str(enquiry_id)),
        occurred_at=received_at,
        correlation_id=request.correlation_id,
        data=EnquiryReceivedData(
            enquiry_id=enquiry_id, enquiry=form, received_at=received_at, locale=form.locale, human_check=human_check
        ),
    )
