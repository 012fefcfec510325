"""The events the CRM can subscribe to, as thin Standard Webhooks payloads: ids, reference and status only."""

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from agency_shared.events import CaseStatusChanged, derived_id
from casework.cases import Case, reference_of
from casework.workflow import CaseKind

WebhookEventType = Literal["case.opened", "case.status_changed"]
EVENT_TYPES: tuple[WebhookEventType, ...] = ("case.opened", "case.status_changed")


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def body(event_type: WebhookEventType, timestamp: datetime, data: dict[str, Any]) -> str:
    """The payload's JSON text as signed and sent: ``{"type", "timestamp", "data"}``."""
    document = {"type": event_type, "timestamp": _stamp(timestamp), "data": data}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def message_id(*parts: str) -> str:
    """The ``webhook-id`` of an event: the same for every attempt and every replica (``msg_<uuid>``)."""
    return f"msg_{derived_id('webhook', *parts).hex}"


def _subject(application_id: uuid.UUID | None, enquiry_id: uuid.UUID | None) -> dict[str, str | None]:
    return {
        "application_id": str(application_id) if application_id else None,
        "enquiry_id": str(enquiry_id) if enquiry_id else None,
    }


def case_opened(case: Case) -> tuple[str, WebhookEventType, str]:
    """(webhook id, type, body) of a case that opened: no client, no company, only what identifies the case."""
    data = {
        "case_id": str(case.id),
        "reference": case.reference,
        "kind": case.kind.value,
        "status": case.status,
        "opened_at": _stamp(case.opened_at),
        **_subject(case.application_id, case.enquiry_id),
    }
    return message_id("case.opened", str(case.id)), "case.opened", body("case.opened", case.opened_at, data)


def case_status_changed(event: CaseStatusChanged) -> tuple[str, WebhookEventType, str]:
    """(webhook id, type, body) of a status change: never the staff's reason, the client or the consultant."""
    change = event.data
    kind = CaseKind.APPLICATION if change.application_id else CaseKind.ENQUIRY
    data = {
        "case_id": str(change.case_id),
        "reference": reference_of(change.case_id, kind),
        "kind": kind.value,
        "previous_status": change.previous,
        "status": change.current,
        "action": change.action,
        "changed_at": _stamp(change.changed_at),
        **_subject(change.application_id, change.enquiry_id),
    }
    kind_name: WebhookEventType = "case.status_changed"
    return message_id(kind_name, str(event.event_id)), kind_name, body(kind_name, change.changed_at, data)
