"""Held submissions on the real servers, with CAPTCHA=altcha: without a valid solution the staff hear of an
application or an enquiry only once its address is verified (one email per staff address, then); with one, at once.
"""

from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import whole_system
from tests.support.captcha import TEST_COST, solve
from tests.support.data import STAFF, application
from tests.support.events import ENQUIRY
from tests.support.servers import Inbox
from tests.support.settings import settings_with
from tests.support.verification import plain_text, verification_emails, verify_address

APPLICANT = "li.wei@mapletea.example"
ENQUIRER = str(ENQUIRY["email"])


@pytest.fixture
async def front(
    intake_settings: IntakeSettings,
    agreements_settings: AgreementsSettings,
    notifications_settings: NotificationsSettings,
) -> AsyncIterator[httpx.AsyncClient]:
    """The three services in-process, intake with the ALTCHA check on; a client of intake's HTTP API."""
    altcha = settings_with(intake_settings, captcha="altcha", captcha_cost=TEST_COST, rate_limit="1000/minute")
    async with whole_system(altcha, agreements_settings, notifications_settings) as http:
        yield http


def staff_emails(inbox: Inbox) -> dict[str, list[EmailMessage]]:
    return {staff: inbox.to(staff) for staff in STAFF}


async def solution(http: httpx.AsyncClient) -> str:
    return solve((await http.get("/v1/captcha/challenge")).json())


async def test_an_application_without_a_solution_reaches_the_staff_only_once_its_address_is_verified(
    front: httpx.AsyncClient,
    amqp_url: str,
    inbox: Inbox,
    mongo: AsyncMongoClient[dict[str, Any]],
    notifications_settings: NotificationsSettings,
) -> None:
    posted = await front.post("/v1/applications", json=application())
    assert posted.status_code == 202, posted.text
    application_id = posted.json()["application_id"]
    await inbox.wait_for(lambda _: bool(verification_emails(inbox, APPLICANT)))
    await broker.wait_settled(amqp_url)
    assert staff_emails(inbox) == {staff: [] for staff in STAFF}
    held = await mongo[notifications_settings.mongodb_db]["held_submissions"].find_one({"_id": application_id})
    assert held is not None
    assert held["expires_at"] > held["held_at"]

    await verify_address(inbox, APPLICANT, front)
    await inbox.wait_for(lambda _: len(inbox.to(APPLICANT)) == 2 and all(inbox.to(s) for s in STAFF))
    await verify_address(inbox, APPLICANT, front)  # a second press changes nothing
    await broker.wait_settled(amqp_url)
    for staff, [email] in staff_emails(inbox).items():
        text = plain_text(email)
        assert application_id in text, staff
        assert "none passed; held until the address was verified" in text
        assert "Email verified: " in text
        assert email["Reply-To"].addresses[0].addr_spec == APPLICANT
    assert len(inbox.to(APPLICANT)) == 2  # the link, then the receipt


async def test_an_enquiry_without_a_solution_gets_a_link_not_the_autoresponse_and_reaches_the_staff_once_verified(
    front: httpx.AsyncClient, amqp_url: str, inbox: Inbox
) -> None:
    posted = await front.post("/v1/enquiries", json={**ENQUIRY, "locale": "zh-CN"})
    assert posted.status_code == 202, posted.text
    enquiry_id = posted.json()["enquiry_id"]
    await inbox.wait_for(lambda _: bool(verification_emails(inbox, ENQUIRER)))
    await broker.wait_settled(amqp_url)
    [link_email] = inbox.to(ENQUIRER)
    assert link_email["Subject"] == "请确认您的邮箱地址"
    assert str(ENQUIRY["name"]) not in link_email.as_string()
    assert staff_emails(inbox) == {staff: [] for staff in STAFF}

    page = await front.get(f"/verify/{plain_text(link_email).split('/verify/')[1].split()[0]}")
    assert "咨询" in page.text  # the page speaks of the enquiry, not of an application's receipt
    await verify_address(inbox, ENQUIRER, front)
    await inbox.wait_for(lambda _: all(inbox.to(s) for s in STAFF))
    await verify_address(inbox, ENQUIRER, front)
    await broker.wait_settled(amqp_url)
    for _staff, [email] in staff_emails(inbox).items():
        text = plain_text(email)
        assert enquiry_id in text
        assert str(ENQUIRY["message"]).splitlines()[1] in text
        assert "none passed; held until the address was verified" in text
    assert len(inbox.to(ENQUIRER)) == 1  # the link alone: nothing more after verifying


async def test_with_a_valid_solution_the_staff_hear_at_once(
    front: httpx.AsyncClient, amqp_url: str, inbox: Inbox
) -> None:
    applied = await front.post("/v1/applications", json={**application(), "altcha": await solution(front)})
    enquired = await front.post("/v1/enquiries", json={**ENQUIRY, "altcha": await solution(front)})
    assert (applied.status_code, enquired.status_code) == (202, 202)
    await inbox.wait_for(lambda _: all(len(inbox.to(s)) == 2 for s in STAFF) and bool(inbox.to(ENQUIRER)))
    await broker.wait_settled(amqp_url)
    for staff, emails in staff_emails(inbox).items():
        assert len(emails) == 2, staff
        assert all("passed (ALTCHA proof of work)" in plain_text(email) for email in emails)
    [autoresponse] = inbox.to(ENQUIRER)
    assert "We have received your enquiry" in plain_text(autoresponse)
    assert verification_emails(inbox, APPLICANT)  # the applicant's address is still verified before the receipt
