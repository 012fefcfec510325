"""The AsyncAPI documents: the committed files are what the code generates, in any process, and describe the events."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agency_chassis.asyncapi import EventDocument
from agency_shared.events import (
    AcceptanceConfirmed,
    AgreementReaccepted,
    AgreementRecorded,
    ApplicantErased,
    ApplicationSubmitted,
    CaseReminderDue,
    CaseStatusChanged,
    DocumentReceived,
    EmailVerified,
    EnquiryConfirmed,
    EnquiryReceived,
    EnquiryReleased,
    Event,
    LedgerCheckpointed,
    NotificationSettled,
    PortalLinkRequested,
)
from agency_shared.topology import CONSUMER_QUEUES, EDGE_EVENTS, EVENTS_EXCHANGE
from scripts.asyncapi import documents, path_of

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("intake", "agreements", "notifications", "casework")
PUBLISHES: dict[str, tuple[type[Event], ...]] = {  # intake's: topology.EDGE_EVENTS
    "intake": (ApplicationSubmitted, EnquiryReceived, EmailVerified),
    "agreements": (AgreementRecorded, AcceptanceConfirmed, EnquiryConfirmed, ApplicantErased, LedgerCheckpointed),
    "notifications": (NotificationSettled, EnquiryReleased),
    "casework": (CaseStatusChanged, CaseReminderDue, DocumentReceived, PortalLinkRequested, AgreementReaccepted),
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


# Run by a new interpreter: writes every service's document, in service order, to the file named by argv[1].
GENERATE = """
import sys
from pathlib import Path
from scripts.asyncapi import documents
generated = documents(log_level="WARNING")
Path(sys.argv[1]).write_text("".join(generated[name].to_yaml() for name in sorted(generated)), encoding="utf-8")
"""


def test_every_process_generates_the_same_bytes(tmp_path: Path) -> None:
    # A set's order, or a dict built from one, changes with each interpreter's string hash seed:
    # two processes with different seeds catch what regenerating twice in one process cannot.
    outputs = [tmp_path / f"seed-{seed}.yaml" for seed in ("1", "2")]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", GENERATE, str(output)],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": output.stem.removeprefix("seed-")},
            stderr=subprocess.PIPE,
        )
        for output in outputs
    ]
    for process in processes:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors.decode()
    first, second = (output.read_bytes() for output in outputs)
    assert first == second
    assert first == "".join(path_of(name).read_text(encoding="utf-8") for name in sorted(SERVICES)).encode()


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


def test_intake_publishes_exactly_the_events_of_the_public_edge() -> None:
    assert set(PUBLISHES["intake"]) == set(EDGE_EVENTS)
