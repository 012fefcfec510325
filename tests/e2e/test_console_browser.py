"""The staff console in headless Chromium, with agreements beside it (SecantusDB, RabbitMQ): an operator signs in,
finds a case, notes it, takes it, moves it on by keyboard, is told why an action is refused, reads the page in
Chinese; an admin erases an enquirer after confirming. Screenshots go to var/screenshots/console-*.png."""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from playwright.async_api import Browser, Page, expect
from pydantic import SecretStr

import agreements.main
import casework.main
from agreements.settings import AgreementsSettings
from casework.access import Role, StaffAccess
from casework.cases import Case
from casework.settings import CaseworkSettings
from casework.storage import MongoCases
from tests.support import broker
from tests.support.apps import http_server
from tests.support.browser import needs_chromium, screenshot
from tests.support.casework import AGREEMENTS_TOKEN, PASSWORD, enquiry_released, eventually
from tests.support.events import application_submitted, enquiry_received
from tests.support.settings import settings_with

pytestmark = needs_chromium


@dataclass
class Console:
    url: str
    access: StaffAccess
    cases: MongoCases
    amqp_url: str

    async def opened(self, subject: object) -> Case:
        async def found() -> Case | None:
            cases = await self.cases.of_subject(subject)  # type: ignore[arg-type]
            return cases[0] if cases else None

        return await eventually(found)


@pytest.fixture
async def console(
    agreements_settings: AgreementsSettings, casework_settings: CaseworkSettings, amqp_url: str
) -> AsyncIterator[Console]:
    staff_api = settings_with(agreements_settings, staff_api_token=SecretStr(AGREEMENTS_TOKEN))
    async with http_server(agreements.main.create_app(staff_api)) as agreements_url:
        # Plain HTTP on the loopback: the session cookie cannot be Secure here.
        settings = settings_with(casework_settings, agreements_url=agreements_url, session_cookie_secure=False)
        app = casework.main.create_app(settings)
        async with http_server(app) as url:
            yield Console(url, app.state.access, app.state.adapters.cases, amqp_url)


async def sign_in(page: Page, console: Console, email: str) -> None:
    await page.goto(f"{console.url}/console/cases")
    await expect(page).to_have_url(re.compile(r"/console/login"))
    await page.get_by_label(re.compile("email", re.I)).fill(email)
    await page.get_by_label(re.compile("password", re.I)).fill(PASSWORD)
    await page.get_by_label(re.compile("password", re.I)).press("Enter")
    await expect(page).to_have_url(re.compile(r"/console/cases$"))


async def act_by_keyboard(page: Page, action: str, reason: str) -> None:
    """Fill an action's reason and press its button from the keyboard alone (Tab to it, then Enter)."""
    form = page.locator(f'form[data-action="{action}"]')
    await form.get_by_label("Reason").focus()
    await page.keyboard.type(reason)
    await page.keyboard.press("Tab")
    await expect(form.get_by_role("button")).to_be_focused()
    await page.keyboard.press("Enter")
    await page.wait_for_load_state()


async def test_an_operator_works_a_case_and_reads_it_in_chinese(console: Console, browser: Browser) -> None:
    submitted = application_submitted()
    await broker.publish_events(console.amqp_url, [submitted])
    case = await console.opened(submitted.data.application_id)
    account, _ = await console.access.create_account(
        email="mei@agency.example", name="Mei 梅", role=Role.OPERATOR, password=PASSWORD
    )
    context = await browser.new_context(locale="en-GB")
    page = await context.new_page()
    await sign_in(page, console, "mei@agency.example")
    await screenshot(page, "console-list")

    await page.get_by_role("searchbox", name="Search").fill("maple tea")
    await page.get_by_role("searchbox", name="Search").press("Enter")
    await expect(page.get_by_role("link", name=case.reference)).to_be_visible()
    await page.get_by_role("link", name=case.reference).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Case {case.reference}")
    await expect(page.locator("#receipt-unavailable")).to_have_count(0)
    await screenshot(page, "console-case")

    await page.get_by_label("Note", exact=True).fill("Called the client: <b>documents</b> next week.")
    await page.get_by_role("button", name="Add note").click()
    await expect(page.locator(".entry-note blockquote")).to_have_text("Called the client: <b>documents</b> next week.")
    await page.locator("#owner-select").select_option(account.id)
    await page.get_by_role("button", name="Assign").click()
    await expect(page.locator("#case-owner")).to_have_text("Mei 梅")

    stale = await context.new_page()
    await stale.goto(page.url)
    await act_by_keyboard(page, "request_documents", "Checklist sent by email.")
    await expect(page.locator("#case-status")).to_have_attribute("data-status", "awaiting_documents")
    await act_by_keyboard(page, "documents_received", "All documents uploaded.")
    await act_by_keyboard(page, "request_fee", "Documents checked.")
    await expect(page.locator("#case-status")).to_have_attribute("data-status", "awaiting_fee")
    await screenshot(page, "console-worked")

    # A form from before those changes: the action is refused, and the page says what is allowed now.
    await stale.locator('form[data-action="request_documents"]').get_by_label("Reason").fill("Again")
    await stale.locator('form[data-action="request_documents"]').get_by_role("button").click()
    await expect(stale.get_by_role("heading", level=1)).to_have_text("Not possible now")
    await expect(stale.locator('.allowed li[data-action="fee_received"]')).to_be_visible()
    await expect(stale.get_by_role("alert")).to_contain_text(
        "“Request documents” is not allowed from the status “Awaiting fee”"
    )
    await screenshot(stale, "console-refused")

    await page.get_by_role("button", name="简体中文").click()
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"案件 {case.reference}")
    await expect(page.locator("#case-status")).to_have_text("等待付费")
    await screenshot(page, "console-case-zh")
    await context.close()


async def test_an_admin_erases_an_enquirer_after_confirming(console: Console, browser: Browser) -> None:
    released = enquiry_released(enquiry_received())
    await broker.publish_events(console.amqp_url, [released])
    case = await console.opened(released.data.enquiry_id)
    await console.access.create_account(email="root@agency.example", name="Admin", role=Role.ADMIN, password=PASSWORD)
    context = await browser.new_context(locale="en-GB")
    page = await context.new_page()
    await sign_in(page, console, "root@agency.example")
    await page.goto(f"{console.url}/console/cases/{case.id}")
    assert case.client_email is not None
    await expect(page.locator("main")).to_contain_text(case.client_email)
    await page.get_by_role("link", name="Erase personal data…").click()
    await screenshot(page, "console-erase")

    await page.get_by_label(re.compile("Type the case reference")).fill("E-NOTTHIS")
    await page.get_by_role("button", name="Erase personal data").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Please correct the input")
    assert (await console.cases.get(case.id)).erased_at is None  # type: ignore[union-attr]
    await page.go_back()
    await page.get_by_label(re.compile("Type the case reference")).fill(case.reference)
    await page.get_by_role("button", name="Erase personal data").click()
    # Requested, or already applied when casework's consumer was quicker than the redirect.
    await expect(page.get_by_role("status").first).to_contain_text(re.compile("Erasure requested|Personal data erased"))

    async def erased() -> Case | None:
        stored = await console.cases.get(case.id)
        return stored if stored is not None and stored.erased_at is not None else None

    await eventually(erased)
    await page.reload()
    await expect(page.locator("main")).not_to_contain_text(case.client_email)
    await expect(page.locator("main")).to_contain_text("Personal data erased at")
    await screenshot(page, "console-erased")
    await context.close()
