"""The workflow's decision table: every allowed transition, every refused one, the details actions need, time limits."""

from datetime import UTC, date, datetime, timedelta

import pytest

from casework.workflow import (
    ACTIONS,
    ActionRequest,
    ApplicationStatus,
    CaseKind,
    CaseState,
    EnquiryStatus,
    InvalidDetail,
    NotAllowed,
    Rules,
    add_business_days,
    allowed_actions,
    decide,
    due_at,
)

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)  # a Wednesday
A = ApplicationStatus
E = EnquiryStatus

# The table from casework.md, written out independently of workflow.ACTIONS: (action, from, to).
EXPECTED: set[tuple[str, str, str]] = {
    ("request_documents", A.TRIAGE, A.AWAITING_DOCUMENTS),
    ("request_documents", A.REJECTED, A.AWAITING_DOCUMENTS),
    ("documents_received", A.AWAITING_DOCUMENTS, A.DOCUMENTS_IN_REVIEW),
    ("documents_received", A.DOCUMENTS_NEED_REVISION, A.DOCUMENTS_IN_REVIEW),
    ("request_revision", A.DOCUMENTS_IN_REVIEW, A.DOCUMENTS_NEED_REVISION),
    ("request_fee", A.DOCUMENTS_IN_REVIEW, A.AWAITING_FEE),
    ("fee_received", A.AWAITING_FEE, A.ACCOUNT_SETUP),
    ("submit_to_tencent", A.ACCOUNT_SETUP, A.SUBMITTED_TO_TENCENT),
    ("submit_to_tencent", A.REJECTED, A.SUBMITTED_TO_TENCENT),
    ("tencent_requested_info", A.SUBMITTED_TO_TENCENT, A.TENCENT_REQUESTED_INFO),
    ("info_sent_to_tencent", A.TENCENT_REQUESTED_INFO, A.SUBMITTED_TO_TENCENT),
    ("record_rejection", A.SUBMITTED_TO_TENCENT, A.REJECTED),
    ("record_rejection", A.TENCENT_REQUESTED_INFO, A.REJECTED),
    ("record_verification", A.SUBMITTED_TO_TENCENT, A.VERIFIED),
    ("record_verification", A.TENCENT_REQUESTED_INFO, A.VERIFIED),
    ("hand_over", A.VERIFIED, A.LIVE),
    ("renewal_due", A.VERIFIED, A.RENEWAL_DUE),
    ("renewal_due", A.LIVE, A.RENEWAL_DUE),
    ("renewal_due", A.RENEWED, A.RENEWAL_DUE),
    ("renewal_due", A.LAPSED, A.RENEWAL_DUE),
    ("record_renewal", A.RENEWAL_DUE, A.RENEWED),
    ("record_lapse", A.RENEWAL_DUE, A.LAPSED),
    *(("put_on_hold", s, A.ON_HOLD) for s in A if s not in (A.ON_HOLD, A.WITHDRAWN, A.LAPSED)),
    *(("withdraw", s, A.WITHDRAWN) for s in A if s is not A.WITHDRAWN),
    ("mark_contacted", E.NEW, E.CONTACTED),
    ("qualify", E.NEW, E.QUALIFIED),
    ("qualify", E.CONTACTED, E.QUALIFIED),
    ("convert", E.QUALIFIED, E.CONVERTED),
    ("close", E.NEW, E.CLOSED),
    ("close", E.CONTACTED, E.CLOSED),
    ("close", E.QUALIFIED, E.CLOSED),
}
KINDS = {**{s.value: CaseKind.APPLICATION for s in A}, **{s.value: CaseKind.ENQUIRY for s in E}}
ALL_PAIRS = [(action, status) for action in ACTIONS for status in KINDS]


def request_for(action: str) -> ActionRequest:
    return ActionRequest(action, "checked with the client", date(2026, 12, 20), "illegible_seal")


