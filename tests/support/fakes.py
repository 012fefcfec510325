"""Hand-written fakes of the ports the use cases and the runner take (no mocks): in memory, and inspectable."""

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage

from pymongo.errors import ConnectionFailure

from agency_chassis.publishing import MessageCopy, PublishFailed
from agency_shared.chain import GENESIS, Head
from agency_shared.events import Event, NotificationSettledData
from agreements.recording import ApplicationErased, ApplicationRecord, LedgerEntry, acceptance_link
from agreements.verification import EMAIL_VERIFIED, VerificationEvidence, verification_link
from intake.captcha import SolutionsUnavailable
from intake.idempotency import KeyReused, KeysUnavailable
from notifications.holding import Held
from notifications.ledger import Claim
from notifications.mailer import DeliveryFailed


@dataclass
class FakeSender:
    """The runner's way out: keeps what was published and parked; ``refuse_events`` makes publishes fail."""

    events: list[Event] = field(default_factory=list)
    copies: list[tuple[MessageCopy, str, int | None]] = field(default_factory=list)
    refuse_events: bool = False
    refuse_copies: bool = False

    async def publish(self, event: Event) -> None:
        if self.refuse_events:
            raise PublishFailed(f"{event.event_type} not confirmed by the broker: nack")
        self.events.append(event)

    async def send_copy(self, copy: MessageCopy, queue: str, expiration_ms: int | None = None) -> None:
        if self.refuse_copies:
            raise PublishFailed(f"copy of {copy.message_id} not confirmed")
        self.copies.append((copy, queue, expiration_ms))


class FakeApplications:
    """An application store in a dict; ``erased`` ids raise ``ApplicationErased``, ``down`` simulates an outage."""

    def __init__(self) -> None:
        self.records: dict[uuid.UUID, ApplicationRecord] = {}
        self.recorded: dict[uuid.UUID, int] = {}
        self.notes: list[NotificationSettledData] = []
        self.erased: set[uuid.UUID] = set()
        self.verifications: dict[uuid.UUID, VerificationEvidence] = {}
        self.verified: dict[uuid.UUID, int] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionFailure("database unreachable")

    async def add_many(self, records: Sequence[ApplicationRecord]) -> list[ApplicationRecord | ApplicationErased]:
        self._check()
        return [
            ApplicationErased(str(record.application_id))
            if record.application_id in self.erased
            else self.records.setdefault(record.application_id, record)
            for record in records
        ]

    async def mark_recorded_many(self, recorded: Sequence[tuple[ApplicationRecord, LedgerEntry]]) -> None:
        self._check()
        for record, entry in recorded:
            self.recorded.setdefault(record.application_id, entry.sequence)

    async def note_notification(self, settled: NotificationSettledData) -> None:
        self._check()
        self.notes.append(settled)  # every call, as it came: the real store's de-duplication is its own test

    async def stored_application(self, application_id: uuid.UUID) -> ApplicationRecord | None:
        self._check()
        if application_id in self.erased:
            raise ApplicationErased(str(application_id))
        return self.records.get(application_id)

    async def keep_verification(
        self, application_id: uuid.UUID, evidence: VerificationEvidence
    ) -> VerificationEvidence:
        self._check()
        return self.verifications.setdefault(application_id, evidence)

    async def mark_verified(self, application_id: uuid.UUID, entry: LedgerEntry, at: datetime) -> None:
        self._check()
        self.verified[application_id] = entry.sequence


class FakeAcceptanceLedger:
    """The hash chain in a list; ``busy`` raises what the real one raises when it finds no free sequence."""

    def __init__(self, busy: Exception | None = None) -> None:
        self.links: list[LedgerEntry] = []
        self.busy = busy

    async def append_many(self, records: Sequence[ApplicationRecord]) -> list[LedgerEntry]:
        if self.busy is not None:
            raise self.busy
        entries = []
        for record in records:
            if (found := await self.find(record.application_id)) is None:
                self.links.append(found := acceptance_link(record, self._head()))
            entries.append(found)
        return entries

    async def append_verification(
        self, application: ApplicationRecord, acceptance: LedgerEntry, evidence: VerificationEvidence
    ) -> LedgerEntry:
        if self.busy is not None:
            raise self.busy
        if (found := self._of_kind(application.application_id, EMAIL_VERIFIED)) is not None:
            return found
        self.links.append(verification_link(application, acceptance, evidence, self._head()))
        return self.links[-1]

    async def find(self, application_id: uuid.UUID | str) -> LedgerEntry | None:
        return self._of_kind(application_id, None)

    def _of_kind(self, application_id: uuid.UUID | str, kind: str | None) -> LedgerEntry | None:
        for link in self.links:
            if link.record["application_id"] == str(application_id) and link.record.get("kind") == kind:
                return link
        return None

    def _head(self) -> Head:
        return Head(self.links[-1].sequence, self.links[-1].record_hash) if self.links else GENESIS


@dataclass
class Entry:
    state: str
    attempts: int = 0
    last_error: str | None = None
    reply: str | None = None


