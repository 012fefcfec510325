"""The staff's changes to a case from its page: a status action with its reason, a note, the owner. Each is
refused with a page naming why (409 with the actions allowed, 422 naming the field) and changes nothing then;
each that succeeds is audited and goes back to the case (303)."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from agency_shared.events import utc_now
from casework.access import Permission, StaffMember, require
from casework.cases import Case, HistoryEntry
from casework.console.case_pages import case_link, staff_accounts
from casework.console.pages import PageProblem, actor_of, audit, handling_of, loaded_case, shows_problems
from casework.handling import Actor
from casework.storage import CaseChanged
from casework.workflow import ActionRequest, CaseState, InvalidDetail, NotAllowed, allowed_actions

router = APIRouter()
Worker = Annotated[StaffMember, Depends(require(Permission.WORK_CASES))]
FormText = Annotated[str, Form()]
NO_OWNER = ""


def _same_version(case: Case, version: str) -> None:
    """The form carries the version of the case its page showed: another change since is a conflict."""
    if version and version.strip() != str(case.version):
        raise PageProblem(
            409, "problem.changed_meanwhile", detail="the case changed meanwhile: reload it", back=case_link(case.id)
        )


def _deadline(value: str, back: str) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise PageProblem(
            422, "problem.invalid_detail", field="tencent_deadline", detail="a date, YYYY-MM-DD", back=back
        ) from None


def _invalid(error: InvalidDetail, back: str) -> PageProblem:
    return PageProblem(422, "problem.invalid_detail", field=error.field, detail=error.reason, back=back)


def _changed(back: str) -> PageProblem:
    return PageProblem(409, "problem.changed_meanwhile", detail="the case changed meanwhile: reload it", back=back)


async def _landed(request: Request, case: Case, key: str, staff: StaffMember) -> HistoryEntry | None:
    """The timeline entry (``key``: status, note, owner) this staff member's change wrote on ``case`` or after, if
    the change was written: handling commits it before it announces it and reads the case back, so a failure in
    those must not leave a change made without its audit entry."""
    now = await handling_of(request).case(case.id)
    for entry in reversed(now.history):
        prefix, _, version = entry.key.partition(":")
        if (
            prefix == key
            and entry.staff == staff.email
            and version.isascii()
            and version.isdigit()
            and int(version) >= case.version
        ):
            return entry
    return None


@router.post("/console/cases/{case_id}/status")
@shows_problems
async def change_status(
    request: Request,
    case_id: str,
    staff: Worker,
    action: FormText = "",
    reason: FormText = "",
    tencent_deadline: FormText = "",
    rejection_reason: FormText = "",
    version: FormText = "",
) -> Response:
    case = await loaded_case(request, case_id)
    back = case_link(case.id)
    handling = handling_of(request)
    allowed = allowed_actions(CaseState(case.kind, case.status, case.held_from, case.tencent_attempts), handling.rules)
    if action not in allowed:
        raise PageProblem(
            409,
            "problem.not_allowed",
            detail=f"{action[:60]!r} is not allowed from {case.status!r}",
            allowed=allowed,
            back=back,
            values={"action": action[:60], "status": case.status},
        )
    _same_version(case, version)
    # A browser sends a textarea's line breaks as CRLF; the workflow keeps reasons as lines (LF) and refuses CRs.
    wanted = ActionRequest(
        action, reason.replace("\r\n", "\n"), _deadline(tencent_deadline, back), rejection_reason.strip() or None
    )
    try:
        changed = await handling.change_status(case.id, wanted, actor_of(staff))
    except NotAllowed as refused:  # the case moved between the read above and the change
        raise PageProblem(
            409,
            "problem.not_allowed",
            detail=str(refused),
            allowed=refused.allowed,
            back=back,
            values={"action": action, "status": refused.status},
        ) from None
    except InvalidDetail as error:
        raise _invalid(error, back) from None
    except CaseChanged:
        raise _changed(back) from None
    except Exception:
        landed = await _landed(request, case, "status", staff)
        if landed is not None:
            await audit(
                request,
                "status_change",
                str(case.id),
                {"action": action, "from": case.status, "to": landed.current or ""},
            )
        raise
    await audit(request, "status_change", str(case.id), {"action": action, "from": case.status, "to": changed.status})
    return RedirectResponse(back, 303)


@router.post("/console/cases/{case_id}/notes")
@shows_problems
async def add_note(
    request: Request, case_id: str, staff: Worker, note: FormText = "", version: FormText = ""
) -> Response:
    case = await loaded_case(request, case_id)
    back = case_link(case.id)
    _same_version(case, version)
    try:
        await handling_of(request).add_note(case.id, note, actor_of(staff))
    except InvalidDetail as error:
        raise _invalid(error, back) from None
    except CaseChanged:
        raise _changed(back) from None
    except Exception:
        if await _landed(request, case, "note", staff) is not None:
            await audit(request, "note", str(case.id), {"length": str(len(note.strip()))})
        raise
    await audit(request, "note", str(case.id), {"length": str(len(note.strip()))})
    return RedirectResponse(back, 303)


@router.post("/console/cases/{case_id}/owner")
@shows_problems
async def assign_owner(
    request: Request, case_id: str, staff: Worker, owner: FormText = NO_OWNER, version: FormText = ""
) -> Response:
    case = await loaded_case(request, case_id)
    back = case_link(case.id)
    _same_version(case, version)
    chosen: Actor | None = None
    if owner != NO_OWNER:
        account = (await staff_accounts(request)).get(owner.strip())
        if account is None or not account.active:
            raise PageProblem(
                422, "problem.invalid_detail", field="owner", detail="not an active staff account", back=back
            )
        chosen = Actor(id=account.id, email=account.email, name=account.name)
    try:
        await handling_of(request).assign_owner(case.id, chosen, actor_of(staff))
    except CaseChanged:
        raise _changed(back) from None
    except Exception:
        if await _landed(request, case, "owner", staff) is not None:
            await audit(request, "assign_owner", str(case.id), {"owner": chosen.id if chosen else ""})
        raise
    await audit(request, "assign_owner", str(case.id), {"owner": chosen.id if chosen else ""})
    return RedirectResponse(back, 303)


@router.post("/console/cases/{case_id}/portal/revoke")
@shows_problems
async def revoke_portal_links(request: Request, case_id: str, staff: Worker, version: FormText = "") -> Response:
    """End every portal link and live portal session of the case's client (they can ask for a new link)."""
    case = await loaded_case(request, case_id)
    back = case_link(case.id)
    _same_version(case, version)
    entry = HistoryEntry(
        key=f"portal_revoked:{case.portal_generation + 1}", kind="portal_revoked", at=utc_now(), staff=staff.email
    )
    if not await handling_of(request).cases.revoke_portal_links(case, entry):
        raise _changed(back)
    await audit(request, "portal_revoke", str(case.id), {"generation": str(case.portal_generation + 1)})
    return RedirectResponse(back, 303)
