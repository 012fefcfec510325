"""The case list (search, filters, sort, pages), a case's page (application, evidence, receipt, timeline, the
forms to work it) and its export; viewing a case and exporting it are audited."""

import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams

from agency_shared.events import utc_now
from casework.access import Permission, StaffMember, require
from casework.accounts import Account
from casework.agreements_client import AgreementsClient, AgreementsRefused, AgreementsUnavailable
from casework.cases import Case
from casework.console.documents_view import documents_context
from casework.console.pages import PageProblem, audit, cases_of, handling_of, loaded_case, shows_problems
from casework.storage import SORT_KEYS, CaseQuery, SortKey
from casework.web import render
from casework.workflow import (
    ACTIONS,
    REJECTION_REASONS,
    ApplicationStatus,
    CaseKind,
    CaseState,
    Detail,
    EnquiryStatus,
    allowed_actions,
)

logger = logging.getLogger(__name__)
router = APIRouter()
Reader = Annotated[StaffMember, Depends(require(Permission.READ_CASES))]
Exporter = Annotated[StaffMember, Depends(require(Permission.EXPORT_PERSONAL_DATA))]

STATUSES: dict[str, tuple[str, ...]] = {
    CaseKind.APPLICATION.value: tuple(ApplicationStatus),
    CaseKind.ENQUIRY.value: tuple(EnquiryStatus),
}
ALL_STATUSES = frozenset(STATUSES["application"] + STATUSES["enquiry"])
PAGE_SIZES = (10, 25, 50, 100)
MAX_SEARCH_LENGTH = 200
MAX_PAGE = 10_000
UNASSIGNED = "unassigned"
ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# ASCII digits only: str.isdigit() accepts '²' and '١٢', which int() then rejects or reads as another number.
NUMBER = re.compile(r"[0-9]{1,6}")


@dataclass(frozen=True)
class ListForm:
    """The list's query string as the filter form shows it again."""

    q: str = ""
    statuses: tuple[str, ...] = ()
    kind: str = ""
    owner: str = ""
    overdue: bool = False
    sort: SortKey = "opened_at"
    descending: bool = True
    page: int = 1
    per_page: int = 25

    def query(self, now: datetime) -> CaseQuery:
        return CaseQuery(
            search=self.q or None,
            statuses=self.statuses,
            kind=self.kind or None,
            owner=None if not self.owner else "" if self.owner == UNASSIGNED else self.owner,
            overdue_at=now if self.overdue else None,
            sort=self.sort,
            descending=self.descending,
            page=self.page,
            per_page=self.per_page,
        )

    def link(self, **changes: Any) -> str:
        """This list's address with ``changes`` (another page, another sort)."""
        values = {
            "q": self.q,
            "status": list(self.statuses),
            "kind": self.kind,
            "owner": self.owner,
            "overdue": "1" if self.overdue else "",
            "sort": self.sort,
            "dir": "desc" if self.descending else "asc",
            "page": str(self.page),
            "per_page": str(self.per_page),
            **changes,
        }
        pairs = [(key, value) for key, value in values.items() if value and key != "status"]
        pairs += [("status", status) for status in values["status"]]
        return "/console/cases?" + urlencode(pairs)

    def sort_link(self, key: str) -> str:
        descending = not self.descending if key == self.sort else key != "company"
        return self.link(sort=key, dir="desc" if descending else "asc", page="1")


def _one(params: QueryParams, name: str) -> str:
    values = params.getlist(name)
    if len(values) > 1:
        raise PageProblem(422, "problem.bad_filter", field=name, detail="given more than once")
    return values[0].strip() if values else ""


def _number(params: QueryParams, name: str, default: int, allowed: range | tuple[int, ...]) -> int:
    raw = _one(params, name)
    if not raw:
        return default
    if not NUMBER.fullmatch(raw) or int(raw) not in allowed:
        raise PageProblem(422, "problem.bad_filter", field=name, detail="not a number this list takes")
    return int(raw)


def list_form(params: QueryParams, owners: Mapping[str, Account]) -> ListForm:
    """The list's search, filters, sort and page from the query string; ``PageProblem`` (422) naming the field
    of a value that is none of the allowed ones."""
    known = {"q", "status", "kind", "owner", "overdue", "sort", "dir", "page", "per_page"}
    q = _one(params, "q")
    if len(q) > MAX_SEARCH_LENGTH or any(ord(char) < 32 for char in q):
        raise PageProblem(422, "problem.bad_filter", field="q", detail=f"at most {MAX_SEARCH_LENGTH} characters")
    statuses = tuple(dict.fromkeys(value for value in params.getlist("status") if value))
    if any(status not in ALL_STATUSES for status in statuses):
        raise PageProblem(422, "problem.bad_filter", field="status", detail="not a status")
    kind = _one(params, "kind")
    if kind and kind not in STATUSES:
        raise PageProblem(422, "problem.bad_filter", field="kind", detail="application or enquiry")
    owner = _one(params, "owner")
    if owner and owner != UNASSIGNED and (not ACCOUNT_ID.match(owner) or owner not in owners):
        raise PageProblem(422, "problem.bad_filter", field="owner", detail="not a staff account")
    overdue = _one(params, "overdue")
    if overdue not in ("", "1", "on", "true"):
        raise PageProblem(422, "problem.bad_filter", field="overdue", detail="1 or nothing")
    sort = _one(params, "sort") or "opened_at"
    if sort not in SORT_KEYS:
        raise PageProblem(422, "problem.bad_filter", field="sort", detail=f"one of {', '.join(SORT_KEYS)}")
    direction = _one(params, "dir") or "desc"
    if direction not in ("asc", "desc"):
        raise PageProblem(422, "problem.bad_filter", field="dir", detail="asc or desc")
    unknown = sorted(set(params.keys()) - known)
    if unknown:
        raise PageProblem(422, "problem.bad_filter", field=unknown[0][:40], detail="not a filter of this list")
    return ListForm(
        q=q,
        statuses=statuses,
        kind=kind,
        owner=owner,
        overdue=bool(overdue),
        sort=next(key for key in SORT_KEYS if key == sort),
        descending=direction == "desc",
        page=_number(params, "page", 1, range(1, MAX_PAGE + 1)),
        per_page=_number(params, "per_page", 25, PAGE_SIZES),
    )