@pytest.mark.parametrize(("action", "status"), ALL_PAIRS)
def test_every_action_from_every_status_is_allowed_exactly_where_the_table_says(action: str, status: str) -> None:
    state = CaseState(KINDS[status], status)
    expected = {target for name, source, target in EXPECTED if name == action and source == status}
    if expected:
        transition = decide(state, request_for(action), NOW)
        assert (transition.previous, transition.current) == (status, expected.pop())
        assert action in allowed_actions(state)
    else:
        with pytest.raises(NotAllowed) as refused:
            decide(state, request_for(action), NOW)
        assert refused.value.allowed == allowed_actions(state)
        assert action not in refused.value.allowed


def test_the_table_has_no_transition_the_expected_one_lacks() -> None:
    actual = {
        (action.name, source, action.target or "<held>")
        for action in ACTIONS.values()
        for source in action.sources
        if action.name != "resume"
    }
    assert actual == EXPECTED


def test_an_unknown_action_is_refused_with_what_is_allowed() -> None:
    with pytest.raises(NotAllowed) as refused:
        decide(CaseState(CaseKind.APPLICATION, A.TRIAGE), ActionRequest("approve_everything", "x"), NOW)
    assert refused.value.allowed == ["request_documents", "put_on_hold", "withdraw"]


def test_a_case_on_hold_resumes_where_it_was() -> None:
    held = decide(
        CaseState(CaseKind.APPLICATION, A.AWAITING_FEE), ActionRequest("put_on_hold", "client travelling"), NOW
    )
    assert held.changes["held_from"] == A.AWAITING_FEE
    state = CaseState(CaseKind.APPLICATION, A.ON_HOLD, held_from=A.AWAITING_FEE)
    assert allowed_actions(state) == ["resume", "withdraw"]
    resumed = decide(state, ActionRequest("resume", "client is back"), NOW)
    assert (resumed.current, resumed.changes["held_from"]) == (A.AWAITING_FEE, None)


def test_a_case_on_hold_without_a_known_origin_cannot_resume() -> None:
    with pytest.raises(NotAllowed):
        decide(CaseState(CaseKind.APPLICATION, A.ON_HOLD), ActionRequest("resume", "back"), NOW)


def test_tencent_requests_count_and_stop_at_the_attempts_allowed() -> None:
    rules = Rules(tencent_info_attempts=3)
    state = CaseState(CaseKind.APPLICATION, A.SUBMITTED_TO_TENCENT, tencent_attempts=2)
    transition = decide(state, ActionRequest("tencent_requested_info", "seal", date(2026, 12, 20)), NOW, rules)
    assert transition.changes == {"tencent_deadline": date(2026, 12, 20), "tencent_attempts": 3}
    exhausted = CaseState(CaseKind.APPLICATION, A.SUBMITTED_TO_TENCENT, tencent_attempts=3)
    assert "tencent_requested_info" not in allowed_actions(exhausted, rules)
    with pytest.raises(NotAllowed):
        decide(exhausted, ActionRequest("tencent_requested_info", "again", date(2026, 12, 20)), NOW, rules)


def test_a_first_submission_or_a_resubmission_starts_the_attempts_afresh() -> None:
    rejected = CaseState(CaseKind.APPLICATION, A.REJECTED, tencent_attempts=3)
    transition = decide(rejected, ActionRequest("submit_to_tencent", "fixed the seal"), NOW)
    assert transition.changes == {"submitted_at": NOW, "tencent_attempts": 0, "tencent_deadline": None}


@pytest.mark.parametrize(
    ("deadline", "reason"),
    [
        (None, "Tencent's deadline is required"),
        (date(2026, 12, 1), "Tencent's deadline is in the past"),
        (date(2028, 1, 1), "Tencent's deadline is more than a year away"),
    ],
)
def test_a_tencent_request_needs_a_plausible_deadline(deadline: date | None, reason: str) -> None:
    state = CaseState(CaseKind.APPLICATION, A.SUBMITTED_TO_TENCENT)
    with pytest.raises(InvalidDetail) as invalid:
        decide(state, ActionRequest("tencent_requested_info", "more pages", deadline), NOW)
    assert (invalid.value.field, invalid.value.reason) == ("tencent_deadline", reason)


