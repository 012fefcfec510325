"""Turning a validated application form into the application.submitted event."""

import uuid
from dataclasses import dataclass

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


def id_for(kind: str, idempotency_key: str | None) -> uuid.UUID:
    """The same idempotency key always names the same submission of a kind; without one, a new id."""
    if idempotency_key is None:
        return uuid.uuid4()
    return derived_id(kind, idempotency_key)


def application_id_for(idempotency_key: str | None) -> uuid.UUID:
    return id_for("application", idempotency_key)


def ensure_current(form: ApplicationForm, current: AgreementDocument) -> None:
    if form.agreement.version != current.version or form.agreement.sha256 != current.sha256:
        raise AgreementNotCurrent(current)


def submit_application(
    form: ApplicationForm, current: AgreementDocument, request: RequestContext, human_check: HumanCheck = "none"
) -> ApplicationSubmitted:
    ensure_current(form, current)
    application_id = application_id_for(request.idempotency_key)
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


def submit_enquiry(form: EnquiryForm, request: RequestContext, human_check: HumanCheck = "none") -> EnquiryReceived:
    enquiry_id = id_for("enquiry", request.idempotency_key)
    received_at = utc_now()
    return EnquiryReceived(
        event_id=derived_id(EnquiryReceived.routing_key, str(enquiry_id)),
        occurred_at=received_at,
        correlation_id=request.correlation_id,
        data=EnquiryReceivedData(
            enquiry_id=enquiry_id, enquiry=form, received_at=received_at, locale=form.locale, human_check=human_check
        ),
    )
