"""Composition root of the agreements service."""

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
from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.events import AgreementRecorded, ApplicantErased
from agency_shared.topology import AGREEMENTS_APPLICATION_SUBMITTED, AGREEMENTS_NOTIFICATION_SETTLED, declare_topology
from agreements import public_api, staff_api
from agreements.handlers import build_router
from agreements.settings import AgreementsSettings
from agreements.storage import MongoAcceptanceLedger, MongoApplications

SERVICE = "agreements"


def mongo_client(settings: AgreementsSettings) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(str(settings.mongodb_url), **settings.mongo_client_options())


def create_app(settings: AgreementsSettings | None = None) -> FastAPI:
    settings = settings or load_settings(AgreementsSettings, SERVICE)
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    log_configuration(settings, SERVICE)
    broker = RabbitBroker(
        str(settings.amqp_url),
        default_channel=Channel(prefetch_count=settings.prefetch_count, publisher_confirms=True, on_return_raises=True),
        middlewares=[broker_metrics(SERVICE), MessageContext(SERVICE), RejectUnreadableMessages],
        logger=BROKER_LOGGER,
    )
    mongo = mongo_client(settings)
    applications = MongoApplications(mongo, settings.mongodb_db)
    ledger = MongoAcceptanceLedger(mongo, settings.mongodb_db)
    publisher = EventPublisher(str(settings.amqp_url), timeout=settings.publish_timeout_seconds, service=SERVICE)
    backoff = Backoff(settings.retry_base_seconds, settings.retry_max_seconds, settings.max_attempts)
    retries = {
        queue.name: RetryScheduler(broker, queue, backoff, settings.publish_timeout_seconds)
        for queue in (AGREEMENTS_APPLICATION_SUBMITTED, AGREEMENTS_NOTIFICATION_SETTLED)
    }
    broker.include_router(build_router(applications, ledger, publisher.publish, settings.queue_max_length, retries))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await applications.ensure_indexes()
        await ledger.ensure_indexes()
        await ledger.measure()
        await broker.connect()
        await declare_topology(broker, settings.queue_max_length)
        for scheduler in retries.values():
            await scheduler.declare()
        await publisher.start()
        await broker.start()
        yield
        await broker.stop()
        await publisher.stop()
        await mongo.close()

    async def database_ready() -> bool:
        await mongo.admin.command("ping")
        return True

    app = FastAPI(
        title="WeChat agency agreements",
        version="1",
        description="Application status and acceptance receipts for clients; the staff read API.",
        lifespan=lifespan,
    )
    app.state.applications = applications
    app.state.ledger = ledger
    app.state.publish = publisher.publish
    app.state.catalog = AgreementCatalog.configured(settings.agreements_dir)
    app.state.staff_token = settings.staff_api_token.get_secret_value() if settings.staff_api_token else None
    app.include_router(public_api.router)
    app.include_router(staff_api.router)
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
        publishes=(AgreementRecorded, ApplicantErased),
        description=(
            "Records each application in the acceptance ledger and announces it; follows each email's outcome; "
            "announces the erasure of an applicant's personal data."
        ),
    )
    return app
