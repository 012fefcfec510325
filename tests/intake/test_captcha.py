"""The ALTCHA human check against the real RabbitMQ and SecantusDB: the challenge, the solution as a form field or
a JSON key, every way a solution fails (the submission is still accepted, its event says so), and the pages."""

import json
import re
from typing import Any
from urllib.parse import urlencode

import pytest

from agency_shared.topology import AGREEMENTS_APPLICATION_SUBMITTED, NOTIFICATIONS_ENQUIRY_RECEIVED
from intake.main import create_app
from intake.settings import IntakeSettings
from tests.support import broker
from tests.support.apps import client, serving
from tests.support.captcha import TEST_COST, forged, solve, wrong
from tests.support.data import application, flat_form
from tests.support.events import ENQUIRY
from tests.support.settings import settings_with

PAGE = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}


@pytest.fixture
def altcha_settings(intake_settings: IntakeSettings) -> IntakeSettings:
    return settings_with(intake_settings, captcha="altcha", captcha_cost=TEST_COST, rate_limit="1000/minute")


async def human_checks(amqp_url: str, queue: str, count: int) -> list[str]:
    return [json.loads(m.body)["data"]["human_check"] for m in await broker.take(amqp_url, queue, count)]


async def test_the_challenge_is_fresh_signed_and_never_cached(altcha_settings: IntakeSettings) -> None:
    app = create_app(altcha_settings)
    async with serving(app), client(app) as http:
        first, second = await http.get("/v1/captcha/challenge"), await http.get("/v1/captcha/challenge")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.headers["cache-control"] == "no-store"
    challenge = first.json()
    assert challenge["parameters"]["algorithm"] == "PBKDF2/SHA-256"
    assert challenge["parameters"]["expiresAt"] > 0
    assert challenge["signature"] != second.json()["signature"]


async def test_a_solution_passes_as_a_form_field_and_as_a_json_key(
    altcha_settings: IntakeSettings, amqp_url: str
) -> None:
    app = create_app(altcha_settings)
    async with serving(app), client(app) as http:
        as_json = {**application(), "altcha": solve((await http.get("/v1/captcha/challenge")).json())}
        posted = await http.post("/v1/applications", json=as_json)
        pairs = [*flat_form(application()), ("altcha", solve((await http.get("/v1/captcha/challenge")).json()))]
        page = await http.post("/", content=urlencode(pairs), headers=PAGE)
        enquiry = {**ENQUIRY, "altcha": solve((await http.get("/v1/captcha/challenge")).json())}
        enquired = await http.post("/v1/enquiries", json=enquiry)
    assert [posted.status_code, page.status_code, enquired.status_code] == [202, 202, 202]
    assert await human_checks(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name, 2) == ["altcha", "altcha"]
    assert await human_checks(amqp_url, NOTIFICATIONS_ENQUIRY_RECEIVED.name, 1) == ["altcha"]


@pytest.mark.parametrize("failure", ["missing", "malformed", "bad signature", "expired", "wrong"])
async def test_a_submission_without_a_valid_solution_is_accepted_as_having_passed_none(
    altcha_settings: IntakeSettings, amqp_url: str, failure: str
) -> None:
    app = create_app(altcha_settings)
    async with serving(app), client(app) as http:
        solutions: dict[str, Any] = {
            "missing": None,
            "malformed": "bm90IGEgcGF5bG9hZA==",
            "bad signature": forged("not intake's key, but long enough anyway"),
            "expired": forged(altcha_settings.captcha_key(), expires_in=-5),
            "wrong": wrong(solve((await http.get("/v1/captcha/challenge")).json())),
        }
        body = application() if solutions[failure] is None else {**application(), "altcha": solutions[failure]}
        response = await http.post("/v1/applications", json=body)
    assert response.status_code == 202, response.text
    assert await human_checks(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name, 1) == ["none"]


async def test_a_solution_is_spent_once_across_replicas_sharing_the_database_but_a_keyed_retry_keeps_it(
    altcha_settings: IntakeSettings, amqp_url: str
) -> None:
    one, two = create_app(altcha_settings), create_app(altcha_settings)
    async with serving(one, two), client(one) as first, client(two) as second:
        solution = solve((await first.get("/v1/captcha/challenge")).json())
        keyed = {"Idempotency-Key": "retry-5f0c2a9e-7d41-4c8b"}
        answers = [
            await first.post("/v1/applications", json={**application(), "altcha": solution}, headers=keyed),
            await second.post("/v1/applications", json={**application(), "altcha": solution}, headers=keyed),
            await second.post("/v1/applications", json={**application(), "altcha": solution}),
            await first.post("/v1/enquiries", json={**ENQUIRY, "altcha": solution}),
        ]
    assert [a.status_code for a in answers] == [202, 202, 202, 202]
    # The keyed retry on the other replica is the same application; any other submission is a reuse.
    assert await human_checks(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name, 3) == ["altcha", "altcha", "none"]
    assert await human_checks(amqp_url, NOTIFICATIONS_ENQUIRY_RECEIVED.name, 1) == ["none"]


async def test_with_the_captcha_off_submissions_are_marked_off_and_there_is_no_challenge(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app = create_app(intake_settings)  # CAPTCHA=off, as every test not about it
    async with serving(app), client(app) as http:
        challenge = await http.get("/v1/captcha/challenge")
        posted = await http.post("/v1/applications", json={**application(), "altcha": "anything"})
        page = await http.get("/")
    assert challenge.status_code == 404
    assert challenge.json()["type"] == "/problems/captcha-off"
    assert posted.status_code == 202
    assert await human_checks(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name, 1) == ["off"]
    assert "altcha" not in page.text


def csp(header: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (d.split() for d in header.split(";") if d.strip())}


async def test_the_pages_load_the_vendored_widget_from_intake_under_the_same_policy(
    altcha_settings: IntakeSettings,
) -> None:
    app = create_app(altcha_settings)
    async with serving(app), client(app) as http:
        english, chinese = await http.get("/"), await http.get("/contact?lang=zh-CN")
        assets = {
            path: await http.get(path)
            for path in ("/static/altcha/altcha.min.js", "/static/altcha/zh-cn.js", "/static/altcha/pbkdf2.js",
                         "/static/altcha/altcha.css", "/static/captcha.js")
        }  # fmt: skip
    for page in (english, chinese):
        assert '<altcha-widget challenge="/v1/captcha/challenge" name="altcha"' in page.text
        assert '<script type="module" src="/static/altcha/altcha.min.js"></script>' in page.text
        assert '<script type="module" src="/static/captcha.js"></script>' in page.text
        policy = csp(page.headers["content-security-policy"])
        # Module scripts, the worker (worker-src falls back to script-src) and the challenge fetch are all 'self'.
        assert policy["script-src"] == ["'self'"]
        assert policy["connect-src"] == ["'self'"]
        assert "worker-src" not in policy
        assert not re.search(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)", page.text)
    assert 'language="en"' in english.text
    assert 'language="zh-cn"' in chinese.text
    assert '<script type="module" src="/static/altcha/zh-cn.js"></script>' in chinese.text
    for path, asset in assets.items():
        assert asset.status_code == 200, path
        expected = "text/css" if path.endswith(".css") else "javascript"
        assert expected in asset.headers["content-type"], path
