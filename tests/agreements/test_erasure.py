"""Erasing an applicant's personal data: gone from every collection, while the ledger still verifies."""

import asyncio
import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo import AsyncMongoClient

import agreements.main
import intake.main
import notifications.main
from agency_shared.events import ApplicantErased, derived_id, utc_now
from agency_shared.receipt_verifier import verify_receipt
from agreements.recording import record_from_event
from agreements.settings import AgreementsSettings
from agreements.storage import MongoApplications, erasure_update
from intake.settings import IntakeSettings
from notifications.ledger import Claim, NotificationLedger
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import client, serving
from tests.support.data import CURRENT, application
from tests.support.events import ENQUIRY, application_submitted, enquiry_received, enquiry_verified
from tests.support.ledger import STAFF_TOKEN, run_verify_command
from tests.support.servers import Inbox
from tests.support.verification import verify_address

Mongo = AsyncMongoClient[dict[str, Any]]
AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}
CLIENT_IP, USER_AGENT = "203.0.113.7", "pytest-browser/1.0"  # what tests.support.apps.client sends
NAME, EMAIL, PHONE = "Li Wei 李伟", "li.wei@mapletea.example", "+16045550199"
PERSONAL = (NAME, EMAIL, PHONE, CLIENT_IP, USER_AGENT)
KEY = "erasure-test-idempotency-key"


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


async def personal_data_found(mongo: Mongo, db: str, values: tuple[str, ...] = PERSONAL) -> dict[str, set[str]]:
    """Every collection of the database, every document, every string: which personal values appear where."""
    found: dict[str, set[str]] = {}
    for name in await mongo[db].list_collection_names():
        async for document in mongo[db][name].find({}):
            for text in strings(document):
                for value in values:
                    if value.lower() in text.lower():
                        found.setdefault(value, set()).add(name)
    return found


async def timeline(mongo: Mongo, db: str, application_id: str) -> list[Any]:
    document = await mongo[db]["applications"].find_one({"application_id": application_id})
    return document["timeline"] if document else []


@pytest.fixture
def staff_settings(agreements_settings: AgreementsSettings) -> AgreementsSettings:
    return agreements_settings.model_copy(update={"staff_api_token": SecretStr(STAFF_TOKEN)})


