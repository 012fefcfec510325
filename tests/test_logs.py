"""JSON log lines: their fields, and one correlation id following a submission through every service."""

import asyncio
import io
import json
import logging
import uuid
from typing import Any

import httpx
import pytest
import uvicorn
from pymongo import AsyncMongoClient

import agreements.main
import intake.main
import notifications.main
from agency_chassis.logs import configure_logging
from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support.apps import client, serving
from tests.support.data import STAFF, application
from tests.support.servers import Inbox, free_port

CLIENT = "li.wei@mapletea.example"


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    # Every line must be one JSON object, whoever wrote it.
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


@pytest.mark.usefixtures("restored_logging")
def test_a_record_is_one_json_line_with_the_service_level_event_and_ids() -> None:
    buffer = io.StringIO()
    configure_logging("agreements", "INFO", stream=buffer)
    logging.getLogger("agreements.handlers").info(
        "application %s recorded\nas link %d",
        "a-1",
        7,
        extra={"correlation_id": "c-1", "application_id": "a-1"},
    )
    assert buffer.getvalue().count("\n") == 1  # the newline in the message is escaped
    [line] = lines(buffer)
    assert line == {
        "timestamp": line["timestamp"],
        "level": "INFO",
        "service": "agreements",
        "logger": "agreements.handlers",
        "event": "application a-1 recorded\nas link 7",
        "correlation_id": "c-1",
        "application_id": "a-1",
    }
    assert line["timestamp"].endswith("+00:00")


@pytest.mark.usefixtures("restored_logging")
def test_an_exception_stays_on_its_line_and_the_libraries_loggers_come_out_as_json_too() -> None:
    buffer = io.StringIO()
    configure_logging("intake", "INFO", stream=buffer)
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("faststream.access").exception("Processed")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "203.0.113.7:5151", "GET", "/healthz", "1.1", 200
    )
    failed, access = lines(buffer)
    assert failed["level"] == "ERROR"
    assert "ValueError: broken" in failed["exc_info"]
    assert (access["logger"], access["service"]) == ("uvicorn.access", "intake")
    assert access["event"] == '203.0.113.7:5151 - "GET /healthz HTTP/1.1" 200'


@pytest.mark.usefixtures("restored_logging")
def test_log_level_decides_for_the_libraries_too() -> None:
    buffer = io.StringIO()
    logging.getLogger("faststream").setLevel(logging.INFO)  # as FastStream leaves it on import
    configure_logging("notifications", "WARNING", stream=buffer)
    logging.getLogger("faststream.access").info("Received")
    logging.getLogger("uvicorn.access").info("GET /healthz")
    logging.getLogger("uvicorn.error").warning("shutting down")
    assert [line["event"] for line in lines(buffer)] == ["shutting down"]


@pytest.mark.usefixtures("restored_logging")
def test_the_text_format_is_one_readable_line() -> None:
    buffer = io.StringIO()
    configure_logging("intake", "INFO", "text", stream=buffer)
    logging.getLogger("intake.api").info("application %s accepted", "a-1", extra={"correlation_id": "c-1"})
    logging.getLogger("intake.api").warning("no id here")
    first, second = buffer.getvalue().splitlines()
    assert first.endswith(" intake INFO intake.api [c-1]: application a-1 accepted")
    assert second.endswith(" intake WARNING intake.api [-]: no id here")


