"""The registration workflow as a state machine: statuses, the staff actions between them, and time limits.

Pure functions of a case's state: storage, HTTP and the broker know nothing of the rules, and the rules nothing
of them. The table follows ``casework.md`` (the statuses, what staff do in each, the suggested time limits).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, get_args

from agency_shared.events import RejectionReason


class CaseKind(StrEnum):
    APPLICATION = "application"
    ENQUIRY = "enquiry"


class ApplicationStatus(StrEnum):
    """Where an Official Account registration stands, in the order it usually moves."""

    TRIAGE = "triage"
    AWAITING_DOCUMENTS = "awaiting_documents"
    DOCUMENTS_IN_REVIEW = "documents_in_review"
    DOCUMENTS_NEED_REVISION = "documents_need_revision"
    AWAITING_FEE = "awaiting_fee"
    ACCOUNT_SETUP = "account_setup"
    SUBMITTED_TO_TENCENT = "submitted_to_tencent"
    TENCENT_REQUESTED_INFO = "tencent_requested_info"
    REJECTED = "rejected"
    VERIFIED = "verified"
    LIVE = "live"
    RENEWAL_DUE = "renewal_due"
    RENEWED = "renewed"
    LAPSED = "lapsed"
    ON_HOLD = "on_hold"
    WITHDRAWN = "withdrawn"


class EnquiryStatus(StrEnum):
    NEW = "new"
    CONTACTED = "contacted"
    QUALIFIED = "qualified"
    CONVERTED = "converted"
    CLOSED = "closed"


# Tencent's deadlines are days in China (UTC+8 all year: no daylight saving).
CHINA_TIME = timezone(timedelta(hours=8), "China Standard Time")
A = ApplicationStatus
E = EnquiryStatus
REJECTION_REASONS: tuple[str, ...] = get_args(RejectionReason)
# Where nothing more happens: a case here has no time limit, and cannot be put on hold.
FINAL = frozenset({A.WITHDRAWN, E.CONVERTED, E.CLOSED})
# Statuses that wait on the client: their clock is the client's chasers, not the staff's time limit.
WAITING_ON_CLIENT = frozenset({A.AWAITING_DOCUMENTS, A.DOCUMENTS_NEED_REVISION, A.AWAITING_FEE})
# A case on hold goes back to where it was; one from these cannot be held (nothing is being worked).
NOT_HOLDABLE = FINAL | {A.ON_HOLD, A.LAPSED}


class Detail(StrEnum):
    """What an action needs besides its reason."""

    TENCENT_DEADLINE = "tencent_deadline"
    REJECTION_REASON = "rejection_reason"


@dataclass(frozen=True)
class Action:
    """A staff action: from which statuses it is allowed, where it leads (None: back to where the case was
    before its hold), and what details it needs."""

    name: str
    kind: CaseKind
    sources: frozenset[str]
    target: str | None
    needs: frozenset[Detail] = frozenset()


def _application(name: str, sources: set[A] | frozenset[A], target: A | None, *needs: Detail) -> Action:
    return Action(name, CaseKind.APPLICATION, frozenset(sources), target, frozenset(needs))


def _enquiry(name: str, sources: set[E], target: E) -> Action:
    return Action(name, CaseKind.ENQUIRY, frozenset(sources), target)


_WORKED = frozenset(A) - NOT_HOLDABLE
ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        _application("request_documents", {A.TRIAGE, A.REJECTED}, A.AWAITING_DOCUMENTS),
        _application("documents_received", {A.AWAITING_DOCUMENTS, A.DOCUMENTS_NEED_REVISION}, A.DOCUMENTS_IN_REVIEW),
        _application("request_revision", {A.DOCUMENTS_IN_REVIEW}, A.DOCUMENTS_NEED_REVISION),
        _application("request_fee", {A.DOCUMENTS_IN_REVIEW}, A.AWAITING_FEE),
        _application("fee_received", {A.AWAITING_FEE}, A.ACCOUNT_SETUP),
        _application("submit_to_tencent", {A.ACCOUNT_SETUP, A.REJECTED}, A.SUBMITTED_TO_TENCENT),
        _application(
            "tencent_requested_info", {A.SUBMITTED_TO_TENCENT}, A.TENCENT_REQUESTED_INFO, Detail.TENCENT_DEADLINE
        ),
        _application("info_sent_to_tencent", {A.TENCENT_REQUESTED_INFO}, A.SUBMITTED_TO_TENCENT),
        _application(
            "record_rejection", {A.SUBMITTED_TO_TENCENT, A.TENCENT_REQUESTED_INFO}, A.REJECTED, Detail.REJECTION_REASON
        ),
        _application("record_verification", {A.SUBMITTED_TO_TENCENT, A.TENCENT_REQUESTED_INFO}, A.VERIFIED),
        _application("hand_over", {A.VERIFIED}, A.LIVE),
        _application("renewal_due", {A.VERIFIED, A.LIVE, A.RENEWED, A.LAPSED}, A.RENEWAL_DUE),
        _application("record_renewal", {A.RENEWAL_DUE}, A.RENEWED),
        _application("record_lapse", {A.RENEWAL_DUE}, A.LAPSED),
        _application("put_on_hold", _WORKED, A.ON_HOLD),
        _application("resume", {A.ON_HOLD}, None),
        _application("withdraw", frozenset(A) - FINAL, A.WITHDRAWN),
        _enquiry("mark_contacted", {E.NEW}, E.CONTACTED),
        _enquiry("qualify", {E.NEW, E.CONTACTED}, E.QUALIFIED),
        _enquiry("convert", {E.QUALIFIED}, E.CONVERTED),
        _enquiry("close", {E.NEW, E.CONTACTED, E.QUALIFIED}, E.CLOSED),
    )
}

MAX_REASON_LENGTH = 1000
# What the system (casework's reminder scheduler) may do by itself, and from where: move a verified account to its
# renewal (casework.md: "renewal_due: scheduler, 90 days before expiry"). A lapsed one is staff's to reopen.
SYSTEM_ACTIONS: dict[str, frozenset[str]] = {"renewal_due": frozenset({A.VERIFIED, A.LIVE, A.RENEWED})}


@dataclass(frozen=True)
class CaseState:
    """What the workflow needs to know of a case."""

    kind: CaseKind
    status: str
    held_from: str | None = None
    tencent_attempts: int = 0


@dataclass(frozen=True)
class ActionRequest:
    """What a staff member asked for (already parsed: dates are dates; the rest is checked here)."""

    action: str
    reason: str
    tencent_deadline: date | None = None
    rejection_reason: str | None = None


@dataclass(frozen=True)
class Rules:
    """The workflow's figures (settings: Tencent changes them)."""

    tencent_info_attempts: int = 3
    renewal_interval_days: int = 365