async def test_erasure_removes_personal_data_everywhere_and_the_ledger_still_verifies(
    staff_settings: AgreementsSettings,
    intake_settings: IntakeSettings,
    notifications_settings: NotificationsSettings,
    mongo: Mongo,
    amqp_url: str,
    inbox: Inbox,
) -> None:
    db = mongo[staff_settings.mongodb_db]
    agreements_app = agreements.main.create_app(staff_settings)
    intake_app = intake.main.create_app(intake_settings)
    # Free text may repeat personal data too.
    form = application({"notes": f"Please call {PHONE} or write to {EMAIL.upper()}."})
    async with (
        serving(intake_app, agreements_app, notifications.main.create_app(notifications_settings)),
        client(intake_app) as front,
        client(agreements_app) as back,
    ):
        accepted = await front.post("/v1/applications", json=form, headers={"Idempotency-Key": KEY})
        application_id = accepted.json()["application_id"]
        await verify_address(inbox, EMAIL, front)  # from the same browser: the same IP and user agent
        # Recorded, verified, and all four emails (two staff, the client's link and receipt) settled.
        async with asyncio.timeout(30):
            while len(await timeline(mongo, staff_settings.mongodb_db, application_id)) < 7:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        receipt_before = (await back.get(f"/v1/applications/{application_id}/receipt")).json()
        before = await personal_data_found(mongo, staff_settings.mongodb_db)
        confirmation = await db["notifications"].find_one({"template": "client_confirmation"})

        path = f"/v1/staff/applications/{application_id}/erasure"
        unauthorised = await back.post(path, json={"reason": "GDPR request"})
        unknown = await back.post("/v1/staff/applications/00000000-0000-4000-8000-000000000000/erasure", headers=AUTH)
        erased = await back.post(path, json={"reason": f"request by email from {EMAIL}"}, headers=AUTH)
        repeated = await back.post(path, headers=AUTH)
        # The notifications service forgets the address when applicant.erased reaches it.
        async with asyncio.timeout(15):
            while await db["notifications"].count_documents({"recipient": EMAIL}):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        # A retried POST replays application.submitted: it must not bring the data back.
        replayed = await front.post("/v1/applications", json=form, headers={"Idempotency-Key": KEY})
        await broker.wait_settled(amqp_url)

        verified = (await back.get("/v1/ledger/verify", headers=AUTH)).json()
        receipt = (await back.get(f"/v1/applications/{application_id}/receipt")).json()
        detail = (await back.get(f"/v1/staff/applications/{application_id}", headers=AUTH)).json()
        listed = (await back.get("/v1/staff/applications", headers=AUTH)).text
        exported = (await back.get("/v1/staff/exports/applications.csv", headers=AUTH)).content.decode("utf-8-sig")
        acceptances = (await back.get("/v1/staff/exports/acceptances.csv", headers=AUTH)).text

    # Before: the scan sees the data, so its silence afterwards means something.
    assert set(before) == set(PERSONAL)
    assert {"applications", "notifications"} <= set().union(*before.values())
    assert "acceptance_ledger" not in set().union(*before.values())  # the chain never held it
    assert verify_receipt(receipt_before, CURRENT.text) == []
    assert receipt_before["personal_data"] is None  # the public receipt never carries it; the emailed one does
    assert confirmation is not None

    assert unauthorised.status_code == 401
    assert unknown.status_code == 404
    assert erased.status_code == 200, erased.text
    assert erased.json()["reason"] == "request by email from [erased]"
    assert repeated.status_code == 200
    assert repeated.json() == erased.json()  # the first erasure's tombstone, unchanged
    assert replayed.json()["application_id"] == application_id

    assert await personal_data_found(mongo, staff_settings.mongodb_db) == {}
    assert verified["ok"] is True, verified
    assert verified["checked"] == 2  # the acceptance and its verification, both intact
    command = run_verify_command(staff_settings)
    assert command.returncode == 0, command.stdout + command.stderr

    # The receipt still proves the acceptance; only the values behind its salted hashes are gone.
    assert receipt["record"] == receipt_before["record"]
    assert receipt["record_hash"] == receipt_before["record_hash"]
    assert receipt["personal_data"] is None
    erased_at = datetime.fromisoformat(erased.json()["erased_at"])
    assert datetime.fromisoformat(receipt["personal_data_erased_at"]) == erased_at
    assert verify_receipt(receipt, CURRENT.text) == []

    assert detail["erasure"]["reason"] == "request by email from [erased]"
    assert detail["timeline"][-1]["kind"] == "personal_data_erased"
    assert "operator" not in detail["application"]
    assert detail["application"]["notes"] == "Please call [erased] or write to [erased]."
    assert detail["ledger"]["record_hash"] == receipt["record_hash"]
    assert detail["ledger_verification"]["record"]["acceptance_record_hash"] == receipt["record_hash"]
    assert set(detail["email_verification"]) >= {"verified_at", "recorded_at"}
    assert not {"email", "client_ip", "user_agent"} & set(detail["email_verification"])
    [row] = list(csv.DictReader(io.StringIO(exported)))
    assert row["operator_email"] == row["operator_name"] == row["operator_phone"] == ""
    assert row["personal_data_erased_at"]
    for text in (listed, exported, acceptances, str(detail)):
        assert not [value for value in PERSONAL if value.lower() in text.lower()]

    # An operator replaying acceptance.confirmed later must not email the erased applicant again.
    ledger = NotificationLedger(mongo, staff_settings.mongodb_db, lease_seconds=30)
    assert await ledger.claim(confirmation["_id"], confirmation) is Claim.SENT
    assert await db["notifications"].count_documents({"_id": confirmation["_id"]}) == 0


async def test_no_erasure_before_the_acceptance_is_in_the_ledger(
    staff_settings: AgreementsSettings, mongo: Mongo
) -> None:
    # Stored but not yet linked (its ledger append is being retried): erasing now would leave no evidence.
    record = record_from_event(application_submitted(), utc_now())
    await MongoApplications(mongo, staff_settings.mongodb_db).add(record)
    app = agreements.main.create_app(staff_settings)
    async with serving(app), client(app) as back:
        refused = await back.post(f"/v1/staff/applications/{record.application_id}/erasure", headers=AUTH)
    assert refused.status_code == 409
    assert refused.headers["Retry-After"] == "5"
    stored = await mongo[staff_settings.mongodb_db]["applications"].find_one(
        {"application_id": str(record.application_id)}
    )
    assert stored is not None
    assert "erasure" not in stored
    assert stored["application"]["operator"]["email"] == str(record.application.operator.email)


