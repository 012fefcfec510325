"""Both forms in headless Chromium, in both languages, with and without JavaScript, down to MongoDB and email."""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Page, expect
from pymongo import AsyncMongoClient

import agreements.main
import intake.main
import notifications.main
from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support.apps import http_server, serving
from tests.support.browser import needs_chromium, screenshot
from tests.support.captcha import TEST_COST
from tests.support.data import STAFF
from tests.support.servers import Inbox
from tests.support.settings import settings_with
from tests.support.verification import link_in

pytestmark = needs_chromium


@dataclass
class System:
    url: str
    inbox: Inbox
    mongo: AsyncMongoClient[dict[str, Any]]
    db: str

    async def record(self, application_id: str) -> dict[str, Any] | None:
        return await self.mongo[self.db]["applications"].find_one({"application_id": application_id})


@pytest.fixture
async def system(
    request: pytest.FixtureRequest,
    intake_settings: IntakeSettings,
    agreements_settings: AgreementsSettings,
    notifications_settings: NotificationsSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
    inbox: Inbox,
) -> AsyncIterator[System]:
    consumers = (agreements.main.create_app(agreements_settings), notifications.main.create_app(notifications_settings))
    # CAPTCHA=off unless a test asks for the check (`indirect` parameter "altcha"): it is not what most are about.
    captcha = getattr(request, "param", "off")
    front = settings_with(intake_settings, captcha=captcha, captcha_cost=TEST_COST)
    async with serving(*consumers), http_server(intake.main.create_app(front)) as url:
        yield System(url, inbox, mongo, agreements_settings.mongodb_db)


async def fill_application(page: Page, email: str) -> None:
    await page.select_option("#f-account-type", "service")
    await page.fill("#f-account-name", "Maple Tea 枫叶茶")
    await page.fill("#f-account-description", "Premium Canadian maple tea. 加拿大枫叶茶。")
    await page.fill("#f-operator-name", "Li Wei 李伟")
    await page.fill("#f-operator-email", email)
    await page.fill("#f-operator-phone", "+1 604 555 0199")
    await page.fill("#f-company-legal_name", "Maple Tea Trading Ltd. 枫叶茶贸易有限公司")
    await page.fill("#f-company-registration_number", "BC1234567")
    await page.select_option("#f-company-country", "CA")
    await page.fill("#f-company-address", "1000 Granville St\nVancouver")
    await page.fill("#f-notes", "Please call in the morning.\n上午联系。")
    await page.check("#f-agreement-accepted")


async def reference_on(page: Page) -> str:
    text = await page.locator("#outcome").inner_text()
    found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
    assert found, text
    return found.group(0)


@pytest.mark.parametrize("system", ["altcha"], indirect=True)
@pytest.mark.parametrize(
    ("locale", "success", "robot"),
    [
        ("en", "Thank you! Your submission has been received!", "not a robot"),
        ("zh-CN", "感谢您！我们已收到您的提交！", "我不是机器人"),
    ],
)
async def test_application_form_with_javascript(
    browser: Browser, system: System, locale: str, success: str, robot: str
) -> None:
    """The whole way as an applicant goes: the form, its CAPTCHA solved in Chromium, the emailed link, its button."""
    page = await browser.new_page()
    refused: list[str] = []  # what the pages' Content-Security-Policy blocked, as Chromium reports it
    page.on(
        "console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else None
    )
    await page.goto(f"{system.url}/")
    # The stylesheet loaded under the policy: it is what puts the honeypot out of sight.
    honeypot = await page.locator("#f-fax").bounding_box()
    assert honeypot is not None
    assert honeypot["x"] < 0, honeypot
    if locale == "zh-CN":
        await page.click("a[hreflang=zh-CN]")  # the language switch
        await expect(page.locator("h1")).to_have_text("微信公众号申请表")
    client = f"li.wei+{locale.lower()}@mapletea.example"
    await fill_application(page, client)
    # The ALTCHA widget, served by intake, solves its challenge in a worker when ticked.
    widget = page.locator("altcha-widget")
    await widget.get_by_text(robot).click()
    await expect(page.locator("input[type=hidden][name=altcha]")).not_to_have_value("", timeout=30_000)
    await screenshot(page, f"application-{locale}-filled")
    url_before = page.url
    await page.click("button[type=submit]")
    await expect(page.locator("#outcome")).to_contain_text(success)
    assert page.url == url_before  # no reload: fetch did it
    await screenshot(page, f"application-{locale}-success")
    assert refused == []
    application_id = await reference_on(page)

    await system.inbox.wait_for(lambda _: len(system.inbox.to(client)) == 1 and all(system.inbox.to(s) for s in STAFF))
    record = await system.record(application_id)
    assert record is not None
    assert record["locale"] == locale
    assert record["application"]["company"]["country"] == "CA"
    assert "HeadlessChrome" in record["acceptance"]["user_agent"]
    # Staff are told at once, and that the check was passed.
    for staff in STAFF:
        [staff_email] = system.inbox.to(staff)
        assert "passed (ALTCHA proof of work)" in staff_email.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    # The address is verified as the applicant does it: the link from the email, then its button.
    [verification] = system.inbox.to(client)
    path = urlsplit(link_in(verification)).path
    await page.goto(f"{system.url}{path}")
    await expect(page.locator("html")).to_have_attribute("lang", locale)
    await screenshot(page, f"verify-{locale}")
    await page.click("button[type=submit]")
    confirmed = "Your email address is confirmed" if locale == "en" else "您的邮箱地址已确认"
    await expect(page.locator("#outcome")).to_contain_text(confirmed)
    await screenshot(page, f"verify-{locale}-confirmed")
    assert refused == []
    await system.inbox.wait_for(lambda _: len(system.inbox.to(client)) == 2)
    confirmation = system.inbox.to(client)[1]
    assert confirmation["Subject"].startswith(success[:6] if locale == "zh-CN" else "Thank you!")