async def served_lines(intake_settings: IntakeSettings, access_log: bool) -> list[dict[str, Any]]:
    """The log lines of a GET /healthz to intake served as `python -m` does: uvicorn sets up logging, then the app."""
    port = free_port()
    config = uvicorn.Config(
        lambda: intake.main.create_app(intake_settings),
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="info",
        access_log=access_log,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    buffer = io.StringIO()
    try:
        async with asyncio.timeout(30):
            while not server.started:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        configure_logging("intake", "INFO", stream=buffer)
        async with httpx.AsyncClient() as http:
            # A query string may hold a credential (the portal's /portal/open?t=<token>): not logged.
            response = await http.get(
                f"http://127.0.0.1:{port}/healthz?t=s3cret-token", headers={"X-Correlation-ID": "access-1"}
            )
        assert response.status_code == 200
    finally:
        server.should_exit = True
        await task
    return lines(buffer)


@pytest.mark.usefixtures("restored_logging")
async def test_uvicorn_access_lines_are_json_with_the_request_correlation_id(intake_settings: IntakeSettings) -> None:
    [access] = [line for line in await served_lines(intake_settings, True) if line["logger"] == "uvicorn.access"]
    assert access["correlation_id"] == "access-1"
    assert access["service"] == "intake"
    assert '"GET /healthz?… HTTP/1.1" 200' in access["event"]
    assert "s3cret" not in json.dumps(access)


@pytest.mark.usefixtures("restored_logging")
async def test_an_access_log_uvicorn_was_told_to_skip_stays_off(intake_settings: IntakeSettings) -> None:
    # `python -m intake` serves with access_log=False: it logs each submission itself.
    served = await served_lines(intake_settings, False)
    assert any(line["logger"] == "uvicorn.error" for line in served)  # the server's own lines still come
    assert not [line for line in served if line["logger"] == "uvicorn.access"]


@pytest.mark.usefixtures("restored_logging")
async def test_one_correlation_id_follows_a_submission_through_every_service_event_and_email(
    intake_settings: IntakeSettings,
    agreements_settings: AgreementsSettings,
    notifications_settings: NotificationsSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
    inbox: Inbox,
) -> None:
    apps = (
        intake.main.create_app(intake_settings),
        agreements.main.create_app(agreements_settings),
        notifications.main.create_app(notifications_settings),
    )
    buffer = io.StringIO()
    configure_logging("tests", "INFO", stream=buffer)  # the services' handler, writing here
    correlation_id = f"logs-{uuid.uuid4().hex}"
    async with serving(*apps), client(apps[0]) as http:
        response = await http.post("/v1/applications", json=application(), headers={"X-Correlation-ID": correlation_id})
        assert response.status_code == 202, response.text
        assert response.headers["X-Correlation-ID"] == correlation_id
        application_id = response.json()["application_id"]
        await inbox.wait_for(lambda _: bool(inbox.to(CLIENT)) and all(inbox.to(s) for s in STAFF))
        # The settled emails come back to agreements as notification.settled: wait for all three.
        async with asyncio.timeout(20):
            while len(_processed(lines(buffer), correlation_id, "agreements.notification-settled")) < 3:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    ours = [line for line in lines(buffer) if line.get("correlation_id") == correlation_id]
    for service in ("intake", "agreements", "notifications"):
        assert any(line["service"] == service and line.get("application_id") == application_id for line in ours), (
            service
        )
    # Every event carried it: FastStream's line for each delivery has it, from the message's correlation_id.
    received = {line["queue"] for line in ours if line["logger"] == "faststream.access" and line["event"] == "Received"}
    assert received == {
        "agreements.application-submitted",
        "notifications.agreement-recorded",
        "agreements.notification-settled",
    }
    # The service's own lines while handling carry the application too, not only FastStream's.
    recorded = [line for line in ours if line["logger"] == "agreements.handlers"]
    assert [line["application_id"] for line in recorded] == [application_id]
    sent = [line for line in ours if line["logger"] == "notifications.handlers"]
    assert {line["application_id"] for line in sent} == {application_id}
    assert len(sent) == 2  # the staff emails of application.submitted, the client's of agreement.recorded
    # Lines about other work (start-up, SMTP chatter) carry no correlation id rather than a wrong one.
    assert all(line.get("correlation_id") in (None, correlation_id) for line in lines(buffer))

    assert len(inbox.messages) == len(STAFF) + 1
    assert {email["X-Correlation-ID"] for email in inbox.messages} == {correlation_id}
    stored = await mongo[agreements_settings.mongodb_db]["applications"].find_one({"application_id": application_id})
    assert stored is not None
    assert stored["correlation_id"] == correlation_id


def _processed(found: list[dict[str, Any]], correlation_id: str, queue: str) -> list[dict[str, Any]]:
    return [
        line
        for line in found
        if line.get("correlation_id") == correlation_id and line.get("queue") == queue and line["event"] == "Processed"
    ]
