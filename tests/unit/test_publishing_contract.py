"""What ``publish_confirmed`` and ``CoalescingConnection`` rely on in aio-pika and aiormq, beyond their documented API.

If an upgrade removes or changes one of these, this fails before anything else does
(tests/shared/test_publisher.py checks the confirm semantics against the real broker).
"""

import inspect
from typing import Any

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import DeliveryError, PublishError
from aiormq.connection import TCPTransportFactory, TLSTransportFactory
from aiormq.exceptions import AMQPConnectionError
from yarl import URL

from agency_chassis.publishing import WRITES_QUEUED, CoalescingConnection, CoalescingTransport


def test_aio_pika_channels_hand_out_their_aiormq_channel() -> None:
    for channel_class in (AbstractChannel, aio_pika.Channel, aio_pika.RobustChannel):
        method = getattr(channel_class, "get_underlay_channel", None)
        assert method is not None, channel_class
        assert inspect.iscoroutinefunction(method), channel_class


def test_aiormq_basic_publish_takes_wait_and_mandatory() -> None:
    parameters = inspect.signature(aiormq.Channel.basic_publish).parameters
    for name in ("body", "exchange", "routing_key", "properties", "mandatory", "wait"):
        assert name in parameters, name
    assert inspect.iscoroutinefunction(aiormq.Channel.basic_publish)


def test_the_confirm_failures_are_the_errors_aio_pika_names() -> None:
    assert DeliveryError is aiormq.exceptions.DeliveryError  # a nack
    assert PublishError is aiormq.exceptions.PublishError  # returned (unroutable)
    assert issubclass(PublishError, DeliveryError)


def test_aiormq_takes_a_transport_factory_and_opens_tcp_and_tls_with_its_own() -> None:
    assert "transport_factory" in inspect.signature(aiormq.Connection.__init__).parameters
    assert issubclass(CoalescingTransport, aiormq.TransportFactory)
    for factory in (TCPTransportFactory, TLSTransportFactory):
        assert issubclass(factory, aiormq.TransportFactory)
        assert inspect.iscoroutinefunction(factory.create)


async def test_aio_pika_hands_a_connections_kwargs_to_aiormq(monkeypatch: pytest.MonkeyPatch) -> None:
    """(A robust connection's reconnects call the same; tests/shared/test_publisher.py checks one.)"""
    given: list[dict[str, Any]] = []

    async def connect(url: URL, **kwargs: Any) -> None:
        given.append(kwargs)
        raise AMQPConnectionError("not connecting in a unit test")

    monkeypatch.setattr(aiormq, "connect", connect)
    assert "connection_class" in inspect.signature(aio_pika.connect_robust).parameters
    connection = CoalescingConnection(URL("amqp://guest:guest@127.0.0.1:5672/"))
    with pytest.raises(AMQPConnectionError):
        await connection.connect(timeout=5)
    await connection.close()
    assert [type(kwargs.get("transport_factory")) for kwargs in given] == [CoalescingTransport]


async def test_aiormq_queues_as_many_writes_for_its_writer_as_we_allow() -> None:
    connection = aiormq.Connection("amqp://guest:guest@127.0.0.1:5672/")
    assert connection.write_queue.maxsize == WRITES_QUEUED > 10
