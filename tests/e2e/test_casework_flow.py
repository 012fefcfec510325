"""The four services on real servers: an application submitted at intake becomes a case in casework; a staff member
signs in to the console, takes the case and moves it; the client reads the news in their language, and the case's
timeline shows each email the client got."""

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from pymongo import AsyncMongoClient

import agreements.main
import casework.main
import intake.main
import notifications.main
from agreements.settings import AgreementsSettings
from casework.access import Role, StaffAccess
from casework.settings import CaseworkSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support.apps import client, http_server, serving
from tests.support.casework import AGREEMENTS_TOKEN
from tests.support.console import PASSWORD, csrf_in, signed_in_token
from tests.support.data import application
from tests.support.servers import Inbox
from tests.support.settings import settings_with

CLIENT = "li.wei@mapletea.example"
OPERATOR = "anna.chen@agency.example"
# What the staff member writes as the reason: their own note, never for the client's eyes.
INTERNAL_REASON = "INTERNAL: client was rude on the phone; chase the CFO instead"


@dataclass
class System:
    front: httpx.AsyncClient  # intake's API
    console: httpx.AsyncClient  # casework's console, as a browser over HTTPS
    cases: Any  # casework's collection, to wait for the case

    async def case_id(self, application_id: str) -> str:
        query = {"application_id": application_id}
        async with asyncio.timeout(30):
            while (case := await self.cases.find_one(query, {"_id": 1})) is None:  # noqa: ASYNC110 - a database
                await asyncio.sleep(0.05)
        return str(case["_id"])

    async def case_emails(self, case_id: str) -> int:
        """How many of the client's case emails the case's timeline shows sent."""
        case = await self.cases.find_one({"_id": case_id}, {"history": 1})
        lines = case["history"] if case else []
        return sum(1 for line in lines if line["kind"] == "email" and line["template"] == "case_status")


@pytest.fixture
async def system(
    intake_settings: IntakeSettings,
    agreements_settings: AgreementsSettings,
    notifications_settings: NotificationsSettings,
    casework_settings: CaseworkSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[System]:
    # agreements knows casework by its own token; casework reaches agreements' staff API over HTTP.
    tokens = SecretStr(f"casework={AGREEMENTS_TOKEN}")
    agreements_app = agreements.main.create_app(settings_with(agreements_settings, staff_api_tokens=tokens))
    async with http_server(agreements_app) as agreements_url:
        casework_app = casework.main.create_app(settings_with(casework_settings, agreements_url=agreements_url))
        intake_app = intake.main.create_app(intake_settings)
        async with serving(intake_app, notifications.main.create_app(notifications_settings), casework_app):
            access: StaffAccess = casework_app.state.access
            await access.create_account(email=OPERATOR, name="Anna Chen 陈安娜", role=Role.OPERATOR, password=PASSWORD)
            transport = httpx.ASGITransport(app=casework_app, client=("203.0.113.50", 50123))
            async with (
                client(intake_app) as front,
                httpx.AsyncClient(transport=transport, base_url="https://testserver") as console,
            ):
                yield System(front, console, mongo[casework_settings.mongodb_db]["casework_cases"])


def client_news(inbox: Inbox) -> list[tuple[EmailMessage, str]]:
    """The case emails the client got, as a reader parses them, with their plain text."""
    found = []
    for raw in inbox.raw:
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        if CLIENT in str(message["To"]) and "进度更新" in str(message["Subject"]):
            body = message.get_body(("plain",))
            assert body is not None
            found.append((message, body.get_content()))
    return found


async def test_a_submitted_application_is_worked_in_the_console_and_the_client_hears_of_it(
    system: System, inbox: Inbox
) -> None:
    answer = await system.front.post("/v1/applications", json=application({"locale": "zh-CN"}))
    assert answer.status_code == 202, answer.text
    application_id = answer.json()["application_id"]
    case_id = await system.case_id(application_id)

    token = await signed_in_token(system.console, OPERATOR)
    listed = await system.console.get("/console/cases", params={"q": "maple tea"})
    assert f"/console/cases/{case_id}" in listed.text
    page = await system.console.get(f"/console/cases/{case_id}")
    assert page.status_code == 200
    assert 'id="receipt-unavailable"' not in page.text  # agreements answered casework's token
    assert "h-receipt" in page.text

    operator_id = _option_value(page.text, "Anna Chen")
    taken = await system.console.post(
        f"/console/cases/{case_id}/owner", data={"owner": operator_id, "csrf_token": token}
    )
    assert taken.status_code == 303, taken.text
    moved = await system.console.post(
        f"/console/cases/{case_id}/status",
        data={"action": "request_documents", "reason": INTERNAL_REASON, "csrf_token": csrf_in(page.text)},
    )
    assert moved.status_code == 303, moved.text
    refused = await system.console.post(
        f"/console/cases/{case_id}/status",
        data={"action": "hand_over", "reason": "too soon", "csrf_token": token},
        headers={"Accept": "application/json"},
    )
    assert refused.status_code == 409
    assert "request_revision" not in refused.json()["allowed"]
    assert "documents_received" in refused.json()["allowed"]

    await inbox.wait_for(lambda _: len(client_news(inbox)) == 2)
    news = client_news(inbox)
    [consultant] = [text for _, text in news if "您的顾问 Anna Chen 陈安娜 将负责跟进" in text]
    [documents] = [text for _, text in news if "我们正在等待您的材料" in text]
    assert consultant != documents
    for message, text in news:
        assert "INTERNAL" not in message.as_string()
        assert "rude" not in text

    # notifications announced each email; casework put them on the case's timeline.
    async with asyncio.timeout(30):
        while await system.case_emails(case_id) < 2:  # noqa: ASYNC110 - a database, not an event to wait on
            await asyncio.sleep(0.05)


def _option_value(page: str, name: str) -> str:
    """The value of the owner select's option naming ``name``."""
    found = re.search(r'<option value="([^"]+)"[^>]*>[^<]*' + re.escape(name), page)
    assert found, f"no owner option for {name}"
    return found.group(1)