async def staff_accounts(request: Request) -> dict[str, Account]:
    """Every staff account by id (active or not: a case may still name a former owner)."""
    accounts: list[Account] = await request.app.state.access.accounts.all()
    return {account.id: account for account in accounts}


def page_window(current: int, pages: int, around: int = 3) -> tuple[int | None, ...]:
    """The page links the list shows: the first, the last and ``around`` either side of ``current``, with
    ``None`` where pages are left out (an ellipsis), so 10,000 pages are a dozen links, not 10,000."""
    near = range(max(1, current - around), min(pages, current + around) + 1)
    numbers = sorted({1, pages, *near} if pages >= 1 else set())
    window: list[int | None] = numbers[:1]
    for previous, number in pairwise(numbers):
        window += [None, number] if number - previous > 1 else [number]
    return tuple(window)


@router.get("/console/cases")
@shows_problems
async def case_list(request: Request, staff: Reader) -> Response:
    accounts = await staff_accounts(request)
    form = list_form(request.query_params, accounts)
    now = utc_now()
    page = await cases_of(request).find(form.query(now))
    context = {
        "form": form,
        "page": page,
        "page_links": page_window(form.page, page.pages),
        "now": now,
        "statuses": STATUSES,
        "accounts": [account for account in accounts.values() if account.active],
        "page_sizes": PAGE_SIZES,
        "sort_keys": SORT_KEYS,
        "unassigned": UNASSIGNED,
    }
    return render(request, "cases.html", context)


@dataclass(frozen=True)
class Receipt:
    """The acceptance receipt as agreements gives it, or why the page has none."""

    document: Mapping[str, Any] | None = None
    unavailable: bool = False
    missing: bool = False


async def receipt_of(agreements: AgreementsClient, case: Case) -> Receipt | None:
    if case.application_id is None:
        return None
    try:
        document = await agreements.receipt(case.application_id)
    except (AgreementsUnavailable, AgreementsRefused) as exc:
        logger.warning("the receipt of case %s could not be fetched: %s", case.id, exc)
        return Receipt(unavailable=True)
    return Receipt(document=document) if document is not None else Receipt(missing=True)


def case_context(case: Case, staff: StaffMember, accounts: Mapping[str, Account], now: datetime) -> dict[str, Any]:
    state = CaseState(case.kind, case.status, case.held_from, case.tencent_attempts)
    can_work = staff.can(Permission.WORK_CASES)
    return {
        "case": case,
        "now": now,
        "overdue": case.overdue(now),
        "timeline": sorted(case.history, key=lambda entry: entry.at, reverse=True),
        "can_work": can_work,
        "can_export": staff.can(Permission.EXPORT_PERSONAL_DATA),
        "can_erase": staff.can(Permission.ERASE) and case.erased_at is None,
        "accounts": [account for account in accounts.values() if account.active],
        "rejection_reasons": REJECTION_REASONS,
        "state": state,
        "needs": {name: {detail.value for detail in action.needs} for name, action in ACTIONS.items()},
        "detail": Detail,
    }


@router.get("/console/cases/{case_id}")
@shows_problems
async def case_page(request: Request, case_id: str, staff: Reader) -> Response:
    case = await loaded_case(request, case_id)
    now = utc_now()
    context = case_context(case, staff, await staff_accounts(request), now)
    context["allowed"] = allowed_actions(context["state"], handling_of(request).rules) if context["can_work"] else []
    context["receipt"] = await receipt_of(request.app.state.agreements, case)
    context.update(await documents_context(request, case, staff))
    await audit(request, "view_personal_data", str(case.id), {"reference": case.reference})
    return render(request, "case.html", context)


@router.get("/console/cases/{case_id}/export")
@shows_problems
async def export_case(request: Request, case_id: str, staff: Exporter) -> Response:
    """The case with its personal data as JSON (an access request's answer), as a download."""
    case = await loaded_case(request, case_id)
    await audit(request, "export", str(case.id), {"reference": case.reference})
    body = json.dumps(case.model_dump(mode="json"), ensure_ascii=False, indent=2)
    filename = f"case-{case.reference}.json"
    return Response(
        body,
        media_type="application/json; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def case_link(case_id: uuid.UUID) -> str:
    return f"/console/cases/{case_id}"
