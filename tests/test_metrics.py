"""The /metrics of every service move with real traffic through real RabbitMQ, SecantusDB and SMTP."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from faststream.rabbit import RabbitBroker
from prometheus_client import REGISTRY, generate_latest

import agreements.main
import intake.main
import notifications.main
from agency_chassis.publishing import EventPublisher, PublishFailed
from agency_chassis.service import declare_topology
from agency_shared.events import AgreementRecorded
from agency_shared.topology import EVENTS_EXCHANGE
from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import client, serving
from tests.support.data import STAFF, application
from tests.support.events import agreement_recorded_event, application_submitted
from tests.support.metrics import Samples, parse, value
from tests.support.servers import Inbox, apply_queue_policies

CLIENT = "li.wei@mapletea.example"
# wechat_publish_failures_total{reason}: returned, refused by a full queue, no confirm in time, no connection.
PUBLISH_FAILURE_REASONS = ("unroutable", "nacked", "timeout", "unavailable")


@dataclass
class Services:
    intake: httpx.AsyncClient
    agreements: httpx.AsyncClient
    notifications: httpx.AsyncClient

    async def scrape(self) -> dict[str, Samples]:
        scraped = {}
        for name in ("intake", "agreements", "notifications"):
            response = await getattr(self, name).get("/metrics")
            assert response.status_code == 200
            scraped[name] = parse(response.text)
        return scraped


@pytest.fixture
async def services(
    intake_settings: IntakeSettings,
    agreements_settings: AgreementsSettings,
    notifications_settings: NotificationsSettings,
) -> AsyncIterator[Services]:
    apps = (
        intake.main.create_app(intake_settings),
        agreements.main.create_app(agreements_settings),
        notifications.main.create_app(notifications_settings),
    )
    async with serving(*apps), client(apps[0]) as i, client(apps[1]) as a, client(apps[2]) as n:
        yield Services(i, a, n)


async def until(services: Services, moved: Callable[[dict[str, Samples]], bool], timeout: float = 20) -> None:
    """Scrape until ``moved`` holds: FastStream counts a message once its handler returned, after the email."""
    async with asyncio.timeout(timeout):
        while not moved(await services.scrape()):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def processed(service: str, event_type: str, status: str) -> dict[str, str]:
    return {
        "app_name": service,
        "broker": "rabbitmq",
        "handler": f"wechat_agency.events.{event_type}",
        "status": status,
    }


async def test_an_application_moves_the_http_message_email_ledger_and_publish_metrics(
    services: Services, inbox: Inbox
) -> None:
    before = await services.scrape()
    assert value(before["agreements"], "wechat_ledger_length") == 0  # measured at start-up: a fresh database

    response = await services.intake.post("/v1/applications", json=application())
    assert response.status_code == 202, response.text
    application_id = response.json()["application_id"]
    await inbox.wait_for(lambda _: bool(inbox.to(CLIENT)) and all(inbox.to(s) for s in STAFF))
    # An email is in the inbox before its handler returns and acks: wait for every ack counted.
    handled = [
        (service, processed(service, event_type, "acked"))
        for service, event_type in (
            ("agreements", "application.submitted"),
            ("notifications", "agreement.recorded"),
        )
    ]
    await until(
        services,
        lambda now: all(
            value(now[service], "faststream_received_processed_messages_total", **acked)
            > value(before[service], "faststream_received_processed_messages_total", **acked)
            for service, acked in handled
        ),
    )
    status = await services.agreements.get(f"/v1/applications/{application_id}/status")
    assert status.status_code == 200
    assert (await services.notifications.get("/healthz")).status_code == 200
    after = await services.scrape()

    def moved(service: str, name: str, /, **labels: str) -> float:
        return value(after[service], name, **labels) - value(before[service], name, **labels)

    post = {"service": "intake", "route": "/v1/applications", "method": "POST"}
    assert moved("intake", "wechat_http_requests_total", **post, status="202") == 1
    assert moved("intake", "wechat_http_request_duration_seconds_count", **post) == 1
    assert moved("intake", "intake_submissions_total", form="application", outcome="accepted") == 1
    # The route template, never the raw path.
    template = {"service": "agreements", "route": "/v1/applications/{application_id}/status", "method": "GET"}
    assert moved("agreements", "wechat_http_requests_total", **template, status="200") == 1
    assert not any(application_id in str(labels) for _, labels in after["agreements"])
    assert (
        moved(
            "notifications",
            "wechat_http_requests_total",
            service="notifications",
            route="/healthz",
            method="GET",
            status="200",
        )
        == 1
    )

    for service, event_type in (
        ("agreements", "application.submitted"),
        ("notifications", "agreement.recorded"),
    ):
        labels = processed(service, event_type, "acked")
        assert moved(service, "faststream_received_processed_messages_total", **labels) == 1, (service, event_type)
        del labels["status"]
        assert moved(service, "faststream_received_messages_total", **labels) == 1
        assert moved(service, "faststream_received_processed_messages_duration_seconds_count", **labels) == 1

    assert moved("notifications", "wechat_emails_total", template="staff_new_application", outcome="sent") == len(STAFF)
    assert moved("notifications", "wechat_emails_total", template="email_verification", outcome="sent") == 1
    assert value(after["agreements"], "wechat_ledger_length") == 1
    assert moved("intake", "wechat_publish_confirm_seconds_count", service="intake") == 1
    assert moved("agreements", "wechat_publish_confirm_seconds_count", service="agreements") >= 1  # agreement.recorded


async def test_a_honeypot_hit_is_counted(services: Services) -> None:
    before = await services.scrape()
    response = await services.intake.post("/v1/applications", json={**application(), "fax": "+1 555 0100"})
    assert response.status_code == 202
    after = await services.scrape()
    labels = {"form": "application"}
    assert (
        value(after["intake"], "intake_honeypot_hits_total", **labels)
        - value(before["intake"], "intake_honeypot_hits_total", **labels)
        == 1
    )


async def test_an_unreadable_message_is_counted_as_dead_lettered_by_queue(services: Services, amqp_url: str) -> None:
    before = await services.scrape()
    consumers = (
        ("agreements", "agreements.application-submitted", "application.submitted"),
        ("notifications", "notifications.agreement-recorded", "agreement.recorded"),
    )
    for _, queue, event_type in consumers:
        await broker.publish_raw(amqp_url, b'{"event_type": "' + event_type.encode() + b'"', event_type, "bad-1")
        await broker.take(amqp_url, f"{queue}.dlq")
    after = await services.scrape()
    for service, queue, event_type in consumers:
        dead = value(after[service], "wechat_dead_lettered_total", queue=queue) - value(
            before[service], "wechat_dead_lettered_total", queue=queue
        )
        assert dead == 1, queue
        # acknowledged once its copy was in the DLQ: nothing is left to the broker's dead-lettering
        acked = processed(service, event_type, "acked")
        assert (
            value(after[service], "faststream_received_processed_messages_total", **acked)
            - value(before[service], "faststream_received_processed_messages_total", **acked)
            == 1
        )


async def test_a_retried_email_and_a_failed_one_given_up_to_the_dead_letter_queue_are_counted(
    services: Services, amqp_url: str, inbox: Inbox
) -> None:
    before = await services.scrape()

    # Applications that passed no human check: their staff emails are held, the verification link is their one email.
    def held() -> AgreementRecorded:
        return agreement_recorded_event(submitted=application_submitted(human_check="none"))

    inbox.refuse(1, "451 4.3.0 Mailbox temporarily unavailable")
    await broker.publish_events(amqp_url, [held()])
    await inbox.wait_for(lambda messages: len(messages) == 1)
    inbox.reject_mailbox(CLIENT)  # the next client's mailbox does not exist: a permanent failure
    await broker.publish_events(amqp_url, [held()])
    await broker.take(amqp_url, "notifications.agreement-recorded.dlq")
    after = await services.scrape()

    def moved(name: str, /, **labels: str) -> float:
        return value(after["notifications"], name, **labels) - value(before["notifications"], name, **labels)

    assert moved("wechat_emails_total", template="email_verification", outcome="retried") == 1
    assert moved("wechat_emails_total", template="email_verification", outcome="sent") == 1
    assert moved("wechat_emails_total", template="email_verification", outcome="failed") == 1
    # The staff are told about the client they could not reach.
    assert moved("wechat_emails_total", template="staff_client_unreachable", outcome="sent") == len(STAFF)
    assert moved("wechat_dead_lettered_total", queue="notifications.agreement-recorded") == 1


async def publish_until_one_fails(amqp_url: str, reason: str, service: str) -> int:
    """Publish through a real EventPublisher until a publish fails for ``reason``; the number confirmed before it."""
    async with RabbitBroker(amqp_url) as rabbit:
        if reason == "nacked":  # queues that hold one message
            apply_queue_policies(amqp_url.rsplit("/", 1)[1], max_length=1)
            await declare_topology(rabbit, amqp_url)
        else:  # no queue bound: the broker returns every event
            await rabbit.declare_exchange(EVENTS_EXCHANGE)
    # No broker confirms within a nanosecond: the publish times out.
    publisher = EventPublisher(amqp_url, timeout=1e-9 if reason == "timeout" else 5, service=service)
    if reason != "unavailable":  # never connected
        await publisher.start()
    confirmed = 0
    try:
        # A quorum queue refuses once it is over its limit: with a limit of 1, the second or third publish.
        for _ in range(3):
            await publisher.publish(application_submitted())
            confirmed += 1
    except PublishFailed:
        return confirmed
    finally:
        await publisher.stop()
    pytest.fail(f"{confirmed} publishes confirmed, none failed ({reason})")


@pytest.mark.parametrize("reason", PUBLISH_FAILURE_REASONS)
async def test_each_kind_of_failed_publish_is_counted_under_its_reason(amqp_url: str, reason: str) -> None:
    service = f"test-{uuid.uuid4().hex[:6]}"
    confirmed = await publish_until_one_fails(amqp_url, reason, service)
    # Full queues took one event, or two, before refusing; any other failure is the first publish's.
    assert confirmed in ({1, 2} if reason == "nacked" else {0})
    metrics = parse(generate_latest(REGISTRY).decode())
    counted = {
        r: value(metrics, "wechat_publish_failures_total", service=service, reason=r) for r in PUBLISH_FAILURE_REASONS
    }
    assert counted == {r: 1.0 if r == reason else 0.0 for r in PUBLISH_FAILURE_REASONS}
    assert value(metrics, "wechat_publish_confirm_seconds_count", service=service) == confirmed
