"""Intake's JSON API: applications, enquiries, and the current agreement."""

import logging
import uuid

from fastapi import APIRouter, Request
from pydantic import BaseModel

from agency_shared.agreement_documents import AgreementDocument
from intake.accepting import Intake
from intake.deps import Context, Guard, IntakeService, Settings
from intake.guards import SubmissionGuard
from intake.problems import problem_responses
from intake.settings import IntakeSettings
from intake.submission import RequestContext

logger = logging.getLogger(__name__)
router = APIRouter()

FORM_BODY_NOTE = (
    "The same fields as the JSON body, with dotted names (account.name=...); "
    "a ticked checkbox sends 'on'; `idempotency_key` and the honeypot `fax` may be included."
)


def request_body(schema: str) -> dict[str, object]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}},
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": FORM_BODY_NOTE,
                    }
                },
            },
        }
    }


class ApplicationAccepted(BaseModel):
    application_id: uuid.UUID
    status_url: str


class EnquiryAccepted(BaseModel):
    enquiry_id: uuid.UUID


@router.get("/v1/agreements/current", response_model=AgreementDocument, tags=["agreements"])
async def current_agreement(intake: IntakeService) -> AgreementDocument:
    """The agreement a frontend must show; post back its ``version`` and ``sha256`` on acceptance."""
    return intake.catalog.current()


@router.post(
    "/v1/applications",
    status_code=202,
    response_model=ApplicationAccepted,
    tags=["applications"],
    openapi_extra=request_body("ApplicationForm"),
    responses=problem_responses(403, 409, 413, 415, 422, 429, 503),
)
async def submit_application(
    request: Request, context: Context, guard: Guard, intake: IntakeService, settings: Settings
) -> ApplicationAccepted:
    """Accept an Official Account application. 202 means the broker has durably taken it.

    The same ``Idempotency-Key`` always answers with the same ``application_id``.
    """
    return await accept_application(request, context, guard, intake, settings)


async def accept_application(
    request: Request, context: RequestContext, guard: SubmissionGuard, intake: Intake, settings: IntakeSettings
) -> ApplicationAccepted:
    raw = await guard.admit(request, context.client_ip)
    taken = await intake.apply(raw, context)
    logger.info(
        "application %s accepted",
        taken.id,
        extra={"correlation_id": context.correlation_id, "application_id": str(taken.id)},
    )
    base = str(settings.status_base_url).rstrip("/")
    return ApplicationAccepted(application_id=taken.id, status_url=f"{base}/v1/applications/{taken.id}/status")


@router.post(
    "/v1/enquiries",
    status_code=202,
    response_model=EnquiryAccepted,
    tags=["enquiries"],
    openapi_extra=request_body("EnquiryForm"),
    responses=problem_responses(403, 413, 415, 422, 429, 503),
)
async def submit_enquiry(request: Request, context: Context, guard: Guard, intake: IntakeService) -> EnquiryAccepted:
    """Accept a 'Get in touch' enquiry. 202 means the broker has durably taken it."""
    return await accept_enquiry(request, context, guard, intake)


async def accept_enquiry(
    request: Request, context: RequestContext, guard: SubmissionGuard, intake: Intake
) -> EnquiryAccepted:
    raw = await guard.admit(request, context.client_ip)
    taken = await intake.enquire(raw, context)
    logger.info("enquiry %s accepted", taken.id, extra={"correlation_id": context.correlation_id})
    return EnquiryAccepted(enquiry_id=taken.id)
