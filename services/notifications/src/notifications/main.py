"""Composition root of the notifications service."""

import asyncio
import contextlib
from datetime import timedelta

from fastapi import FastAPI

from agency_chassis.logs import configure_logging
from agency_chassis.mongo import MongoConnection
from agency_chassis.service import ServiceChassis
from agency_chassis.startup import load_settings, log_configuration
from agency_shared.events import EnquiryReleased, NotificationSettled
from notifications.daily_cap import MongoDailyCap
from notifications.erasure import build_erasure_router
from notifications.handlers import CAPPED_TEMPLATES, CLIENT_TEMPLATES, build_router
from notifications.holding import MongoHeldSubmissions
from notifications.ledger import NotificationLedger
from notifications.mailer import Mailer, SmtpMailer
from notifications.retention import LedgerRetention
from notifications.settings import NotificationsSettings

SERVICE = "notifications"


class Adapters:
    """The notification ledger, the daily cap and the held submissions (MongoDB) and the mailer (SMTP) the use
    cases run with; opened in the lifespan."""

    ledger: NotificationLedger
    mailer: Mailer
    cap: MongoDailyCap
    held: MongoHeldSubmissions

    def __init__(self, settings: NotificationsSettings, mailer: Mailer | None) -> None:
        self._settings = settings
        self.database = MongoConnection()
        self._given_mailer = mailer
        self._smtp: SmtpMailer | None = None
        self._purging: asyncio.Task[None] | None = None
        self.retention = LedgerRetention.of(
            settings.notification_ledger_retention_days, settings.max_attempts, settings.retry_max_seconds
        )

    async def open(self) -> None:
        settings = self._settings
        mongo = self.database.open(settings)
        self.ledger = NotificationLedger(
            mongo,
            settings.mongodb_db,
            settings.send_lease_seconds,
            forgettable_templates=CLIENT_TEMPLATES,
        )
        await self.ledger.ensure_indexes()
        self._purging = asyncio.create_task(self.retention.purge_periodically(self.ledger))
        self.cap = MongoDailyCap(mongo, settings.mongodb_db, settings.client_emails_per_day, CAPPED_TEMPLATES)
        await self.cap.ensure_indexes()
        self.held = MongoHeldSubmissions(mongo, settings.mongodb_db, timedelta(days=settings.email_verification_days))
        await self.held.ensure_indexes()
        if self._given_mailer is not None:
            self.mailer = self._given_mailer
        else:
            self.mailer = self._smtp = SmtpMailer(settings)

    async def close(self) -> None:
        if self._purging is not None:
            self._purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purging
        if self._smtp is not None:
            await self._smtp.close()
        await self.database.close()


def create_app(settings: NotificationsSettings | None = None, mailer: Mailer | None = None) -> FastAPI:
    settings = settings or load_settings(NotificationsSettings, SERVICE)
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    log_configuration(settings, SERVICE)
    chassis = ServiceChassis(SERVICE, settings)
    adapters = Adapters(settings, mailer)
    chassis.broker.include_router(build_router(chassis.runner, adapters, settings))
    chassis.broker.include_router(build_erasure_router(chassis.runner, adapters))

    app = FastAPI(title="WeChat agency notifications", version="1", lifespan=chassis.lifespan(adapters))
    chassis.serve_http(
        app,
        readiness={"database": adapters.database.ready},
        publishes=(NotificationSettled, EnquiryReleased),
        description=(
            "Emails the staff about each application and enquiry (one that passed no human check only once its "
            "address is verified); the applicant a link that verifies their address, then the confirmation with the "
            "receipt; the enquirer a fixed autoresponse (or, without a human check, a verification link); announces "
            "each outcome, and each enquiry the staff got (enquiry.released); tells the client, in fixed text, when a "
            "staff member moves their case to a status they hear of; emails a client the new portal link they asked "
            "for."
        ),
    )
    return app