@dataclass(frozen=True)
class Transition:
    """An allowed action's effect: the new status, and the case fields it sets."""

    action: str
    previous: str
    current: str
    reason: str
    changes: Mapping[str, Any] = field(default_factory=dict)


class NotAllowed(Exception):
    """The action does not exist for this kind of case, or not from its status (HTTP 409, listing ``allowed``)."""

    def __init__(self, action: str, status: str, allowed: list[str]) -> None:
        super().__init__(f"{action!r} is not allowed from {status!r}")
        self.action = action
        self.status = status
        self.allowed = allowed


class InvalidDetail(ValueError):
    """A detail the action needs is missing or wrong (HTTP 422 naming ``field``)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def allowed_actions(state: CaseState, rules: Rules = Rules()) -> list[str]:
    """The actions a staff member may take on a case now, in the table's order."""
    return [
        action.name
        for action in ACTIONS.values()
        if action.kind is state.kind and state.status in action.sources and _within_limits(action, state, rules)
    ]


def system_may(action: str, state: CaseState) -> bool:
    """Whether the system may take ``action`` on a case in ``state`` by itself (no staff member asked)."""
    return state.kind is CaseKind.APPLICATION and state.status in SYSTEM_ACTIONS.get(action, frozenset())


def _within_limits(action: Action, state: CaseState, rules: Rules) -> bool:
    if action.name == "tencent_requested_info":
        return state.tencent_attempts < rules.tencent_info_attempts
    if action.name == "resume":
        return state.held_from is not None
    return True


