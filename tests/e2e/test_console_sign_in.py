"""The console's sign-in in headless Chromium, by keyboard only: a refusal the screen reader is pointed to, then a
sign-in that lands on the page asked for with an HttpOnly session cookie; the language switch; sign-out."""

from typing import Any

import pytest
from playwright.async_api import Browser, expect
from pymongo import AsyncMongoClient

from casework.access import Role
from tests.support.apps import http_server
from tests.support.browser import needs_chromium
from tests.support.console import PASSWORD, console

pytestmark = needs_chromium


async def test_sign_in_and_out_by_keyboard(
    browser: Browser, mongo: AsyncMongoClient[dict[str, Any]], mongo_url: str, mongo_db: str
) -> None:
    # Plain HTTP on loopback: the cookies are not Secure here (SESSION_COOKIE_SECURE=false, as in a local run).
    async with console(mongo, mongo_url, mongo_db, session_cookie_secure=False) as c, http_server(c.app) as url:
        await c.staff(Role.ADMIN)
        page = await browser.new_page()
        await page.goto(f"{url}/console/audit?action=login")
        assert page.url.startswith(f"{url}/console/login?next=")

        email = page.get_by_label("Email")
        for _ in range(10):  # past the skip link and the language switch
            await page.keyboard.press("Tab")
            if await email.evaluate("e => e === document.activeElement"):
                break
        else:
            pytest.fail("the email field cannot be reached by keyboard")
        await page.keyboard.type("admin@agency.example")
        await page.keyboard.press("Tab")
        await page.keyboard.type("not the password at all")
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("alert")).to_contain_text("The email or password is wrong")
        await expect(page.get_by_label("Email")).to_have_attribute("aria-describedby", "login-error")

        await page.get_by_label("Password").focus()
        await page.keyboard.type(PASSWORD)
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{url}/console/audit?action=login")
        await expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
        session = next(cookie for cookie in await page.context.cookies() if cookie["name"] == "console_session")
        assert session["httpOnly"]
        assert session["sameSite"] == "Lax"

        await page.get_by_role("button", name="简体中文").click()
        await expect(page.get_by_role("heading", name="审计日志")).to_be_visible()
        await page.get_by_role("button", name="退出登录").click()
        await page.wait_for_url(f"{url}/console/login")
        assert await mongo[mongo_db]["casework_sessions"].count_documents({}) == 0
