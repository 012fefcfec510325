"""The staff read API, the public status, and agreement versions, against real RabbitMQ and SecantusDB."""

import asyncio
import csv
import io
import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from pymongo import AsyncMongoClient

import agreements.main
import intake.main
import notifications.main
from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.application_status import Status
from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import client, http_server, serving
from tests.support.data import CURRENT, application
from tests.support.events import application_submitted
from tests.support.ledger import STAFF_TOKEN, wait_for_links
from tests.support.verification import verify_address

Mongo = AsyncMongoClient[dict[str, Any]]
AUTH = {"Authorization": f"Bearer {STAFF_TOKEN}"}


@pytest.fixture
def staff_settings(agreements_settings: AgreementsSettings) -> AgreementsSettings:
    return agreements_settings.model_copy(update={"staff_api_token": SecretStr(STAFF_TOKEN)})


async def test_staff_endpoints_need_the_bearer_token(staff_settings: AgreementsSettings) -> None:
    app = agreements.main.create_app(staff_settings)
    paths = [
        "/v1/staff/applications",
        "/v1/staff/exports/applications.csv",
        "/v1/ledger/verify",
        "/v1/staff/reacceptance",
    ]
    async with serving(app), client(app) as http:
        for path in paths:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {STAFF_TOKEN}"}):
                response = await http.get(path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert response.headers["www-authenticate"] == "Bearer"
        assert (await http.get("/v1/staff/applications", headers=AUTH)).status_code == 200
    unconfigured = agreements.main.create_app(staff_settings.model_copy(update={"staff_api_token": None}))
    async with serving(unconfigured), client(unconfigured) as http:
        assert (await http.get("/v1/staff/applications", headers=AUTH)).status_code == 401


CASEWORK_TOKEN = "casework-token-0123456789abcdefghij"
CRM_TOKEN = "crm-token-0123456789abcdefghijklmnop"


def staff_requests(client: str) -> float:
    return REGISTRY.get_sample_value("agreements_staff_api_requests_total", {"client": client}) or 0.0


async def test_each_machine_client_has_its_own_token_and_a_removed_one_is_refused(
    staff_settings: AgreementsSettings, caplog: pytest.LogCaptureFixture
) -> None:
    both = staff_settings.model_copy(
        update={"staff_api_tokens": SecretStr(f"casework={CASEWORK_TOKEN},crm={CRM_TOKEN}")}
    )
    before = {client: staff_requests(client) for client in ("casework", "crm", "staff", "-")}
    app = agreements.main.create_app(both)
    with caplog.at_level(logging.INFO, logger="agreements.staff_api"):
        async with serving(app), client(app) as http:
            for token in (CASEWORK_TOKEN, CRM_TOKEN, STAFF_TOKEN):  # STAFF_API_TOKEN still works, as "staff"
                response = await http.get("/v1/staff/applications", headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == 200
            for wrong in ("wrong", CRM_TOKEN[:-1], f"crm={CRM_TOKEN}", f"{CASEWORK_TOKEN},{CRM_TOKEN}"):
                response = await http.get("/v1/staff/applications", headers={"Authorization": f"Bearer {wrong}"})
                assert response.status_code == 401
    assert {client: staff_requests(client) - before[client] for client in before} == {
        "casework": 1, "crm": 1, "staff": 1, "-": 4,
    }  # fmt: skip
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "staff API GET /v1/staff/applications by client casework" in logged
    assert "by client crm" in logged
    for token in (CASEWORK_TOKEN, CRM_TOKEN, STAFF_TOKEN):
        assert token not in logged

    # crm is revoked: its pair removed, the service restarted. casework goes on; crm's token is refused.
    revoked = both.model_copy(update={"staff_api_tokens": SecretStr(f"casework={CASEWORK_TOKEN}")})
    app = agreements.main.create_app(revoked)
    async with serving(app), client(app) as http:
        response = await http.get("/v1/staff/applications", headers={"Authorization": f"Bearer {CRM_TOKEN}"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        response = await http.get("/v1/staff/applications", headers={"Authorization": f"Bearer {CASEWORK_TOKEN}"})
        assert response.status_code == 200


async def record(settings: AgreementsSettings, amqp_url: str, mongo: Mongo, forms: list[dict[str, Any]]) -> list[str]:
    events = [application_submitted() for _ in forms]
    events = [
        e.model_copy(update={"data": e.data.model_copy(update={"application": e.data.application.model_validate(f)})})
        for e, f in zip(events, forms, strict=True)
    ]
    async with serving(agreements.main.create_app(settings)):
        for event in events:  # one by one, so received times are ordered
            await broker.publish_events(amqp_url, [event])
        await wait_for_links(mongo, settings.mongodb_db, len(events))
    return [str(e.data.application_id) for e in events]


async def test_listing_filters_and_cursor_pagination(
    staff_settings: AgreementsSettings, amqp_url: str, mongo: Mongo
) -> None:
    countries = ["CA", "SG", "CA", "GB", "CA"]
    ids = await record(staff_settings, amqp_url, mongo, [application({"company.country": c}) for c in countries])
    # So that every filter has something to leave out: one application already confirmed by
    # email, one received ten days ago, one accepted under an earlier agreement version.
    collection = mongo[staff_settings.mongodb_db]["applications"]
    confirmed, earlier, older_version = ids[1], ids[2], ids[3]
    await collection.update_one({"application_id": confirmed}, {"$set": {"status": Status.CONFIRMED}})
    ten_days_ago = datetime.now(UTC) - timedelta(days=10)
    await collection.update_one({"application_id": earlier}, {"$set": {"received_at": ten_days_ago}})
    await collection.update_one({"application_id": older_version}, {"$set": {"acceptance.agreement_version": "0"}})
    app = agreements.main.create_app(staff_settings)
    async with serving(app), client(app) as http:
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (await http.get("/v1/staff/applications", params=params, headers=AUTH)).json()
            seen += [item["application_id"] for item in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        canadian = (await http.get("/v1/staff/applications", params={"country": "ca"}, headers=AUTH)).json()
        recorded = (await http.get("/v1/staff/applications", params={"status": Status.RECORDED}, headers=AUTH)).json()
        by_status = (await http.get("/v1/staff/applications", params={"status": Status.CONFIRMED}, headers=AUTH)).json()
        back_then = (
            await http.get(
                "/v1/staff/applications",
                params={"received_to": (date.today() - timedelta(days=9)).isoformat()},
                headers=AUTH,
            )
        ).json()
        today = date.today().isoformat()
        in_range = (
            await http.get(
                "/v1/staff/applications", params={"received_from": today, "received_to": today}, headers=AUTH
            )
        ).json()
        future = (
            await http.get(
                "/v1/staff/applications",
                params={"received_from": (date.today() + timedelta(days=2)).isoformat()},
                headers=AUTH,
            )
        ).json()
        by_version = (
            await http.get("/v1/staff/applications", params={"agreement_version": CURRENT.version}, headers=AUTH)
        ).json()
        bad_cursor = await http.get("/v1/staff/applications", params={"cursor": "not-a-cursor"}, headers=AUTH)
    documents = await mongo[staff_settings.mongodb_db]["applications"].find({}).to_list()
    newest_first = sorted(documents, key=lambda d: (d["received_at"], d["application_id"]), reverse=True)
    assert pages == 3
    assert seen == [d["application_id"] for d in newest_first]  # newest first, each exactly once
    assert sorted(seen) == sorted(ids)
    assert len(canadian["items"]) == 3
    assert all(item["application"]["company"]["country"] == "CA" for item in canadian["items"])

    def found(page: dict[str, Any]) -> set[str]:
        return {item["application_id"] for item in page["items"]}

    assert found(recorded) == set(ids) - {confirmed}
    assert found(by_status) == {confirmed}
    assert found(in_range) == set(ids) - {earlier}
    assert found(back_then) == {earlier}
    assert future["items"] == []
    assert found(by_version) == set(ids) - {older_version}
    assert bad_cursor.status_code == 400


async def test_csv_exports_stream_and_neutralise_formulas(
    staff_settings: AgreementsSettings, amqp_url: str, mongo: Mongo
) -> None:
    hostile = application(
        {
            "company.legal_name": '=HYPERLINK("http://evil.example","click")',
            "account.name": "+cmd|' /C calc'!A0",
            "notes": "@SUM(1+1)",
        }
    )
    [application_id] = await record(staff_settings, amqp_url, mongo, [hostile])
    app = agreements.main.create_app(staff_settings)
    async with serving(), http_server(app) as url:
        import httpx

        async with httpx.AsyncClient(base_url=url, headers=AUTH) as http:
            async with http.stream("GET", "/v1/staff/exports/applications.csv") as response:
                assert response.headers["transfer-encoding"] == "chunked"  # streamed, not built in memory
                assert response.headers["content-disposition"] == 'attachment; filename="applications.csv"'
                body = (await response.aread()).decode("utf-8-sig")
            acceptances = (await http.get("/v1/staff/exports/acceptances.csv")).content.decode("utf-8-sig")
    [row] = list(csv.DictReader(io.StringIO(body)))
    assert row["application_id"] == application_id
    assert row["company_legal_name"] == '\'=HYPERLINK("http://evil.example","click")'
    assert row["account_name"].startswith("'+")
    assert row["notes"] == "'@SUM(1+1)"
    [link] = list(csv.DictReader(io.StringIO(acceptances)))
    assert link["sequence"] == "1"
    assert link["company_name"].startswith("'=")
    assert len(link["record_hash"]) == 64


async def test_status_and_timeline_follow_the_application_to_the_confirmation_email(
    staff_settings: AgreementsSettings,
    intake_settings: IntakeSettings,
    notifications_settings: NotificationsSettings,
    inbox: Any,
) -> None:
    agreements_app = agreements.main.create_app(staff_settings)
    intake_app = intake.main.create_app(intake_settings)
    async with (
        serving(intake_app, agreements_app, notifications.main.create_app(notifications_settings)),
        client(intake_app) as front,
        client(agreements_app) as back,
    ):
        unknown = await back.get("/v1/applications/00000000-0000-4000-8000-000000000000/status")
        accepted = (await front.post("/v1/applications", json=application())).json()
        status_path = accepted["status_url"].removeprefix(str(intake_settings.status_base_url).rstrip("/"))
        detail_path = f"/v1/staff/applications/{accepted['application_id']}"
        seen: list[str] = []

        async def until(reached: Status, moments: int) -> dict[str, Any]:
            # The status is only observable by asking for it: poll until it moves on.
            async with asyncio.timeout(20):
                while True:
                    status = (await back.get(status_path)).json()
                    detail: dict[str, Any] = (await back.get(detail_path, headers=AUTH)).json()
                    if status.get("status") and status["status"] not in seen:
                        seen.append(status["status"])
                    if status.get("status") == reached and len(detail["timeline"]) >= moments:
                        return {"status": status, "detail": detail}
                    await asyncio.sleep(0.05)

        waiting = await until(Status.AWAITING_VERIFICATION, 5)
        await verify_address(inbox, "li.wei@mapletea.example", front)
        done = await until(Status.CONFIRMED, 7)
        status, detail = done["status"], done["detail"]
    assert unknown.status_code == 404
    assert set(status) == {"application_id", "status", "description"}  # nothing about the applicant
    assert "confirm your email address" in waiting["status"]["description"]
    # Forward only ("verified" lasts as long as sending the receipt takes: polling may miss it).
    assert seen == sorted(seen, key=[str(status) for status in Status].index)
    assert seen[-1] == Status.CONFIRMED
    kinds = [moment["kind"] for moment in detail["timeline"]]
    assert kinds[:2] == ["submitted", "recorded"]
    assert sorted(kinds[2:]) == ["email_sent"] * 4 + ["email_verified"]  # two staff, the link, the receipt
    assert {m["detail"].get("template") for m in detail["timeline"][2:]} == {
        "staff_new_application",
        "email_verification",
        "client_confirmation",
        None,
    }
    assert detail["ledger"]["sequence"] == 1
    assert detail["ledger_verification"]["sequence"] == 2
    assert detail["status"] == Status.CONFIRMED


def _toml(version: str, effective: date, text: str) -> str:
    return (
        f'id = "{CURRENT.id}"\nversion = "{version}"\ntitle = "{CURRENT.title}"\n'
        f"effective_date = {effective.isoformat()}\ntext = '''\n{text}'''\n"
    )


def catalog_with_version_2(folder: Path, effective: date) -> Path:
    """The bundled version 1 plus a version 2: adding a version is adding a file."""
    folder.mkdir()
    folder.joinpath("v1.toml").write_text(_toml("1", CURRENT.effective_date, CURRENT.text), encoding="utf-8")
    changed = CURRENT.text.replace("12.5 This Agreement may be", "12.5 This Agreement (version 2) may be")
    folder.joinpath("v2.toml").write_text(_toml("2", effective, changed), encoding="utf-8")
    return folder


async def test_a_new_version_file_is_current_for_both_services_and_earlier_acceptances_must_reaccept(
    staff_settings: AgreementsSettings, intake_settings: IntakeSettings, amqp_url: str, mongo: Mongo, tmp_path: Path
) -> None:
    ids = await record(staff_settings, amqp_url, mongo, [application(), application()])
    folder = catalog_with_version_2(tmp_path / "agreements", effective=date.today())
    assert AgreementCatalog.from_folder(folder).current().version == "2"
    agreements_app = agreements.main.create_app(staff_settings.model_copy(update={"agreements_dir": folder}))
    intake_app = intake.main.create_app(intake_settings.model_copy(update={"agreements_dir": folder}))
    async with serving(intake_app, agreements_app), client(intake_app) as front, client(agreements_app) as back:
        intake_current = (await front.get("/v1/agreements/current")).json()
        agreements_current = (await back.get("/v1/agreements/current")).json()
        versions = (await back.get("/v1/agreements")).json()
        stale = await front.post("/v1/applications", json=application())  # still accepting version 1
        must_reaccept = (await back.get("/v1/staff/reacceptance", headers=AUTH)).json()
    assert intake_current == agreements_current
    assert intake_current["version"] == "2"
    assert [(v["version"], v["current"]) for v in versions] == [("1", False), ("2", True)]
    assert stale.status_code == 409
    assert stale.json()["current_agreement"]["version"] == "2"
    assert sorted(item["application_id"] for item in must_reaccept["items"]) == sorted(ids)
