"""Composition root of the casework service."""

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from pymongo import AsyncMongoClient
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from agency_chassis.logs import configure_logging
from agency_chassis.mongo import MongoConnection
from agency_chassis.portal_links import PortalLinks
from agency_chassis.service import ServiceChassis
from agency_chassis.startup import load_settings, log_configuration
from agency_shared.events import (
    AgreementReaccepted,
    CaseReminderDue,
    CaseStatusChanged,
    DocumentReceived,
    PortalLinkRequested,
    utc_now,
)
from casework import access_routes, console
from casework.access import StaffAccess, first_admin_banner
from casework.agreements_client import AgreementsClient
from casework.cases import Case
from casework.chat import REMINDER_ALERTS, ChatAlerts, case_alert
from casework.documents.handling import DocumentHandling
from casework.documents.store import CaseDocuments, publish_unannounced
from casework.documents.uploads import UploadSlots
from casework.handlers import build_router
from casework.handling import CaseHandling, Publish
from casework.portal import documents_routes
from casework.portal import pages as portal_pages
from casework.portal.link_requests import FormTokens, LinkRequests, MongoRequestLimits
from casework.portal.reacceptance import publish_unannounced_reacceptances
from casework.reminders import ReminderKind, ReminderSchedule
from casework.reminding import DueCases, OwnerAlert, ReminderLedger, ReminderScheduler
from casework.settings import CaseworkSettings
from casework.storage import MongoCases
from casework.webhooks.store import MongoWebhooks
from casework.webhooks.wiring import OutboundWebhooks
from casework.workflow import Rules

SERVICE = "casework"
OUTBOX_SWEEP_SECONDS = 30.0
logger = logging.getLogger(__name__)


class Adapters:
    """The cases, the staff accounts, sessions and audit log (MongoDB) and agreements' staff API the use cases
    and the console run with; opened in the lifespan."""

    cases: MongoCases
    handling: CaseHandling
    _mongo: AsyncMongoClient[dict[str, Any]]
    documents: CaseDocuments
    document_handling: DocumentHandling
    link_requests: LinkRequests

    def __init__(self, settings: CaseworkSettings, publish: Publish, on_owner_alert: OwnerAlert | None = None) -> None:
        self._settings = settings
        self._publish = publish
        self.database = MongoConnection()
        self.access = StaffAccess(settings)
        self.agreements = AgreementsClient(settings)
        self.chat = ChatAlerts(settings)
        self._sweeping: asyncio.Task[None] | None = None
        self._reminding: asyncio.Task[None] | None = None
        # The owner's reminders (overdue, Tencent's deadline, a lapse) in the staff's chat groups too, once each.
        self.on_owner_alert = on_owner_alert or self._owner_alert_in_chat
        self.outbound = OutboundWebhooks(settings, self.access)
        # The portal's uploads this replica streams at once (DOCUMENT_UPLOADS_AT_ONCE); the rest wait, unread.
        self.upload_slots = UploadSlots(settings.document_uploads_at_once)

    async def open(self) -> None:
        settings = self._settings
        mongo = self._mongo = self.database.open(settings)
        self.cases = MongoCases(mongo, settings.mongodb_db)
        await self.cases.ensure_indexes()
        self.handling = CaseHandling(
            self.cases,
            self._publish,
            Rules(settings.tencent_info_attempts, settings.renewal_interval_days),
            settings.time_limits,
            settings.verification_fee,
        )
        self.documents = CaseDocuments(mongo, settings.mongodb_db)
        await self.documents.ensure_indexes()
        self.document_handling = DocumentHandling(self.handling, self.documents, self._publish)
        await self.access.open(mongo, settings.mongodb_db)
        limits = MongoRequestLimits(mongo, settings.mongodb_db)
        await limits.ensure_indexes()
        self.link_requests = LinkRequests(
            self.cases,
            limits,
            self._publish,
            settings.portal_link_requests_per_ip_hour,
            settings.portal_link_requests_per_email_hour,
        )
        if settings.environment == "local":
            password = settings.console_admin_password.get_secret_value() if settings.console_admin_password else None
            generated = await self.access.ensure_first_admin(settings.console_admin_email, password)
            if generated is not None:
                print(first_admin_banner(settings.console_admin_email, generated), flush=True)
        await self.agreements.open()
        await self.chat.open(mongo, settings.mongodb_db)  # staff alerts in chat, and this replica's senders
        await self.outbound.open(mongo)
        self._sweeping = asyncio.create_task(self._sweep_outbox())
        reminders = self.reminder_scheduler()
        await reminders.ensure_indexes()
        if settings.reminder_scan_seconds > 0:
            self._reminding = asyncio.create_task(reminders.run())

    def reminder_scheduler(
        self, now: Callable[[], datetime] = utc_now, interval: float | None = None
    ) -> ReminderScheduler:
        """A reminder scheduler over the open adapters (one runs in the background; tests make more, with a clock)."""
        settings = self._settings
        schedule = ReminderSchedule(
            chaser_days=tuple(settings.reminder_chaser_days),
            fee_chaser_days=tuple(settings.reminder_fee_days),
            tencent_warning_days=settings.reminder_tencent_days,
            renewal_days=tuple(settings.reminder_renewal_days),
            renewal_due_days=settings.renewal_due_days,
            catch_up=timedelta(days=settings.reminder_catch_up_days),
        )
        return ReminderScheduler(
            due_cases=DueCases(self._mongo, settings.mongodb_db, schedule),
            ledger=ReminderLedger(self._mongo, settings.mongodb_db),
            handling=dataclasses.replace(self.handling, now=now),
            accounts=self.access.accounts,
            publish=self._publish,
            schedule=schedule,
            console_url=settings.console_url,
            fee=settings.verification_fee,
            interval=settings.reminder_scan_seconds if interval is None else interval,
            now=now,
            on_owner_alert=self.on_owner_alert,
        )

    async def _owner_alert_in_chat(self, kind: ReminderKind, case: Case, key: str) -> None:
        if self.chat.enabled:
            await self.chat.raise_alert(case_alert(REMINDER_ALERTS[kind], key, case))

    @property
    def webhooks(self) -> MongoWebhooks:
        return self.outbound.store

    async def _sweep_outbox(self) -> None:
        """Announce status changes written but not confirmed by the broker (a crash, an outage) every half minute."""
        while True:
            await asyncio.sleep(OUTBOX_SWEEP_SECONDS)
            try:
                await self.handling.publish_pending()
            except Exception:
                logger.exception("the outbox sweep failed")
            await publish_unannounced(self.documents, self.cases, self._publish)
            await publish_unannounced_reacceptances(self.cases, self._publish, utc_now())
            await self.documents.sweep_orphan_chunks()

    async def close(self) -> None:
        if self._reminding is not None:
            self._reminding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reminding
        if hasattr(self, "link_requests"):
            await self.link_requests.settled()
        if self._sweeping is not None:
            self._sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeping
        await self.chat.close()
        await self.outbound.close()
        await self.agreements.close()
        await self.access.close()
        await self.database.close()