async def test_application_form_without_javascript(browser: Browser, system: System) -> None:
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    await page.goto(f"{system.url}/?lang=en")
    await fill_application(page, "no-js@mapletea.example")
    await page.click("button[type=submit]")
    await expect(page.locator("#outcome")).to_contain_text("Thank you! Your submission has been received!")
    await screenshot(page, "application-en-no-javascript-success")
    application_id = await reference_on(page)
    await system.inbox.wait_for(lambda _: len(system.inbox.to("no-js@mapletea.example")) == 1)
    assert await system.record(application_id) is not None
    await context.close()


@pytest.mark.parametrize("javascript", [True, False])
async def test_invalid_application_shows_errors_beside_the_fields(
    browser: Browser, system: System, javascript: bool
) -> None:
    context = await browser.new_context(java_script_enabled=javascript)
    page = await context.new_page()
    await page.goto(f"{system.url}/?lang=zh-CN")
    await fill_application(page, "not-an-email")
    await page.fill("#f-operator-phone", "12345")
    await page.uncheck("#f-agreement-accepted")
    await page.click("button[type=submit]")
    await expect(page.locator("#outcome")).to_contain_text("哎呀！提交表单时出错了 :(")
    for field in ("operator-email", "operator-phone", "agreement-accepted"):
        await expect(page.locator(f"#f-{field}")).to_have_attribute("aria-invalid", "true")
        await expect(page.locator(f"#e-{field}")).not_to_be_empty()
    await expect(page.locator("#e-agreement-accepted")).to_have_text(
        "此项为必填项" if not javascript else re.compile(".+")
    )
    await expect(page.locator("#f-account-name")).to_have_value("Maple Tea 枫叶茶")
    await screenshot(page, f"application-zh-CN-errors-{'js' if javascript else 'no-js'}")
    assert not system.inbox.messages
    await context.close()


@pytest.mark.parametrize(("locale", "javascript"), [("en", True), ("zh-CN", True), ("zh-CN", False)])
async def test_contact_form(browser: Browser, system: System, locale: str, javascript: bool) -> None:
    context = await browser.new_context(java_script_enabled=javascript)
    page = await context.new_page()
    await page.goto(f"{system.url}/contact?lang={locale}")
    enquirer = f"wang.fang+{locale.lower()}@example.cn"
    await page.fill("#f-name", "王芳")
    await page.fill("#f-email", enquirer)
    await page.fill("#f-company", "Fang Trading")
    await page.check("#f-services-pay_ecommerce")
    await page.check("#f-services-china_marketing")
    await page.fill("#f-message", "我们想在微信上开店。")
    await screenshot(page, f"contact-{locale}-filled")
    await page.click("button[type=submit]")
    success = "Thank you! Your submission has been received!" if locale == "en" else "感谢您！我们已收到您的提交！"
    await expect(page.locator("#outcome")).to_contain_text(success)
    await screenshot(page, f"contact-{locale}-{'js' if javascript else 'no-js'}-success")
    await system.inbox.wait_for(
        lambda _: len(system.inbox.to(enquirer)) == 1 and all(system.inbox.to(s) for s in STAFF)
    )
    [autoresponse] = system.inbox.to(enquirer)
    assert ("感谢您" if locale == "zh-CN" else "Thank you!") in autoresponse["Subject"]
    await context.close()
