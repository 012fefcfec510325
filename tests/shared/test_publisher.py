"""The event publisher's own connection, and the confirm semantics its adapter relies on, against the real RabbitMQ."""

import asyncio
from collections.abc import Callable

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import DeliveryError, PublishError
from aiormq import spec

from agency_chassis.publishing import (
    CoalescingConnection,
    EventPublisher,
    MessageCopy,
    PublishFailed,
    publish_confirmed,
)
from tests.support.coalescing import count_flushes
from tests.support.events import application_submitted
from tests.support.servers import rabbitmqctl


async def test_readiness_follows_the_publishing_connection(amqp_url: str) -> None:
    publisher = EventPublisher(amqp_url, timeout=5, service="test")
    assert not await publisher.ready()
    await publisher.start()
    assert await publisher.ready()
    await publisher.stop()
    assert not await publisher.ready()


async def test_readiness_is_lost_with_the_connection_and_comes_back_with_it(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes = count_flushes(monkeypatch)
    publisher = EventPublisher(amqp_url, timeout=5, service="test")
    await publisher.start()
    try:
        vhost = amqp_url.rsplit("/", 1)[1]
        connections = rabbitmqctl("list_connections", "-q", "--no-table-headers", "pid", "vhost").splitlines()
        for pid in [line.split("\t")[0] for line in connections if line.endswith(f"\t{vhost}")]:
            rabbitmqctl("close_connection", pid, "test: the broker drops the publisher")
        await wait_until(lambda: not publisher.ready_now(), timeout=10)
        await wait_until(publisher.ready_now, timeout=30)  # the robust connection reconnects by itself
        # ... on a coalescing transport again: the copy leaves through it and is confirmed.
        flushes.clear()
        queue = await declared_queue(amqp_url, "publisher.after-reconnect")
        await publisher.send_copy(copy(b"after"), queue)
        assert flushes, "the reconnected publisher no longer writes through CoalescedWrites"
        assert await bodies_in(amqp_url, queue) == [b"after"]
    finally:
        await publisher.stop()


async def test_the_publishes_of_one_loop_turn_leave_together_and_each_is_confirmed(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushes = count_flushes(monkeypatch)
    queue = await declared_queue(amqp_url, "publisher.coalesced")
    publisher = EventPublisher(amqp_url, timeout=10, service="test")
    await publisher.start()
    try:
        flushes.clear()
        bodies = [f"message {number} 消息".encode() for number in range(60)]
        # All at once, as a busy intake publishes for the requests it read in one turn of its loop.
        await asyncio.gather(*(publisher.send_copy(copy(body), queue) for body in bodies))
    finally:
        await publisher.stop()
    # What RabbitMQ took: every message once, whole, in the order it was published.
    assert await bodies_in(amqp_url, queue) == bodies
    # Each publish is one write of aiormq's; they left in a few socket writes, not one each.
    assert sum(flushes) >= len(bodies)
    assert len(flushes) <= 3, flushes


def copy(body: bytes) -> MessageCopy:
    return MessageCopy(body, message_id=body.hex(), correlation_id=None, content_type="text/plain", message_type=None)


async def declared_queue(amqp_url: str, name: str) -> str:
    async with await aio_pika.connect_robust(amqp_url) as connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=True)
    return name


async def bodies_in(amqp_url: str, queue: str) -> list[bytes]:
    bodies = []
    async with await aio_pika.connect_robust(amqp_url) as connection:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        while (message := await declared.get(no_ack=True, fail=False)) is not None:
            bodies.append(message.body)
    return bodies


async def test_publishing_before_start_fails_loudly(amqp_url: str) -> None:
    publisher = EventPublisher(amqp_url, timeout=5, service="test")
    with pytest.raises(PublishFailed, match="not started"):
        await publisher.publish(application_submitted())


async def confirming_channel(amqp_url: str) -> tuple[aio_pika.abc.AbstractRobustConnection, AbstractChannel]:
    """A channel as the publisher has it: confirms on, returns raise, on a coalescing connection."""
    connection = await aio_pika.connect_robust(amqp_url, connection_class=CoalescingConnection)
    return connection, await connection.channel(publisher_confirms=True, on_return_raises=True)


async def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polling the publisher's own state
            await asyncio.sleep(0.05)


def properties() -> spec.Basic.Properties:
    return spec.Basic.Properties(delivery_mode=2, message_id="m-1")


async def test_publishing_confirmed_returns_once_the_broker_took_it(amqp_url: str) -> None:
    connection, channel = await confirming_channel(amqp_url)
    async with connection:
        queue = await channel.declare_queue("contract.accepted", durable=True)
        await publish_confirmed(channel, b"one", exchange="", routing_key=queue.name, properties=properties())
        taken = await queue.get(no_ack=True, fail=False)
    assert taken is not None
    assert (taken.body, taken.message_id) == (b"one", "m-1")


async def test_publishing_confirmed_raises_publish_error_when_returned(amqp_url: str) -> None:
    connection, channel = await confirming_channel(amqp_url)
    async with connection:
        with pytest.raises(PublishError):
            await publish_confirmed(
                channel, b"lost", exchange="", routing_key="contract.no-such-queue", properties=properties()
            )


async def test_publishing_confirmed_raises_delivery_error_when_nacked(amqp_url: str) -> None:
    connection, channel = await confirming_channel(amqp_url)
    async with connection:
        full = await channel.declare_queue(
            "contract.full", durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
        )
        await publish_confirmed(channel, b"1", exchange="", routing_key=full.name, properties=properties())
        with pytest.raises(DeliveryError) as refused:
            await publish_confirmed(channel, b"2", exchange="", routing_key=full.name, properties=properties())
    assert not isinstance(refused.value, PublishError)  # nacked, not returned
