"""Liveness, readiness and metrics endpoints every service exposes."""

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from agency_chassis.metrics import exposition

ReadinessCheck = Callable[[], Awaitable[bool]]

# A probe must answer within its own timeout even when a dependency hangs.
CHECK_TIMEOUT_SECONDS = 2.0


def health_router(checks: Mapping[str, ReadinessCheck]) -> APIRouter:
    """``/healthz``: the process answers. ``/readyz``: every named dependency answers too (503 if not)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness",
        responses={200: {"description": "Ready"}, 503: {"description": "A dependency is not reachable"}},
    )
    async def readyz() -> JSONResponse:
        results = {name: await _safely(check) for name, check in checks.items()}
        ready = all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": results},
            status_code=200 if ready else 503,
        )

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics in the text format"}},
    )
    async def metrics() -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _safely(check: ReadinessCheck) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return await check()
    except Exception:
        return False
