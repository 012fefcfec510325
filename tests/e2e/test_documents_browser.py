"""The documents in a real browser (headless Chromium, casework served by uvicorn): the client opens the portal's
checklist, picks a file and uploads it through the form, and sees it listed; the staff member sees it on the case's
page with its hash."""

import hashlib
from pathlib import Path

from playwright.async_api import Browser, expect

import casework.main
from casework.access import Role
from casework.handling import Actor
from casework.portal.session import COOKIE
from casework.settings import CaseworkSettings
from tests.support.apps import http_server
from tests.support.browser import needs_chromium, screenshot
from tests.support.casework import PASSWORD, Casework
from tests.support.documents import png, portal_token
from tests.support.settings import settings_with

pytestmark = needs_chromium


async def test_a_client_uploads_through_the_portal_and_staff_see_it(
    casework_settings: CaseworkSettings, browser: Browser, tmp_path: Path
) -> None:
    # Plain HTTP on the loopback: the session cookie cannot be Secure here.
    settings = settings_with(casework_settings, session_cookie_secure=False)
    app = casework.main.create_app(settings)
    async with http_server(app) as url:
        casework_ = Casework(app, settings)
        operator = await casework_.account(Role.OPERATOR, "anna.chen@agency.example", "Anna Chen 陈安娜")
        case = await casework_.open_application(owner=operator.id, owner_name=operator.name)
        await app.state.adapters.document_handling.request(
            case.id,
            ["certificate_of_incorporation", "contact_id"],
            "请上传清晰扫描件",
            Actor(operator.id, operator.email, operator.name),
        )
        scan = tmp_path / "营业执照 scan.png"
        scan.write_bytes(png(320, 200))

        client = await browser.new_context(locale="zh-CN")
        await client.add_cookies([{"name": COOKIE, "value": portal_token(settings, case.id), "url": url}])
        page = await client.new_page()
        await page.goto(f"{url}/portal/documents")
        item = page.locator('li.document[data-item="certificate_of_incorporation"]')
        await expect(item).to_have_attribute("data-state", "requested")
        await expect(page.locator("blockquote.note").first).to_have_text("请上传清晰扫描件")
        await item.locator('input[type="file"]').set_input_files(str(scan))
        await item.locator('button[type="submit"]').click()
        await expect(page.locator("#uploaded")).to_be_visible()
        item = page.locator('li.document[data-item="certificate_of_incorporation"]')
        await expect(item).to_have_attribute("data-state", "received")
        await expect(item.locator("li.file")).to_contain_text("营业执照 scan.png")
        await screenshot(page, "portal-documents-uploaded")
        await client.close()

        started = await casework_.access.sign_in(operator.email, PASSWORD, "127.0.0.1")
        assert started.token is not None
        staff = await browser.new_context()
        await staff.add_cookies([{"name": casework_.access.session_cookie, "value": started.token, "url": url}])
        page = await staff.new_page()
        await page.goto(f"{url}/console/cases/{case.id}")
        row = page.locator('tr.document[data-item="certificate_of_incorporation"]')
        await expect(row).to_have_attribute("data-state", "received")
        digest = hashlib.sha256(scan.read_bytes()).hexdigest()
        await expect(row.locator(f'li.file[data-sha256="{digest}"] a')).to_have_text("营业执照 scan.png")
        await expect(page.locator('tr.document[data-item="contact_id"]')).to_have_attribute("data-state", "requested")
        await screenshot(page, "console-case-documents")
        async with page.expect_download() as download_info:
            await row.locator("li.file a").click()
        download = await download_info.value
        saved = tmp_path / "downloaded.png"
        await download.save_as(str(saved))
        assert saved.read_bytes() == scan.read_bytes()
        await staff.close()
