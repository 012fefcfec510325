"""The route class of intake's submission endpoints: the guard reads the body, the endpoint gets the validated form.

A subclass of FastAPI's ``APIRoute`` overriding ``get_route_handler`` (FastAPI's documented
"Custom Request and APIRoute class"). FastAPI still documents the route from its endpoint's
signature: the form model as the JSON body, the ``Idempotency-Key`` header (declared by the
context dependency), the response model. The handler built here calls that very endpoint,
but reads the body itself, because a submission must pass the guard (origin, rate limit,
media type, size) before a byte of it is parsed, may come as JSON or as form data with dotted
names, and carries the honeypot and the idempotency key beside the form's fields. It also
leaves out what intake's busiest path does not need: dependency solving and the response
model's round trip.
"""

import inspect
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, TypeVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from intake.accepting import Intake
from intake.deps import request_context
from intake.guards import JSON, SubmissionGuard
from intake.settings import IntakeSettings
from intake.submission import RequestContext

F = TypeVar("F", bound=BaseModel)

# A submission is answered once the broker has it: it is accepted, not yet processed.
ACCEPTED = 202


class SubmissionRoute(APIRoute, Generic[F]):
    """``POST path``: guard, screen (honeypot, idempotency key), validate as ``endpoint``'s form, then ``endpoint``.

    ``endpoint(form, context)`` publishes and says what to answer; a filled honeypot is
    answered with ``decoy(id)`` instead, which looks the same and publishes nothing. Failures
    raise the exceptions the app's problem handlers answer.
    """

    def __init__(
        self,
        path: str,
        endpoint: Callable[[F, RequestContext], Awaitable[BaseModel]],
        *,
        kind: str,
        decoy: Callable[[uuid.UUID], BaseModel],
        intake: Intake,
        guard: SubmissionGuard,
        settings: IntakeSettings,
        **options: Any,
    ) -> None:
        # Set before APIRoute.__init__, which builds the handler.
        self.kind, self.form, self.decoy = kind, form_of(endpoint), decoy
        self._intake, self._guard, self._settings = intake, guard, settings
        super().__init__(path, endpoint, methods=["POST"], status_code=ACCEPTED, **options)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint, kind, form, decoy = self.endpoint, self.kind, self.form, self.decoy
        intake, guard, settings = self._intake, self._guard, self._settings

        async def take_submission(request: Request) -> Response:
            context = request_context(request, settings)
            raw = await guard.admit(request, context.client_ip)
            screened = intake.screen(kind, raw, context)
            if screened.decoy is not None:
                answer = decoy(screened.decoy.id)
            else:
                answer = await endpoint(intake.validated(kind, form, screened.fields), screened.context)
            return Response(answer.model_dump_json(), status_code=ACCEPTED, media_type=JSON)

        return take_submission


def form_of(endpoint: Callable[..., Any]) -> type[Any]:
    """The model of ``endpoint``'s first parameter: what FastAPI documents as the body is what gets validated."""
    first = next(iter(inspect.signature(endpoint, eval_str=True).parameters.values()))
    if not (inspect.isclass(first.annotation) and issubclass(first.annotation, BaseModel)):
        raise TypeError(f"{endpoint.__qualname__} must take the form model first, not {first.annotation!r}")
    return first.annotation
