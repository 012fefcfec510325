"""Composition root of the notifications service."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from faststream.rabbit import Channel, RabbitBroker
from pymongo import AsyncMongoClient

from agency_chassis.asyncapi import document_events
from agency_chassis.correlation import CorrelationIdMiddleware, MessageContext
from agency_chassis.health import health_router
from agency_chassis.logs import BROKER_LOGGER, configure_logging
from agency_chassis.messaging import EventPublisher, RejectUnreadableMessages
from agency_chassis.metrics import HttpMetricsMiddleware, broker_metrics
from agency_chassis.retries import Backoff, RetryScheduler
from agency_chassis.startup import load_settings, log_configuration
from agency_shared.events import NotificationSettled
from agency_shared.topology import CONSUMER_QUEUES, declare_topology
from notifications.erasure import build_erasure_router
from notifications.handlers import CLIENT_TEMPLATES, Notifier, build_router, staff_alerts
from notifications.ledger import NotificationLedger
from notifications.mailer import Mailer, SmtpMailer
from notifications.settings import NotificationsSettings

SERVICE = "notifications"


def create_app(settings: NotificationsSettings | None = None, mailer: Mailer | None = None) -> FastAPI:
    settings = settings or load_settings(NotificationsSettings, SERVICE)
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    log_configuration(settings, SERVICE)
    broker = RabbitBroker(
        str(settings.amqp_url),
        default_channel=Channel(prefetch_count=settings.prefetch_count, publisher_confirms=True, on_return_raises=True),
        middlewares=[broker_metrics(SERVICE), MessageContext(SERVICE), RejectUnreadableMessages],
        logger=BROKER_LOGGER,
    )
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        str(settings.mongodb_url), **settings.mongo_client_options()
    )
    ledger = NotificationLedger(
        mongo, settings.mongodb_db, settings.send_lease_seconds, forgettable_templates=CLIENT_TEMPLATES
    )
    backoff = Backoff(settings.retry_base_seconds, settings.retry_max_seconds, settings.max_attempts)
    retries = {
        queue.name: RetryScheduler(broker, queue, backoff, settings.publish_timeout_seconds)
        for queue in CONSUMER_QUEUES
        if queue.name.startswith("notifications.")
    }
    publisher = EventPublisher(str(settings.amqp_url), timeout=settings.publish_timeout_seconds, service=SERVICE)
    smtp = SmtpMailer(settings)
    notifier = Notifier(ledger, mailer or smtp, retries, publisher.publish, staff_alerts(settings))
    broker.include_router(build_router(notifier, settings))
    broker.include_router(build_erasure_router(ledger, settings.queue_max_length))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ledger.ensure_indexes()
        await broker.connect()
        await declare_topology(broker, settings.queue_max_length)
        for scheduler in retries.values():
            await scheduler.declare()
        await publisher.start()
        await broker.start()
        yield
        await broker.stop()
        await publisher.stop()
        await smtp.close()
        await mongo.close()

    async def database_ready() -> bool:
        await mongo.admin.command("ping")
        return True

    app = FastAPI(title="WeChat agency notifications", version="1", lifespan=lifespan)
    app.state.ledger = ledger
    app.include_router(
        health_router(
            {"broker": lambda: broker.ping(timeout=1.0), "publisher": publisher.ready, "database": database_ready}
        )
    )
    app.add_middleware(CorrelationIdMiddleware, service=SERVICE)
    app.add_middleware(HttpMetricsMiddleware, service=SERVICE)
    document_events(
        app,
        broker,
        publishes=(NotificationSettled,),
        description="Emails the staff and the client about each application and enquiry; announces each outcome.",
    )
    return app
