"""The reminder schedule: which reminders a case is owed at a moment, each with a key that names it for good."""

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from casework.cases import Case
from casework.reminders import Reminder, ReminderKind, ReminderSchedule, owed_reminders, renewal_due
from casework.reminding import ReminderScheduler
from casework.workflow import CHINA_TIME, ApplicationStatus, CaseKind, EnquiryStatus

A = ApplicationStatus
START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday; China has no daylight saving, nor does UTC
SCHEDULE = ReminderSchedule()
CASE_ID = uuid.UUID("00000000-0000-4000-8000-000000000017")


def case(status: str, since: datetime = START, **fields: Any) -> Case:
    values: dict[str, Any] = {
        "id": CASE_ID,
        "kind": CaseKind.APPLICATION,
        "reference": "A-TESTCASE",
        "status": status,
        "status_since": since,
        "opened_at": since - timedelta(days=1),
        "updated_at": since,
        "application_id": uuid.uuid4(),
        "client_email": "li.wei@mapletea.example",
        **fields,
    }
    return Case(**values)


def owed(subject: Case, now: datetime, schedule: ReminderSchedule = SCHEDULE) -> list[tuple[str, int]]:
    return [(r.kind.value, r.offset) for r in owed_reminders(subject, now, schedule)]


@pytest.mark.parametrize("status", [A.AWAITING_DOCUMENTS, A.DOCUMENTS_NEED_REVISION])
def test_the_documents_chasers_fall_due_on_days_3_7_and_14_to_the_second(status: str) -> None:
    subject = case(status)
    second = timedelta(seconds=1)
    assert owed(subject, START + timedelta(days=3) - second) == []
    assert owed(subject, START + timedelta(days=3)) == [("documents_chaser", 3)]
    assert owed(subject, START + timedelta(days=7) - second) == [("documents_chaser", 3)]
    assert owed(subject, START + timedelta(days=7)) == [("documents_chaser", 7)]
    assert owed(subject, START + timedelta(days=14)) == [("documents_chaser", 14)]
    assert owed(subject, START + timedelta(days=21) - second) == [("documents_chaser", 14)]
    assert owed(subject, START + timedelta(days=21)) == []  # a week late: not sent any more


def test_a_reminder_key_names_the_case_kind_anchor_and_offset_and_is_the_same_at_every_look() -> None:
    subject = case(A.AWAITING_DOCUMENTS)
    [first] = owed_reminders(subject, START + timedelta(days=3, hours=1), SCHEDULE)
    [again] = owed_reminders(subject, START + timedelta(days=6), SCHEDULE)
    assert first == again
    assert first.key == f"{CASE_ID}:documents_chaser:2026-03-02T10:00:00.000+00:00:3"
    assert first.recipient == "client"
    assert first.due == START + timedelta(days=3)


def test_a_case_that_left_the_status_is_owed_none_of_its_chasers() -> None:
    moved = case(A.DOCUMENTS_IN_REVIEW, START + timedelta(days=5), due_at=None)
    assert owed(moved, START + timedelta(days=7)) == []
    held = case(A.ON_HOLD, START + timedelta(days=5))
    assert owed(held, START + timedelta(days=14)) == []


def test_entering_the_status_again_starts_a_new_series_with_new_keys() -> None:
    first = owed_reminders(case(A.AWAITING_DOCUMENTS), START + timedelta(days=3), SCHEDULE)
    later = START + timedelta(days=10)
    second = owed_reminders(case(A.DOCUMENTS_NEED_REVISION, later), later + timedelta(days=3), SCHEDULE)
    assert [r.offset for r in first] == [r.offset for r in second] == [3]
    assert first[0].key != second[0].key


def test_the_fee_has_chasers_on_days_3_and_7_only() -> None:
    subject = case(A.AWAITING_FEE)
    assert owed(subject, START + timedelta(days=3)) == [("fee_chaser", 3)]
    assert owed(subject, START + timedelta(days=13)) == [("fee_chaser", 7)]
    assert owed(subject, START + timedelta(days=14)) == []


