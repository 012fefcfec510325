"""Composition root of intake: ``create_app`` wires the broker, the agreement catalog, the guards and the routes."""

import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from agency_chassis.correlation import HEADER as CORRELATION_HEADER
from agency_chassis.email_verification import VerificationTokens
from agency_chassis.logs import configure_logging
from agency_chassis.mongo import MongoConnection
from agency_chassis.service import ServiceChassis
from agency_chassis.startup import load_settings, log_configuration
from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.events import ApplicationSubmitted, EmailVerified, EnquiryReceived
from intake import pages, verification_pages
from intake.accepting import EventSink, Intake
from intake.api import api_routes
from intake.captcha import AltchaCheck, CaptchaOff, HumanChecks, MongoSpentSolutions
from intake.guards import SubmissionGuard
from intake.idempotency import MongoIdempotencyKeys
from intake.problems import install_problem_handlers
from intake.settings import IntakeSettings
from intake.verification import AddressVerifier

SERVICE = "intake"


class Adapters:
    """MongoDB, shared by the replicas: the idempotency keys and the spent ALTCHA solutions; opened in the lifespan.

    A request without an Idempotency-Key or an ALTCHA solution never reaches it.
    """

    def __init__(self, settings: IntakeSettings) -> None:
        self._settings = settings
        self.database = MongoConnection()
        self.keys = MongoIdempotencyKeys(self.database, settings.mongodb_db, settings.idempotency_key_ttl_seconds)
        self.solutions = MongoSpentSolutions(self.database, settings.mongodb_db)

    def human_checks(self) -> HumanChecks:
        settings = self._settings
        if settings.captcha == "off":
            return CaptchaOff()
        return AltchaCheck(
            settings.captcha_key(), settings.captcha_cost, settings.captcha_expiry_seconds, self.solutions
        )

    async def open(self) -> None:
        self.database.open(self._settings)
        await self.keys.ensure_indexes()
        await self.solutions.ensure_indexes()

    async def close(self) -> None:
        await self.database.close()


def create_app(settings: IntakeSettings | None = None, sink: EventSink | None = None) -> FastAPI:
    """The intake app; ``sink``, if given, takes the events instead of the broker (the benchmark's ceiling)."""
    settings = settings or load_settings(IntakeSettings, SERVICE)
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    log_configuration(settings, SERVICE)
    # Intake consumes nothing: its broker declares the topology and answers readiness, events leave by the publisher.
    chassis = ServiceChassis(SERVICE, settings)
    adapters = Adapters(settings)
    catalog = AgreementCatalog.configured(settings.agreements_dir)
    intake = Intake(catalog, sink or chassis.publisher, adapters.keys, adapters.human_checks())
    tokens = VerificationTokens(
        settings.email_verification_secret.get_secret_value(), timedelta(days=settings.email_verification_days)
    )
    verifier = AddressVerifier(tokens, sink or chassis.publisher)
    guard = SubmissionGuard(
        settings.rate_limit, settings.max_body_bytes, settings.allowed_origins, settings.trusted_proxies
    )

    app = FastAPI(
        title="WeChat agency intake",
        version="1",
        description="Applications for WeChat Official Accounts, enquiries, and the Service Agreement to accept.",
        lifespan=serving(chassis, adapters),
        # FastAPI's documentation pages load Swagger UI and ReDoc from a CDN (often unreachable from
        # mainland China, and a third party on our pages): production serves only /openapi.json.
        docs_url=None if settings.environment == "production" else "/docs",
        redoc_url=None if settings.environment == "production" else "/redoc",
        # The route table's first entries: a request for them is matched without looking further.
        routes=api_routes(intake, guard, settings),
        # FastAPI's OpenTelemetry bridge looks up the global providers on every request
        # (a few % of intake's CPU) only to find none: our metrics are Prometheus's.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    # What the page routes' dependencies (intake.deps) read.
    app.state.settings, app.state.intake, app.state.guard = settings, intake, guard
    app.state.verifier = verifier
    install_problem_handlers(app, settings.retry_after_seconds)
    app.include_router(pages.router)
    app.include_router(verification_pages.router)
    app.mount("/static", StaticFiles(packages=[("intake", "static")]), name="static")
    # CORS for the configured frontends, inside the chassis's correlation ids and HTTP metrics.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type", "Idempotency-Key", CORRELATION_HEADER],
        expose_headers=[CORRELATION_HEADER, "Retry-After"],
        max_age=600,
    )
    chassis.serve_http(
        app,
        readiness={"database": adapters.database.ready},
        publishes=(ApplicationSubmitted, EnquiryReceived, EmailVerified),
        description=(
            "Intake consumes nothing; it publishes one event per accepted application or enquiry, "
            "and one per email address an applicant confirmed through the verification link."
        ),
    )
    return app


def serving(chassis: ServiceChassis, adapters: Adapters) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The lifespan: the chassis running (database open, topology declared, publisher connected), start-up's
    heap frozen."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with chassis.running(adapters):
            # What exists now (modules, schemas, the app) lives as long as the process: keep it
            # out of the cyclic collector's reach, so a full collection under load walks only what
            # requests made. Unfrozen, one took up to 30 ms, a pause for every request in flight.
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()

    return lifespan
