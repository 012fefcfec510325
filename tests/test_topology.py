"""The topology as RabbitMQ itself reports it once the three services have declared it (each does, idempotently)."""

import asyncio
import json
from typing import Any

import aio_pika
import pytest

import agreements.main
import casework.main
import intake.main
import notifications.main
from agency_chassis.policies import DEAD_LETTER_DELIVERY_LIMIT, DEAD_LETTERS_POLICY
from agency_shared.events import ApplicationSubmitted
from agency_shared.topology import (
    AGREEMENTS_APPLICATION_SUBMITTED,
    CONSUMER_QUEUES,
    DEAD_LETTER_EXCHANGE,
    DELIVERY_LIMIT,
    EDGE_EVENTS,
    EVENTS_EXCHANGE,
    NOTIFICATIONS_AGREEMENT_RECORDED,
    RETIRED_QUEUES,
    consumers_of,
)
from agreements.settings import AgreementsSettings
from casework.settings import CaseworkSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import serving
from tests.support.events import application_submitted
from tests.support.servers import management_url


async def listing(vhost: str, what: str, *columns: str) -> list[dict[str, object]]:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", what, "-p", vhost, *columns, "--formatter", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


async def policy_definitions(vhost: str) -> dict[str, dict[str, Any]]:
    """The vhost's policies by name (rabbitmqctl 3.10 lists no effective definition per queue)."""
    found: dict[str, dict[str, Any]] = {}
    for row in await listing(vhost, "list_policies"):
        definition = row["definition"]
        found[str(row["name"])] = json.loads(definition) if isinstance(definition, str) else dict(definition)  # type: ignore[call-overload]
    return found


def queue_arguments(queue: dict[str, object]) -> dict[str, object]:
    """rabbitmqctl's JSON lists a queue's arguments as [name, type, value] triples."""
    entries = queue["arguments"]
    assert isinstance(entries, list)
    return {str(entry[0]): entry[-1] for entry in entries}


async def test_every_service_declares_the_same_topology_and_consumes_with_a_bounded_prefetch(
    intake_settings: IntakeSettings,
    agreements_settings: AgreementsSettings,
    notifications_settings: NotificationsSettings,
    casework_settings: CaseworkSettings,
    amqp_url: str,
) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    apps = (
        intake.main.create_app(intake_settings),
        agreements.main.create_app(agreements_settings),
        notifications.main.create_app(notifications_settings),
        casework.main.create_app(casework_settings),
        # A second replica declares it all again: declarations are idempotent (a mismatch would fail its start).
        agreements.main.create_app(agreements_settings),
    )
    async with serving(*apps):
        exchanges = {e["name"]: e for e in await listing(vhost, "list_exchanges", "name", "type", "durable")}
        listed = await listing(vhost, "list_queues", "name", "type", "durable", "arguments", "policy")
        queues = {q["name"]: q for q in listed}
        definitions = await policy_definitions(vhost)
        bindings = await listing(vhost, "list_bindings", "source_name", "destination_name", "routing_key")
        consumers = await listing(vhost, "list_consumers", "queue_name", "ack_required", "prefetch_count")

    assert exchanges[EVENTS_EXCHANGE.name]["type"] == "topic"
    assert exchanges[EVENTS_EXCHANGE.name]["durable"] is True
    assert exchanges[DEAD_LETTER_EXCHANGE.name]["durable"] is True
    routes = {(b["source_name"], b["destination_name"], b["routing_key"]) for b in bindings}
    for consumer in CONSUMER_QUEUES:
        queue, dlq = queues[consumer.name], queues[consumer.dead_letter_queue.name]
        assert (queue["type"], queue["durable"]) == ("quorum", True), consumer.name
        assert (dlq["type"], dlq["durable"]) == ("quorum", True), consumer.name
        # Only its type as an argument: every limit is a policy, which can change in place.
        assert queue_arguments(queue) == {"x-queue-type": "quorum"}, consumer.name
        assert queue["policy"] == f"wechat.{consumer.name}"
        limits = definitions[str(queue["policy"])]
        assert limits["dead-letter-exchange"] == DEAD_LETTER_EXCHANGE.name
        assert limits["dead-letter-routing-key"] == consumer.name
        assert limits["dead-letter-strategy"] == "at-least-once"
        assert limits["delivery-limit"] == DELIVERY_LIMIT
        assert limits["overflow"] == "reject-publish"
        assert limits["max-length"] == agreements_settings.queue_max_length
        assert dlq["policy"] == DEAD_LETTERS_POLICY
        retention = definitions[str(dlq["policy"])]
        assert retention["message-ttl"] == round(agreements_settings.dead_letter_retention_days * 86_400_000)
        # RabbitMQ 4 gives quorum queues a delivery limit of 20 by default: a DLQ's is out of any listing's reach,
        # or listing a dead letter often enough would drop it (-1, 4.x's "none", is refused in a policy).
        assert retention["delivery-limit"] == DEAD_LETTER_DELIVERY_LIMIT
        assert (EVENTS_EXCHANGE.name, consumer.name, consumer.event.routing_key) in routes
        assert (DEAD_LETTER_EXCHANGE.name, dlq["name"], consumer.name) in routes
    # Every consumer queue is consumed, with manual acks and an explicit, bounded prefetch.
    assert {c["queue_name"] for c in consumers} >= {q.name for q in CONSUMER_QUEUES}
    assert all(c["ack_required"] is True for c in consumers)
    assert {c["prefetch_count"] for c in consumers} == {agreements_settings.prefetch_count}


