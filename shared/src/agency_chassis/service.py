"""What every service runs on: the topology, its broker, publisher and runner started in order, its HTTP side."""

import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Protocol

import aio_pika
from aio_pika.exceptions import AMQPError, ChannelNotFoundEntity
from fastapi import FastAPI
from faststream.rabbit import Channel, RabbitBroker

from agency_chassis.asyncapi import document_events
from agency_chassis.consuming import Runner
from agency_chassis.correlation import CorrelationIdMiddleware, MessageContext
from agency_chassis.health import ReadinessCheck, health_router
from agency_chassis.logs import BROKER_LOGGER
from agency_chassis.metrics import HttpMetricsMiddleware, broker_metrics
from agency_chassis.policies import apply_policies_or_warn
from agency_chassis.publishing import EventPublisher
from agency_chassis.retries import Backoff
from agency_chassis.settings import SharedSettings
from agency_shared.events import Event
from agency_shared.topology import (
    CONSUMER_QUEUES,
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    RETIRED_QUEUES,
    RetiredQueue,
)

logger = logging.getLogger(__name__)


class Adapters(Protocol):
    """What a service's use cases and routes run with (database, mailer...): opened before the broker consumes,
    closed after it stopped."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...


async def declare_topology(broker: RabbitBroker, amqp_url: str) -> None:
    """Declare exchanges, queues, DLQs and bindings, and unbind retired queues; idempotent, so every service
    runs it at start-up.

    Every service declares the whole topology, not only its own queues: a
    publisher that comes up first must still find its events routed (publishes
    are mandatory, so an unroutable event is an error, never a silent loss).
    A consumer queue that exists already is only bound, never declared again: one an earlier
    version declared with its limits as arguments would refuse a declaration without them
    (``PRECONDITION_FAILED``); its limits come from policies now (``agency_chassis.policies``).
    The queues of earlier versions (``RETIRED_QUEUES``) that still exist are unbound, not deleted:
    what they hold is left for an operator (a queue nobody consumes that kept taking copies would
    fill up to its length limit, and then refuse every publish of its event).
    """
    events = await broker.declare_exchange(EVENTS_EXCHANGE)
    dead_letters = await broker.declare_exchange(DEAD_LETTER_EXCHANGE)
    # Passive checks on a connection of their own: a missing queue closes the channel that asked.
    connection = await aio_pika.connect(amqp_url, client_properties={"connection_name": "topology"})
    async with connection:
        for consumer in CONSUMER_QUEUES:
            exists = await _existing(connection, consumer.name) is not None
            queue = await broker.declare_queue(consumer.declaration(passive=exists))
            await queue.bind(events, routing_key=consumer.event.routing_key)
            dlq = await broker.declare_queue(consumer.dead_letter_queue)
            await dlq.bind(dead_letters, routing_key=consumer.name)
        for retired in RETIRED_QUEUES:
            if (old := await _existing(connection, retired.name)) is not None:
                await _unbind(old, retired)


async def _existing(connection: aio_pika.abc.AbstractConnection, name: str) -> aio_pika.abc.AbstractQueue | None:
    """The queue ``name`` if it exists (a passive declaration on a channel of its own), else None."""
    channel = await connection.channel()
    try:
        return await channel.get_queue(name, ensure=True)
    except ChannelNotFoundEntity:
        return None  # the broker closed that channel


async def _unbind(queue: aio_pika.abc.AbstractQueue, retired: RetiredQueue) -> None:
    try:
        await queue.unbind(EVENTS_EXCHANGE.name, retired.routing_key)
    except AMQPError as exc:  # e.g. a user not allowed to: worth an operator's look, not a failed start
        logger.error("retired queue %s could not be unbound (%r): unbind or delete it by hand", retired.name, exc)
        return
    logger.warning(
        "retired queue %s unbound from %s; once an operator emptied it, it can be deleted",
        retired.name, retired.routing_key,
    )  # fmt: skip


class ServiceChassis:
    """One service's chassis (a consumer, or intake, which only publishes): nothing connects until ``running()``."""

    def __init__(self, service: str, settings: SharedSettings) -> None:
        self.service = service
        self._amqp_url = str(settings.amqp_url)
        self._max_length = settings.queue_max_length
        self._dead_letter_retention_days = settings.dead_letter_retention_days
        self._management_url = settings.rabbitmq_management_url
        # The broker only consumes (and declares): every message leaves through the publisher.
        self.broker = RabbitBroker(
            str(settings.amqp_url),
            default_channel=Channel(prefetch_count=settings.prefetch_count),
            middlewares=[broker_metrics(service), MessageContext(service)],
            logger=BROKER_LOGGER,
        )
        self.publisher = EventPublisher(
            str(settings.amqp_url), timeout=settings.publish_timeout_seconds, service=service
        )
        backoff = Backoff(settings.retry_base_seconds, settings.retry_max_seconds, settings.max_attempts)
        self.runner = Runner(self.publisher, backoff, max_batch=settings.prefetch_count)

    @asynccontextmanager
    async def running(self, adapters: Adapters | None = None) -> AsyncIterator[None]:
        """Open ``adapters`` (the service's database, mailer...), declare the topology and the delay queues,
        start publishing, then consuming; whatever started is stopped in reverse, also when a later step fails."""
        async with AsyncExitStack() as started:
            if adapters is not None:
                started.push_async_callback(adapters.close)
                await adapters.open()
            started.push_async_callback(self.broker.stop)
            await self.broker.connect()
            if self._management_url is not None:
                await apply_policies_or_warn(
                    self._management_url, self._amqp_url, self._max_length, self._dead_letter_retention_days
                )
            else:
                logger.warning(
                    "RABBITMQ_MANAGEMENT_URL unset: the queues' length limits and dead-letter targets must come from "
                    "the deployment's policies (`python -m %s policies`); without them nothing is dead-lettered",
                    self.service,
                )
            await declare_topology(self.broker, self._amqp_url)
            await self.runner.declare(self.broker)
            started.push_async_callback(self.publisher.stop)
            await self.publisher.start()
            await self.broker.start()
            yield

    def lifespan(self, adapters: Adapters | None = None) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
        """A FastAPI lifespan running this chassis with ``adapters`` (the routes find them in ``app.state``)."""

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            app.state.adapters = adapters
            async with self.running(adapters):
                yield

        return lifespan

    def serve_http(
        self,
        app: FastAPI,
        *,
        readiness: Mapping[str, ReadinessCheck],
        publishes: Sequence[type[Event]],
        description: str,
    ) -> None:
        """Health, readiness (the broker, the publisher, and ``readiness``), metrics, correlation ids, AsyncAPI."""
        checks: dict[str, ReadinessCheck] = {
            "broker": lambda: self.broker.ping(timeout=1.0),
            "publisher": self.publisher.ready,
            **readiness,
        }
        app.include_router(health_router(checks))
        app.add_middleware(CorrelationIdMiddleware, service=self.service)
        app.add_middleware(HttpMetricsMiddleware, service=self.service)
        document_events(app, self.broker, publishes=publishes, description=description)
