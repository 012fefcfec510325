"""The AsyncAPI documents: the committed files match the code, and each running service serves its own."""

import json
from typing import Any

import pytest
import yaml
from fastapi import FastAPI

import agreements.main
import intake.main
import notifications.main
from agency_chassis.asyncapi import EventDocument
from agency_shared.events import (
    AgreementRecorded,
    ApplicantErased,
    ApplicationSubmitted,
    EnquiryReceived,
    Event,
    NotificationSettled,
)
from agency_shared.topology import CONSUMER_QUEUES, EVENTS_EXCHANGE
from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from scripts.asyncapi import documents, path_of
from tests.support.apps import client, serving

SERVICES = ("intake", "agreements", "notifications")
PUBLISHES: dict[str, tuple[type[Event], ...]] = {
    "intake": (ApplicationSubmitted, EnquiryReceived),
    "agreements": (AgreementRecorded, ApplicantErased),
    "notifications": (NotificationSettled,),
}


@pytest.fixture(scope="module")
def regenerated() -> dict[str, EventDocument]:
    return documents()


@pytest.mark.parametrize("service", SERVICES)
def test_committed_document_is_what_the_code_generates(service: str, regenerated: dict[str, EventDocument]) -> None:
    path = path_of(service)
    assert path.exists(), f"{path} is missing: run `make asyncapi` and commit it"
    assert path.read_text(encoding="utf-8") == regenerated[service].to_yaml(), (
        f"{path} is out of date with the code: run `make asyncapi` and commit the result"
    )


def test_generation_is_deterministic() -> None:
    first, second = documents(), documents()
    assert {name: doc.to_yaml() for name, doc in first.items()} == {name: doc.to_yaml() for name, doc in second.items()}


@pytest.mark.parametrize("service", SERVICES)
def test_each_published_event_is_a_send_operation_on_the_events_exchange(service: str) -> None:
    document = yaml.safe_load(path_of(service).read_text(encoding="utf-8"))
    sent = {name: op for name, op in document["operations"].items() if op["action"] == "send"}
    assert set(sent) == {event.routing_key for event in PUBLISHES[service]}
    for event in PUBLISHES[service]:
        channel = document["channels"][event.routing_key]
        assert channel["address"] == event.routing_key
        assert channel["bindings"]["amqp"]["exchange"]["name"] == EVENTS_EXCHANGE.name
        assert channel["bindings"]["amqp"]["exchange"]["type"] == "topic"
        binding = sent[event.routing_key]["bindings"]["amqp"]
        assert binding["deliveryMode"] == 2  # persistent, as EventPublisher sends it
        assert binding["mandatory"] is True
        assert_payload_is_the_model(document, f"{event.routing_key}:Message", event)


@pytest.mark.parametrize("service", SERVICES)
def test_each_consumed_queue_is_a_receive_operation_with_its_event_model(service: str) -> None:
    document = yaml.safe_load(path_of(service).read_text(encoding="utf-8"))
    received = {name for name, op in document["operations"].items() if op["action"] == "receive"}
    queues = [queue for queue in CONSUMER_QUEUES if queue.name.startswith(f"{service}.")]
    assert received == {queue.name for queue in queues}
    for queue in queues:
        channel = document["channels"][queue.name]
        assert channel["address"] == queue.event.routing_key
        assert channel["bindings"]["amqp"]["queue"]["name"] == queue.name
        assert_payload_is_the_model(document, f"{queue.name}:SubscribeMessage", queue.event)


def assert_payload_is_the_model(document: dict[str, Any], message: str, event: type[Event]) -> None:
    payload = document["components"]["messages"][message]["payload"]
    assert payload == {"$ref": f"#/components/schemas/{event.__name__}"}
    schema = document["components"]["schemas"][event.__name__]
    assert list(schema["properties"]) == list(event.model_fields)
    assert schema["properties"]["event_type"]["const"] == event.routing_key
    assert schema["properties"]["data"] == {"$ref": f"#/components/schemas/{event.__name__}Data"}


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
