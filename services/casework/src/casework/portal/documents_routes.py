"""The portal's documents: the checklist with each item's state (and, for a revision, the staff's reason) and an
upload form per outstanding item; the upload itself, streamed (``casework.documents.uploads``).

A refused upload answers its status with the reason in the client's language and the field at fault (JSON for a
client that asks for it), and stores nothing. The pages are the portal's (``casework.portal.pages.render``): its
language, headers and base template."""

import asyncio
import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from casework.app_state import adapters_of
from casework.documents.inspection import DocumentLimits, RefusedDocument
from casework.documents.store import FileAbout
from casework.documents.uploads import CsrfRefused, receive_upload
from casework.i18n import translate
from casework.portal.pages import HEADERS, portal_locale, render
from casework.portal.session import PortalClient, PortalRefusal, portal_links
from casework.settings import CaseworkSettings

logger = logging.getLogger(__name__)
router = APIRouter(tags=["portal"])
DOCUMENTS_PATH = "/portal/documents"


# When a client refused for a busy replica (or its own uploads still running) may try again.
RETRY_AFTER_SECONDS = 60


def limits_of(settings: CaseworkSettings) -> DocumentLimits:
    return DocumentLimits(
        max_bytes=settings.document_max_bytes,
        max_pixels=settings.document_max_pixels,
        max_inflate_ratio=settings.document_max_inflate_ratio,
        max_inflated_bytes=settings.document_max_inflated_bytes,
        idle_seconds=settings.document_upload_idle_seconds,
        upload_seconds=settings.document_upload_seconds,
    )


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


@router.get(DOCUMENTS_PATH)
async def documents_page(request: Request, visitor: PortalClient) -> Response:
    items = await adapters_of(request).documents.items_of(visitor.case.id)
    settings: CaseworkSettings = request.app.state.settings
    context = {
        "case": visitor.case,
        "items": items,
        "csrf_token": visitor.csrf_token,
        "max_megabytes": round(settings.document_max_bytes / 1_048_576, 1),
        "uploaded": request.query_params.get("uploaded", "")[:64],
    }
    return render(request, "portal_documents.html", context, link_locale=visitor.claim.locale)


@router.post(DOCUMENTS_PATH + "/{item}")
async def upload(request: Request, item: str, visitor: PortalClient) -> Response:
    """One file for the outstanding checklist item ``item``; back to the checklist (303), or the refusal."""
    locale = visitor.claim.locale
    documents = adapters_of(request).documents
    requested = await documents.item(visitor.case.id, item[:64])
    if requested is None:
        return _refused(request, locale, RefusedDocument(404, "unknown_item", "the case asked for no such document"))
    if not requested.outstanding:
        return _refused(request, locale, RefusedDocument(409, "not_outstanding", f"this document is {requested.state}"))
    links = portal_links(request)
    try:
        async with adapters_of(request).upload_slots.slot(visitor.case.id):  # the others wait, their bodies unread
            stored = await receive_upload(
                request,
                documents,
                FileAbout(visitor.case.id, requested.key, ""),
                limits_of(request.app.state.settings),
                lambda offered: links.csrf_matches(visitor.token, offered),
            )
    except CsrfRefused as exc:
        logger.info("case %s: an upload without a valid CSRF token was refused (%s)", visitor.case.id, exc)
        raise PortalRefusal("csrf", 403) from None
    except RefusedDocument as refused:
        logger.info("case %s: an upload for %s refused: %s %s", visitor.case.id, item, refused.status, refused.detail)
        return _refused(request, locale, refused)
    try:
        taken = await adapters_of(request).document_handling.received(visitor.case, requested.key, stored)
    except BaseException:  # the database went away, or the request was cancelled: no file without its record
        await asyncio.shield(documents.delete_unless_recorded(visitor.case.id, requested.key, stored.file_id))
        raise
    if not taken:
        await documents.delete_file(stored.file_id)
        return _refused(request, locale, RefusedDocument(409, "not_outstanding", "this document is no longer awaited"))
    logger.info("case %s: %s received (%d bytes, %s)", visitor.case.id, requested.key, stored.size, stored.sha256)
    if _wants_json(request):
        return JSONResponse(
            {"document_id": stored.file_id, "sha256": stored.sha256, "size": stored.size,
             "content_type": stored.content_type, "name": stored.name},
            201,
        )  # fmt: skip
    return RedirectResponse(f"{DOCUMENTS_PATH}?uploaded={requested.key}", 303)


def _refused(request: Request, link_locale: str, refused: RefusedDocument) -> Response:
    """The refusal in the client's language (as every portal page chooses it), naming the field at fault."""
    message = translate(f"portal_documents.refused.{refused.reason}", portal_locale(request, link_locale))
    if _wants_json(request):
        body = {"detail": refused.detail, "reason": refused.reason, "field": "file", "message": message}
        return JSONResponse(body, refused.status, headers={**HEADERS, **_retry_after(refused)})
    # The language switch leads back to the checklist (the upload's address answers POST only).
    context = {"message": message, "detail": refused.detail, "field": "file", "back": DOCUMENTS_PATH,
               "switch_path": DOCUMENTS_PATH}  # fmt: skip
    response = render(request, "portal_documents_refused.html", context, refused.status, link_locale)
    response.headers.update(_retry_after(refused))
    return response


def _retry_after(refused: RefusedDocument) -> dict[str, str]:
    """A refusal for being busy (503, or the case's other uploads: 429) says when to try again."""
    return {"Retry-After": str(RETRY_AFTER_SECONDS)} if refused.status in (429, 503) else {}


def install(app: FastAPI) -> None:
    """The documents' portal routes (a request without a session is refused by ``casework.portal.pages``)."""
    app.include_router(router)
