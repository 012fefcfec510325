"""The reminder scheduler: every REMINDER_SCAN_SECONDS, find the cases owed a reminder, send each reminder once.

Once, across restarts and replicas: a reminder is claimed by inserting a document whose ``_id`` is the reminder's
key into ``casework_reminders`` (the unique ``_id`` lets exactly one replica win, today or after a restart), then
announced as ``case.reminder-due`` with publisher confirms. A claim whose publish was not confirmed (the broker was
down, the process died between the two) is published again by the sweep; the event's id is derived from the key,
so notifications' ledger makes a second publish no second email. The event's JSON is kept only until the broker
confirms it (it names the client).

Cases are found by bounded, indexed queries (a status and a window of one date per reminder), never by a scan of
every case: ``reminders`` owes nothing more than ``catch_up`` late, so nothing outside the windows is owed.
"""

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from agency_shared.events import (
    CaseClient,
    CaseReminderDue,
    CaseReminderDueData,
    Event,
    derived_id,
    utc_now,
)
from casework.accounts import StaffAccounts
from casework.cases import Case, from_document
from casework.handling import Actor, CaseHandling
from casework.reminders import (
    DOCUMENT_STATUSES,
    FEE_STATUSES,
    VERIFIED_STATUSES,
    Reminder,
    ReminderKind,
    ReminderSchedule,
    owed_reminders,
    renewal_due,
)
from casework.storage import CASES, LIST_PROJECTION, REMINDERS, CaseChanged
from casework.workflow import CHINA_TIME, A, ActionRequest, NotAllowed

logger = logging.getLogger(__name__)
Clock = Callable[[], datetime]
Publish = Callable[[Event], Awaitable[None]]
# The hook for staff chat alerts: called once per owner reminder this replica claimed (overdue, Tencent's
# deadline, a lapse), with the case as it was read. Email is at-least-once; the hook runs after the claim, once.
# Called with the reminder's kind, its case and its key (unique to the reminder: a chat alert's key).
OwnerAlert = Callable[[ReminderKind, Case, str], Awaitable[None]]
# Who moves a case to renewal_due on the timeline and in case.status-changed.
SCHEDULER = Actor(id="system", email="scheduler", name="casework scheduler")
RENEWAL_REASON = "the verification expires within {days} days (reminder scheduler)"
# How long the chat hook may take before the tick goes on without it (it must not hold up the emails).
OWNER_ALERT_SECONDS = 10.0
# A claim is re-published by the sweep once it has waited this many scan intervals unconfirmed.
SWEEP_AFTER_INTERVALS = 2


