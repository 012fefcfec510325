"""Which reminders a case is owed at a moment: a pure function of the case, the schedule (settings) and now.

Each reminder has a deterministic key (case, kind, anchor, offset): the scheduler claims it by that key, so it is
sent once however often, and on however many replicas, the schedule is asked. The anchor is what the reminder
counts from (when the status began, Tencent's deadline, the verification's expiry, the time limit), so a case that
enters the status again, gets a new deadline or is renewed is owed a new series.

Rules:
- Only the case's current status counts: a case that left a status is owed none of its reminders any more.
- In a series (chasers on days 3, 7, 14; renewal 90, 30, 7 days before) only the latest one due is owed: a
  scheduler that was down for a while sends one reminder, not every one it missed.
- A reminder more than ``catch_up`` late is not owed (the scheduler was down for longer: staff see the case in
  the console instead), so the scheduler's queries look at bounded windows, never at every case.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Literal

from casework.cases import Case
from casework.workflow import CHINA_TIME, A, CaseKind, CaseState, system_may

Recipient = Literal["client", "owner"]


class ReminderKind(StrEnum):
    DOCUMENTS_CHASER = "documents_chaser"  # client: documents outstanding (awaiting or needing revision)
    FEE_CHASER = "fee_chaser"  # client: the verification fee outstanding
    RENEWAL = "renewal"  # client: the annual verification's expiry comes
    TENCENT_DEADLINE = "tencent_deadline"  # owner: Tencent's deadline for more information comes
    OVERDUE = "overdue"  # owner: the status's time limit (or Tencent's deadline) passed
    LAPSE = "lapse"  # owner: the verification expired with no renewal recorded


RECIPIENTS: dict[ReminderKind, Recipient] = {
    ReminderKind.DOCUMENTS_CHASER: "client",
    ReminderKind.FEE_CHASER: "client",
    ReminderKind.RENEWAL: "client",
    ReminderKind.TENCENT_DEADLINE: "owner",
    ReminderKind.OVERDUE: "owner",
    ReminderKind.LAPSE: "owner",
}
DOCUMENT_STATUSES = frozenset({A.AWAITING_DOCUMENTS, A.DOCUMENTS_NEED_REVISION})
FEE_STATUSES = frozenset({A.AWAITING_FEE})
# A verified account whose expiry is reminded: until a renewal or a lapse is recorded.
VERIFIED_STATUSES = frozenset({A.VERIFIED, A.LIVE, A.RENEWED, A.RENEWAL_DUE})


@dataclass(frozen=True)
class ReminderSchedule:
    """The reminders' figures (settings: REMINDER_CHASER_DAYS and the rest)."""

    chaser_days: tuple[int, ...] = (3, 7, 14)
    fee_chaser_days: tuple[int, ...] = (3, 7)
    tencent_warning_days: int = 5
    renewal_days: tuple[int, ...] = (90, 30, 7)
    renewal_due_days: int = 90
    catch_up: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Reminder:
    case_id: uuid.UUID
    kind: ReminderKind
    anchor: str  # what it counts from, as an ISO date or time
    offset: int  # days after (chasers) or before (deadline, renewal) the anchor
    due: datetime

    @property
    def key(self) -> str:
        return f"{self.case_id}:{self.kind.value}:{self.anchor}:{self.offset}"

    @property
    def recipient(self) -> Recipient:
        return RECIPIENTS[self.kind]


