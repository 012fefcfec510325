"""The whole flow on real servers: POST → RabbitMQ → MongoDB record → staff email and the applicant's
verification link → the link's page and button → the verification in the ledger → the client's receipt."""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from agency_shared.receipt_verifier import verify_receipt
from agreements.settings import AgreementsSettings
from agreements.signing import DEVELOPMENT_SEED, LedgerKey
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import whole_system
from tests.support.data import CURRENT, STAFF, application
from tests.support.servers import Inbox
from tests.support.verification import verification_emails, verify_address


@pytest.fixture
async def front(
    intake_settings: IntakeSettings,
    agreements_settings: AgreementsSettings,
    notifications_settings: NotificationsSettings,
) -> AsyncIterator[httpx.AsyncClient]:
    """The three services running in-process; a client of intake's HTTP API."""
    async with whole_system(intake_settings, agreements_settings, notifications_settings) as http:
        yield http


async def test_an_application_is_recorded_and_emailed_to_staff_and_client(
    front: httpx.AsyncClient,
    agreements_settings: AgreementsSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
    inbox: Inbox,
) -> None:
    response = await front.post(
        "/v1/applications", json=application({"locale": "zh-CN"}), headers={"X-Correlation-ID": "e2e-1"}
    )
    assert response.status_code == 202, response.text
    application_id = response.json()["application_id"]
    client_address = "li.wei@mapletea.example"
    await inbox.wait_for(lambda _: len(inbox.to(client_address)) == 1 and all(inbox.to(s) for s in STAFF))
    # Before the address is verified it has only the fixed-text verification email, in the applicant's language.
    [verification] = inbox.to(client_address)
    assert verification_emails(inbox, client_address) == [verification]
    assert verification["Subject"] == "请确认您的邮箱地址"
    assert "Li Wei" not in verification.as_string()
    await asyncio.sleep(0.5)  # nothing else is on its way to the client
    assert len(inbox.to(client_address)) == 1
    link = await verify_address(inbox, client_address, front)
    await inbox.wait_for(lambda _: len(inbox.to(client_address)) == 2)
    assert link.startswith("http://localhost:8000/verify/")  # INTAKE_BASE_URL's development default

    record = await mongo[agreements_settings.mongodb_db]["applications"].find_one({"application_id": application_id})
    assert record is not None
    assert record["acceptance"]["agreement_sha256"] == CURRENT.sha256
    assert record["acceptance"]["client_ip"] == "203.0.113.7"
    assert record["correlation_id"] == "e2e-1"

    confirmation = inbox.to(client_address)[1]
    text = confirmation.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert confirmation["Subject"].startswith("感谢您！我们已收到您的申请")
    assert application_id in text
    assert CURRENT.sha256 in text
    assert f"版本 {CURRENT.version}" in text
    assert "邮箱确认时间" in text
    [attached] = [part for part in confirmation.walk() if part.get_filename() == f"receipt-{application_id}.json"]
    # The emailed receipt carries its link signed with the ledger key (the development key in tests).
    receipt = json.loads(attached.get_payload(decode=True))  # type: ignore[arg-type]
    assert receipt["checkpoint"]["sequence"] == receipt["sequence"]
    assert verify_receipt(receipt, CURRENT.text, LedgerKey(DEVELOPMENT_SEED).public_keys()) == []
    for staff in STAFF:
        [staff_email] = inbox.to(staff)
        assert application_id in staff_email.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert staff_email["Reply-To"].addresses[0].addr_spec == client_address
    assert len(inbox.messages) == len(STAFF) + 2
    db = mongo[agreements_settings.mongodb_db]
    links = await db["acceptance_ledger"].find({"application_id": application_id}).sort("_id").to_list()
    assert [link.get("kind") for link in links] == [None, "email_verified"]
    assert links[1]["record"]["acceptance_record_hash"] == links[0]["record_hash"]
    stored = await db["applications"].find_one({"application_id": application_id})
    assert stored is not None
    assert stored["email_verification"]["client_ip"] == "203.0.113.7"
    assert stored["email_verification"]["correlation_id"] != "e2e-1"  # the click's own request
    status = (await db["applications"].find_one({"application_id": application_id}, {"status": 1})) or {}
    for _ in range(50):  # the confirmation's notification.settled moves it to confirmed
        if status.get("status") == "confirmed":
            break
        await asyncio.sleep(0.1)
        status = (await db["applications"].find_one({"application_id": application_id}, {"status": 1})) or {}
    assert status["status"] == "confirmed"


async def test_concurrent_posts_with_one_idempotency_key_make_one_record_and_one_pair_of_emails(
    front: httpx.AsyncClient,
    agreements_settings: AgreementsSettings,
    amqp_url: str,
    mongo: AsyncMongoClient[dict[str, Any]],
    inbox: Inbox,
) -> None:
    headers = {"Idempotency-Key": "double-click-0001-0002-0003"}
    responses = await asyncio.gather(
        *(front.post("/v1/applications", json=application(), headers=headers) for _ in range(4))
    )
    assert {r.status_code for r in responses} == {202}
    [application_id] = {r.json()["application_id"] for r in responses}
    await inbox.wait_for(lambda _: bool(inbox.to("li.wei@mapletea.example")) and all(inbox.to(s) for s in STAFF))
    await asyncio.gather(*(verify_address(inbox, "li.wei@mapletea.example", front) for _ in range(3)))  # clicks
    await inbox.wait_for(lambda _: len(inbox.to("li.wei@mapletea.example")) == 2)
    # Every copy of every event is settled before counting.
    await broker.wait_settled(amqp_url)
    db = mongo[agreements_settings.mongodb_db]
    assert await db["applications"].count_documents({"application_id": application_id}) == 1
    assert await db["acceptance_ledger"].count_documents({}) == 2  # the acceptance and its verification
    assert len(inbox.to("li.wei@mapletea.example")) == 2  # the link, then the receipt: once each
    assert all(len(inbox.to(s)) == 1 for s in STAFF)
