"""Cases in a real MongoDB (SecantusDB): opened once from events, their timelines, staff changes announced through
an outbox, conflicts, conversion and erasure."""

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient

from agency_chassis.outcomes import Done
from agency_shared.events import ApplicantErased, ApplicantErasedData, CaseStatusChanged, Event, NotificationSettled
from casework.cases import ERASED, HistoryEntry, case_id_for
from casework.handlers import (
    confirm_application,
    forget_applicant,
    note_email,
    open_application_case,
    open_enquiry_case,
)
from casework.handling import Actor, CaseHandling
from casework.settings import DEFAULT_TIME_LIMITS
from casework.storage import CaseChanged, CaseQuery, MongoCases
from casework.workflow import ActionRequest, CaseKind, NotAllowed, Rules
from tests.support.casework import enquiry_released
from tests.support.events import (
    acceptance_confirmed_event,
    agreement_recorded_event,
    application_submitted,
    enquiry_received,
    notification_settled,
)

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)  # a Wednesday
ANNA = Actor("staff-1", "anna@agency.example", "Anna Chen 陈安娜")


class Announcements:
    """What the use cases published (a broker that refuses while ``refusing``)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.refusing = False

    async def __call__(self, event: Event) -> None:
        if self.refusing:
            raise ConnectionError("the broker did not confirm")
        self.events.append(event)


@pytest.fixture
async def cases(mongo: AsyncMongoClient[dict[str, Any]], mongo_db: str) -> MongoCases:
    store = MongoCases(mongo, mongo_db)
    await store.ensure_indexes()
    return store


@pytest.fixture
def announcements() -> Announcements:
    return Announcements()


@pytest.fixture
def handling(cases: MongoCases, announcements: Announcements) -> CaseHandling:
    return CaseHandling(cases, announcements, Rules(), DEFAULT_TIME_LIMITS, "USD 99", now=lambda: NOW)


async def test_a_recorded_application_opens_one_case_in_triage_however_often_it_arrives(cases: MongoCases) -> None:
    event = agreement_recorded_event(locale="zh-CN")
    for _ in range(3):
        assert await open_application_case(event, cases, DEFAULT_TIME_LIMITS, now=lambda: NOW) == Done()
    case_id = case_id_for(event.data.application_id, CaseKind.APPLICATION)
    case = await cases.get(case_id)
    assert case is not None
    assert (case.status, case.locale, case.kind) == ("triage", "zh-CN", CaseKind.APPLICATION)
    assert case.due_at == NOW + timedelta(days=1)
    assert case.client_email == event.data.applicant_email
    assert case.acceptance is not None
    assert case.acceptance["record_hash"] == event.data.record_hash
    assert [line.kind for line in case.history] == ["opened"]
    page = await cases.find(CaseQuery())
    assert page.total == 1


@pytest.mark.parametrize("search", ["MAPLE TEA", "枫叶", "li.wei@mapletea", "A-", "."])
async def test_the_case_list_finds_a_case_by_company_account_email_or_reference(cases: MongoCases, search: str) -> None:
    event = agreement_recorded_event()
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS, now=lambda: NOW)
    found = await cases.find(CaseQuery(search=search))
    assert [case.application_id for case in found.cases] == [event.data.application_id]
    assert (await cases.find(CaseQuery(search=".*"))).total == 0  # a search is text, never a pattern


async def test_an_application_without_a_human_check_opens_its_case_only_once_verified(cases: MongoCases) -> None:
    submitted = application_submitted(human_check="none")
    await open_application_case(agreement_recorded_event(submitted=submitted), cases, DEFAULT_TIME_LIMITS)
    assert (await cases.find(CaseQuery())).total == 0
    confirmed = acceptance_confirmed_event(submitted=submitted)
    assert await confirm_application(confirmed, cases, DEFAULT_TIME_LIMITS) == Done()
    assert await confirm_application(confirmed, cases, DEFAULT_TIME_LIMITS) == Done()
    [case] = (await cases.find(CaseQuery())).cases
    full = await cases.get(case.id)
    assert full is not None
    assert full.email_verified_at == confirmed.data.verified_at
    assert [line.kind for line in full.history] == ["opened", "email_verified"]


async def test_an_email_settled_before_its_case_opened_joins_the_timeline_once(cases: MongoCases) -> None:
    event = agreement_recorded_event()
    settled = notification_settled(event.data.application_id)
    assert await note_email(settled, cases) == Done()
    assert await note_email(settled, cases) == Done()
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS)
    await note_email(settled, cases)
    case = await cases.get(case_id_for(event.data.application_id))
    assert case is not None
    emails = [line for line in case.history if line.kind == "email"]
    assert [(line.template, line.state) for line in emails] == [("client_confirmation", "sent")]


async def test_an_email_without_a_subject_is_nobodys(cases: MongoCases) -> None:
    assert await note_email(notification_settled(None), cases) == Done()
    assert (await cases.find(CaseQuery())).total == 0


async def test_a_status_change_names_the_clients_link_generation_of_the_moment(
    cases: MongoCases, handling: CaseHandling, announcements: Announcements
) -> None:
    event = agreement_recorded_event()
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS)
    case_id = case_id_for(event.data.application_id)
    await handling.change_status(case_id, ActionRequest("request_documents", "checklist sent"), ANNA)
    revoked = HistoryEntry(key="portal_revoked:1", kind="portal_revoked", at=NOW, staff=ANNA.email)
    assert await cases.revoke_portal_links(await handling.case(case_id), revoked)
    await handling.change_status(case_id, ActionRequest("documents_received", "all in"), ANNA)
    # Once the applicant is erased the news names no client, so no link either.
    erased = ApplicantErasedData(application_id=event.data.application_id, event_ids=(), erased_at=NOW)
    await forget_applicant(ApplicantErased(event_id=uuid.uuid4(), correlation_id="c-erase", data=erased), cases)
    await handling.change_status(case_id, ActionRequest("request_revision", "seal illegible"), ANNA)
    news = [e.data for e in announcements.events if isinstance(e, CaseStatusChanged)]
    assert [(d.current, d.client is not None, d.portal_generation) for d in news] == [
        ("awaiting_documents", True, 0),
        ("documents_in_review", True, 1),
        ("documents_need_revision", False, None),
    ]


async def test_a_status_change_is_recorded_and_announced(
    cases: MongoCases, handling: CaseHandling, announcements: Announcements
) -> None:
    event = agreement_recorded_event(locale="zh-CN")
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS)
    case_id = case_id_for(event.data.application_id)
    await handling.assign_owner(case_id, ANNA, ANNA)
    labels = {"action": "request_documents", "status": "awaiting_documents"}
    before = REGISTRY.get_sample_value("wechat_case_status_changes_total", labels) or 0.0
    case = await handling.change_status(case_id, ActionRequest("request_documents", "checklist sent"), ANNA)
    assert REGISTRY.get_sample_value("wechat_case_status_changes_total", labels) == before + 1
    assert (case.status, case.status_since, case.due_at) == ("awaiting_documents", NOW, None)
    assert case.owner_name == ANNA.name
    [line] = [line for line in case.history if line.kind == "status_changed"]
    assert (line.staff, line.text, line.previous, line.current) == (
        ANNA.email,
        "checklist sent",
        "triage",
        "awaiting_documents",
    )
    consultant, moved = announcements.events
    assert isinstance(consultant, CaseStatusChanged)
    assert consultant.data.consultant == ANNA.name
    assert isinstance(moved, CaseStatusChanged)
    assert (moved.data.previous, moved.data.current, moved.data.locale) == ("triage", "awaiting_documents", "zh-CN")
    assert moved.data.client is not None
    assert moved.data.client.email == event.data.applicant_email
    assert await cases.unpublished() == []


async def test_an_announcement_the_broker_refused_stays_in_the_outbox_until_a_sweep_sends_it(
    cases: MongoCases, handling: CaseHandling, announcements: Announcements
) -> None:
    event = agreement_recorded_event()
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS)
    case_id = case_id_for(event.data.application_id)
    announcements.refusing = True
    case = await handling.change_status(case_id, ActionRequest("withdraw", "client withdrew by phone"), ANNA)
    assert case.status == "withdrawn"  # the change stands: only its announcement is owed
    assert len(await cases.unpublished()) == 1
    assert await handling.publish_pending() == 0
    assert REGISTRY.get_sample_value("wechat_case_announcements_pending") == 1
    announcements.refusing = False
    assert await handling.publish_pending() == 1
    assert await cases.unpublished() == []
    assert REGISTRY.get_sample_value("wechat_case_announcements_pending") == 0
    [sent] = announcements.events
    assert isinstance(sent, CaseStatusChanged)
    assert sent.data.current == "withdrawn"


async def test_a_refused_action_changes_nothing(cases: MongoCases, handling: CaseHandling) -> None:
    event = agreement_recorded_event()
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS)
    case_id = case_id_for(event.data.application_id)
    before = await cases.get(case_id)
    with pytest.raises(NotAllowed):
        await handling.change_status(case_id, ActionRequest("hand_over", "too early"), ANNA)
    assert await cases.get(case_id) == before


async def test_a_change_made_on_a_stale_read_is_refused(cases: MongoCases) -> None:
    event = agreement_recorded_event()
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS)
    case = await cases.get(case_id_for(event.data.application_id))
    assert case is not None
    note = HistoryEntry(key="note:0", kind="note", at=NOW, staff=ANNA.email, text="first")
    await cases.change(case, {}, note)
    with pytest.raises(CaseChanged):
        await cases.change(case, {"status": "withdrawn"}, note.model_copy(update={"key": "x"}))
    current = await cases.get(case.id)
    assert current is not None
    assert (current.status, current.version) == ("triage", 1)


async def test_converting_an_enquiry_opens_its_application_case(cases: MongoCases, handling: CaseHandling) -> None:
    enquiry = enquiry_received(locale="zh-CN")
    await open_enquiry_case(enquiry_released(enquiry), cases, DEFAULT_TIME_LIMITS, now=lambda: NOW)
    case_id = case_id_for(enquiry.data.enquiry_id, CaseKind.ENQUIRY)
    for action in ("mark_contacted", "qualify", "convert"):
        case = await handling.change_status(case_id, ActionRequest(action, f"{action} by phone"), ANNA)
    assert case.status == "converted"
    assert case.converted_to is not None
    converted = await cases.get(case.converted_to)
    assert converted is not None
    assert (converted.kind, converted.status, converted.origin_enquiry) == (CaseKind.APPLICATION, "triage", case.id)
    assert converted.client_email == case.client_email


async def test_an_erasure_blanks_the_personal_data_and_keeps_the_case(
    cases: MongoCases, handling: CaseHandling
) -> None:
    event = agreement_recorded_event()
    application_id = event.data.application_id
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS)
    case_id = case_id_for(application_id)
    await handling.add_note(case_id, "Called Li Wei on +44 20 7946 0958", ANNA)
    await note_email(notification_settled(application_id), cases)
    erased = ApplicantErased(
        event_id=uuid.uuid4(),
        correlation_id="c-erase",
        data=ApplicantErasedData(application_id=application_id, event_ids=(), erased_at=NOW),
    )
    assert await forget_applicant(erased, cases) == Done()
    assert await forget_applicant(erased, cases) == Done()
    case = await cases.get(case_id)
    assert case is not None
    assert case.erased_at == NOW
    assert (case.client_name, case.client_email, case.status) == (None, None, "triage")
    assert case.application is not None
    assert case.application["operator"] is None
    assert case.acceptance is not None
    assert "client_ip" not in case.acceptance
    assert case.acceptance["record_hash"] == event.data.record_hash  # the evidence's hashes stay
    serialized = case.model_dump_json()
    for personal in (event.data.applicant_email, event.data.applicant_name, "7946 0958"):
        assert personal not in serialized
    assert [line.text for line in case.history if line.kind == "note"] == [ERASED]
    # A replay of the application reopens nothing, and a late email arrives blanked.
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS)
    late: NotificationSettled = notification_settled(application_id)
    await note_email(late, cases)
    again = await cases.get(case_id)
    assert again is not None
    assert event.data.applicant_email not in again.model_dump_json()
    assert (await cases.find(CaseQuery(search="li.wei"))).total == 0


async def test_nothing_about_an_erased_subject_comes_back_whatever_arrives_later(cases: MongoCases) -> None:
    submitted = application_submitted()
    recorded = agreement_recorded_event(submitted=submitted)
    application_id = recorded.data.application_id
    erased = ApplicantErased(
        event_id=uuid.uuid4(),
        correlation_id="c-erase",
        data=ApplicantErasedData(application_id=application_id, event_ids=(), erased_at=NOW),
    )
    # The erasure first (its case had not opened: the event sat in a retry queue), then the retries.
    assert await forget_applicant(erased, cases) == Done()
    assert await open_application_case(recorded, cases, DEFAULT_TIME_LIMITS) == Done()
    assert (
        await confirm_application(acceptance_confirmed_event(submitted=submitted), cases, DEFAULT_TIME_LIMITS) == Done()
    )
    assert await note_email(notification_settled(application_id), cases) == Done()
    assert await cases.get(case_id_for(application_id)) is None
    assert await cases.of_subject(application_id) == []
    assert (await cases.find(CaseQuery())).total == 0


async def test_announcements_go_out_in_the_order_the_changes_were_made(
    cases: MongoCases, handling: CaseHandling, announcements: Announcements
) -> None:
    event = agreement_recorded_event()
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS)
    case_id = case_id_for(event.data.application_id)
    announcements.refusing = True
    await handling.change_status(case_id, ActionRequest("request_documents", "list sent"), ANNA)
    await handling.change_status(case_id, ActionRequest("documents_received", "all in"), ANNA)
    announcements.refusing = False
    # The next change sends what its case still owed first: the client never reads of the fee before the documents.
    await handling.change_status(case_id, ActionRequest("request_fee", "documents fine"), ANNA)
    assert [e.data.current for e in announcements.events if isinstance(e, CaseStatusChanged)] == [
        "awaiting_documents",
        "documents_in_review",
        "awaiting_fee",
    ]
    assert await cases.unpublished() == []


async def test_resuming_a_request_for_information_keeps_tencents_deadline_as_its_limit(
    cases: MongoCases, handling: CaseHandling
) -> None:
    event = agreement_recorded_event()
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS)
    case_id = case_id_for(event.data.application_id)
    await cases.change(
        await handling.case(case_id),
        {"status": "submitted_to_tencent"},
        HistoryEntry(key="setup", kind="note", at=NOW, text="set up"),
    )
    deadline = date(2026, 12, 20)
    asked = await handling.change_status(case_id, ActionRequest("tencent_requested_info", "seal", deadline), ANNA)
    await handling.change_status(case_id, ActionRequest("put_on_hold", "client away"), ANNA)
    resumed = await handling.change_status(case_id, ActionRequest("resume", "client back"), ANNA)
    assert resumed.status == "tencent_requested_info"
    assert resumed.due_at == asked.due_at
    assert resumed.due_at is not None
    assert resumed.due_at.date() == deadline


class RefusingChanges(MongoCases):
    """MongoCases whose next ``change`` finds the case changed by someone else (as a second staff member would)."""

    async def change(self, case: Any, updates: Any, entry: Any, event: Any = None) -> None:
        raise CaseChanged(str(case.id))


async def test_a_conversion_that_loses_a_race_leaves_no_application_case(
    mongo: AsyncMongoClient[dict[str, Any]], mongo_db: str, cases: MongoCases
) -> None:
    enquiry = enquiry_received()
    await open_enquiry_case(enquiry_released(enquiry), cases, DEFAULT_TIME_LIMITS, now=lambda: NOW)
    enquiry_case_id = case_id_for(enquiry.data.enquiry_id, CaseKind.ENQUIRY)
    handling = CaseHandling(cases, Announcements(), Rules(), DEFAULT_TIME_LIMITS, "USD 99", now=lambda: NOW)
    await handling.change_status(enquiry_case_id, ActionRequest("qualify", "good lead"), ANNA)
    racing = CaseHandling(
        RefusingChanges(mongo, mongo_db), Announcements(), Rules(), DEFAULT_TIME_LIMITS, "USD 99", now=lambda: NOW
    )
    with pytest.raises(CaseChanged):
        await racing.change_status(enquiry_case_id, ActionRequest("convert", "signed"), ANNA)
    assert await cases.get(case_id_for(enquiry.data.enquiry_id, CaseKind.APPLICATION)) is None
    assert (await cases.find(CaseQuery())).total == 1


async def test_an_erasure_takes_the_client_out_of_what_the_case_still_owes(
    mongo: AsyncMongoClient[dict[str, Any]],
    mongo_db: str,
    cases: MongoCases,
    handling: CaseHandling,
    announcements: Announcements,
) -> None:
    event = agreement_recorded_event()
    application_id = event.data.application_id
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS)
    announcements.refusing = True
    await handling.change_status(case_id_for(application_id), ActionRequest("withdraw", "called Li Wei"), ANNA)
    erased = ApplicantErased(
        event_id=uuid.uuid4(),
        correlation_id="c-erase",
        data=ApplicantErasedData(application_id=application_id, event_ids=(), erased_at=NOW),
    )
    assert await forget_applicant(erased, cases) == Done()
    document = await mongo[mongo_db]["casework_cases"].find_one({"_id": str(case_id_for(application_id))})
    assert document is not None
    assert event.data.applicant_email not in str(document)
    assert "Li Wei" not in str(document)
    announcements.refusing = False
    assert await handling.publish_pending() == 1
    [owed] = announcements.events
    assert isinstance(owed, CaseStatusChanged)
    assert owed.data.client is None


async def test_renewal_news_names_the_verifications_expiry(
    cases: MongoCases, handling: CaseHandling, announcements: Announcements
) -> None:
    event = agreement_recorded_event()
    await open_application_case(event, cases, DEFAULT_TIME_LIMITS)
    case_id = case_id_for(event.data.application_id)
    expiry = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)
    live = HistoryEntry(key="live", kind="note", at=NOW, text="handed over")
    await cases.change(await handling.case(case_id), {"status": "live", "expires_at": expiry}, live)
    await handling.change_status(case_id, ActionRequest("renewal_due", "three months to go"), ANNA)
    [news] = announcements.events
    assert isinstance(news, CaseStatusChanged)
    assert news.data.expires_at == date(2027, 3, 1)