def test_the_chaser_days_are_settings() -> None:
    schedule = ReminderSchedule(chaser_days=(1, 2))
    subject = case(A.AWAITING_DOCUMENTS)
    assert owed(subject, START + timedelta(days=1), schedule) == [("documents_chaser", 1)]
    assert owed(subject, START + timedelta(days=3), schedule) == [("documents_chaser", 2)]


def test_tencents_deadline_is_warned_of_daily_in_its_last_five_days_counted_in_china() -> None:
    deadline = date(2026, 3, 20)
    subject = case(A.TENCENT_REQUESTED_INFO, tencent_deadline=deadline)
    china_midnight = datetime(2026, 3, 16, 0, 0, tzinfo=CHINA_TIME)  # 2026-03-15 16:00 UTC
    assert owed(subject, china_midnight - timedelta(seconds=1)) == []
    assert owed(subject, china_midnight) == [("tencent_deadline", 4)]
    [warning] = owed_reminders(subject, china_midnight, SCHEDULE)
    assert warning.recipient == "owner"
    assert warning.key.endswith(":tencent_deadline:2026-03-20:4")
    for left in (3, 2, 1, 0):
        day = china_midnight + timedelta(days=4 - left, hours=23)
        assert owed(subject, day) == [("tencent_deadline", left)]


def test_once_tencents_deadline_passed_the_case_is_overdue_not_warned() -> None:
    deadline = date(2026, 3, 20)
    end = datetime(2026, 3, 20, 23, 59, 59, 999999, tzinfo=CHINA_TIME)
    subject = case(A.TENCENT_REQUESTED_INFO, tencent_deadline=deadline, due_at=end)
    after = end + timedelta(seconds=1)
    assert owed(subject, after) == [("overdue", 0)]
    [overdue] = owed_reminders(subject, after, SCHEDULE)
    assert overdue.recipient == "owner"


def test_a_status_time_limit_passed_is_one_overdue_alert_per_limit() -> None:
    limit = START + timedelta(days=2)
    subject = case(A.DOCUMENTS_IN_REVIEW, due_at=limit)
    assert owed(subject, limit - timedelta(microseconds=1)) == []
    [alert] = owed_reminders(subject, limit, SCHEDULE)
    assert alert.key == f"{CASE_ID}:overdue:2026-03-04T10:00:00.000+00:00:0"
    assert owed_reminders(subject, limit + timedelta(days=3), SCHEDULE) == [alert]
    assert owed(subject, limit + timedelta(days=7)) == []


def test_an_enquiry_is_owed_only_its_overdue_alert() -> None:
    limit = START + timedelta(days=1)
    enquiry = case(EnquiryStatus.NEW, kind=CaseKind.ENQUIRY, application_id=None, enquiry_id=uuid.uuid4(),
                   due_at=limit)  # fmt: skip
    assert owed(enquiry, limit + timedelta(hours=1)) == [("overdue", 0)]


def test_renewal_reminders_come_90_30_and_7_days_before_the_expiry() -> None:
    expires = datetime(2027, 3, 2, 10, 0, tzinfo=UTC)
    subject = case(A.LIVE, expires_at=expires)
    assert owed(subject, expires - timedelta(days=90, seconds=1)) == []
    assert owed(subject, expires - timedelta(days=90)) == [("renewal", 90)]
    assert owed(subject, expires - timedelta(days=30)) == [("renewal", 30)]
    assert owed(subject, expires - timedelta(days=7)) == [("renewal", 7)]
    assert owed(subject, expires - timedelta(days=1)) == [("renewal", 7)]  # the last one stays owed (sent once)


def test_the_move_to_renewal_due_is_the_90_day_news_and_later_reminders_still_come() -> None:
    expires = datetime(2027, 3, 2, 10, 0, tzinfo=UTC)
    moved_at = expires - timedelta(days=90)
    subject = case(A.RENEWAL_DUE, moved_at, expires_at=expires)
    assert owed(subject, moved_at) == []
    assert owed(subject, expires - timedelta(days=30)) == [("renewal", 30)]


