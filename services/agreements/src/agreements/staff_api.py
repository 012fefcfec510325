"""The staff read API (bearer token): applications with filters, timelines, re-acceptance, CSV, ledger checks."""

import base64
import binascii
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import Counter
from pydantic import BaseModel, Field

from agency_chassis.publishing import PublishFailed
from agency_shared.application_status import Status
from agency_shared.chain import ChainReport
from agency_shared.events import Event, utc_now
from agency_shared.text import SINGLE_LINE
from agreements.erasure import erase_applicant, erase_enquirer
from agreements.exports import ACCEPTANCE_COLUMNS, APPLICATION_COLUMNS, csv_rows
from agreements.public_api import Applications, Catalog, Ledger
from agreements.staff_tokens import StaffTokens
from agreements.storage import ErasureContention, MongoEnquiryErasures, StillRecording

_bearer = HTTPBearer(auto_error=False, description="one of STAFF_API_TOKENS (or STAFF_API_TOKEN)")
logger = logging.getLogger(__name__)
STAFF_REQUESTS = Counter(
    "agreements_staff_api_requests_total", "Staff API requests by machine client (never its token)", ["client"]
)
# The label of a request no token admitted.
REFUSED = "-"


async def require_staff(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The machine client whose bearer token came with the request; 401 without one."""
    tokens: StaffTokens = request.app.state.staff_tokens
    client = tokens.client_of(credentials.credentials if credentials else "")
    STAFF_REQUESTS.labels(client or REFUSED).inc()
    if client is None:
        logger.warning("staff API %s %s refused: no valid bearer token", request.method, request.url.path)
        raise HTTPException(401, "a valid staff bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    request.state.staff_client = client
    # The client by name, so a revoked or leaked token's use can be traced; the token never goes to a log.
    logger.info("staff API %s %s by client %s", request.method, request.url.path, client)
    return client


UNAUTHORIZED: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or wrong bearer token"}}
router = APIRouter(tags=["staff"], dependencies=[Depends(require_staff)], responses=UNAUTHORIZED)


class ApplicationPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None


class Filters(BaseModel):
    status: Status | None = None
    received_from: date | None = None
    received_to: date | None = None
    country: str | None = None
    agreement_version: str | None = None

    def query(self) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if self.status:
            query["status"] = self.status
        received: dict[str, datetime] = {}
        if self.received_from:
            received["$gte"] = datetime.combine(self.received_from, time.min, timezone.utc)  # noqa: UP017
        if self.received_to:  # the whole day is included
            received["$lt"] = datetime.combine(self.received_to + timedelta(days=1), time.min, timezone.utc)  # noqa: UP017
        if received:
            query["received_at"] = received
        if self.country:
            query["application.company.country"] = self.country.upper()
        if self.agreement_version:
            query["acceptance.agreement_version"] = self.agreement_version
        return query


def _encode_cursor(document: dict[str, Any]) -> str:
    raw = json.dumps([document["received_at"].isoformat(), document["application_id"]])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _after(cursor: str) -> dict[str, Any]:
    try:
        received, application_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        at = datetime.fromisoformat(received)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise HTTPException(400, "the cursor is not one this API gave out") from exc
    return {"$or": [{"received_at": {"$lt": at}}, {"received_at": at, "application_id": {"$lt": str(application_id)}}]}


async def _page(applications: Applications, query: dict[str, Any], cursor: str | None, limit: int) -> ApplicationPage:
    if cursor:
        query = {"$and": [query, _after(cursor)]}
    items = [d async for d in applications.find(query, limit=limit + 1)]
    next_cursor = _encode_cursor(items[limit - 1]) if len(items) > limit else None
    for item in items:
        item.pop("timeline", None)
    return ApplicationPage(items=items[:limit], next_cursor=next_cursor)


@router.get("/v1/staff/applications", response_model=ApplicationPage)
async def list_applications(
    applications: Applications,
    filters: Annotated[Filters, Query()],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ApplicationPage:
    """Newest first. Pass ``next_cursor`` back as ``cursor`` for the next page."""
    return await _page(applications, filters.query(), cursor, limit)


@router.get("/v1/staff/reacceptance", response_model=ApplicationPage)
async def must_reaccept(
    applications: Applications,
    catalog: Catalog,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ApplicationPage:
    """Applications whose accepted agreement is older than the current version: they must accept again."""
    current = catalog.current().version
    # Re-accepted in the client portal: the version is among the application's accepted versions.
    query = {"acceptance.agreement_version": {"$ne": current}, "accepted_versions": {"$ne": current}}
    return await _page(applications, query, cursor, limit)


@router.get("/v1/staff/applications/{application_id}", responses={404: {"description": "No such application"}})
async def application_detail(application_id: uuid.UUID, applications: Applications, ledger: Ledger) -> dict[str, Any]:
    """The application, its ledger links (the acceptance; the email verification once there is one), and its
    timeline (submitted, recorded, each email sent or failed, the address verified)."""
    document = await applications.get(application_id)
    if document is None:
        raise HTTPException(404, "no such application")
    entry = await ledger.find(application_id)
    document["ledger"] = asdict(entry) if entry else None
    verification = await ledger.find_verification(application_id)
    document["ledger_verification"] = asdict(verification) if verification else None
    document["timeline"] = sorted(document.get("timeline", []), key=lambda moment: moment["at"])
    return document


class ErasureRequest(BaseModel):
    # Kept in the tombstone; any personal value it repeats is blanked like everywhere else.
    reason: Annotated[str, SINGLE_LINE, Field(max_length=500)] | None = None


class Erasure(BaseModel):
    application_id: uuid.UUID
    erased_at: datetime
    reason: str | None


async def _publish(request: Request) -> Callable[[Event], Awaitable[None]]:
    publish: Callable[[Event], Awaitable[None]] = request.app.state.publish
    return publish


@router.post(
    "/v1/staff/applications/{application_id}/erasure",
    response_model=Erasure,
    responses={
        404: {"description": "No such application"},
        409: {"description": "The acceptance is still being recorded in the ledger: ask again shortly"},
        503: {"description": "Erased here, but not yet announced to the other services: ask again"},
    },
)
async def erase_personal_data(
    application_id: uuid.UUID,
    request: Request,
    applications: Applications,
    publish: Annotated[Callable[[Event], Awaitable[None]], Depends(_publish)],
    body: ErasureRequest | None = None,
) -> Erasure:
    """Erase the applicant's name, email, phone, IP and user agent from every service; repeating it is harmless.

    The ledger link stays and still verifies: it holds only salted hashes of those fields.
    """
    reason = body.reason if body else None
    correlation_id = request.state.correlation_id
    try:
        tombstone = await erase_applicant(application_id, reason, applications, publish, correlation_id, utc_now())
    except StillRecording as exc:
        # Erasing the values before the ledger link is written would lose the evidence that the acceptance happened.
        raise HTTPException(
            409, "the acceptance is still being recorded; ask again shortly", headers={"Retry-After": "5"}
        ) from exc
    except (PublishFailed, ErasureContention) as exc:
        raise HTTPException(503, f"not finished ({exc}): ask again", headers={"Retry-After": "5"}) from exc
    if tombstone is None:
        raise HTTPException(404, "no such application")
    return Erasure(application_id=application_id, **tombstone)


class EnquiryErasure(BaseModel):
    enquiry_id: uuid.UUID
    erased_at: datetime
    reason: str | None


async def _enquiry_erasures(request: Request) -> MongoEnquiryErasures:
    erasures: MongoEnquiryErasures = request.app.state.adapters.enquiry_erasures
    return erasures


@router.post(
    "/v1/staff/enquiries/{enquiry_id}/erasure",
    response_model=EnquiryErasure,
    responses={503: {"description": "Noted here, but not yet announced to the other services: ask again"}},
)
async def erase_enquiry(
    enquiry_id: uuid.UUID,
    request: Request,
    erasures: Annotated[MongoEnquiryErasures, Depends(_enquiry_erasures)],
    publish: Annotated[Callable[[Event], Awaitable[None]], Depends(_publish)],
    body: ErasureRequest | None = None,
) -> EnquiryErasure:
    """Erase the enquirer's name, email and message from every service (notifications holds them); repeating it
    is harmless.

    Agreements does not hold enquiries, so it cannot tell an unknown id (no ``404``) nor blank the
    enquirer's name from the reason: email addresses and phone numbers in it are blanked; leave the name out.
    """
    reason = body.reason if body else None
    correlation_id = request.state.correlation_id
    try:
        tombstone = await erase_enquirer(enquiry_id, reason, erasures, publish, correlation_id, utc_now())
    except PublishFailed as exc:
        raise HTTPException(503, f"not finished ({exc}): ask again", headers={"Retry-After": "5"}) from exc
    return EnquiryErasure(enquiry_id=enquiry_id, **tombstone)


def _csv(rows: Any, name: str) -> StreamingResponse:
    return StreamingResponse(
        rows, media_type="text/csv; charset=utf-8", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


CSV: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}}, "description": "CSV, streamed"}}


@router.get("/v1/staff/exports/applications.csv", response_class=StreamingResponse, responses=CSV)
async def export_applications(applications: Applications, filters: Annotated[Filters, Query()]) -> StreamingResponse:
    return _csv(csv_rows(applications.find(filters.query()), APPLICATION_COLUMNS), "applications.csv")


@router.get("/v1/staff/exports/acceptances.csv", response_class=StreamingResponse, responses=CSV)
async def export_acceptances(ledger: Ledger) -> StreamingResponse:
    return _csv(csv_rows(ledger.entries(), ACCEPTANCE_COLUMNS), "acceptances.csv")


@router.get("/v1/ledger/verify", response_model=ChainReport)
async def verify_ledger(ledger: Ledger) -> ChainReport:
    """Walk the whole chain and report the first broken link, if any."""
    return await ledger.verify()