@pytest.mark.parametrize(
    ("text", "erased"),
    [
        ("申请人李伟要求删除", "申请人[erased]要求删除"),  # no spaces between Chinese words
        ("Li Wei asked; Limited company", "[erased] asked; Limited company"),  # "Li" inside a word stays
        ("Suite A, Building B", "Suite A, Building B"),  # a one-letter value would blank everything
        ("mail LI.WEI@MAPLETEA.EXAMPLE now", "mail [erased] now"),
    ],
)
def test_free_text_repeating_a_personal_value_is_blanked(text: str, erased: str) -> None:
    # "李伟" stands for a name given in Chinese; the phone "A" for a one-character value.
    name = "李伟" if "李伟" in text else "Li Wei"
    operator = {"name": name, "email": "li.wei@mapletea.example", "phone": "A"}
    document: dict[str, Any] = {
        "application": {"operator": operator, "notes": text},
        "acceptance": {"client_ip": "203.0.113.7", "user_agent": "Li"},
        "timeline": [],
    }
    update = erasure_update(document, None, utc_now())
    assert update["$set"]["application"]["notes"] == erased


def test_only_personal_fields_are_blanked_whatever_other_fields_hold() -> None:
    """A name equal to a status, a moment's kind or key, and a company equal to the name: only the personal
    fields and the free text that may repeat them change."""
    operator = {"name": "Recorded", "email": "recorded@mapletea.example", "phone": "+16045550199"}
    company = {"legal_name": "Recorded", "registration_number": "+16045550199", "country": "CA", "address": "Recorded"}
    email_key = "e-1/email_verification/recorded@mapletea.example:sent"
    document: dict[str, Any] = {
        "application_id": "a-1",
        "status": "recorded",
        "application": {"operator": operator, "company": company, "account": {"name": "Recorded"}, "notes": "Recorded"},
        "acceptance": {"client_ip": "203.0.113.7", "user_agent": "recorded", "agreement_version": "recorded"},
        "timeline": [
            {"key": "submitted", "kind": "submitted", "at": None, "detail": {"client_ip": "203.0.113.7"}},
            {"key": "recorded", "kind": "recorded", "at": None, "detail": {"sequence": 1}},
            {
                "key": email_key,
                "kind": "email_sent",
                "at": None,
                "detail": {"template": "email_verification", "recipient": operator["email"], "detail": "250 Recorded"},
            },
        ],
    }
    update = erasure_update(document, "asked by Recorded", utc_now())["$set"]

    assert "status" not in update  # never rewritten, let alone blanked
    assert update["application"]["company"] == company
    assert update["application"]["account"] == {"name": "Recorded"}
    assert update["application"]["notes"] == "[erased]"
    assert "operator" not in update["application"]
    assert update["acceptance"] == {"agreement_version": "recorded"}
    submitted, recorded, sent, erased = update["timeline"]
    assert submitted == {"key": "submitted", "kind": "submitted", "at": None, "detail": {"client_ip": "[erased]"}}
    assert recorded == document["timeline"][1]
    assert sent["key"] == "e-1/email_verification/[erased]:sent"
    assert sent["detail"] == {"template": "email_verification", "recipient": "[erased]", "detail": "250 [erased]"}
    assert erased["kind"] == "personal_data_erased"
    assert update["erasure"]["reason"] == "asked by [erased]"


NAME_TYPED, EMAIL_TYPED, MESSAGE = (str(ENQUIRY[field]) for field in ("name", "email", "message"))
ENQUIRER = (NAME_TYPED, EMAIL_TYPED, MESSAGE.splitlines()[0])


