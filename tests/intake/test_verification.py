"""The verification link's page on intake, against the real RabbitMQ: opening it verifies nothing, its button does."""

import json
import re
import uuid
from datetime import timedelta

import pytest

from agency_chassis.email_verification import VerificationTokens
from agency_shared.events import utc_now
from agency_shared.topology import AGREEMENTS_EMAIL_VERIFIED
from intake.main import create_app
from intake.settings import IntakeSettings
from tests.support import broker
from tests.support.apps import client, serving

APPLICATION = uuid.uuid4()
ADDRESS = "li.wei@mapletea.example"


def tokens(settings: IntakeSettings) -> VerificationTokens:
    # What notifications signs with the same setting.
    secret = settings.email_verification_secret.get_secret_value()
    return VerificationTokens(secret, timedelta(days=settings.email_verification_days))


def fresh(settings: IntakeSettings, locale: str = "en") -> str:
    return tokens(settings).issue(APPLICATION, ADDRESS, locale, utc_now())  # type: ignore[arg-type]


def expired(settings: IntakeSettings) -> str:
    sent = utc_now() - timedelta(days=settings.email_verification_days, seconds=1)
    return tokens(settings).issue(APPLICATION, ADDRESS, "en", sent)


def tampered(settings: IntakeSettings) -> str:
    """Another application's payload under this token's signature."""
    signature = fresh(settings).rsplit(".", 1)[1]
    other = tokens(settings).issue(uuid.uuid4(), "eve@evil.example", "en", utc_now()).rsplit(".", 1)[0]
    return f"{other}.{signature}"


def assert_safe_page(response_headers: dict[str, str], html: str) -> None:
    assert response_headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
    assert response_headers["x-content-type-options"] == "nosniff"
    assert response_headers["cache-control"] == "no-store"
    assert not re.search(r"<script(?![^>]*\b(src=|type=\"application/json\"))", html)  # no inline script


async def test_opening_the_link_shows_the_button_in_the_links_language_and_publishes_nothing(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app = create_app(intake_settings)
    token = fresh(intake_settings, "zh-CN")
    async with serving(app), client(app) as http:
        page = await http.get(f"/verify/{token}")
        english = await http.get(f"/verify/{token}?lang=en")
    assert page.status_code == 200
    assert_safe_page(dict(page.headers), page.text)
    assert '<html lang="zh-CN">' in page.text
    assert "确认我的邮箱地址" in page.text
    assert f'<form method="post" action="/verify/{token}?lang=zh-CN">' in page.text
    assert "Confirm my email address" in english.text
    assert await broker.depth(amqp_url, AGREEMENTS_EMAIL_VERIFIED.name) == 0


async def test_pressing_the_button_publishes_email_verified_once_per_application_however_often(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app = create_app(intake_settings)
    token = fresh(intake_settings)
    async with serving(app), client(app) as http:
        first = await http.post(f"/verify/{token}", data={"confirm": "yes"}, headers={"X-Correlation-ID": "click-1"})
        second = await http.post(f"/verify/{token}", data={"confirm": "yes"})
    for response in (first, second):
        assert response.status_code == 200, response.text
        assert "Your email address is confirmed" in response.text
        assert_safe_page(dict(response.headers), response.text)
    messages = await broker.take(amqp_url, AGREEMENTS_EMAIL_VERIFIED.name, count=2)
    assert len({message.message_id for message in messages}) == 1  # one event, published twice
    event = json.loads(messages[0].body)
    assert messages[0].correlation_id == event["correlation_id"] == "click-1"
    assert event["event_type"] == "email.verified"
    data = event["data"]
    assert (data["application_id"], data["email"]) == (str(APPLICATION), ADDRESS)
    assert (data["client_ip"], data["user_agent"]) == ("203.0.113.7", "pytest-browser/1.0")


@pytest.mark.parametrize(("make", "status", "says"), [(expired, 410, "expired"), (tampered, 400, "not valid")])
async def test_an_expired_or_tampered_link_gets_a_clear_page_and_its_button_publishes_nothing(
    intake_settings: IntakeSettings, amqp_url: str, make: object, status: int, says: str
) -> None:
    app = create_app(intake_settings)
    token = make(intake_settings)  # type: ignore[operator]
    async with serving(app), client(app) as http:
        page = await http.get(f"/verify/{token}")
        pressed = await http.post(f"/verify/{token}", data={"confirm": "yes"})
        chinese = await http.get(f"/verify/{token}", headers={"Accept-Language": "zh-CN"})
    for response in (page, pressed):
        assert response.status_code == status
        assert says in response.text
        assert "<form" not in response.text
        assert_safe_page(dict(response.headers), response.text)
    assert chinese.status_code == status
    assert '<html lang="zh-CN">' in chinese.text or says == "expired"  # an expired link keeps its own language
    assert await broker.depth(amqp_url, AGREEMENTS_EMAIL_VERIFIED.name) == 0


async def test_a_button_pressed_from_another_site_is_refused(intake_settings: IntakeSettings, amqp_url: str) -> None:
    app = create_app(intake_settings)
    token = fresh(intake_settings)
    async with serving(app), client(app) as http:
        response = await http.post(
            f"/verify/{token}", data={"confirm": "yes"}, headers={"Origin": "https://evil.example"}
        )
    assert response.status_code == 403
    assert await broker.depth(amqp_url, AGREEMENTS_EMAIL_VERIFIED.name) == 0
