"""What staff do to a case: change its status (announced as case.status-changed), note, assign its owner."""

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from pymongo.errors import PyMongoError

from agency_chassis.metrics import CASE_ANNOUNCEMENTS_PENDING, CASE_STATUS_CHANGES
from agency_shared.events import (
    CaseClient,
    CaseStatusChanged,
    CaseStatusChangedData,
    Event,
    RejectionReason,
    derived_id,
    utc_now,
)
from casework.cases import Case, HistoryEntry, new_case
from casework.storage import MongoCases
from casework.workflow import (
    A,
    ActionRequest,
    CaseKind,
    CaseState,
    InvalidDetail,
    Rules,
    Transition,
    decide,
    due_at,
)

logger = logging.getLogger(__name__)
Publish = Callable[[Event], Awaitable[None]]
Clock = Callable[[], datetime]
MAX_NOTE_LENGTH = 5000


class UnknownCase(LookupError):
    """No case has this id (HTTP 404)."""


@dataclass(frozen=True)
class Actor:
    """Who acts: a staff member's account id, email and display name."""

    id: str
    email: str
    name: str


@dataclass
class CaseHandling:
    """The staff's use cases on cases, with the store, the publisher and the workflow's figures."""

    cases: MongoCases
    publish: Publish
    rules: Rules
    time_limits: Mapping[str, int]
    fee: str
    now: Clock = utc_now

    async def case(self, case_id: uuid.UUID) -> Case:
        case = await self.cases.get(case_id)
        if case is None:
            raise UnknownCase(str(case_id))
        return case

    async def change_status(self, case_id: uuid.UUID, request: ActionRequest, actor: Actor) -> Case:
        """Apply a staff action (``NotAllowed``, ``InvalidDetail`` or ``CaseChanged`` if it cannot be), record it in
        the timeline and announce it; converting an enquiry opens its application case."""
        case = await self.case(case_id)
        now = self.now()
        transition = decide(_state(case), request, now, self.rules)
        updates: dict[str, Any] = {
            **transition.changes,
            "status": transition.current,
            "status_since": now,
            # Resuming into a request for information keeps Tencent's deadline as its limit.
            "due_at": due_at(
                transition.current,
                now,
                self.time_limits,
                transition.changes.get("tencent_deadline", case.tencent_deadline),
            ),
        }
        converted: Case | None = None
        opened = False
        if request.action == "convert":
            converted, opened = await self._open_converted(case, actor, now)
            updates["converted_to"] = str(converted.id)
        entry = HistoryEntry(
            key=f"status:{case.version}",
            kind="status_changed",
            at=now,
            staff=actor.email,
            text=transition.reason,
            action=transition.action,
            previous=transition.previous,
            current=transition.current,
        )
        event = self._announcement(case.model_copy(update=transition.changes), transition, actor, now)
        try:
            await self.cases.change(case, updates, entry, (str(event.event_id), event.model_dump_json()))
        except BaseException:
            if converted is not None and opened:  # the enquiry did not move: its application case must not stay
                await self.cases.delete(converted.id)
            raise
        CASE_STATUS_CHANGES.labels(transition.action, transition.current).inc()
        await self._publish_owed(case.id)
        return await self.case(case_id)

    async def add_note(self, case_id: uuid.UUID, text: str, actor: Actor) -> Case:
        case = await self.case(case_id)
        text = text.strip()
        if not text:
            raise InvalidDetail("note", "a note cannot be empty")
        if len(text) > MAX_NOTE_LENGTH:
            raise InvalidDetail("note", f"at most {MAX_NOTE_LENGTH} characters")
        if any(ord(char) < 32 and char not in "\n\t\r" for char in text):
            raise InvalidDetail("note", "control characters are not allowed")
        now = self.now()
        entry = HistoryEntry(key=f"note:{case.version}", kind="note", at=now, staff=actor.email, text=text)
        await self.cases.change(case, {}, entry)
        return await self.case(case_id)

    async def assign_owner(self, case_id: uuid.UUID, owner: Actor | None, actor: Actor) -> Case:
        """Give the case to ``owner`` (None: to nobody). In triage the client hears who their consultant is."""
        case = await self.case(case_id)
        now = self.now()
        entry = HistoryEntry(
            key=f"owner:{case.version}",
            kind="owner_assigned",
            at=now,
            staff=actor.email,
            text=owner.name if owner else None,
        )
        updates = {"owner": owner.id if owner else None, "owner_name": owner.name if owner else None}
        event = None
        if owner is not None and case.status == A.TRIAGE and case.kind is CaseKind.APPLICATION:
            transition = Transition("assign_owner", case.status, case.status, f"owner: {owner.name}")
            event = self._announcement(case.model_copy(update=updates), transition, actor, now)
        await self.cases.change(case, updates, entry, (str(event.event_id), event.model_dump_json()) if event else None)
        if event is not None:
            await self._publish_owed(case.id)
        return await self.case(case_id)

    async def publish_pending(self) -> int:
        """Announce what was written but not confirmed (the process died, or the broker refused): the sweeper.
        Each case's announcements go in the order they were made; one the broker refuses stops its case's
        until the next sweep, never the other cases'."""
        pending = await self.cases.unpublished()
        CASE_ANNOUNCEMENTS_PENDING.set(len(pending))
        published = 0
        for case_id in dict.fromkeys(case_id for case_id, _, _ in pending):
            published += await self._publish_owed(case_id)
        CASE_ANNOUNCEMENTS_PENDING.set(len(pending) - published)
        return published

    async def _publish_owed(self, case_id: uuid.UUID) -> int:
        """Publish the case's outbox in order, taking each out once the broker confirmed it; stop at the first
        the broker refuses (the sweeper tries again), so a client never hears of two changes out of order."""
        published = 0
        try:
            for event_id, event_json in await self.cases.outbox_of(case_id):
                try:
                    event = CaseStatusChanged.model_validate_json(event_json)
                except ValidationError:
                    logger.error("case %s: outbox item %s is unreadable; left for an operator", case_id, event_id)
                    return published
                try:
                    await self.publish(event)
                except Exception as exc:
                    logger.warning("case.status-changed %s not confirmed now (%r): the sweep sends it", event_id, exc)
                    return published
                await self.cases.published(case_id, event_id)
                published += 1
        except PyMongoError as exc:  # the change is stored: the sweep takes it from there
            logger.warning("case %s: its announcements wait for the sweep (%r)", case_id, exc)
        return published

    async def _open_converted(self, enquiry_case: Case, actor: Actor, now: datetime) -> tuple[Case, bool]:
        """The application case a converted enquiry becomes (in triage, the enquirer as its client), and whether
        it was opened now."""
        assert enquiry_case.enquiry_id is not None
        opened = HistoryEntry(key="opened", kind="converted", at=now, staff=actor.email, text=enquiry_case.reference)
        case = new_case(
            CaseKind.APPLICATION,
            enquiry_case.enquiry_id,
            now,
            self.time_limits,
            opened,
            locale=enquiry_case.locale,
            enquiry_id=enquiry_case.enquiry_id,
            origin_enquiry=enquiry_case.id,
            company=enquiry_case.company,
            client_name=enquiry_case.client_name,
            client_email=enquiry_case.client_email,
            owner=enquiry_case.owner,
            owner_name=enquiry_case.owner_name,
        )
        return case, await self.cases.open(case)

    def _announcement(self, case: Case, transition: Transition, actor: Actor, now: datetime) -> CaseStatusChanged:
        client = (
            CaseClient(name=case.client_name or "", email=case.client_email)
            if case.client_email and case.erased_at is None
            else None
        )
        application_id = case.application_id
        enquiry_id = None if application_id is not None else case.enquiry_id
        return CaseStatusChanged(
            event_id=derived_id("case.status-changed", str(case.id), str(case.version)),
            correlation_id=f"case-{case.reference}",
            data=CaseStatusChangedData(
                case_id=case.id,
                application_id=application_id,
                enquiry_id=enquiry_id,
                previous=transition.previous,
                current=transition.current,
                action=transition.action,
                reason=transition.reason,
                staff_member=actor.email,
                changed_at=now,
                locale=case.locale,
                client=client,
                consultant=case.owner_name,
                account_name=case.account_name,
                tencent_deadline=case.tencent_deadline,
                rejection_reason=cast(RejectionReason | None, case.rejection_reason),  # the workflow checked it
                fee=self.fee if transition.current == A.AWAITING_FEE else None,
                expires_at=case.expires_at.date() if case.expires_at is not None else None,
                # The links valid now: a revocation (the generation moved on) ends the ones sent before.
                portal_generation=case.portal_generation if client is not None else None,
            ),
        )


def _state(case: Case) -> CaseState:
    return CaseState(case.kind, case.status, case.held_from, case.tencent_attempts)
