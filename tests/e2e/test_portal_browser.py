"""The client portal in headless Chromium, with agreements and casework on real servers (SecantusDB, RabbitMQ): a
client opens their personal link, reads their status in Chinese, switches to English, re-accepts the agreement's
new version, and the re-acceptance is in agreements' ledger; a tampered link shows the page that offers a new one.
Screenshots go to var/screenshots/portal-*.png."""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, expect
from pydantic import SecretStr
from pymongo import AsyncMongoClient

import agreements.main
import casework.main
from agency_chassis.portal_links import PortalLinks
from agency_shared.events import utc_now
from agreements.settings import AgreementsSettings
from casework.cases import Case, case_id_for
from casework.handling import Actor, CaseHandling
from casework.settings import CaseworkSettings
from casework.storage import MongoCases
from tests.support import broker
from tests.support.apps import http_server
from tests.support.browser import needs_chromium, screenshot
from tests.support.casework import AGREEMENTS_TOKEN, eventually
from tests.support.events import application_submitted
from tests.support.portal import NEW_VERSION, catalog_with_new_version
from tests.support.settings import settings_with

pytestmark = needs_chromium
CONSULTANT = Actor(id="staff-wang", email="wang@agency.example", name="王小明")


@dataclass
class Portal:
    url: str
    links: PortalLinks
    cases: MongoCases
    handling: CaseHandling
    amqp_url: str
    ledger: Any  # agreements' ledger collection


@pytest.fixture
async def portal(
    agreements_settings: AgreementsSettings,
    casework_settings: CaseworkSettings,
    amqp_url: str,
    mongo: AsyncMongoClient[dict[str, Any]],
    tmp_path: Path,
) -> AsyncIterator[Portal]:
    folder = catalog_with_new_version(tmp_path / "agreements")
    agreements_app = agreements.main.create_app(
        settings_with(agreements_settings, agreements_dir=folder, staff_api_token=SecretStr(AGREEMENTS_TOKEN))
    )
    async with http_server(agreements_app) as agreements_url:
        # Plain HTTP on the loopback: the session cookie cannot be Secure here.
        settings = settings_with(casework_settings, agreements_url=agreements_url, session_cookie_secure=False)
        app = casework.main.create_app(settings)
        async with http_server(app) as url:
            adapters = app.state.adapters
            ledger = mongo[agreements_settings.mongodb_db]["acceptance_ledger"]
            yield Portal(url, app.state.portal_links, adapters.cases, adapters.handling, amqp_url, ledger)


async def an_application_case(portal: Portal) -> Case:
    """An application accepted under version 1, recorded by agreements; its case opened by casework, with an owner."""
    submitted = application_submitted(locale="zh-CN")
    body = submitted.model_dump_json().encode()
    await broker.publish_raw(portal.amqp_url, body, submitted.routing_key, str(submitted.event_id))
    case_id = case_id_for(submitted.data.application_id)
    await eventually(lambda: portal.cases.get(case_id), timeout=60)
    return await portal.handling.assign_owner(case_id, CONSULTANT, CONSULTANT)


async def test_the_client_reads_the_status_in_chinese_and_reaccepts_the_new_version(
    portal: Portal, browser: Browser
) -> None:
    case = await an_application_case(portal)
    token = portal.links.issue(case.id, 0, "zh-CN", utc_now())
    page = await browser.new_page()
    await page.goto(f"{portal.url}/portal/open?t={token}")
    await expect(page).to_have_url(f"{portal.url}/portal")  # the token left the address bar
    assert "portal=" not in await page.evaluate("document.cookie")  # HttpOnly
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    await expect(page.get_by_role("heading", level=1)).to_have_text("您的申请进度")
    await expect(page.locator("#status-text")).to_have_text("您的顾问 王小明 将负责跟进。")
    await expect(page.get_by_role("link", name="材料：查看清单并上传")).to_have_attribute("href", "/portal/documents")
    await expect(page.locator("#reacceptance")).to_contain_text("通过客户门户上传的材料仅用于本次认证。")
    await screenshot(page, "portal-status-zh-CN")

    await page.get_by_role("button", name="接受新版本").click()  # the box is not ticked: the browser keeps the form
    await expect(page).to_have_url(f"{portal.url}/portal")
    await page.get_by_label(f"我已阅读并接受服务协议（版本 {NEW_VERSION}）。").check()
    await page.get_by_role("button", name="接受新版本").click()
    await expect(page.locator("#reacceptance-recorded")).to_have_text(
        f"您对服务协议（版本 {NEW_VERSION}）的接受已记录。谢谢。"
    )
    await screenshot(page, "portal-reaccepted-zh-CN")

    query = {"application_id": str(case.application_id), "kind": f"reacceptance:{NEW_VERSION}"}
    link = await eventually(lambda: portal.ledger.find_one(query), timeout=60)
    assert link["record"]["agreement_version"] == NEW_VERSION

    await page.get_by_role("link", name="English").click()
    await expect(page.locator("html")).to_have_attribute("lang", "en")
    await expect(page.locator("#status-text")).to_have_text("A consultant, 王小明, is handling your application.")
    await page.goto(f"{portal.url}/portal")
    await expect(page.locator("html")).to_have_attribute("lang", "en")  # the choice sticks
    await page.close()


async def test_a_tampered_link_shows_the_page_that_offers_a_new_one(portal: Portal, browser: Browser) -> None:
    case = await an_application_case(portal)
    token = portal.links.issue(case.id, 0, "zh-CN", utc_now())
    context = await browser.new_context(locale="zh-CN")
    page = await context.new_page()
    await page.goto(f"{portal.url}/portal/open?t={token[:-3]}xyz")
    await expect(page.locator("#refusal")).to_have_attribute("data-reason", "invalid")
    await expect(page.get_by_role("heading", level=1)).to_have_text("此链接无效")
    await page.get_by_label("邮箱地址").fill("li.wei@mapletea.example")
    await page.get_by_role("button", name="发送链接").click()
    await expect(page.locator("#link-sent")).to_contain_text("新链接已发送至该邮箱")
    await screenshot(page, "portal-new-link-zh-CN")
    assert re.search(r"/portal/link$", page.url)
    await context.close()
