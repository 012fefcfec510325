"""AgreementsClient against a peer that misbehaves over real HTTP (a small server on the loopback): 5xx, a
refusal, a hang, not JSON, nobody listening; each is a named exception, and the console shows a case anyway."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import SecretStr

from casework import agreements_client
from casework.access import Role
from casework.agreements_client import AgreementsClient, AgreementsRefused, AgreementsUnavailable
from casework.settings import CaseworkSettings
from tests.support.apps import http_server
from tests.support.casework import AGREEMENTS_TOKEN, running_casework
from tests.support.servers import free_port
from tests.support.settings import settings_with

SOME_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def misbehaving_agreements(seen: list[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/applications/{application_id}/receipt")
    async def receipt(application_id: str, request: Request) -> JSONResponse:
        seen.append(request.headers.get("authorization", ""))
        return JSONResponse({"detail": "database down"}, 503)

    @app.get("/v1/staff/applications/{application_id}")
    async def detail(application_id: str) -> JSONResponse:
        return JSONResponse({"detail": "no such application"}, 404)

    @app.get("/v1/staff/reacceptance")
    async def reacceptance() -> JSONResponse:
        return JSONResponse({"detail": "the cursor is not one this API gave out"}, 400)

    @app.get("/v1/ledger/verify")
    async def verify() -> PlainTextResponse:
        return PlainTextResponse("<html>proxy error</html>")

    @app.post("/v1/staff/enquiries/{enquiry_id}/erasure")
    async def erase(enquiry_id: str) -> JSONResponse:
        await asyncio.sleep(5)
        return JSONResponse({})

    return app


@pytest.fixture
async def peer() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []
    async with http_server(misbehaving_agreements(seen)) as url:
        yield url, seen


async def test_each_misbehaviour_is_a_named_exception(
    casework_settings: CaseworkSettings, peer: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, seen = peer
    monkeypatch.setattr(agreements_client, "READ_SECONDS", 0.5)
    client = AgreementsClient(settings_with(casework_settings, agreements_url=url))
    await client.open()
    try:
        with pytest.raises(AgreementsUnavailable, match="HTTP 503"):
            await client.receipt(SOME_ID)
        assert seen == [f"Bearer {AGREEMENTS_TOKEN}"]
        assert await client.application(SOME_ID) is None
        with pytest.raises(AgreementsRefused) as refused:
            await client.reacceptance("bogus")
        assert (refused.value.status, refused.value.detail) == (400, "the cursor is not one this API gave out")
        with pytest.raises(AgreementsUnavailable, match="not JSON"):
            await client.verify_ledger()
        with pytest.raises(AgreementsUnavailable, match="Timeout"):
            await client.erase_enquiry(SOME_ID, None)
    finally:
        await client.close()
    nobody = AgreementsClient(settings_with(casework_settings, agreements_url=f"http://127.0.0.1:{free_port()}"))
    await nobody.open()
    with pytest.raises(AgreementsUnavailable, match="ConnectError"):
        await nobody.verify_ledger()
    await nobody.close()
    with pytest.raises(AgreementsUnavailable, match="not open"):
        await nobody.verify_ledger()


async def test_a_case_is_shown_when_agreements_fails(
    casework_settings: CaseworkSettings, peer: tuple[str, list[str]]
) -> None:
    url, _ = peer
    settings = settings_with(casework_settings, agreements_url=url, agreements_api_token=SecretStr(AGREEMENTS_TOKEN))
    async with running_casework(settings) as casework, casework.signed_in(Role.ADMIN) as admin:
        case = await casework.open_application()
        page = await admin.http.get(f"/console/cases/{case.id}")
        assert page.status_code == 200
        assert 'id="receipt-unavailable"' in page.text
        assert (await admin.http.get("/console/reacceptance?cursor=bogus")).status_code == 422
        assert (await admin.http.get("/console/ledger")).status_code == 503


@pytest.mark.parametrize(
    "report",
    [
        {"checked": 12},  # no verdict
        {"ok": True},  # no count
        {"ok": "false", "checked": 12},  # a verdict as text: not read as either
        {"ok": True, "checked": "12"},
        {"ok": True, "checked": 12, "head_hash": 7},
        [True, 12],
        None,
    ],
)
async def test_a_malformed_ledger_report_is_unavailable_not_a_500(
    casework_settings: CaseworkSettings, report: object
) -> None:
    app = FastAPI()

    @app.get("/v1/ledger/verify")
    async def verify() -> JSONResponse:
        return JSONResponse(report)

    async with http_server(app) as url:
        client = AgreementsClient(settings_with(casework_settings, agreements_url=url))
        await client.open()
        try:
            with pytest.raises(AgreementsUnavailable, match="not a report"):
                await client.verify_ledger()
        finally:
            await client.close()
        settings = settings_with(
            casework_settings, agreements_url=url, agreements_api_token=SecretStr(AGREEMENTS_TOKEN)
        )
        async with running_casework(settings) as casework, casework.signed_in(Role.VIEWER) as viewer:
            page = await viewer.http.get("/console/ledger")
            assert page.status_code == 503
            assert "Traceback" not in page.text


async def test_dead_letters_without_the_broker_say_so(casework_settings: CaseworkSettings) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.ADMIN) as admin:
        casework.app.state.amqp_url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
        listing = await admin.http.get("/console/dead-letters")
        assert listing.status_code == 503
        assert "message broker cannot be reached" in listing.text
        replay = await admin.post("/console/dead-letters/replay", {"message_id": "m-1"})
        assert replay.status_code == 503
