"""The console with agreements running beside it (both against SecantusDB and RabbitMQ): a recorded application's
case with its receipt, the ledger check, the re-acceptance list, erasure through agreements and back through
casework's consumer, and the dead letters listed and replayed; each erasure and replay audited."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import SecretStr
from pymongo import AsyncMongoClient

import agreements.main
from agency_shared.topology import CASEWORK_NOTIFICATION_SETTLED
from agreements.settings import AgreementsSettings
from casework.access import Role
from casework.cases import Case
from casework.settings import CaseworkSettings
from tests.support import broker
from tests.support.apps import http_server
from tests.support.casework import AGREEMENTS_TOKEN, Casework, eventually, running_casework
from tests.support.events import application_submitted, notification_settled
from tests.support.settings import settings_with

Mongo = AsyncMongoClient[dict[str, Any]]


@asynccontextmanager
async def with_agreements(
    agreements_settings: AgreementsSettings, casework_settings: CaseworkSettings
) -> AsyncIterator[Casework]:
    staff_api = settings_with(agreements_settings, staff_api_token=SecretStr(AGREEMENTS_TOKEN))
    async with http_server(agreements.main.create_app(staff_api)) as url:  # noqa: SIM117 - the second needs the url
        async with running_casework(settings_with(casework_settings, agreements_url=url)) as casework:
            yield casework


async def recorded_case(casework: Casework, amqp_url: str) -> Case:
    """An application submitted as intake publishes it: agreements records it, casework opens its case."""
    submitted = application_submitted()
    await broker.publish_events(amqp_url, [submitted])

    async def opened() -> Case | None:
        found = await casework.cases.of_subject(submitted.data.application_id)
        return found[0] if found else None

    return await eventually(opened)


async def audited(mongo: Mongo, casework: Casework, action: str) -> list[dict[str, Any]]:
    db = mongo[casework.settings.mongodb_db]
    return [entry async for entry in db["casework_audit"].find({"action": action})]


async def test_a_recorded_applications_case_shows_its_receipt_and_the_ledger_verifies(
    agreements_settings: AgreementsSettings, casework_settings: CaseworkSettings, amqp_url: str
) -> None:
    async with with_agreements(agreements_settings, casework_settings) as casework:
        case = await recorded_case(casework, amqp_url)
        async with casework.signed_in(Role.VIEWER) as viewer:
            page = (await viewer.http.get(f"/console/cases/{case.id}")).text
            assert case.acceptance is not None
            assert 'id="receipt-unavailable"' not in page
            receipt = page.split('id="h-receipt"')[1]
            assert case.acceptance["record_hash"] in receipt
            assert "li.wei@mapletea.example" not in receipt  # the receipt carries no personal data
            ledger = await viewer.http.get("/console/ledger")
            assert ledger.status_code == 200
            assert 'data-ok="true"' in ledger.text
            reacceptance = await viewer.http.get("/console/reacceptance")
            assert reacceptance.status_code == 200
            assert "Every application accepted the current agreement." in reacceptance.text


async def test_a_broken_ledger_is_shown_broken_and_where(
    agreements_settings: AgreementsSettings, casework_settings: CaseworkSettings, amqp_url: str, mongo: Mongo
) -> None:
    async with with_agreements(agreements_settings, casework_settings) as casework:
        await recorded_case(casework, amqp_url)
        links = mongo[agreements_settings.mongodb_db]["acceptance_ledger"]
        await links.update_one({"_id": 1}, {"$set": {"record.company_country": "XX"}})
        async with casework.signed_in(Role.VIEWER) as viewer:
            ledger = await viewer.http.get("/console/ledger")
            assert ledger.status_code == 200
            assert 'data-ok="false"' in ledger.text
            assert "The acceptance ledger is BROKEN." in ledger.text
            assert "First broken link: 1" in ledger.text


async def test_an_admin_erases_an_application_after_confirming_it(
    agreements_settings: AgreementsSettings, casework_settings: CaseworkSettings, amqp_url: str, mongo: Mongo
) -> None:
    async with with_agreements(agreements_settings, casework_settings) as casework:
        case = await recorded_case(casework, amqp_url)
        async with casework.signed_in(Role.ADMIN) as admin:
            form = await admin.http.get(f"/console/cases/{case.id}/erase")
            assert form.status_code == 200
            assert case.reference in form.text
            for wrong in ("", "A-WRONG", case.reference + "X", str(case.id)):
                answer = await admin.post(f"/console/cases/{case.id}/erase", {"confirm": wrong})
                assert answer.status_code == 422
                assert '<code class="field">confirm</code>' in answer.text
            assert (await casework.case(case.id)).erased_at is None
            assert await audited(mongo, casework, "erase") == []
            done = await admin.post(
                f"/console/cases/{case.id}/erase", {"confirm": case.reference.lower(), "reason": "GDPR request"}
            )
            assert done.status_code == 303

            async def erased() -> Case | None:
                stored = await casework.case(case.id)
                return stored if stored.erased_at is not None else None

            blanked = await eventually(erased)
            assert (blanked.client_email, blanked.client_name) == (None, None)
            page = (await admin.http.get(f"/console/cases/{case.id}")).text
            assert "li.wei@mapletea.example" not in page
            [entry] = await audited(mongo, casework, "erase")
            assert (entry["actor"], entry["subject"]) == (admin.member.email, str(case.id))


async def test_an_enquiry_is_erased_through_agreements_too(
    agreements_settings: AgreementsSettings, casework_settings: CaseworkSettings
) -> None:
    async with with_agreements(agreements_settings, casework_settings) as casework:
        case = await casework.open_enquiry()
        async with casework.signed_in(Role.ADMIN) as admin:
            done = await admin.post(f"/console/cases/{case.id}/erase", {"confirm": case.reference})
            assert done.status_code == 303

            async def erased() -> Case | None:
                stored = await casework.case(case.id)
                return stored if stored.erased_at is not None else None

            assert (await eventually(erased)).enquiry is None


async def test_without_agreements_nothing_is_erased_and_the_lists_say_why(
    casework_settings: CaseworkSettings, mongo: Mongo
) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.ADMIN) as admin:
        case = await casework.open_application()
        answer = await admin.post(f"/console/cases/{case.id}/erase", {"confirm": case.reference})
        assert answer.status_code == 503
        assert "Nothing was changed." in answer.text
        assert (await casework.case(case.id)).erased_at is None
        assert await audited(mongo, casework, "erase") == []
        for path in ("/console/ledger", "/console/reacceptance"):
            page = await admin.http.get(path)
            assert page.status_code == 503
            assert "cannot be reached" in page.text


async def test_dead_letters_are_listed_without_their_bodies_and_replayed(
    casework_settings: CaseworkSettings, amqp_url: str, mongo: Mongo
) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.ADMIN) as admin:
        event = notification_settled(None)
        body = event.model_dump_json().encode()
        await broker.publish_raw(amqp_url, body, CASEWORK_NOTIFICATION_SETTLED.name, str(event.event_id),
                                 exchange="wechat_agency.dead-letter")  # fmt: skip
        page = (await admin.http.get("/console/dead-letters")).text
        assert str(event.event_id) in page
        assert CASEWORK_NOTIFICATION_SETTLED.name in page
        assert "li.wei@mapletea.example" not in page
        refused = await admin.post("/console/dead-letters/replay", {})
        assert refused.status_code == 422
        replayed = await admin.post("/console/dead-letters/replay", {"message_id": str(event.event_id)})
        assert replayed.status_code == 200
        assert "1 dead letter(s) put back on their queues." in replayed.text
        assert "No dead letters." in replayed.text
        [entry] = await audited(mongo, casework, "replay")
        assert (entry["actor"], entry["subject"]) == (admin.member.email, str(event.event_id))
        assert entry["detail"]["moved"] == "1"
