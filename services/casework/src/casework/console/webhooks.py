"""The CRM's webhook endpoints (admin): add one (its secret shown once), choose its event types, disable, enable,
rotate its secret, delete it; each delivery's attempts, and replaying a delivery. Every change is audited."""

import uuid
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from agency_shared.events import utc_now
from casework.access import Permission, StaffMember, require
from casework.app_state import adapters_of
from casework.console.pages import PageProblem, audit, shows_problems
from casework.web import render
from casework.webhooks.endpoints import (
    Endpoint,
    EndpointProblem,
    checked_event_types,
    checked_url,
    new_endpoint,
    recorded_url,
    rotated,
)
from casework.webhooks.events import EVENT_TYPES, WebhookEventType
from casework.webhooks.wiring import OutboundWebhooks

router = APIRouter()
WebhookAdmin = Annotated[StaffMember, Depends(require(Permission.MANAGE_WEBHOOKS))]
LIST = "/console/webhooks"
MAX_ENDPOINTS = 50
MAX_EVENT_TYPES_SENT = 20


def outbound_of(request: Request) -> OutboundWebhooks:
    return adapters_of(request).outbound


def _problem(problem: EndpointProblem, back: str) -> PageProblem:
    return PageProblem(422, f"webhooks.problem_{problem.reason}", field=problem.field, detail=problem.detail, back=back)


async def _endpoint(request: Request, endpoint_id: str) -> Endpoint:
    try:
        uuid.UUID(endpoint_id)
    except ValueError:
        raise PageProblem(404, "webhooks.problem_unknown", detail="no such endpoint", back=LIST) from None
    endpoint = await outbound_of(request).store.endpoint(endpoint_id)
    if endpoint is None:
        raise PageProblem(404, "webhooks.problem_unknown", detail="no such endpoint", back=LIST)
    return endpoint


def _at_version(endpoint: Endpoint, version: str) -> int:
    """The version the admin's page showed (its form's hidden ``version``; the one just read if none), or 409 if
    the endpoint changed since (another admin, a rotation, a 410 disabling it)."""
    back = f"{LIST}/{endpoint.id}"
    if not version:
        return endpoint.version
    if not version.isascii() or not version.isdigit():
        raise PageProblem(422, "webhooks.problem_stale", field="version", detail="not a version", back=back)
    if int(version) != endpoint.version:
        raise _stale(endpoint.id)
    return endpoint.version


def _stale(endpoint_id: str) -> PageProblem:
    return PageProblem(
        409, "webhooks.problem_stale", detail="changed meanwhile: reload and try again", back=f"{LIST}/{endpoint_id}"
    )


async def _not_changed(request: Request, endpoint_id: str) -> PageProblem:
    """Why a conditional change matched nothing: the endpoint is gone (404) or was changed meanwhile (409)."""
    if await outbound_of(request).store.endpoint(endpoint_id) is None:
        return PageProblem(404, "webhooks.problem_unknown", detail="no such endpoint", back=LIST)
    return _stale(endpoint_id)


def _no_store(response: Response) -> Response:
    """A page that shows a secret: kept by no cache, browser's or proxy's."""
    response.headers["Cache-Control"] = "no-store"
    return response


def _back_to(endpoint_id: str) -> RedirectResponse:
    return RedirectResponse(f"{LIST}/{endpoint_id}", status_code=303)


def _event_types(values: list[str] | None, back: str) -> list[WebhookEventType]:
    if values is not None and len(values) > MAX_EVENT_TYPES_SENT:
        raise PageProblem(422, "webhooks.problem_events_unknown", field="event_type", detail="too many", back=back)
    try:
        return checked_event_types(values or [])
    except EndpointProblem as problem:
        raise _problem(problem, back) from None


@router.get("/console/webhooks")
@shows_problems
async def endpoint_list(request: Request, staff: WebhookAdmin) -> Response:
    endpoints = await outbound_of(request).store.endpoints()
    return render(request, "webhooks.html", {"endpoints": endpoints, "event_types": EVENT_TYPES, "now": utc_now()})


@router.post("/console/webhooks")
@shows_problems
async def add_endpoint(
    request: Request,
    staff: WebhookAdmin,
    url: Annotated[str, Form(max_length=10_000)] = "",
    event_type: Annotated[list[str] | None, Form()] = None,
) -> Response:
    outbound = outbound_of(request)
    try:
        checked = checked_url(url, outbound.settings.environment)
    except EndpointProblem as problem:
        raise _problem(problem, LIST) from None
    chosen = _event_types(event_type, LIST)
    if len(await outbound.store.endpoints()) >= MAX_ENDPOINTS:
        raise PageProblem(409, "webhooks.problem_too_many", detail=f"at most {MAX_ENDPOINTS} endpoints", back=LIST)
    endpoint = new_endpoint(checked, chosen, utc_now())
    await outbound.store.insert_endpoint(endpoint)
    await audit(
        request, "webhook_endpoint_added", endpoint.id, {"url": recorded_url(endpoint.url), "events": ",".join(chosen)}
    )
    context = {"endpoint": endpoint, "secret": endpoint.secrets[0].secret, "rotated": False}
    return _no_store(render(request, "webhook_secret.html", context, status_code=201))


