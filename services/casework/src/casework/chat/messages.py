"""What a chat alert may say: a case's reference, the kind of alert, its status, its owner's display handle and a
console link. ``Alert`` accepts nothing else, so no client's name, email or company can reach a chat message."""

import re
import uuid
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from casework.i18n import ConsoleLocale, translate

if TYPE_CHECKING:
    from casework.cases import Case

AlertKind = Literal["new_application", "overdue", "deadline", "lapsed", "email_failed"]
ALERT_KINDS: tuple[AlertKind, ...] = ("new_application", "overdue", "deadline", "lapsed", "email_failed")
MAX_OWNER_LENGTH = 64
# Control characters (CR/LF included) and the brackets the chat apps read as mentions or markup (<@all>, <!here>).
UNSAFE_IN_HANDLE = re.compile(r"[\x00-\x1f\x7f-\x9f<>\u2028\u2029]")


class Alert(BaseModel):
    """One staff alert. ``key`` makes a repeat recognisable (raised twice, sent once); it is stored only as a hash
    and never sent. Unknown fields are refused rather than dropped: a caller cannot slip personal data in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: AlertKind
    key: str = Field(min_length=1, max_length=500)
    case_id: uuid.UUID
    reference: str = Field(pattern=r"^[AE]-[A-Z2-7]{8}$")  # casework.cases.reference_of
    status: str = Field(pattern=r"^[a-z_]{1,40}$")  # a workflow status's name, never free text
    owner: str | None = None  # the owner's display handle (a staff account's name), or None: nobody yet

    @field_validator("owner")
    @classmethod
    def _handle(cls, value: str | None) -> str | None:
        if value is None:
            return None
        handle = " ".join(UNSAFE_IN_HANDLE.sub(" ", value).split())[:MAX_OWNER_LENGTH]
        return handle or None


# The owner's reminders (casework.reminders.ReminderKind) that staff also hear of in chat, as alert kinds.
REMINDER_ALERTS: dict[str, AlertKind] = {"overdue": "overdue", "tencent_deadline": "deadline", "lapse": "lapsed"}


def case_alert(kind: AlertKind, key: str, case: "Case") -> Alert:
    """The alert of ``kind`` about ``case``: only its id, reference, status and owner's name leave the case."""
    return Alert(
        kind=kind, key=key, case_id=case.id, reference=case.reference, status=case.status, owner=case.owner_name
    )


def case_link(console_url: str, case_id: uuid.UUID) -> str:
    return f"{console_url.rstrip('/')}/console/cases/{case_id}"


def alert_text(alert: Alert, console_url: str, locale: ConsoleLocale) -> str:
    """The message's plain text: a headline with the reference, the status, the owner and the case's console link."""
    label = translate(f"status.{alert.status}", locale)
    status = alert.status if label == f"status.{alert.status}" else label
    owner = alert.owner or translate("chat.unassigned", locale)
    lines = (
        translate(f"chat.{alert.kind}", locale, reference=alert.reference),
        translate("chat.status", locale, status=status),
        translate("chat.owner", locale, owner=owner),
        case_link(console_url, alert.case_id),
    )
    return "\n".join(lines)


def fit_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (never inside a character), ending with an ellipsis if cut."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    ellipsis = "…"
    return encoded[: max(0, limit - len(ellipsis.encode()))].decode(errors="ignore") + ellipsis
