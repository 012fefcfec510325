"""The staff console's pages (server-rendered, plain forms): cases, erasure, agreements' lists, dead letters."""

from fastapi import APIRouter

from casework.console import agreements_pages, case_pages, case_work, dead_letters, documents_pages, erasure, webhooks

router = APIRouter(tags=["console"])
for part in (case_pages, case_work, erasure, agreements_pages, dead_letters, documents_pages, webhooks):
    router.include_router(part.router)

__all__ = ["router"]
