"""FastAPI dependencies: the adapters ``create_app`` put on the application state, and the request's context.

They are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a thread
pool, a thread hop per dependency per request.
"""

from typing import Annotated

from fastapi import Depends, Header, Request

from intake.accepting import Intake
from intake.guards import SubmissionGuard, client_address
from intake.settings import IntakeSettings
from intake.submission import RequestContext


async def _intake(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


async def _guard(request: Request) -> SubmissionGuard:
    guard: SubmissionGuard = request.app.state.guard
    return guard


async def _settings(request: Request) -> IntakeSettings:
    settings: IntakeSettings = request.app.state.settings
    return settings


async def _request_context(
    request: Request,
    settings: Annotated[IntakeSettings, Depends(_settings)],
    # Declared so the OpenAPI document shows the header; request_context reads it (the submission routes call it too).
    idempotency_key: Annotated[str | None, Header()] = None,
) -> RequestContext:
    return request_context(request, settings)


def request_context(request: Request, settings: IntakeSettings) -> RequestContext:
    """What the server itself observes about a request: never taken from its body."""
    return RequestContext(
        client_ip=client_address(request, settings.trusted_proxies),
        user_agent=request.headers.get("user-agent", "")[:512],
        correlation_id=request.state.correlation_id,
        idempotency_key=request.headers.get("idempotency-key") or None,
    )


IntakeService = Annotated[Intake, Depends(_intake)]
Guard = Annotated[SubmissionGuard, Depends(_guard)]
Settings = Annotated[IntakeSettings, Depends(_settings)]
Context = Annotated[RequestContext, Depends(_request_context)]
