"""What a case's page shows of its documents, and who may download which file."""

from typing import Any

from fastapi import Request

from casework.access import Role, StaffMember
from casework.app_state import adapters_of
from casework.cases import Case
from casework.documents.checklists import ChecklistItem
from casework.documents.handling import offered_items
from casework.documents.store import CaseDocuments, RequestedItem
from casework.workflow import CaseKind


def documents_of(request: Request) -> CaseDocuments:
    return adapters_of(request).documents


def may_download(staff: StaffMember, case: Case, item: RequestedItem) -> bool:
    """A sensitive item's file: the case owner and admins; any other: whoever reads cases."""
    return not item.sensitive or staff.role == Role.ADMIN or (case.owner is not None and case.owner == staff.id)


async def documents_context(request: Request, case: Case, staff: StaffMember) -> dict[str, Any]:
    """The items asked for, who may download them, and the checklist the request form offers."""
    items = await documents_of(request).items_of(case.id)
    offered: list[ChecklistItem] = offered_items(case) if case.kind is CaseKind.APPLICATION else []
    return {
        "document_items": items,
        "document_checklist": offered,
        "document_downloadable": {item.key: may_download(staff, case, item) for item in items},
    }
