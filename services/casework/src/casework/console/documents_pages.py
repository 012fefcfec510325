"""The staff's side of a case's documents: ask for checklist items, accept a received file or ask for a revision
with a reason (the client sees it), download a file. Each change is audited like every console action; every
download is audited, and a sensitive item's file (ID, passport, statements: PIPL Art. 28) goes only to the case
owner and admins."""

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from casework.access import Permission, StaffMember, require
from casework.app_state import adapters_of
from casework.console.case_pages import case_link
from casework.console.documents_view import documents_of, may_download
from casework.console.pages import PageProblem, actor_of, audit, loaded_case, shows_problems
from casework.documents.handling import DocumentHandling, ItemNotWaiting, UnknownItem
from casework.storage import CaseChanged
from casework.workflow import InvalidDetail, NotAllowed

router = APIRouter()


def _handling(request: Request) -> DocumentHandling:
    return adapters_of(request).document_handling


Worker = Annotated[StaffMember, Depends(require(Permission.WORK_CASES))]
Reader = Annotated[StaffMember, Depends(require(Permission.READ_CASES))]
FormText = Annotated[str, Form()]
FormList = Annotated[list[str] | None, Form()]


def _problem(error: Exception, back: str) -> PageProblem:
    if isinstance(error, InvalidDetail):
        return PageProblem(422, "problem.invalid_detail", field=error.field, detail=error.reason, back=back)
    if isinstance(error, UnknownItem):
        return PageProblem(404, "problem.unknown_document", field="item", detail="the case asked for no such document",
                           back=back)  # fmt: skip
    if isinstance(error, ItemNotWaiting):
        return PageProblem(409, "problem.document_state", field="item", detail=f"the document is {error.state}",
                           back=back)  # fmt: skip
    if isinstance(error, NotAllowed):
        return PageProblem(409, "problem.not_allowed", detail=str(error), allowed=error.allowed, back=back)
    return PageProblem(409, "problem.changed_meanwhile", detail="the case changed meanwhile: reload it", back=back)


REFUSALS = (InvalidDetail, UnknownItem, ItemNotWaiting, NotAllowed, CaseChanged)


@contextlib.contextmanager
def _refusal_shown(case_id: uuid.UUID) -> Iterator[None]:
    """A change the rules refuse becomes the page saying why, with the way back to the case."""
    try:
        yield
    except REFUSALS as error:
        raise _problem(error, case_link(case_id)) from None


async def _audited(request: Request, action: str, case_id: uuid.UUID, detail: Mapping[str, str]) -> Response:
    """Audit the change made as ``action``; back to the case's documents."""
    await audit(request, action, str(case_id), detail)
    return RedirectResponse(f"{case_link(case_id)}#documents", 303)


@router.post("/console/cases/{case_id}/documents/request")
@shows_problems
async def request_documents(
    request: Request, case_id: str, staff: Worker, items: FormList = None, note: FormText = ""
) -> Response:
    items = items or []
    case = await loaded_case(request, case_id)
    with _refusal_shown(case.id):
        await _handling(request).request(case.id, items, note, actor_of(staff))
    return await _audited(request, "request_documents", case.id, {"items": ",".join(items)[:500]})


@router.post("/console/cases/{case_id}/documents/{item}/accept")
@shows_problems
async def accept_document(request: Request, case_id: str, item: str, staff: Worker) -> Response:
    case = await loaded_case(request, case_id)
    with _refusal_shown(case.id):
        await _handling(request).accept(case.id, item[:64], actor_of(staff))
    return await _audited(request, "accept_document", case.id, {"item": item[:64]})


@router.post("/console/cases/{case_id}/documents/{item}/revision")
@shows_problems
async def ask_revision(request: Request, case_id: str, item: str, staff: Worker, reason: FormText = "") -> Response:
    case = await loaded_case(request, case_id)
    with _refusal_shown(case.id):
        await _handling(request).ask_revision(case.id, item[:64], reason, actor_of(staff))
    return await _audited(request, "ask_document_revision", case.id, {"item": item[:64]})


@router.get("/console/cases/{case_id}/documents/{item}/files/{file_id}")
@shows_problems
async def download(request: Request, case_id: str, item: str, file_id: str, staff: Reader) -> Response:
    """The stored file, as an attachment of its stored type; audited, refused or not."""
    case = await loaded_case(request, case_id)
    back = case_link(case.id)
    documents = documents_of(request)
    requested = await documents.item(case.id, item[:64])
    stored = next((f for f in requested.files if f.file_id == file_id), None) if requested else None
    if requested is None or stored is None:
        raise PageProblem(404, "problem.unknown_document", field="file_id", detail="no such file", back=back)
    detail = {"item": requested.key, "file_id": stored.file_id, "sha256": stored.sha256}
    if not may_download(staff, case, requested):
        await audit(request, "download_document_refused", str(case.id), detail)
        raise PageProblem(
            403, "problem.sensitive_document", detail="a sensitive document: the case owner and admins only", back=back
        )
    stream = await documents.read(stored.file_id)
    if stream is None:  # erased
        raise PageProblem(410, "problem.document_erased", detail="the file was erased", back=back)
    await audit(request, "download_document", str(case.id), detail)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in documents.chunks(stream._id):  # the file GridFS found
            yield chunk

    ascii_name = stored.name.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(stored.name)}"
    return StreamingResponse(
        body(),
        media_type=stored.content_type,
        headers={
            "Content-Disposition": disposition,
            "Content-Length": str(stored.size),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


def file_link(case_id: uuid.UUID, item: str, file_id: str) -> str:
    return f"/console/cases/{case_id}/documents/{item}/files/{file_id}"