class ReminderLedger:
    """``casework_reminders``: one document per reminder claimed, keyed by the reminder's key."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], db: str) -> None:
        self._reminders: AsyncCollection[dict[str, Any]] = client[db][REMINDERS]

    async def ensure_indexes(self) -> None:
        await self._reminders.create_index([("pending", ASCENDING)], sparse=True)
        await self._reminders.create_index([("case_id", ASCENDING)])

    async def claim(self, reminder: Reminder, event: CaseReminderDue, now: datetime) -> bool:
        """True if this call claimed the reminder (it is this replica's to send); False if it was claimed before."""
        try:
            await self._reminders.insert_one(
                {
                    "_id": reminder.key,
                    "case_id": str(reminder.case_id),
                    "kind": reminder.kind.value,
                    "due": reminder.due,
                    "claimed_at": now,
                    "pending": True,
                    "event": event.model_dump_json(),
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def known(self, key: str) -> bool:
        return await self._reminders.find_one({"_id": key}, {"_id": 1}) is not None

    async def confirmed(self, key: str, now: datetime) -> None:
        """The broker has the event: keep that it was sent, not what it said."""
        await self._reminders.update_one(
            {"_id": key}, {"$unset": {"pending": "", "event": ""}, "$set": {"published_at": now}}
        )

    async def unconfirmed(self, claimed_before: datetime, limit: int = 100) -> list[tuple[str, str]]:
        """(key, event JSON) of reminders claimed before ``claimed_before`` whose publish was never confirmed."""
        cursor = self._reminders.find({"pending": True, "claimed_at": {"$lt": claimed_before}}, {"event": 1})
        return [(doc["_id"], doc["event"]) async for doc in cursor.limit(limit)]

    async def sent(self, case_id: uuid.UUID) -> list[str]:
        """The keys of the reminders claimed for a case (tests, and an operator's look)."""
        return [doc["_id"] async for doc in self._reminders.find({"case_id": str(case_id)}, {"_id": 1})]


class DueCases:
    """The cases that may be owed something now, by one bounded query per reminder window."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], db: str, schedule: ReminderSchedule) -> None:
        self._cases: AsyncCollection[dict[str, Any]] = client[db][CASES]
        self._schedule = schedule

    async def ensure_indexes(self) -> None:
        for second in ("status_since", "expires_at", "tencent_deadline"):
            await self._cases.create_index([("status", ASCENDING), (second, ASCENDING)])

    def filters(self, now: datetime) -> list[dict[str, Any]]:
        """One query per window (no $or: not every server serves one from its indexes)."""
        schedule, catch_up = self._schedule, self._schedule.catch_up
        queries: list[dict[str, Any]] = []
        for statuses, days in ((DOCUMENT_STATUSES, schedule.chaser_days), (FEE_STATUSES, schedule.fee_chaser_days)):
            for day in days:
                since = now - timedelta(days=day)
                queries.append({"status": {"$in": sorted(statuses)}, "status_since": {"$gt": since - catch_up,
                                                                                       "$lte": since}})  # fmt: skip
        today = now.astimezone(CHINA_TIME).date()
        last = today + timedelta(days=max(schedule.tencent_warning_days - 1, 0))
        queries.append({"status": A.TENCENT_REQUESTED_INFO,
                        "tencent_deadline": {"$gte": today.isoformat(), "$lte": last.isoformat()}})  # fmt: skip
        verified = sorted(VERIFIED_STATUSES)
        for before in (*schedule.renewal_days, 0):  # 0: the lapse, at the expiry
            expiry = now + timedelta(days=before)
            queries.append({"status": {"$in": verified}, "expires_at": {"$gt": expiry - catch_up, "$lte": expiry}})
        # The move to renewal_due: every case past the moment (it then leaves these statuses).
        movable = sorted({A.VERIFIED, A.LIVE, A.RENEWED})
        queries.append({"status": {"$in": movable},
                        "expires_at": {"$lte": now + timedelta(days=schedule.renewal_due_days)}})  # fmt: skip
        queries.append({"due_at": {"$gt": now - catch_up, "$lte": now}})
        return queries

    async def candidates(self, now: datetime) -> list[Case]:
        found: dict[str, Case] = {}
        for query in self.filters(now):
            async for document in self._cases.find(query, LIST_PROJECTION):
                found.setdefault(document["_id"], from_document(document))
        return list(found.values())


@dataclass
class TickReport:
    claimed: list[str] = field(default_factory=list)
    published: int = 0
    moved: list[uuid.UUID] = field(default_factory=list)


@dataclass
class ReminderScheduler:
    """Sends the reminders the cases are owed, once; moves verified accounts to renewal_due when it is time."""

    due_cases: DueCases
    ledger: ReminderLedger
    handling: CaseHandling
    accounts: StaffAccounts
    publish: Publish
    schedule: ReminderSchedule
    console_url: str
    fee: str
    interval: float
    now: Clock = utc_now
    on_owner_alert: OwnerAlert | None = None

    async def ensure_indexes(self) -> None:
        await self.due_cases.ensure_indexes()
        await self.ledger.ensure_indexes()

    async def run(self) -> None:
        """Tick every ``interval`` seconds until cancelled; a failed tick is logged and the next one tries again."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except Exception:
                logger.exception("the reminder scheduler's tick failed")

    async def tick(self) -> TickReport:
        report = TickReport()
        now = self.now()
        for case in await self.due_cases.candidates(now):
            if renewal_due(case, now, self.schedule):
                case = await self._move_to_renewal(case, report)
            for reminder in owed_reminders(case, now, self.schedule):
                if await self._claim_and_send(reminder, case, now, report):
                    report.claimed.append(reminder.key)
        report.published += await self.sweep(now - timedelta(seconds=self.interval * SWEEP_AFTER_INTERVALS))
        return report

    async def sweep(self, claimed_before: datetime) -> int:
        """Publish again the claims whose publish was not confirmed (at least once; notifications drops repeats)."""
        published = 0
        for key, event_json in await self.ledger.unconfirmed(claimed_before):
            if await self._publish(key, CaseReminderDue.model_validate_json(event_json)):
                published += 1
        return published

    async def _move_to_renewal(self, case: Case, report: TickReport) -> Case:
        reason = RENEWAL_REASON.format(days=self.schedule.renewal_due_days)
        try:
            moved = await self.handling.change_status(case.id, ActionRequest("renewal_due", reason), SCHEDULER)
        except (NotAllowed, CaseChanged):  # another replica (or a staff member) moved it first
            return await self.handling.case(case.id)
        logger.info("case %s moved to renewal_due: its verification expires on %s", case.reference, case.expires_at)
        report.moved.append(case.id)
        return moved

    async def _claim_and_send(self, reminder: Reminder, case: Case, now: datetime, report: TickReport) -> bool:
        if await self.ledger.known(reminder.key):
            return False  # the usual case on every tick after the first: nothing to compose
        event = await self.announcement(reminder, case)
        if event is None:
            return False
        if not await self.ledger.claim(reminder, event, now):
            return False  # claimed before: by another replica, or by this one before a restart
        logger.info("case %s: reminder %s claimed", case.reference, reminder.key)
        if reminder.recipient == "owner" and self.on_owner_alert is not None:
            try:
                async with asyncio.timeout(OWNER_ALERT_SECONDS):
                    await self.on_owner_alert(reminder.kind, case, reminder.key)
            except Exception:
                logger.exception("case %s: the owner alert hook failed for %s", case.reference, reminder.key)
        if await self._publish(reminder.key, event):
            report.published += 1
        return True

    async def _publish(self, key: str, event: CaseReminderDue) -> bool:
        try:
            await self.publish(event)
        except Exception as exc:
            logger.warning("case.reminder-due %s not confirmed now (%r): the sweep sends it", key, exc)
            return False
        try:
            await self.ledger.confirmed(key, self.now())
        except PyMongoError as exc:  # published: the sweep may publish it again, which notifications drops
            logger.warning("case.reminder-due %s published but not marked (%r)", key, exc)
        return True

    async def announcement(self, reminder: Reminder, case: Case) -> CaseReminderDue | None:
        """The event for ``reminder``; None when there is nobody to send it to (a client reminder for a case
        without a client address, or an erased one)."""
        client = None
        owner_email = None
        if reminder.recipient == "client":
            if not case.client_email or case.erased_at is not None:
                return None
            client = CaseClient(name=case.client_name or "", email=case.client_email)
        elif case.owner is not None:
            account = await self.accounts.by_id(case.owner)
            owner_email = account.email if account is not None and account.active else None
        application_id = case.application_id
        return CaseReminderDue(
            event_id=derived_id(CaseReminderDue.routing_key, reminder.key),
            occurred_at=reminder.due,
            correlation_id=f"case-{case.reference}",
            data=CaseReminderDueData(
                reminder_key=reminder.key,
                case_id=case.id,
                application_id=application_id,
                enquiry_id=None if application_id is not None else case.enquiry_id,
                reference=case.reference,
                kind=reminder.kind.value,
                recipient=reminder.recipient,
                due_at=reminder.due,
                days=reminder.offset,
                locale=case.locale,
                status=case.status,
                status_since=case.status_since,
                client=client,
                owner_email=owner_email,
                consultant=case.owner_name,
                account_name=case.account_name,
                tencent_deadline=case.tencent_deadline,
                # As case.status-changed says it (the renewal_due news), so the client reads one date.
                expires_at=case.expires_at.date() if case.expires_at else None,
                time_limit=case.due_at if reminder.kind is ReminderKind.OVERDUE else None,
                fee=self.fee if case.status == A.AWAITING_FEE else None,
                console_link=f"{self.console_url.rstrip('/')}/console/cases/{case.id}"
                if reminder.recipient == "owner"
                else None,
                # The links valid now: a revocation (the generation moved on) ends the ones sent before.
                portal_generation=case.portal_generation if client is not None else None,
            ),
        )
