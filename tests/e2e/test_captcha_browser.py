"""The ALTCHA widget in headless Chromium: served by intake, solved in its worker under the pages' policy, posted."""

import json

import pytest
from playwright.async_api import Browser, expect

import intake.main
from agency_shared.topology import NOTIFICATIONS_ENQUIRY_RECEIVED
from intake.settings import IntakeSettings
from tests.support import broker
from tests.support.apps import http_server
from tests.support.browser import needs_chromium
from tests.support.captcha import TEST_COST
from tests.support.settings import settings_with

pytestmark = needs_chromium


@pytest.mark.parametrize(
    ("lang", "label", "success"), [("en", "not a robot", "Thank you!"), ("zh-CN", "我不是机器人", "感谢您")]
)
async def test_the_widget_solves_its_challenge_under_the_policy_and_the_enquiry_passes_the_check(
    intake_settings: IntakeSettings, amqp_url: str, browser: Browser, lang: str, label: str, success: str
) -> None:
    settings = settings_with(intake_settings, captcha="altcha", captcha_cost=TEST_COST)
    problems: list[str] = []
    async with http_server(intake.main.create_app(settings)) as url:
        page = await browser.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        await page.goto(f"{url}/contact?lang={lang}")
        await page.fill("#f-name", "Wang Fang 王芳")
        await page.fill("#f-email", "wang.fang@example.cn")
        await page.check("#f-services-pay_ecommerce")
        await page.fill("#f-message", "We would like to open a WeChat shop.")
        widget = page.locator("altcha-widget")
        await expect(widget).to_contain_text(label)
        await widget.get_by_text(label).click()  # as a person ticks it: on its label
        await expect(page.locator("input[type=hidden][name=altcha]")).not_to_have_value("", timeout=30_000)
        await page.click("button[type=submit]")
        await expect(page.locator("#outcome")).to_contain_text(success)
        await page.close()
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    [message] = await broker.take(amqp_url, NOTIFICATIONS_ENQUIRY_RECEIVED.name)
    assert json.loads(message.body)["data"]["human_check"] == "altcha"


async def test_with_javascript_a_reused_key_shows_the_message_and_the_next_send_is_a_new_enquiry(
    intake_settings: IntakeSettings, browser: Browser
) -> None:
    async with http_server(intake.main.create_app(intake_settings)) as url:
        page = await browser.new_page()
        await page.goto(f"{url}/contact")
        first_key = await page.locator("input[name=idempotency_key]").input_value()
        # What this page sent before, with other answers (the visitor went back and edited).
        earlier = {"name": "Earlier", "email": "e@example.cn", "services": ["official_account"], "message": "First"}
        sent = await page.request.post(f"{url}/v1/enquiries", data=earlier, headers={"Idempotency-Key": first_key})
        assert sent.status == 202
        await page.fill("#f-name", "Wang Fang 王芳")
        await page.fill("#f-email", "wang.fang@example.cn")
        await page.check("#f-services-pay_ecommerce")
        await page.fill("#f-message", "Edited after going back.")
        await page.click("button[type=submit]")
        await expect(page.locator("#outcome")).to_contain_text("This form was sent before with different answers")
        assert await page.locator("input[name=idempotency_key]").input_value() != first_key
        await expect(page.locator("#f-message")).to_have_value("Edited after going back.")
        await page.click("button[type=submit]")
        await expect(page.locator("#outcome")).to_contain_text("Thank you!")
        await page.close()
