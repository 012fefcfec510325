"""JSON submissions take the fast path; everything else the documented FastAPI routes: same answers either way."""

import gc

import httpx
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from bench.ceiling_intake import DiscardingSink
from intake.guards import FORM
from intake.main import create_app
from intake.settings import IntakeSettings
from tests.support.apps import client, serving
from tests.support.data import application


def routed(app: FastAPI) -> tuple[httpx.AsyncClient, list[Scope]]:
    """A client of ``app`` that keeps every request's scope: FastAPI's routing writes ``endpoint`` into it."""
    scopes: list[Scope] = []

    async def spy(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=spy, client=("203.0.113.7", 51515))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver"), scopes


async def test_json_submissions_are_answered_without_the_fastapi_routes(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    http, scopes = routed(app)
    async with serving(app), http:
        accepted = await http.post("/v1/applications", json=application())
        invalid = await http.post("/v1/applications", json=application({"company.country": "XX"}))
        form_post = await http.post("/v1/applications", content=b"account.name=x", headers={"Content-Type": FORM})
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["content-type"] == "application/json"
    assert "X-Correlation-ID" in accepted.headers
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    assert invalid.json()["errors"][0]["field"] == "company.country"
    # The JSON posts never reached FastAPI's router; the form post (the control) did.
    assert form_post.status_code == 422
    assert ["endpoint" in scope for scope in scopes] == [False, False, True]
    assert all(scope["route"].path == "/v1/applications" for scope in scopes)  # metrics label by it


async def test_the_benchmark_ceiling_takes_every_submission_without_the_broker(
    intake_settings: IntakeSettings,
) -> None:
    # No lifespan: the broker publisher never connects, so a submission it took would get 503.
    sink = DiscardingSink()
    async with client(create_app(intake_settings, sink=sink)) as http:
        accepted = await http.post("/v1/applications", json=application())
    assert accepted.status_code == 202, accepted.text
    assert sink.discarded == 1


async def test_what_start_up_made_is_kept_from_the_collector_while_intake_serves(
    intake_settings: IntakeSettings,
) -> None:
    app = create_app(intake_settings)
    async with serving(app):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


async def test_form_posts_and_other_media_types_still_take_the_routes(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        unsupported = await http.post("/v1/applications", content=b"<xml/>", headers={"Content-Type": "text/xml"})
        metrics = (await http.get("/metrics")).text
    assert unsupported.status_code == 415
    assert unsupported.json()["type"] == "/problems/unsupported-media-type"
    assert 'route="/v1/applications"' in metrics
