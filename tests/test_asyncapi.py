"""Each running service serves its AsyncAPI document: the committed one, with the broker it was started with."""

import json

import yaml
from fastapi import FastAPI

import agreements.main
import intake.main
import notifications.main
from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from scripts.asyncapi import path_of
from tests.support.apps import client, serving


async def test_intake_serves_its_document(intake_settings: IntakeSettings) -> None:
    await assert_serves_its_document("intake", intake.main.create_app(intake_settings))


async def test_agreements_serves_its_document(agreements_settings: AgreementsSettings) -> None:
    await assert_serves_its_document("agreements", agreements.main.create_app(agreements_settings))


async def test_notifications_serves_its_document(notifications_settings: NotificationsSettings) -> None:
    await assert_serves_its_document("notifications", notifications.main.create_app(notifications_settings))


async def assert_serves_its_document(service: str, app: FastAPI) -> None:
    async with serving(app), client(app) as http:
        as_json = await http.get("/asyncapi.json")
        as_yaml = await http.get("/asyncapi.yaml")
        page = await http.get("/asyncapi")
        openapi = await http.get("/openapi.json")

    assert as_json.status_code == as_yaml.status_code == page.status_code == 200
    assert as_json.headers["content-type"] == "application/json"
    assert as_yaml.headers["content-type"] == "application/yaml"
    served = json.loads(as_json.text)
    assert yaml.safe_load(as_yaml.text) == served
    committed = yaml.safe_load(path_of(service).read_text(encoding="utf-8"))
    # Only the broker's address differs (this test's vhost); the events, queues and schemas are the committed ones.
    assert served["operations"] == committed["operations"]
    assert served["components"] == committed["components"]
    assert set(served["channels"]) == set(committed["channels"])
    assert "guest" not in json.dumps(served["servers"])  # credentials never leave the process
    assert page.headers["content-type"].startswith("text/html")
    assert f"<title>{app.title} AsyncAPI</title>" in page.text
    assert not any(path.startswith("/asyncapi") for path in openapi.json()["paths"])
