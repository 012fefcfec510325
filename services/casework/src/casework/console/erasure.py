"""Erasing a client's personal data (admin): a page saying what goes, a confirmation by typing the case's
reference, then agreements' erasure, whose applicant.erased announcement blanks the case here too."""

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from casework.access import Permission, StaffMember, require
from casework.agreements_client import AgreementsRefused, AgreementsUnavailable
from casework.cases import Case
from casework.console.case_pages import case_link
from casework.console.pages import PageProblem, audit, loaded_case, shows_problems
from casework.web import render

logger = logging.getLogger(__name__)
router = APIRouter()
Eraser = Annotated[StaffMember, Depends(require(Permission.ERASE))]
FormText = Annotated[str, Form()]
MAX_REASON_LENGTH = 500


@router.get("/console/cases/{case_id}/erase")
@shows_problems
async def erase_page(request: Request, case_id: str, staff: Eraser) -> Response:
    case = await loaded_case(request, case_id)
    return render(request, "erase.html", {"case": case})


def _checked_reason(reason: str, case: Case) -> str | None:
    reason = reason.strip()
    if len(reason) > MAX_REASON_LENGTH or any(ord(char) < 32 for char in reason):
        raise PageProblem(
            422,
            "problem.invalid_detail",
            field="reason",
            detail=f"one line, at most {MAX_REASON_LENGTH} characters",
            back=case_link(case.id),
        )
    return reason or None


@router.post("/console/cases/{case_id}/erase")
@shows_problems
async def erase(
    request: Request, case_id: str, staff: Eraser, confirm: FormText = "", reason: FormText = ""
) -> Response:
    case = await loaded_case(request, case_id)
    back = f"{case_link(case.id)}/erase"
    if confirm.strip().upper() != case.reference:
        raise PageProblem(
            422, "problem.erase_confirm", field="confirm", detail="type the case's reference to confirm", back=back
        )
    why = _checked_reason(reason, case)
    agreements = request.app.state.agreements
    try:
        if case.application_id is not None:
            done = await agreements.erase_application(case.application_id, why)
        else:
            assert case.enquiry_id is not None  # every case is about one or the other
            done = await agreements.erase_enquiry(case.enquiry_id, why)
    except AgreementsUnavailable as exc:
        logger.warning("erasing case %s: agreements unavailable (%s)", case.id, exc)
        raise PageProblem(
            503,
            "problem.agreements_unavailable",
            detail="agreements is unreachable: nothing was erased, try again",
            back=back,
        ) from None
    except AgreementsRefused as exc:
        raise PageProblem(
            409 if exc.status == 409 else 502, "problem.erase_refused", detail=exc.detail, back=back
        ) from None
    if done is None:
        raise PageProblem(404, "problem.erase_unknown", detail="agreements has no such application", back=back)
    await audit(request, "erase", str(case.id), {"subject": str(case.subject_id)})
    return RedirectResponse(f"{case_link(case.id)}?erasure=requested", 303)