async def test_an_enquiry_is_erased_everywhere_and_nothing_brings_it_back(
    staff_settings: AgreementsSettings,
    intake_settings: IntakeSettings,
    notifications_settings: NotificationsSettings,
    mongo: Mongo,
    amqp_url: str,
    inbox: Inbox,
) -> None:
    db = mongo[staff_settings.mongodb_db]
    intake_app, agreements_app = intake.main.create_app(intake_settings), agreements.main.create_app(staff_settings)
    # One enquiry that passed a human check (the staff and the enquirer emailed at once), one that passed
    # none (held, the enquirer sent a verification link).
    held = enquiry_received(human_check="none")
    held_id = str(held.data.enquiry_id)
    key = {"Idempotency-Key": "enquiry-erasure-test-key"}
    async with (
        serving(intake_app, agreements_app, notifications.main.create_app(notifications_settings)),
        client(intake_app) as front,
        client(agreements_app) as back,
    ):
        accepted = await front.post("/v1/enquiries", json=ENQUIRY, headers=key)
        assert accepted.status_code == 202, accepted.text
        enquiry_id = accepted.json()["enquiry_id"]
        await broker.publish_events(amqp_url, [held])
        # The staff twice and the enquirer once for the first; the enquirer once more (the link) for the held one.
        await inbox.wait_for(lambda messages: len(messages) == 4)
        await broker.wait_settled(amqp_url, "notifications.")
        before = await personal_data_found(mongo, staff_settings.mongodb_db, ENQUIRER)

        unauthorised = await back.post(f"/v1/staff/enquiries/{enquiry_id}/erasure")
        reason = {"reason": f"asked by {ENQUIRY['email']} on +86 138 0013 8000"}
        erased = await back.post(f"/v1/staff/enquiries/{enquiry_id}/erasure", json=reason, headers=AUTH)
        repeated = await back.post(f"/v1/staff/enquiries/{enquiry_id}/erasure", headers=AUTH)
        erased_held = await back.post(f"/v1/staff/enquiries/{held_id}/erasure", headers=AUTH)
        async with asyncio.timeout(15):
            while await db["notifications"].count_documents({"recipient": ENQUIRY["email"]}):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        await broker.wait_settled(amqp_url)
        sent = len(inbox.messages)

        # Later events about them re-create nothing and email no one: a retried POST (same key: the same
        # event again), the held enquiry replayed, and its enquirer pressing the link's button.
        replayed = await front.post("/v1/enquiries", json=ENQUIRY, headers=key)
        await broker.publish_events(amqp_url, [held, enquiry_verified(held.data.enquiry_id)])
        await broker.wait_settled(amqp_url)
        await asyncio.sleep(0.5)  # an email, had one been sent, would be in by now

    assert set(before) == set(ENQUIRER)
    assert "held_submissions" in before[NAME_TYPED]  # the held event was there; the scan sees it
    assert unauthorised.status_code == 401
    assert erased.status_code == 200, erased.text
    assert erased.json()["enquiry_id"] == enquiry_id
    assert erased.json()["reason"] == "asked by [erased] on [erased]"
    assert repeated.json() == erased.json()  # the first erasure's tombstone, unchanged
    assert erased_held.status_code == 200
    assert replayed.json()["enquiry_id"] == enquiry_id

    assert await personal_data_found(mongo, staff_settings.mongodb_db, ENQUIRER) == {}
    assert await db["held_submissions"].count_documents({}) == 0
    assert len(inbox.messages) == sent == 4
    # The enquirer's emails are still accounted for, without their address.
    client_entries = (
        await db["notifications"]
        .find({"template": {"$in": ["enquiry_autoresponse", "enquiry_verification"]}})
        .to_list()
    )
    assert {entry["recipient"] for entry in client_entries} == {"[erased]"}
    assert len(client_entries) == 2


def test_an_enquiry_erasure_names_the_enquiry_and_its_one_event() -> None:
    enquiry_id = enquiry_received().data.enquiry_id
    other = ApplicantErased.model_validate(
        {"event_id": str(derived_id("x")), "correlation_id": "c", "data": {
            "enquiry_id": str(enquiry_id), "event_ids": [], "erased_at": utc_now().isoformat()}}
    )  # fmt: skip
    assert other.data.subject_id == enquiry_id
    assert other.about_application() is None
    with pytest.raises(ValueError, match="exactly one"):
        ApplicantErased.model_validate(
            {"event_id": str(derived_id("x")), "correlation_id": "c", "data": {
                "event_ids": [], "erased_at": utc_now().isoformat()}}
        )  # fmt: skip
