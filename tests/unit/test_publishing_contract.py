"""What ``publish_confirmed`` relies on in aio-pika and aiormq, beyond their documented API.

If an upgrade removes or changes one of these, this fails before anything else does
(tests/shared/test_publisher.py checks the confirm semantics against the real broker).
"""

import inspect

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel
from aio_pika.exceptions import DeliveryError, PublishError


def test_aio_pika_channels_hand_out_their_aiormq_channel() -> None:
    for channel_class in (AbstractChannel, aio_pika.Channel, aio_pika.RobustChannel):
        method = getattr(channel_class, "get_underlay_channel", None)
        assert method is not None, channel_class
        assert inspect.iscoroutinefunction(method), channel_class


def test_aiormq_basic_publish_takes_wait_and_mandatory() -> None:
    parameters = inspect.signature(aiormq.Channel.basic_publish).parameters
    for name in ("body", "exchange", "routing_key", "properties", "mandatory", "wait"):
        assert name in parameters, name
    assert parameters["wait"].default is True  # each publish is written out before its confirm is awaited
    assert inspect.iscoroutinefunction(aiormq.Channel.basic_publish)


def test_the_confirm_failures_are_the_errors_aio_pika_names() -> None:
    assert DeliveryError is aiormq.exceptions.DeliveryError  # a nack
    assert PublishError is aiormq.exceptions.PublishError  # returned (unroutable)
    assert issubclass(PublishError, DeliveryError)
