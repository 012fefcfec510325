"""A client's re-acceptance from the portal (agreement.reaccepted) recorded by agreements on real servers: one
``reacceptance:<version>`` link of the hash chain however often it is delivered, the chain still verifies, the
application leaves the re-acceptance list; a version or text agreements does not know is refused, nothing stored."""

import uuid
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pymongo import AsyncMongoClient

import agreements.main
from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.events import AgreementReaccepted, AgreementReacceptedData, Event, derived_id, utc_now
from agency_shared.receipt_verifier import personal_sha256
from agency_shared.topology import AGREEMENTS_AGREEMENT_REACCEPTED
from agreements.settings import AgreementsSettings
from tests.support import broker
from tests.support.apps import client, serving
from tests.support.events import application_submitted
from tests.support.ledger import STAFF_TOKEN, wait_for_links
from tests.support.portal import NEW_VERSION, catalog_with_new_version
from tests.support.settings import settings_with

Mongo = AsyncMongoClient[dict[str, Any]]
AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}
USER_AGENT = 'Mozilla/5.0 "quoted" <b>ua</b> 浏览器'


async def publish(amqp_url: str, event: Event) -> None:
    await broker.publish_raw(amqp_url, event.model_dump_json().encode(), event.routing_key, str(event.event_id))


def reaccepted(application_id: uuid.UUID, catalog: AgreementCatalog, sha256: str | None = None) -> AgreementReaccepted:
    document = catalog.current()
    return AgreementReaccepted(
        event_id=derived_id(AgreementReaccepted.routing_key, str(application_id), document.version),
        correlation_id="case-A-TEST",
        data=AgreementReacceptedData(
            application_id=application_id,
            case_id=uuid.uuid4(),
            agreement_id=document.id,
            agreement_version=document.version,
            agreement_sha256=sha256 or document.sha256,
            accepted_at=utc_now(),
            client_ip="2001:db8::7",
            user_agent=USER_AGENT,
            locale="zh-CN",
        ),
    )


async def test_a_reacceptance_is_one_ledger_link_and_the_chain_verifies(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo, tmp_path: Path
) -> None:
    folder = catalog_with_new_version(tmp_path / "agreements")
    catalog = AgreementCatalog.from_folder(folder)
    settings = settings_with(agreements_settings, agreements_dir=folder, staff_api_token=SecretStr(STAFF_TOKEN))
    db = settings.mongodb_db
    first, second = application_submitted(locale="zh-CN"), application_submitted()
    app = agreements.main.create_app(settings)
    async with serving(app), client(app) as http:
        for submitted in (first, second):
            await publish(amqp_url, submitted)  # both accepted version 1
        await wait_for_links(mongo, db, 2)
        listed = (await http.get("/v1/staff/reacceptance", headers=AUTH)).json()
        assert len(listed["items"]) == 2

        event = reaccepted(first.data.application_id, catalog)
        await publish(amqp_url, event)
        await wait_for_links(mongo, db, 3)
        await publish(amqp_url, event)  # a redelivery (a double submit is the same event id too)
        await broker.wait_settled(amqp_url, "agreements.")
        listed = (await http.get("/v1/staff/reacceptance", headers=AUTH)).json()
        detail = (await http.get(f"/v1/staff/applications/{first.data.application_id}", headers=AUTH)).json()
        report = (await http.get("/v1/ledger/verify", headers=AUTH)).json()

    assert [item["application_id"] for item in listed["items"]] == [str(second.data.application_id)]
    links = await mongo[db]["acceptance_ledger"].find({"application_id": str(first.data.application_id)}).to_list()
    kinds = sorted(link.get("kind", "acceptance") for link in links)
    assert kinds == ["acceptance", f"reacceptance:{NEW_VERSION}"]
    [link] = [link for link in links if link.get("kind")]
    record = link["record"]
    acceptance = next(link for link in links if "kind" not in link)
    assert record["kind"] == "reacceptance"
    assert record["agreement_version"] == NEW_VERSION
    assert record["agreement_sha256"] == catalog.current().sha256
    assert record["acceptance_sequence"] == acceptance["sequence"]
    assert record["acceptance_record_hash"] == acceptance["record_hash"]
    application = await mongo[db]["applications"].find_one({"application_id": str(first.data.application_id)})
    assert application is not None
    salt = application["personal_salt"]
    assert record["reacceptance_client_ip_sha256"] == personal_sha256(salt, "reacceptance_client_ip", "2001:db8::7")
    assert record["reacceptance_user_agent_sha256"] == personal_sha256(salt, "reacceptance_user_agent", USER_AGENT)
    assert "2001:db8::7" not in str(record)
    assert report["ok"] is True
    assert report["checked"] == 3
    assert report["broken_at"] is None
    assert [moment["kind"] for moment in detail["timeline"]].count("reaccepted") == 1


async def test_a_version_or_text_agreements_does_not_know_is_refused(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo, tmp_path: Path
) -> None:
    folder = catalog_with_new_version(tmp_path / "agreements")
    catalog = AgreementCatalog.from_folder(folder)
    settings = settings_with(agreements_settings, agreements_dir=folder)
    submitted = application_submitted()
    async with serving(agreements.main.create_app(settings)):
        await publish(amqp_url, submitted)
        await wait_for_links(mongo, settings.mongodb_db, 1)
        await publish(amqp_url, reaccepted(submitted.data.application_id, catalog, sha256="0" * 64))
        [dead] = await broker.take(amqp_url, AGREEMENTS_AGREEMENT_REACCEPTED.dead_letter_queue.name)
    assert "UnknownVersion" in str(dead.headers.get("x-dead-letter-reason"))
    assert await mongo[settings.mongodb_db]["acceptance_ledger"].count_documents({}) == 1
    stored = await mongo[settings.mongodb_db]["applications"].find_one(
        {"application_id": str(submitted.data.application_id)}
    )
    assert stored is not None
    assert "reacceptances" not in stored
