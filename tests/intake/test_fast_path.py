"""JSON submissions take the fast path; everything else the documented FastAPI routes: same answers either way."""

from typing import Any

import pytest

from intake import api
from intake.main import create_app
from intake.settings import IntakeSettings
from tests.support.apps import client, serving
from tests.support.data import application


async def _routes_must_not_run(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the FastAPI route ran for a JSON submission")


async def test_json_submissions_are_answered_without_the_fastapi_routes(
    intake_settings: IntakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(intake_settings)
    # The routes are looked up by endpoint when the app is built; only the call is replaced.
    for route in app.routes:
        if getattr(route, "endpoint", None) in (api.submit_application, api.submit_enquiry):
            monkeypatch.setattr(route, "app", _routes_must_not_run)
    async with serving(app), client(app) as http:
        accepted = await http.post("/v1/applications", json=application())
        invalid = await http.post("/v1/applications", json=application({"company.country": "XX"}))
    assert accepted.status_code == 202, accepted.text
    assert accepted.headers["content-type"] == "application/json"
    assert "X-Correlation-ID" in accepted.headers
    assert invalid.status_code == 422
    assert invalid.headers["content-type"] == "application/problem+json"
    assert invalid.json()["errors"][0]["field"] == "company.country"


async def test_form_posts_and_other_media_types_still_take_the_routes(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        unsupported = await http.post("/v1/applications", content=b"<xml/>", headers={"Content-Type": "text/xml"})
        metrics = (await http.get("/metrics")).text
    assert unsupported.status_code == 415
    assert unsupported.json()["type"] == "/problems/unsupported-media-type"
    assert 'route="/v1/applications"' in metrics