class FakeNotificationLedger:
    """The notification ledger's rules (one entry per email, claims, leases held forever) in a dict."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.erased_applications: dict[str, datetime] = {}
        self.forgotten: list[tuple[list[str], list[str]]] = []
        self.forgotten_subjects: list[str | None] = []
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionFailure("database unreachable")

    async def claim(self, key: str, details: dict[str, object], retry_failed: bool = False) -> Claim:
        self._check()
        entry = self.entries.get(key)
        if entry is None:
            self.entries[key] = Entry("sending")
            return Claim.CLAIMED
        if entry.state == "pending" or (entry.state == "failed" and retry_failed):
            entry.state = "sending"
            return Claim.CLAIMED
        return {"sent": Claim.SENT, "failed": Claim.FAILED, "refused": Claim.REFUSED}.get(entry.state, Claim.BUSY)

    async def sent(self, key: str, reply: str) -> None:
        self._check()
        entry = self.entries[key]
        entry.state, entry.reply, entry.attempts = "sent", reply, entry.attempts + 1

    async def retrying(self, key: str, error: str) -> None:
        self._check()
        entry = self.entries[key]
        entry.state, entry.last_error, entry.attempts = "pending", error, entry.attempts + 1

    async def failed(self, key: str, error: str) -> None:
        self._check()
        entry = self.entries[key]
        entry.state, entry.last_error, entry.attempts = "failed", error, entry.attempts + 1

    async def refused(self, key: str, reason: str) -> None:
        self._check()
        entry = self.entries[key]
        entry.state, entry.last_error = "refused", reason

    async def abandoned(self, key: str, error: str) -> None:
        self._check()
        entry = self.entries[key]
        if entry.state != "sent":
            entry.state, entry.last_error = "failed", error

    async def reason(self, key: str) -> str | None:
        self._check()
        entry = self.entries.get(key)
        return None if entry is None else entry.last_error

    async def is_erased(self, application_id: str) -> bool:
        self._check()
        return application_id in self.erased_applications

    async def forget_application(self, application_id: str, erased_at: datetime) -> None:
        self._check()
        self.erased_applications.setdefault(application_id, erased_at)

    async def forget_recipients(
        self, event_ids: Collection[str], templates: Collection[str], subject_id: str | None = None
    ) -> int:
        self._check()
        self.forgotten.append((sorted(event_ids), sorted(templates)))
        self.forgotten_subjects.append(subject_id)
        return len(event_ids)

    def state(self, template: str) -> list[str]:
        return [entry.state for key, entry in self.entries.items() if f"/{template}/" in key]


class FakeDailyCap:
    """The daily cap's rule (the first ``limit`` keys per address and day may go) in a dict; ``down`` is an outage."""

    def __init__(self, limit: int = 5, templates: Collection[str] = ("client_confirmation",)) -> None:
        self.limit = limit
        self.templates = frozenset(templates)
        self.keys: dict[tuple[str, str], list[str]] = {}
        self.down = False

    def covers(self, template: str) -> bool:
        return template in self.templates

    async def admit(self, recipient: str, key: str, now: datetime) -> bool:
        if self.down:
            raise ConnectionFailure("database unreachable")
        day = self.keys.setdefault((recipient.lower(), now.date().isoformat()), [])
        if key not in day and len(day) < self.limit:
            day.append(key)  # never more than ``limit`` keys, as in MongoDB
        return key in day


class FakeMailer:
    """Accepts every message, except for recipients told to refuse: ``"4xx"`` (try later) or ``"5xx"`` (for good)."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.refusing: dict[str, str] = {}
        self.tries = 0

    async def send(self, message: EmailMessage) -> str:
        self.tries += 1
        refusal = self.refusing.get(str(message["To"]))
        if refusal is not None:
            raise DeliveryFailed(f"{refusal} refused", permanent=refusal.startswith("5"))
        self.sent.append(message)
        return "250 2.0.0 queued"

    def recipients(self) -> list[str]:
        return [str(message["To"]) for message in self.sent]


@dataclass
class FakeIdempotencyKeys:
    """Idempotency keys in a dict (intake): ``claims`` counts every call, ``down`` simulates an outage."""

    fingerprints: dict[str, str] = field(default_factory=dict)
    claims: int = 0
    down: bool = False

    async def claim(self, kind: str, key: str, fingerprint: str, submission_id: uuid.UUID) -> None:
        self.claims += 1
        if self.down:
            raise KeysUnavailable("the database is down")
        first = self.fingerprints.setdefault(f"{kind}:{key}", fingerprint)
        if first != fingerprint:
            raise KeyReused(kind)


@dataclass
class FakeSpentSolutions:
    """Spent ALTCHA challenges in a dict: challenge -> the submission that spent it."""

    spent: dict[str, str] = field(default_factory=dict)
    expiries: dict[str, datetime] = field(default_factory=dict)
    down: bool = False

    async def spend(self, challenge: str, submission: str, expires_at: datetime) -> bool:
        if self.down:
            raise SolutionsUnavailable("the database is down")
        self.expiries.setdefault(challenge, expires_at)
        return self.spent.setdefault(challenge, submission) == submission


class FakeHeldSubmissions:
    """The held submissions' rules (either half may come first; the earliest verification wins) in a dict."""

    def __init__(self) -> None:
        self.documents: dict[str, dict[str, object]] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionFailure("database unreachable")

    def _state(self, subject_id: str) -> Held:
        document = self.documents[subject_id]
        return Held(event=document.get("event"), verified_at=document.get("verified_at"))  # type: ignore[arg-type]

    async def hold(self, kind: str, subject_id: str, event: str, now: datetime) -> Held:
        self._check()
        self.documents.setdefault(subject_id, {"kind": kind, "held_at": now}).setdefault("event", event)
        return self._state(subject_id)

    async def verified(self, kind: str, subject_id: str, verified_at: datetime, now: datetime) -> Held:
        self._check()
        document = self.documents.setdefault(subject_id, {"kind": kind})
        earlier = document.get("verified_at")
        document["verified_at"] = min(verified_at, earlier) if isinstance(earlier, datetime) else verified_at
        return self._state(subject_id)

    async def released(self, subject_id: str, now: datetime) -> None:
        self._check()
        self.documents[subject_id].setdefault("released_at", now)

    async def forget(self, subject_id: str) -> None:
        self._check()
        self.documents.pop(subject_id, None)
