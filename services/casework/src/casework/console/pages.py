"""What every console page shares: its refusals as pages (or JSON), the audit record, the case it is about."""

import functools
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, ParamSpec

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from casework.access import StaffMember, audit_request, wants_json
from casework.app_state import adapters_of
from casework.cases import Case
from casework.handling import Actor, CaseHandling, UnknownCase
from casework.i18n import catalogue, translate
from casework.storage import MongoCases
from casework.web import render, request_locale

P = ParamSpec("P")


class PageProblem(Exception):
    """A request the console refuses with ``status``: the page says why (``message`` key and its values), names
    the form ``field`` at fault and, for a refused status change, the actions ``allowed`` now."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        detail: str | None = None,
        allowed: Sequence[str] | None = None,
        back: str | None = None,
        values: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(f"{status} {message} {field or ''} {detail or ''}".strip())
        self.status = status
        self.message = message
        self.field = field
        self.detail = detail
        self.allowed = list(allowed) if allowed is not None else None
        self.back = back
        self.values = dict(values or {})


def problem_response(request: Request, problem: PageProblem) -> Response:
    if wants_json(request):
        body: dict[str, Any] = {"detail": problem.detail or problem.message}
        if problem.field:
            body["field"] = problem.field
        if problem.allowed is not None:
            body["allowed"] = problem.allowed
        return JSONResponse(body, problem.status)
    return render(
        request,
        "problem.html",
        {"problem": problem, "values": _named(request, problem.values)},
        status_code=problem.status,
    )


def _named(request: Request, values: Mapping[str, object]) -> dict[str, object]:
    """A refusal's values by their names in the staff member's language (a status, an action), else as given."""
    locale = request_locale(request)
    named: dict[str, object] = {}
    for name, value in values.items():
        key = f"{name}.{value}"
        named[name] = translate(key, locale) if key in catalogue() else value
    return named


def shows_problems(route: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
    """Render a ``PageProblem`` the route raises as the console's page (the route takes ``request``)."""

    @functools.wraps(route)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await route(*args, **kwargs)
        except PageProblem as problem:
            request = kwargs["request"]
            assert isinstance(request, Request)
            return problem_response(request, problem)

    return wrapper


def handling_of(request: Request) -> CaseHandling:
    return adapters_of(request).handling


def cases_of(request: Request) -> MongoCases:
    return adapters_of(request).cases


def case_id_from(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise PageProblem(422, "problem.bad_case_id", field="case_id", detail="not a case id") from None


async def loaded_case(request: Request, case_id: str) -> Case:
    try:
        return await handling_of(request).case(case_id_from(case_id))
    except UnknownCase:
        raise PageProblem(404, "problem.unknown_case", detail="no such case", back="/console/cases") from None


def actor_of(staff: StaffMember) -> Actor:
    return Actor(id=staff.id, email=staff.email, name=staff.name)


async def audit(request: Request, action: str, subject: str | None, detail: Mapping[str, str] | None = None) -> None:
    """Record what the request's staff member did (never the personal data itself: the case id, not the name)."""
    await audit_request(request, action, subject, detail)