def anchor_of(moment: datetime) -> str:
    """A moment as a key's anchor: UTC to the millisecond, as MongoDB keeps it, so a case read back from the
    database (or never written) names the same reminder."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def owed_reminders(case: Case, now: datetime, schedule: ReminderSchedule = ReminderSchedule()) -> list[Reminder]:
    """The reminders ``case`` is owed at ``now`` (the scheduler sends those it has not sent yet)."""
    if case.kind is not CaseKind.APPLICATION:
        return _overdue(case, now, schedule)
    owed: list[Reminder] = []
    if case.status in DOCUMENT_STATUSES:
        owed += _chaser(case, ReminderKind.DOCUMENTS_CHASER, schedule.chaser_days, now, schedule)
    if case.status in FEE_STATUSES:
        owed += _chaser(case, ReminderKind.FEE_CHASER, schedule.fee_chaser_days, now, schedule)
    if case.status == A.TENCENT_REQUESTED_INFO and case.tencent_deadline is not None:
        owed += _tencent_warning(case, case.tencent_deadline, now, schedule)
    if case.status in VERIFIED_STATUSES and case.expires_at is not None:
        owed += _renewal(case, case.expires_at, now, schedule)
    return owed + _overdue(case, now, schedule)


def _latest_due(case: Case, kind: ReminderKind, anchor: str, dues: Sequence[tuple[int, datetime]],
                now: datetime, schedule: ReminderSchedule) -> list[Reminder]:  # fmt: skip
    """The latest of a series' reminders that is due, if it is not more than ``catch_up`` late."""
    due = [(offset, moment) for offset, moment in dues if moment <= now]
    if not due:
        return []
    offset, moment = max(due, key=lambda item: item[1])
    if now - moment >= schedule.catch_up:
        return []
    return [Reminder(case.id, kind, anchor, offset, moment)]


def _chaser(case: Case, kind: ReminderKind, days: Sequence[int], now: datetime,
            schedule: ReminderSchedule) -> list[Reminder]:  # fmt: skip
    dues = [(day, case.status_since + timedelta(days=day)) for day in days]
    return _latest_due(case, kind, anchor_of(case.status_since), dues, now, schedule)


def china_day_start(day: date) -> datetime:
    """Midnight in China (UTC+8 all year, no daylight saving) at the start of ``day``."""
    return datetime.combine(day, time.min, tzinfo=CHINA_TIME)


def _tencent_warning(case: Case, deadline: date, now: datetime, schedule: ReminderSchedule) -> list[Reminder]:
    """Daily in the last ``tencent_warning_days`` days up to the deadline day (days in China): each warning is
    owed on its own day only, the deadline day's until the deadline passes (then the case is overdue)."""
    dues = [(left, china_day_start(deadline - timedelta(days=left))) for left in range(schedule.tencent_warning_days)]
    daily = ReminderSchedule(catch_up=timedelta(days=1))
    return _latest_due(case, ReminderKind.TENCENT_DEADLINE, deadline.isoformat(), dues, now, daily)


def _renewal(case: Case, expires_at: datetime, now: datetime, schedule: ReminderSchedule) -> list[Reminder]:
    anchor = anchor_of(expires_at)
    if now >= expires_at:
        return _latest_due(case, ReminderKind.LAPSE, anchor, [(0, expires_at)], now, schedule)
    dues = [(days, expires_at - timedelta(days=days)) for days in schedule.renewal_days]
    owed = _latest_due(case, ReminderKind.RENEWAL, anchor, dues, now, schedule)
    # The move to renewal_due told the client the same news ("annual verification due on D"): a reminder due at
    # or before that move is not sent as well.
    return [r for r in owed if not (case.status == A.RENEWAL_DUE and case.status_since >= r.due)]


def _overdue(case: Case, now: datetime, schedule: ReminderSchedule) -> list[Reminder]:
    if case.due_at is None:
        return []
    return _latest_due(case, ReminderKind.OVERDUE, anchor_of(case.due_at), [(0, case.due_at)], now, schedule)


def renewal_due(case: Case, now: datetime, schedule: ReminderSchedule = ReminderSchedule()) -> bool:
    """Whether the scheduler should move the case to ``renewal_due`` now (``renewal_due_days`` before expiry)."""
    state = CaseState(case.kind, case.status, case.held_from, case.tencent_attempts)
    return (
        system_may("renewal_due", state)
        and case.expires_at is not None
        and now >= case.expires_at - timedelta(days=schedule.renewal_due_days)
    )