def decide(state: CaseState, request: ActionRequest, now: datetime, rules: Rules = Rules()) -> Transition:
    """The transition ``request`` makes from ``state``; ``NotAllowed`` or ``InvalidDetail`` otherwise."""
    allowed = allowed_actions(state, rules)
    if request.action not in allowed:
        raise NotAllowed(request.action, state.status, allowed)
    action = ACTIONS[request.action]
    reason = _checked_reason(request.reason)
    changes: dict[str, Any] = {}
    if Detail.TENCENT_DEADLINE in action.needs:
        changes["tencent_deadline"] = _checked_deadline(request.tencent_deadline, now)
        changes["tencent_attempts"] = state.tencent_attempts + 1
    if Detail.REJECTION_REASON in action.needs:
        if request.rejection_reason not in REJECTION_REASONS:
            raise InvalidDetail("rejection_reason", f"one of {', '.join(REJECTION_REASONS)}")
        changes["rejection_reason"] = request.rejection_reason
    target = action.target if action.target is not None else state.held_from
    assert target is not None  # allowed_actions offers resume only with a held_from
    if target == A.ON_HOLD:
        changes["held_from"] = state.status
    elif state.status == A.ON_HOLD:
        changes["held_from"] = None
    if target == A.VERIFIED:
        changes["verified_at"] = now
        changes["expires_at"] = now + timedelta(days=rules.renewal_interval_days)
    if target == A.RENEWED:
        changes["expires_at"] = now + timedelta(days=rules.renewal_interval_days)
    if target == A.SUBMITTED_TO_TENCENT and state.status in (A.ACCOUNT_SETUP, A.REJECTED):
        changes["submitted_at"] = now
        changes["tencent_attempts"] = 0
        changes["tencent_deadline"] = None
    return Transition(request.action, state.status, target, reason, changes)


def _checked_reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise InvalidDetail("reason", "every status change needs a reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidDetail("reason", f"at most {MAX_REASON_LENGTH} characters")
    if any(ord(char) < 32 and char not in "\n\t" for char in reason):
        raise InvalidDetail("reason", "control characters are not allowed")
    return reason


def _checked_deadline(deadline: date | None, now: datetime) -> date:
    if deadline is None:
        raise InvalidDetail("tencent_deadline", "Tencent's deadline is required")
    if deadline < now.date():
        raise InvalidDetail("tencent_deadline", "Tencent's deadline is in the past")
    if deadline > now.date() + timedelta(days=366):
        raise InvalidDetail("tencent_deadline", "Tencent's deadline is more than a year away")
    return deadline


def add_business_days(start: datetime, days: int) -> datetime:
    """``start`` plus ``days`` working days (Monday to Friday); a start on a weekend counts from Monday."""
    moment = start
    while moment.weekday() >= 5:
        moment = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    added = 0
    while added < days:
        moment += timedelta(days=1)
        if moment.weekday() < 5:
            added += 1
    return moment


def due_at(
    status: str, entered_at: datetime, limits: Mapping[str, int], tencent_deadline: date | None = None
) -> datetime | None:
    """When a case in ``status`` since ``entered_at`` becomes overdue; None where no time limit applies (final
    statuses, and those waiting on the client). Tencent's deadline is the limit of its request for information."""
    if status == A.TENCENT_REQUESTED_INFO and tencent_deadline is not None:
        return datetime.combine(tencent_deadline, datetime.max.time(), tzinfo=CHINA_TIME)
    if status in FINAL or status in WAITING_ON_CLIENT or status not in limits:
        return None
    return add_business_days(entered_at, limits[status])


def initial_status(kind: CaseKind) -> str:
    return A.TRIAGE if kind is CaseKind.APPLICATION else E.NEW