async def test_a_queue_of_an_earlier_version_is_unbound_at_start_and_keeps_what_it_holds(
    agreements_settings: AgreementsSettings, amqp_url: str
) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    [retired, *_] = RETIRED_QUEUES
    # As the earlier version left it: declared, bound, holding a message nobody consumes any more.
    async with broker.channel(amqp_url) as channel:
        queue = await channel.declare_queue(retired.name, durable=True, arguments={"x-queue-type": "quorum"})
        exchange = await channel.declare_exchange(EVENTS_EXCHANGE.name, "topic", durable=True)
        await queue.bind(exchange, routing_key=retired.routing_key)
        await exchange.publish(aio_pika.Message(b"{}", message_id="left-over"), routing_key=retired.routing_key)
    async with serving(agreements.main.create_app(agreements_settings)):
        bindings = await listing(vhost, "list_bindings", "source_name", "destination_name", "routing_key")
        # The one queue of the event now (topology.EDGE_EVENTS), and the retired one no longer bound.
        bound = {b["destination_name"] for b in bindings if b["routing_key"] == retired.routing_key}
    assert bound == {queue.name for queue in consumers_of(ApplicationSubmitted)}
    [left_over] = await broker.take(amqp_url, retired.name)
    assert left_over.message_id == "left-over"


def test_each_event_of_the_public_edge_has_exactly_one_consumer_queue() -> None:
    for event in EDGE_EVENTS:
        assert len(consumers_of(event)) == 1, event.routing_key


@pytest.mark.skipif(management_url() is None, reason="the service puts its policies through the management API")
async def test_changed_limits_never_stop_a_service_from_starting_and_take_effect_in_place(
    agreements_settings: AgreementsSettings, amqp_url: str
) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    async with serving(agreements.main.create_app(agreements_settings)):
        pass
    smaller = agreements_settings.model_copy(update={"queue_max_length": 7, "dead_letter_retention_days": 2.0})
    async with serving(agreements.main.create_app(smaller)):  # once a PRECONDITION_FAILED at start-up
        queues = {q["name"]: q for q in await listing(vhost, "list_queues", "name", "policy")}
        definitions = await policy_definitions(vhost)
    for consumer in CONSUMER_QUEUES:
        assert definitions[str(queues[consumer.name]["policy"])]["max-length"] == 7
        assert definitions[str(queues[consumer.dead_letter_queue.name]["policy"])]["message-ttl"] == 2 * 86_400_000


async def test_a_queue_an_earlier_version_declared_with_its_limits_as_arguments_is_kept_and_consumed(
    agreements_settings: AgreementsSettings, amqp_url: str
) -> None:
    queue = AGREEMENTS_APPLICATION_SUBMITTED
    async with broker.channel(amqp_url) as channel:
        await channel.declare_queue(
            queue.name,
            durable=True,
            arguments={
                "x-queue-type": "quorum", "x-max-length": 100_000, "x-overflow": "reject-publish",
                "x-delivery-limit": DELIVERY_LIMIT, "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
                "x-dead-letter-routing-key": queue.name,
            },
        )  # fmt: skip
    event = application_submitted()
    async with serving(agreements.main.create_app(agreements_settings)):  # no PRECONDITION_FAILED
        await broker.publish_events(amqp_url, [event])
        [recorded] = await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.name)
    assert json.loads(recorded.body)["data"]["application_id"] == str(event.data.application_id)
