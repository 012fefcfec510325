"""The event publisher's own connection, against the real RabbitMQ."""

import pytest

from agency_chassis.messaging import EventPublisher, PublishFailed
from tests.support.events import application_submitted


async def test_readiness_follows_the_publishing_connection(amqp_url: str) -> None:
    publisher = EventPublisher(amqp_url, timeout=5, service="test")
    assert not await publisher.ready()
    await publisher.start()
    assert await publisher.ready()
    await publisher.stop()
    assert not await publisher.ready()


async def test_publishing_before_start_fails_loudly(amqp_url: str) -> None:
    publisher = EventPublisher(amqp_url, timeout=5, service="test")
    with pytest.raises(PublishFailed, match="not started"):
        await publisher.publish(application_submitted())
