"""Composition root of intake: ``create_app`` wires the broker, the agreement catalog, the guards and the routes."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from faststream.rabbit import RabbitBroker
from pydantic.json_schema import models_json_schema

from agency_chassis.asyncapi import document_events
from agency_chassis.correlation import HEADER as CORRELATION_HEADER
from agency_chassis.correlation import CorrelationIdMiddleware
from agency_chassis.health import health_router
from agency_chassis.logs import BROKER_LOGGER, configure_logging
from agency_chassis.metrics import HttpMetricsMiddleware, broker_metrics
from agency_chassis.publishing import EventPublisher
from agency_chassis.startup import load_settings, log_configuration
from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.events import ApplicationSubmitted, EnquiryReceived
from agency_shared.forms import ApplicationForm, EnquiryForm
from agency_shared.topology import declare_topology
from intake import api, pages
from intake.accepting import EventSink, Intake
from intake.fast_path import JsonSubmissions
from intake.guards import SubmissionGuard
from intake.problems import Problem, install_problem_handlers
from intake.settings import IntakeSettings

SERVICE = "intake"


def create_app(settings: IntakeSettings | None = None, sink: EventSink | None = None) -> FastAPI:
    """The intake app; ``sink``, if given, takes the events instead of the broker (the benchmark's ceiling)."""
    settings = settings or load_settings(IntakeSettings, SERVICE)
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    log_configuration(settings, SERVICE)
    # The broker declares the topology and answers readiness; events go out through the publisher.
    broker = RabbitBroker(
        str(settings.amqp_url),
        middlewares=[broker_metrics(SERVICE)],
        logger=BROKER_LOGGER,
    )
    publisher = EventPublisher(str(settings.amqp_url), timeout=settings.publish_timeout_seconds, service=SERVICE)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await broker.start()
        await declare_topology(broker, settings.queue_max_length)
        await publisher.start()
        # What exists now (modules, schemas, the app) lives as long as the process: keep it
        # out of the cyclic collector's reach, so a full collection under load walks only what
        # requests made. Unfrozen, one took up to 30 ms, a pause for every request in flight.
        gc.freeze()
        yield
        gc.unfreeze()
        await publisher.stop()
        await broker.stop()

    app = FastAPI(
        title="WeChat agency intake",
        version="1",
        description="Applications for WeChat Official Accounts, enquiries, and the Service Agreement to accept.",
        lifespan=lifespan,
        # FastAPI's OpenTelemetry bridge looks up the global providers on every request
        # (a few % of intake's CPU) only to find none: our metrics are Prometheus's.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.intake = Intake(AgreementCatalog.configured(settings.agreements_dir), sink or publisher)
    app.state.guard = SubmissionGuard(
        settings.rate_limit, settings.max_body_bytes, settings.allowed_origins, settings.trusted_proxies
    )
    install_problem_handlers(app, settings.retry_after_seconds)
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(health_router({"broker": lambda: broker.ping(timeout=1.0), "publisher": publisher.ready}))
    app.mount("/static", StaticFiles(packages=[("intake", "static")]), name="static")
    # Innermost: JSON submissions skip FastAPI's routing but still pass CORS, correlation and metrics.
    app.add_middleware(
        JsonSubmissions, routes=api.router.routes, intake=app.state.intake, guard=app.state.guard, settings=settings
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "Idempotency-Key", CORRELATION_HEADER],
        expose_headers=[CORRELATION_HEADER, "Retry-After"],
        max_age=600,
    )
    app.add_middleware(CorrelationIdMiddleware, service=SERVICE)
    app.add_middleware(HttpMetricsMiddleware, service=SERVICE)
    _document_bodies(app)
    document_events(
        app,
        broker,
        publishes=(ApplicationSubmitted, EnquiryReceived),
        description="Intake consumes nothing; it publishes one event per accepted application or enquiry.",
    )
    return app


def _document_bodies(app: FastAPI) -> None:
    """Add the form and problem models to the OpenAPI components (the routes read their bodies themselves)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _, definitions = models_json_schema(
                [(ApplicationForm, "validation"), (EnquiryForm, "validation"), (Problem, "serialization")],
                ref_template="#/components/schemas/{model}",
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(definitions["$defs"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
