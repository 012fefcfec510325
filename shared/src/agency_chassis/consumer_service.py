"""What every consuming service runs on: its broker, publisher and runner, started in order, and its HTTP side."""

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from faststream.rabbit import Channel, RabbitBroker
from pymongo import AsyncMongoClient

from agency_chassis.asyncapi import document_events
from agency_chassis.consuming import Runner
from agency_chassis.correlation import CorrelationIdMiddleware, MessageContext
from agency_chassis.health import ReadinessCheck, health_router
from agency_chassis.logs import BROKER_LOGGER
from agency_chassis.metrics import HttpMetricsMiddleware, broker_metrics
from agency_chassis.publishing import EventPublisher
from agency_chassis.retries import Backoff
from agency_chassis.settings import MongoSettings, SharedSettings
from agency_shared.events import Event
from agency_shared.topology import declare_topology

Mongo = AsyncMongoClient[dict[str, Any]]


def mongo_client(settings: MongoSettings) -> Mongo:
    """A client with the services' write guarantees; it connects on first use (make it in a lifespan)."""
    return AsyncMongoClient(str(settings.mongodb_url), **settings.mongo_client_options())


class MongoConnection:
    """A service's MongoDB client: made by ``open`` in the lifespan, closed by ``close``, and its readiness."""

    client: Mongo

    def open(self, settings: MongoSettings) -> Mongo:
        self.client = mongo_client(settings)
        return self.client

    async def close(self) -> None:
        await self.client.close()

    async def ready(self) -> bool:
        """Readiness: the database answers a ping (not ready before ``open``)."""
        await self.client.admin.command("ping")
        return True


class ConsumerService:
    """The chassis of one consuming service: nothing connects until ``running()``."""

    def __init__(self, service: str, settings: SharedSettings) -> None:
        self.service = service
        self._max_length = settings.queue_max_length
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
        self.runner = Runner(self.publisher, backoff, settings.queue_max_length)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Declare the topology and the delay queues, start publishing, then consuming; stop in reverse."""
        await self.broker.connect()
        await declare_topology(self.broker, self._max_length)
        await self.runner.declare(self.broker)
        await self.publisher.start()
        try:
            await self.broker.start()
            yield
        finally:
            await self.broker.stop()
            await self.publisher.stop()

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