def portal_links_of(settings: CaseworkSettings) -> PortalLinks:
    return PortalLinks(settings.portal_link_secret.get_secret_value(), timedelta(days=settings.portal_link_days))


def create_app(settings: CaseworkSettings | None = None) -> FastAPI:
    settings = settings or load_settings(CaseworkSettings, SERVICE)
    configure_logging(SERVICE, settings.log_level, settings.log_format)
    log_configuration(settings, SERVICE)
    chassis = ServiceChassis(SERVICE, settings)
    adapters = Adapters(settings, chassis.publisher.publish)
    chassis.broker.include_router(build_router(chassis.runner, adapters, settings.time_limits))

    app = FastAPI(
        title="WeChat agency casework",
        version="1",
        description="The registration workflow and the staff console.",
        lifespan=chassis.lifespan(adapters),
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.access = adapters.access
    app.state.agreements = adapters.agreements
    app.state.amqp_url = str(settings.amqp_url)
    app.state.portal_links = portal_links_of(settings)
    app.state.portal_form_tokens = FormTokens(settings.portal_link_secret.get_secret_value())
    app.state.publish = chassis.publisher.publish
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    access_routes.install(app)
    documents_routes.install(app)
    app.include_router(console.router)
    portal_pages.install(app)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/console/cases", status_code=303)

    if settings.trusted_proxies:
        # The staff member's address (audit log, sign-in limits) from a trusted proxy's X-Forwarded-For.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=[str(network) for network in settings.trusted_proxies])
    chassis.serve_http(
        app,
        readiness={"database": adapters.database.ready},
        publishes=(CaseStatusChanged, CaseReminderDue, DocumentReceived, PortalLinkRequested, AgreementReaccepted),
        description=(
            "Opens a case for each recorded application (one that passed no human check once its address is "
            "verified) and each enquiry the staff got; keeps each email's outcome on its case's timeline; forgets "
            "the erased; announces every status change staff make in the console, and each reminder a case is owed "
            "(the client's chasers and renewal reminders, the owner's deadline warnings and alerts), once; "
            "serves the client portal (a client's request for a new link, a re-acceptance of the agreement, a "
            "document received are announced)."
        ),
    )
    return app
