"""agreements' lists the staff read from the console: who must accept the agreement again, and whether the
acceptance ledger verifies (and where it breaks)."""

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from casework.access import Permission, StaffMember, require
from casework.agreements_client import AgreementsClient, AgreementsRefused, AgreementsUnavailable
from casework.cases import case_id_for
from casework.console.pages import PageProblem, shows_problems
from casework.web import render
from casework.workflow import CaseKind

logger = logging.getLogger(__name__)
router = APIRouter()
Reader = Annotated[StaffMember, Depends(require(Permission.READ_CASES))]
MAX_CURSOR_LENGTH = 512


def _agreements(request: Request) -> AgreementsClient:
    client: AgreementsClient = request.app.state.agreements
    return client


def _row(item: dict[str, Any]) -> dict[str, Any]:
    """What the list shows of an application: no personal data beyond the company."""
    application = item.get("application") or {}
    acceptance = item.get("acceptance") or {}
    raw_id = str(item.get("application_id") or "")
    try:
        case = f"/console/cases/{case_id_for(uuid.UUID(raw_id), CaseKind.APPLICATION)}"
    except ValueError:
        case = None
    return {
        "application_id": raw_id,
        "case": case,
        "company": (application.get("company") or {}).get("legal_name"),
        "account_name": (application.get("account") or {}).get("name"),
        "agreement_version": acceptance.get("agreement_version"),
        "received_at": item.get("received_at"),
        "status": item.get("status"),
    }


@router.get("/console/reacceptance")
@shows_problems
async def reacceptance(request: Request, staff: Reader, cursor: str = "") -> Response:
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise PageProblem(422, "problem.bad_filter", field="cursor", detail="not a cursor this list gave out")
    try:
        page = await _agreements(request).reacceptance(cursor or None)
    except AgreementsUnavailable as exc:
        logger.warning("the re-acceptance list could not be fetched: %s", exc)
        raise PageProblem(503, "problem.agreements_unavailable", detail="agreements is unreachable") from None
    except AgreementsRefused as exc:
        raise PageProblem(
            422 if exc.status == 400 else 502, "problem.agreements_refused", field="cursor", detail=exc.detail
        ) from None
    context = {"rows": [_row(item) for item in page.items], "next_cursor": page.next_cursor, "first": not cursor}
    return render(request, "reacceptance.html", context)


@router.get("/console/ledger")
@shows_problems
async def ledger(request: Request, staff: Reader) -> Response:
    try:
        report = await _agreements(request).verify_ledger()
    except (AgreementsUnavailable, AgreementsRefused) as exc:
        logger.warning("the ledger could not be verified: %s", exc)
        raise PageProblem(503, "problem.agreements_unavailable", detail="agreements is unreachable") from None
    return render(request, "ledger.html", {"report": report})
