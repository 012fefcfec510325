"""Intake's JSON API: applications, enquiries, and the current agreement, as routes that say who answers."""

import logging
import uuid

from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import BaseRoute

from agency_shared.agreement_documents import AgreementDocument
from agency_shared.forms import ApplicationForm, EnquiryForm
from intake.accepting import Intake
from intake.deps import Context
from intake.guards import FORM, JSON, SubmissionGuard
from intake.problems import problem, problem_responses
from intake.settings import IntakeSettings
from intake.submission_route import SubmissionRoute

logger = logging.getLogger(__name__)

FORM_BODY_NOTE = (
    "The same fields as the JSON body, with dotted names (account.name=...); "
    "a ticked checkbox sends 'on'; `idempotency_key`, the ALTCHA solution `altcha` and the honeypot `fax` "
    "may be included."
)
# What FastAPI cannot infer from the endpoints: the form posts beside the JSON body they declare.
FORM_BODY = {
    "requestBody": {
        "content": {
            FORM: {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}, "description": FORM_BODY_NOTE}
            }
        }
    }
}


class ApplicationAccepted(BaseModel):
    application_id: uuid.UUID
    status_url: str


class EnquiryAccepted(BaseModel):
    enquiry_id: uuid.UUID


def api_routes(intake: Intake, guard: SubmissionGuard, settings: IntakeSettings) -> list[BaseRoute]:
    """The API's entries in the app's route table (the submissions are the busiest: keep them ahead of the pages)."""
    status_base = str(settings.status_base_url).rstrip("/")

    async def current_agreement() -> AgreementDocument:
        """The agreement a frontend must show; post back its ``version`` and ``sha256`` on acceptance."""
        return intake.catalog.current()

    def application_accepted(application_id: uuid.UUID) -> ApplicationAccepted:
        return ApplicationAccepted(
            application_id=application_id, status_url=f"{status_base}/v1/applications/{application_id}/status"
        )

    async def submit_application(application: ApplicationForm, context: Context) -> ApplicationAccepted:
        """Accept an Official Account application. 202 means the broker has durably taken it.

        The same ``Idempotency-Key`` with the same data always answers with the same ``application_id``;
        with different data, ``422`` ``/problems/idempotency-key-reused`` and nothing is accepted.

        The body may also carry ``altcha``: the ALTCHA widget's solution to a challenge from
        ``GET /v1/captcha/challenge``. Without a valid, unused one the application is still
        accepted; its event records ``human_check: none``.
        """
        taken = await intake.accept_application(application, context)
        logger.info("application %s accepted", taken.id, extra={"application_id": str(taken.id)})
        return application_accepted(taken.id)

    def enquiry_accepted(enquiry_id: uuid.UUID) -> EnquiryAccepted:
        return EnquiryAccepted(enquiry_id=enquiry_id)

    async def submit_enquiry(enquiry: EnquiryForm, context: Context) -> EnquiryAccepted:
        """Accept a 'Get in touch' enquiry. 202 means the broker has durably taken it.

        ``Idempotency-Key`` as for applications: the same data, the same ``enquiry_id``; other data, ``422``.
        ``altcha`` as for applications.
        """
        taken = await intake.accept_enquiry(enquiry, context)
        logger.info("enquiry %s accepted", taken.id)
        return enquiry_accepted(taken.id)

    async def captcha_challenge() -> Response:
        """A fresh ALTCHA proof-of-work challenge for the widget (404 when the CAPTCHA is off).

        Solve it and post the solution as ``altcha`` with the submission, before it expires.
        """
        challenge = intake.human_checks.challenge()
        if challenge is None:
            return problem(404, "captcha-off", detail="the CAPTCHA is switched off (CAPTCHA=off)")
        return JSONResponse(challenge, headers={"Cache-Control": "no-store"})

    return [
        SubmissionRoute(
            "/v1/applications", submit_application, kind="application", decoy=application_accepted,
            intake=intake, guard=guard, settings=settings,
            response_model=ApplicationAccepted, tags=["applications"], openapi_extra=FORM_BODY,
            responses=problem_responses(403, 409, 413, 415, 422, 429, 503),
        ),
        SubmissionRoute(
            "/v1/enquiries", submit_enquiry, kind="enquiry", decoy=enquiry_accepted,
            intake=intake, guard=guard, settings=settings,
            response_model=EnquiryAccepted, tags=["enquiries"], openapi_extra=FORM_BODY,
            responses=problem_responses(403, 413, 415, 422, 429, 503),
        ),
        APIRoute("/v1/agreements/current", current_agreement, response_model=AgreementDocument, tags=["agreements"]),
        APIRoute(
            "/v1/captcha/challenge", captcha_challenge, tags=["captcha"],
            responses={200: {"description": "An ALTCHA challenge (never cached)", "content": {JSON: {}}},
                       **problem_responses(404)},
        ),
    ]  # fmt: skip