@pytest.mark.parametrize("code", [None, "", "bad seal", "ILLEGIBLE_SEAL", "illegible_seal\n"])
def test_a_rejection_needs_one_of_the_known_reasons(code: str | None) -> None:
    state = CaseState(CaseKind.APPLICATION, A.SUBMITTED_TO_TENCENT)
    with pytest.raises(InvalidDetail) as invalid:
        decide(state, ActionRequest("record_rejection", "Tencent said no", rejection_reason=code), NOW)
    assert invalid.value.field == "rejection_reason"


@pytest.mark.parametrize(
    ("reason", "why"),
    [
        ("", "every status change needs a reason"),
        ("   \n\t ", "every status change needs a reason"),
        ("x" * 1001, "at most 1000 characters"),
        ("ok\x00then", "control characters are not allowed"),
        ("ok\x1b[31m", "control characters are not allowed"),
    ],
)
def test_every_change_needs_a_readable_reason(reason: str, why: str) -> None:
    with pytest.raises(InvalidDetail) as invalid:
        decide(CaseState(CaseKind.APPLICATION, A.TRIAGE), ActionRequest("request_documents", reason), NOW)
    assert (invalid.value.field, invalid.value.reason) == ("reason", why)


def test_a_reason_is_kept_as_written_apart_from_surrounding_space() -> None:
    reason = "  客户要求暂停\n<script>alert(1)</script> 'quoted' \"too\"  "
    transition = decide(CaseState(CaseKind.APPLICATION, A.TRIAGE), ActionRequest("request_documents", reason), NOW)
    assert transition.reason == reason.strip()


def test_verification_stores_when_and_until_when() -> None:
    state = CaseState(CaseKind.APPLICATION, A.SUBMITTED_TO_TENCENT)
    transition = decide(
        state, ActionRequest("record_verification", "badge shown"), NOW, Rules(renewal_interval_days=365)
    )
    assert transition.changes == {"verified_at": NOW, "expires_at": NOW + timedelta(days=365)}


def test_business_days_skip_weekends() -> None:
    friday = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)
    assert add_business_days(friday, 1) == datetime(2026, 12, 7, 17, 0, tzinfo=UTC)  # Monday
    assert add_business_days(NOW, 10) == datetime(2026, 12, 16, 9, 30, tzinfo=UTC)
    saturday = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)
    assert add_business_days(saturday, 1) == datetime(2026, 12, 8, 0, 0, tzinfo=UTC)  # from Monday: Tuesday


def test_time_limits_apply_where_staff_must_act_and_pause_while_waiting_on_the_client() -> None:
    limits = {"triage": 1, "submitted_to_tencent": 10, "awaiting_documents": 3}
    assert due_at("triage", NOW, limits) == datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    assert due_at("awaiting_documents", NOW, limits) is None  # the client's chasers are its clock
    assert due_at("withdrawn", NOW, limits) is None
    assert due_at("live", NOW, limits) is None  # no limit configured
    tencent = due_at("tencent_requested_info", NOW, limits, date(2026, 12, 20))
    assert tencent is not None
    assert tencent.date() == date(2026, 12, 20)


@pytest.mark.parametrize("status", [s.value for s in A])
def test_the_system_may_move_only_a_verified_account_to_its_renewal(status: str) -> None:
    from casework.workflow import system_may

    state = CaseState(CaseKind.APPLICATION, status)
    expected = status in (A.VERIFIED, A.LIVE, A.RENEWED)
    assert system_may("renewal_due", state) is expected
    if expected:  # and what it may do, the workflow allows
        assert decide(state, ActionRequest("renewal_due", "scheduler"), NOW).current == A.RENEWAL_DUE
    assert not system_may("record_lapse", state)
    assert not system_may("renewal_due", CaseState(CaseKind.ENQUIRY, status))