@router.get("/console/webhooks/{endpoint_id}")
@shows_problems
async def endpoint_page(request: Request, endpoint_id: str, staff: WebhookAdmin) -> Response:
    endpoint = await _endpoint(request, endpoint_id)
    deliveries = await outbound_of(request).store.deliveries_of(endpoint.id)
    context = {"endpoint": endpoint, "deliveries": deliveries, "event_types": EVENT_TYPES, "now": utc_now()}
    return render(request, "webhook.html", context)


@router.post("/console/webhooks/{endpoint_id}/events")
@shows_problems
async def change_event_types(
    request: Request,
    endpoint_id: str,
    staff: WebhookAdmin,
    event_type: Annotated[list[str] | None, Form()] = None,
    version: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    endpoint = await _endpoint(request, endpoint_id)
    read = replace(endpoint, version=_at_version(endpoint, version))
    chosen = _event_types(event_type, f"{LIST}/{endpoint.id}")
    if not await outbound_of(request).store.change_event_types(read, chosen):
        raise await _not_changed(request, endpoint.id)
    await audit(request, "webhook_endpoint_changed", endpoint.id, {"events": ",".join(chosen)})
    return _back_to(endpoint.id)


@router.post("/console/webhooks/{endpoint_id}/enabled")
@shows_problems
async def enable_or_disable(
    request: Request,
    endpoint_id: str,
    staff: WebhookAdmin,
    enabled: Annotated[str, Form(max_length=10)] = "",
    version: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    endpoint = await _endpoint(request, endpoint_id)
    if enabled not in ("true", "false"):
        back = f"{LIST}/{endpoint.id}"
        raise PageProblem(422, "webhooks.problem_enabled", field="enabled", detail="true or false", back=back)
    at = _at_version(endpoint, version)
    if not await outbound_of(request).store.set_enabled(endpoint.id, enabled == "true", "disabled by an admin", at):
        raise await _not_changed(request, endpoint.id)
    await audit(request, "webhook_endpoint_changed", endpoint.id, {"enabled": enabled})
    return _back_to(endpoint.id)


@router.post("/console/webhooks/{endpoint_id}/rotate")
@shows_problems
async def rotate_secret(
    request: Request, endpoint_id: str, staff: WebhookAdmin, version: Annotated[str, Form(max_length=20)] = ""
) -> Response:
    endpoint = await _endpoint(request, endpoint_id)
    _at_version(endpoint, version)
    outbound = outbound_of(request)
    changed, secret = rotated(endpoint, utc_now(), outbound.grace)
    if not await outbound.store.change_secrets(changed):  # the secret is shown only once it is stored
        raise await _not_changed(request, endpoint.id)
    until = changed.rotating_until
    detail = {"old_secret_until": until.isoformat() if until else "-"}
    await audit(request, "webhook_secret_rotated", endpoint.id, detail)
    context = {"endpoint": changed, "secret": secret, "rotated": True, "until": until}
    return _no_store(render(request, "webhook_secret.html", context))


@router.post("/console/webhooks/{endpoint_id}/delete")
@shows_problems
async def delete_endpoint(request: Request, endpoint_id: str, staff: WebhookAdmin) -> Response:
    endpoint = await _endpoint(request, endpoint_id)
    await outbound_of(request).store.delete_endpoint(endpoint.id, utc_now())
    await audit(request, "webhook_endpoint_deleted", endpoint.id, {"url": recorded_url(endpoint.url)})
    return RedirectResponse(LIST, status_code=303)


@router.post("/console/webhooks/deliveries/{delivery_id}/replay")
@shows_problems
async def replay_delivery(request: Request, delivery_id: str, staff: WebhookAdmin) -> Response:
    outbound = outbound_of(request)
    delivery = await outbound.store.delivery(delivery_id[:200])
    if delivery is None:
        raise PageProblem(404, "webhooks.problem_unknown_delivery", detail="no such delivery", back=LIST)
    back = f"{LIST}/{delivery.endpoint_id}"
    if not await outbound.store.replay(delivery.id, utc_now()):
        raise PageProblem(409, "webhooks.problem_in_flight", detail="being sent right now; try again", back=back)
    outbound.loop.wake()
    await audit(request, "webhook_replayed", delivery.id, {"endpoint": delivery.endpoint_id, "was": delivery.state})
    return RedirectResponse(back, status_code=303)
