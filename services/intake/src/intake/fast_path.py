"""JSON submissions answered without FastAPI's routing and dependency machinery: intake's hot path.

``POST /v1/applications`` and ``POST /v1/enquiries`` with a JSON body are most of
intake's traffic. This ASGI middleware answers them with the very functions the
FastAPI routes call (same guard, same use case, same problem responses), and
leaves everything else (form posts, pages, docs, health) to FastAPI. The routes in
``api.py`` stay the documented contract and the fallback; ``bench/`` shows what
skipping the route resolution, dependency solving and response-model round trip is worth.
"""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from intake import api
from intake.accepting import Intake
from intake.deps import request_context
from intake.guards import JSON, SubmissionGuard, media_type
from intake.problems import SUBMISSION_FAILURES, problem_for
from intake.settings import IntakeSettings


class JsonSubmissions:
    def __init__(self, app: ASGIApp, routes: list[BaseRoute], intake: Intake, guard: SubmissionGuard,
                 settings: IntakeSettings) -> None:  # fmt: skip
        self.app = app
        self._intake, self._guard, self._settings = intake, guard, settings
        # The FastAPI routes these requests belong to: metrics label them by the route's path.
        # ``routes`` are those of the router that declares them (``api.router``, included
        # without a prefix): FastAPI 0.165 keeps an included router whole in ``app.routes``.
        wanted = {api.submit_application: "application", api.submit_enquiry: "enquiry"}
        self._routes = {
            route.path: (route, wanted[route.endpoint])  # type: ignore[attr-defined]
            for route in routes
            if getattr(route, "endpoint", None) in wanted and "POST" in getattr(route, "methods", ())
        }
        if len(self._routes) != len(wanted):  # a silent miss would only make every submission slower
            raise LookupError(f"the submission routes were not found among {routes!r}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self._routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if target is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        if media_type(request) != JSON:  # form posts and the wrong media types take the documented route
            await self.app(scope, receive, send)
            return
        route, kind = target
        scope["route"] = route
        try:
            response = await self._accept(kind, request)
        except SUBMISSION_FAILURES as exc:
            response = problem_for(exc, self._settings.retry_after_seconds)
        await response(scope, receive, send)

    async def _accept(self, kind: str, request: Request) -> Response:
        context = request_context(request, self._settings)
        if kind == "application":
            accepted = await api.accept_application(request, context, self._guard, self._intake, self._settings)
            body = accepted.model_dump_json()
        else:
            body = (await api.accept_enquiry(request, context, self._guard, self._intake)).model_dump_json()
        return Response(body, status_code=202, media_type=JSON)