def test_an_expired_verification_without_renewal_alerts_the_owner_once() -> None:
    expires = datetime(2027, 3, 2, 10, 0, tzinfo=UTC)
    subject = case(A.RENEWAL_DUE, expires - timedelta(days=90), expires_at=expires)
    [lapse] = owed_reminders(subject, expires, SCHEDULE)
    assert (lapse.kind, lapse.recipient) == (ReminderKind.LAPSE, "owner")
    assert owed(case(A.LAPSED, expires, expires_at=expires), expires + timedelta(hours=1)) == []
    assert owed(case(A.RENEWED, expires, expires_at=expires + timedelta(days=365)), expires + timedelta(days=1)) == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [(A.VERIFIED, True), (A.LIVE, True), (A.RENEWED, True), (A.RENEWAL_DUE, False), (A.LAPSED, False),
     (A.ON_HOLD, False)],
)  # fmt: skip
def test_the_scheduler_moves_a_verified_account_to_renewal_due_90_days_before(status: str, expected: bool) -> None:
    expires = datetime(2027, 3, 2, 10, 0, tzinfo=UTC)
    subject = case(status, expires_at=expires)
    assert renewal_due(subject, expires - timedelta(days=90)) is expected
    assert renewal_due(subject, expires - timedelta(days=90, microseconds=1)) is False


def test_a_case_without_dates_is_owed_nothing() -> None:
    assert owed(case(A.LIVE), START + timedelta(days=400)) == []
    assert owed(case(A.TENCENT_REQUESTED_INFO), START + timedelta(days=400)) == []


def test_an_anchor_is_the_same_whatever_the_precision_or_zone_the_case_was_read_with() -> None:
    precise = datetime(2026, 3, 2, 10, 0, 0, 123456, tzinfo=UTC)
    as_stored = precise.replace(microsecond=123000)
    in_china = as_stored.astimezone(CHINA_TIME)
    keys = {
        r.key
        for moment in (precise, as_stored, in_china)
        for r in owed_reminders(case(A.AWAITING_DOCUMENTS, moment), moment + timedelta(days=3, seconds=1))
    }
    assert keys == {f"{CASE_ID}:documents_chaser:2026-03-02T10:00:00.123+00:00:3"}


def test_keys_of_different_cases_differ() -> None:
    one = Reminder(CASE_ID, ReminderKind.DOCUMENTS_CHASER, START.isoformat(), 3, START)
    other = Reminder(uuid.uuid4(), ReminderKind.DOCUMENTS_CHASER, START.isoformat(), 3, START)
    assert one.key != other.key


def scheduler() -> ReminderScheduler:
    unused: Any = None  # a client's reminder, and an owner's of a case nobody owns, read no port
    return ReminderScheduler(unused, unused, unused, unused, unused, SCHEDULE, "https://console.agency.example",
                             "USD 99", 60.0)  # fmt: skip


async def test_a_client_reminder_names_the_cases_link_generation_of_the_moment_so_a_revocation_moves_it_on() -> None:
    subject = case(A.AWAITING_DOCUMENTS)
    [day_3] = owed_reminders(subject, START + timedelta(days=3), SCHEDULE)
    [day_7] = owed_reminders(subject, START + timedelta(days=7), SCHEDULE)
    before = await scheduler().announcement(day_3, subject)
    # Staff revoked the links between the two chasers: the case's generation moved on.
    after = await scheduler().announcement(day_7, subject.model_copy(update={"portal_generation": 1}))
    assert before is not None
    assert after is not None
    assert (before.data.recipient, before.data.portal_generation) == ("client", 0)
    assert (after.data.recipient, after.data.portal_generation) == ("client", 1)


async def test_an_owner_reminder_names_no_link_generation() -> None:
    expires = datetime(2027, 3, 2, 10, 0, tzinfo=UTC)
    subject = case(A.RENEWAL_DUE, expires - timedelta(days=90), expires_at=expires, portal_generation=3)
    [lapse] = owed_reminders(subject, expires, SCHEDULE)
    event = await scheduler().announcement(lapse, subject)
    assert event is not None
    assert (event.data.recipient, event.data.client, event.data.portal_generation) == ("owner", None, None)
