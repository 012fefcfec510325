"""Errors as RFC 9457 problem details (``application/problem+json``) with stable ``type`` URIs."""

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from agency_chassis.publishing import PublishFailed
from intake.accepting import FieldProblem, InvalidSubmission
from intake.guards import BodyTooLarge, MalformedBody, OriginRefused, RateLimited, UnsupportedMediaType
from intake.idempotency import KeyReused, KeysUnavailable
from intake.submission import AgreementNotCurrent

PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    field: str
    message: str
    type: str


class CurrentAgreement(BaseModel):
    id: str
    version: str
    sha256: str


class Problem(BaseModel):
    """An RFC 9457 problem; ``errors`` lists invalid fields (422), ``current_agreement`` comes with 409."""

    type: str
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = None
    current_agreement: CurrentAgreement | None = None


TITLES = {
    "invalid-submission": "The submission has invalid fields.",
    "malformed-body": "The body could not be read.",
    "idempotency-key-reused": "This Idempotency-Key was first used with different data; nothing was accepted.",
    "agreement-not-current": "The accepted agreement is not the current version; show it again and ask for acceptance.",
    "temporarily-unavailable": "The submission could not be accepted now; nothing was recorded. Please try again.",
    "body-too-large": "The submission is too large.",
    "unsupported-media-type": "Send the submission as JSON or as form data.",
    "rate-limited": "Too many submissions from this address; please wait and try again.",
    "origin-refused": "Submissions from this web site are not accepted.",
    "captcha-off": "No CAPTCHA challenges: the human check is switched off.",
}


def problem(status: int, slug: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = Problem(type=f"/problems/{slug}", title=TITLES.get(slug, slug), status=status, **extra)
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def invalid(errors: list[FieldProblem]) -> JSONResponse:
    return problem(
        422, "invalid-submission", errors=[FieldError(field=e.field, message=e.message, type=e.type) for e in errors]
    )


def problem_for(exc: Exception, retry_after_seconds: int) -> JSONResponse:
    """The problem response for each failure a submission can meet."""
    match exc:
        case InvalidSubmission():
            return invalid(exc.errors)
        case MalformedBody():
            return problem(
                422,
                "malformed-body",
                detail=str(exc),
                errors=[FieldError(field="body", message=str(exc), type="malformed")],
            )
        case AgreementNotCurrent(current=current):
            return problem(
                409, "agreement-not-current",
                current_agreement=CurrentAgreement(id=current.id, version=current.version, sha256=current.sha256),
            )  # fmt: skip
        case KeyReused():
            return problem(422, "idempotency-key-reused", detail=str(exc))
        case PublishFailed() | KeysUnavailable():
            return problem(503, "temporarily-unavailable", headers={"Retry-After": str(retry_after_seconds)})
        case BodyTooLarge():
            return problem(413, "body-too-large", detail=str(exc))
        case UnsupportedMediaType():
            return problem(415, "unsupported-media-type", detail=str(exc))
        case RateLimited():
            return problem(429, "rate-limited", headers={"Retry-After": str(exc.retry_after)}, detail=str(exc))
        case OriginRefused():
            return problem(403, "origin-refused", detail=str(exc))
    raise exc


SUBMISSION_FAILURES = (
    InvalidSubmission, MalformedBody, AgreementNotCurrent, PublishFailed, KeyReused, KeysUnavailable,
    BodyTooLarge, UnsupportedMediaType, RateLimited, OriginRefused,
)  # fmt: skip


def install_problem_handlers(app: FastAPI, retry_after_seconds: int) -> None:
    async def submission_failed(request: Request, exc: Exception) -> JSONResponse:
        return problem_for(exc, retry_after_seconds)

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return invalid(
            [
                FieldProblem(field=".".join(str(p) for p in e["loc"]), message=e["msg"], type=e["type"])
                for e in exc.errors()
            ]
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return problem(
            exc.status_code, f"http-{exc.status_code}", headers=dict(exc.headers or {}), detail=str(exc.detail)
        )

    for failure in SUBMISSION_FAILURES:
        app.add_exception_handler(failure, submission_failed)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems an operation can answer with.

    ``model`` is what makes FastAPI put ``Problem`` into the document's schemas; it also lists
    the schema under the route's own media type (``application/json``) beside ``application/problem+json``.
    """
    descriptions = {
        403: "The Origin is not an allowed frontend",
        404: "Not here (the CAPTCHA is switched off)",
        409: "The accepted agreement is not the current one",
        413: "The body is larger than the limit",
        415: "Neither JSON nor form data",
        422: "Invalid fields, a body that cannot be read, or an Idempotency-Key first used with other data "
        "(type /problems/idempotency-key-reused)",
        429: "Rate limit exceeded; see Retry-After",
        503: "The broker did not confirm (or the idempotency keys' database did not answer): nothing was "
        "accepted; retry after Retry-After",
    }
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        s: {"model": Problem, "description": descriptions[s], "content": {PROBLEM_JSON: {"schema": schema}}}
        for s in statuses
    }
