"""Composition root of the agreements service."""

import asyncio
import contextlib
from datetime import timedelta

from fastapi import FastAPI

from agency_chassis.logs import configure_logging
from agency_chassis.mongo import MongoConnection
from agency_chassis.service import ServiceChassis
from agency_chassis.startup import load_settings, log_configuration
from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.events import (
    AcceptanceConfirmed,
    AgreementRecorded,
    ApplicantErased,
    EnquiryConfirmed,
    LedgerCheckpointed,
)
from agreements import public_api, staff_api
from agreements.checkpointing import Checkpointer, MongoCheckpoints, Publish
from agreements.handlers import build_router
from agreements.settings import AgreementsSettings
from agreements.signing import LedgerKey
from agreements.staff_tokens import StaffTokens
from agreements.storage import MongoAcceptanceLedger, MongoApplications, MongoEnquiryErasures

SERVICE = "agreements"


class Adapters:
    """The MongoDB adapters the use cases and the HTTP API run with, made when the chassis opens them."""

    applications: MongoApplications
    ledger: MongoAcceptanceLedger
    enquiry_erasures: MongoEnquiryErasures
    checkpointer: Checkpointer

    def __init__(self, settings: AgreementsSettings, publish: Publish) -> None:
        self._settings = settings
        self._publish = publish
        self.database = MongoConnection()
        self.signer: LedgerKey = settings.ledger_key()
        self.catalog = AgreementCatalog.configured(settings.agreements_dir)
        self._checkpointing: asyncio.Task[None] | None = None

    async def open(self) -> None:
        mongo = self.database.open(self._settings)
        db = self._settings.mongodb_db
        self.applications = MongoApplications(mongo, db)
        self.ledger = MongoAcceptanceLedger(mongo, db, public_keys=self.signer.public_keys())
        self.enquiry_erasures = MongoEnquiryErasures(mongo, db)
        self.checkpointer = Checkpointer(
            self.ledger,
            MongoCheckpoints(mongo, db),
            self.signer,
            self._settings.ledger_checkpoint_every,
            timedelta(seconds=self._settings.ledger_checkpoint_interval_seconds),
        )
        await self.applications.ensure_indexes()
        await self.ledger.ensure_indexes()
        await self.ledger.measure()
        self._checkpointing = asyncio.create_task(self.checkpointer.run(self._publish))

    async def close(self) -> None:
        if self._checkpointing is not None:
            self._checkpointing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointing
        await self.database.close()


def create_app(settings: AgreementsSettings | None = None) -> FastAPI:
    settings = settings or load_settings(AgreementsSettings, SERVICE)
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    log_configuration(settings, SERVICE)
    chassis = ServiceChassis(SERVICE, settings)
    adapters = Adapters(settings, chassis.publisher.publish)
    chassis.broker.include_router(build_router(chassis.runner, adapters))

    app = FastAPI(
        title="WeChat agency agreements",
        version="1",
        description="Application status and acceptance receipts for clients; the staff read API.",
        lifespan=chassis.lifespan(adapters),
    )
    app.state.publish = chassis.publisher.publish
    app.state.catalog = adapters.catalog
    app.state.ledger_key = adapters.signer
    app.state.staff_tokens = StaffTokens(settings.staff_clients())
    app.include_router(public_api.router)
    app.include_router(staff_api.router)
    chassis.serve_http(
        app,
        readiness={"database": adapters.database.ready},
        publishes=(AgreementRecorded, AcceptanceConfirmed, EnquiryConfirmed, ApplicantErased, LedgerCheckpointed),
        description=(
            "Records each application in the acceptance ledger and announces it; records each verified address "
            "beside its acceptance and announces the confirmation; follows each email's outcome; announces the "
            "erasure of an applicant's or an enquirer's personal data; records a client's re-acceptance of a new "
            "agreement version (from the client portal) in the ledger; signs checkpoints of the ledger and "
            "announces them."
        ),
    )
    return app
