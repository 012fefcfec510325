"""The portal's documents: the checklist with each item's state (and, for a revision, the staff's reason) and an
upload form per outstanding item; the upload itself, streamed (``casework.documents.uploads``).

A refused upload answers its status with the reason in the client's language and the field at fault (JSON for a
client that asks for it), and stores nothing."""

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from casework.documents.handling import DocumentHandling
from casework.documents.inspection import DocumentLimits, RefusedDocument
from casework.documents.store import CaseDocuments, FileAbout
from casework.documents.uploads import CsrfRefused, receive_upload
from casework.i18n import ConsoleLocale, translate
from casework.portal.session import PortalClient, PortalRefusal, portal_links
from casework.settings import CaseworkSettings
from casework.web import templates

logger = logging.getLogger(__name__)
router = APIRouter(tags=["portal"])
DOCUMENTS_PATH = "/portal/documents"


def limits_of(settings: CaseworkSettings) -> DocumentLimits:
    return DocumentLimits(
        max_bytes=settings.document_max_bytes,
        max_pixels=settings.document_max_pixels,
        max_inflate_ratio=settings.document_max_inflate_ratio,
        max_inflated_bytes=settings.document_max_inflated_bytes,
    )


def _documents(request: Request) -> CaseDocuments:
    documents: CaseDocuments = request.app.state.adapters.documents
    return documents


def _handling(request: Request) -> DocumentHandling:
    handling: DocumentHandling = request.app.state.adapters.document_handling
    return handling


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def portal_page(
    request: Request, template: str, locale: ConsoleLocale, context: dict[str, Any], status_code: int = 200
) -> Response:
    def t(key: str, **values: object) -> str:
        return translate(key, locale, **values)

    page = {"locale": locale, "t": t, **context}
    response = templates.TemplateResponse(request, template, page, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get(DOCUMENTS_PATH)
async def documents_page(request: Request, visitor: PortalClient) -> Response:
    items = await _documents(request).items_of(visitor.case.id)
    settings: CaseworkSettings = request.app.state.settings
    context = {
        "case": visitor.case,
        "items": items,
        "csrf_token": visitor.csrf_token,
        "max_megabytes": round(settings.document_max_bytes / 1_048_576, 1),
        "uploaded": request.query_params.get("uploaded", "")[:64],
    }
    return portal_page(request, "portal_documents.html", visitor.claim.locale, context)


@router.post(DOCUMENTS_PATH + "/{item}")
async def upload(request: Request, item: str, visitor: PortalClient) -> Response:
    """One file for the outstanding checklist item ``item``; back to the checklist (303), or the refusal."""
    locale = visitor.claim.locale
    documents = _documents(request)
    requested = await documents.item(visitor.case.id, item[:64])
    if requested is None:
        return _refused(request, locale, RefusedDocument(404, "unknown_item", "the case asked for no such document"))
    if not requested.outstanding:
        return _refused(request, locale, RefusedDocument(409, "not_outstanding", f"this document is {requested.state}"))
    links = portal_links(request)
    try:
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
    if not await _handling(request).received(visitor.case, requested.key, stored):
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


def _refused(request: Request, locale: ConsoleLocale, refused: RefusedDocument) -> Response:
    message = translate(f"portal_documents.refused.{refused.reason}", locale)
    if _wants_json(request):
        body = {"detail": refused.detail, "reason": refused.reason, "field": "file", "message": message}
        return JSONResponse(body, refused.status)
    context = {"message": message, "detail": refused.detail, "back": DOCUMENTS_PATH}
    return portal_page(request, "portal_documents_refused.html", locale, context, refused.status)


async def _portal_refusal(request: Request, exc: Exception) -> Response:
    """A portal request without a valid session (or a form without its CSRF token): nothing happens."""
    assert isinstance(exc, PortalRefusal)
    locale: ConsoleLocale = "zh-CN" if "zh" in request.headers.get("accept-language", "")[:2] else "en"
    message = translate(f"portal_documents.session.{exc.reason}", locale)
    if _wants_json(request):
        return JSONResponse({"detail": exc.reason, "message": message}, exc.status)
    context = {"message": message, "detail": exc.reason, "back": None}
    return portal_page(request, "portal_documents_refused.html", locale, context, exc.status)


def install(app: FastAPI) -> None:
    """The documents' portal routes, and the refusal page of a portal request without a session (unless the
    portal's own pages installed theirs)."""
    app.include_router(router)
    if PortalRefusal not in app.exception_handlers:
        app.add_exception_handler(PortalRefusal, _portal_refusal)
