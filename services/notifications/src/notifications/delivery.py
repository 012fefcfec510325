"""Delivering the emails one event causes, each at most once, and saying what is left to do."""

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal, Protocol

from pymongo.errors import PyMongoError

from agency_chassis.metrics import EMAILS
from agency_shared.events import Event, utc_now
from notifications.daily_cap import DailyCap, refusal
from notifications.ledger import Claim
from notifications.mailer import DeliveryFailed, Mailer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutgoingEmail:
    """One email of an event; ``message`` is None when it could not be composed (``unbuildable`` says why)."""

    template: str
    recipient: str
    message: EmailMessage | None
    unbuildable: str | None = None

    def key(self, event: Event) -> str:
        return f"{event.event_id}/{self.template}/{self.recipient.lower()}"


class Ledger(Protocol):
    async def claim(self, key: str, details: dict[str, object], retry_failed: bool = False) -> Claim: ...
    async def sent(self, key: str, reply: str) -> None: ...
    async def retrying(self, key: str, error: str) -> None: ...
    async def failed(self, key: str, error: str) -> None: ...
    async def refused(self, key: str, reason: str) -> None: ...
    async def abandoned(self, key: str, error: str) -> None: ...
    async def reason(self, key: str) -> str | None: ...
    async def is_erased(self, application_id: str) -> bool: ...


@dataclass
class DeliveryReport:
    sent: list[tuple[OutgoingEmail, str]] = field(default_factory=list)
    # Settled by an earlier delivery of the same event: (email, "sent" or "failed").
    skipped: list[tuple[OutgoingEmail, str]] = field(default_factory=list)
    # Temporary failures and emails another worker holds: the event must come back later.
    unfinished: list[tuple[OutgoingEmail, str]] = field(default_factory=list)
    failed: list[tuple[OutgoingEmail, str]] = field(default_factory=list)
    # Held back for good by the daily cap: settled as failed, but not an error (no alert, no dead letter).
    refused: list[tuple[OutgoingEmail, str]] = field(default_factory=list)
    # Accepted by the SMTP server while the ledger could not be told (with the server's reply): the
    # next attempt must write them down as sent, never send them again.
    unrecorded: list[tuple[OutgoingEmail, str]] = field(default_factory=list)
    # Why the delivery stopped early: the ledger became unreachable (what it did not reach is unfinished).
    outage: str | None = None

    def merge(self, other: "DeliveryReport") -> None:
        self.sent += other.sent
        self.skipped += other.skipped
        self.unfinished += other.unfinished
        self.failed += other.failed
        self.refused += other.refused
        self.unrecorded += other.unrecorded
        self.outage = self.outage or other.outage


async def deliver(
    event: Event,
    emails: list[OutgoingEmail],
    ledger: Ledger,
    mailer: Mailer,
    last_attempt: bool = False,
    retry_failed: bool = False,
    cap: DailyCap | None = None,
    sent_before: Mapping[str, str] | None = None,
) -> DeliveryReport:
    """Send each email not settled yet; on the last attempt, what is still unfinished has failed.

    ``retry_failed`` (an operator replayed the event) sends again what failed for good before.
    An email the ``cap`` covers and does not admit is settled as refused instead of sent.
    ``sent_before``: emails (key: SMTP reply) an earlier attempt sent but could not record as sent
    (the ledger was unreachable): recorded now, not sent again.

    If the ledger becomes unreachable the delivery stops there: ``report.outage`` says why, the
    emails not reached are unfinished, and any the SMTP server took meanwhile are ``unrecorded``.
    """
    report = DeliveryReport()
    for index, email in enumerate(emails):
        try:
            await _deliver_one(event, email, ledger, mailer, report, retry_failed, cap, sent_before or {})
        except PyMongoError as exc:  # unreachable, or it failed the command: either way nothing more is written
            report.outage = f"the notification ledger is unreachable: {exc!r}"
            taken = {id(unrecorded) for unrecorded, _ in report.unrecorded}
            report.unfinished += [(e, "the notification ledger is unreachable") for e in emails[index:]
                                  if id(e) not in taken]  # fmt: skip
            return report
    if last_attempt:
        await _give_up(event, report, ledger)
    return report


async def _deliver_one(
    event: Event,
    email: OutgoingEmail,
    ledger: Ledger,
    mailer: Mailer,
    report: DeliveryReport,
    retry_failed: bool,
    cap: DailyCap | None,
    sent_before: Mapping[str, str],
) -> None:
    key = email.key(event)
    if key in sent_before:
        await ledger.sent(key, sent_before[key])
        report.sent.append((email, sent_before[key]))
        logger.info(
            "%s of %s %s: sent by an earlier attempt, now recorded", email.template, event.event_type, event.event_id
        )
        return
    claim = await ledger.claim(
        key,
        {
            "event_id": str(event.event_id),
            "event_type": event.event_type,
            "template": email.template,
            # The application or enquiry the email is about: an erasure forgets the recipient of every email
            # about it, also of events it does not list (a case's news).
            "subject_id": subject_of(event),
            "recipient": email.recipient.lower(),
            "message_id": email.message["Message-ID"] if email.message is not None else None,
            "correlation_id": event.correlation_id,
        },
        retry_failed=retry_failed,
    )
    if claim in (Claim.SENT, Claim.FAILED, Claim.REFUSED):
        report.skipped.append((email, claim.value))
        return
    if claim is Claim.BUSY:
        report.unfinished.append((email, "another worker is sending it"))
        return
    # Asked only now, for an email this worker is about to send: a redelivery of one settled
    # before (sent, perhaps yesterday) never consults the cap, so it cannot count in a new day.
    if cap is not None and cap.covers(email.template) and not await _admitted(cap, email, key, ledger):
        await _refuse(event, email, key, ledger, report, cap.limit)
        return
    # Shielded: if the handler is cancelled (the broker connection dropped), the
    # send and its ledger entry still finish together, so a redelivery finds the
    # email marked sent instead of sending it again when the lease runs out.
    await asyncio.shield(_attempt(event, email, key, ledger, mailer, report))


async def _attempt(
    event: Event, email: OutgoingEmail, key: str, ledger: Ledger, mailer: Mailer, report: DeliveryReport
) -> None:
    try:
        if email.message is None:
            raise DeliveryFailed(f"could not be composed: {email.unbuildable}", permanent=True)
        reply = await mailer.send(email.message)
    except DeliveryFailed as exc:
        if exc.permanent:
            await ledger.failed(key, str(exc))
            report.failed.append((email, str(exc)))
        else:
            await ledger.retrying(key, str(exc))
            report.unfinished.append((email, str(exc)))
        # Neither the address nor the SMTP reply (which often repeats it) goes to the log: logs
        # outlive an erasure. The notification ledger has both, under the event id and template.
        logger.warning(
            "%s of %s %s failed (%s)",
            email.template,
            event.event_type,
            event.event_id,
            "permanent" if exc.permanent else "will retry",
        )
        return
    try:
        await ledger.sent(key, reply)
    except PyMongoError:
        # Sent, but the ledger cannot say so: the retry carries the fact (``unrecorded``) instead.
        report.unrecorded.append((email, reply))
        raise
    report.sent.append((email, reply))


async def _admitted(cap: DailyCap, email: OutgoingEmail, key: str, ledger: Ledger) -> bool:
    """Whether the cap lets the claimed email go; if it cannot say, the claim is let go for the retry to retake."""
    try:
        return await cap.admit(email.recipient, key, utc_now())
    except Exception:
        with contextlib.suppress(Exception):
            await ledger.retrying(key, "the daily cap could not be consulted")
        raise


async def _refuse(
    event: Event, email: OutgoingEmail, key: str, ledger: Ledger, report: DeliveryReport, limit: int
) -> None:
    reason = refusal(limit)
    await ledger.refused(key, reason)
    report.refused.append((email, reason))
    logger.warning(
        "%s of %s %s held back: the daily cap of its address", email.template, event.event_type, event.event_id
    )


async def _give_up(event: Event, report: DeliveryReport, ledger: Ledger) -> None:
    """After the last attempt, what is still unfinished has failed: in the ledger and in the report."""
    for email, reason in report.unfinished:
        await ledger.abandoned(email.key(event), f"retries exhausted: {reason}")
    report.failed += [(email, f"retries exhausted: {reason}") for email, reason in report.unfinished]
    report.unfinished = []


def count_outcomes(report: DeliveryReport) -> None:
    """Count what became of each email this delivery tried (``skipped`` ones were counted when they settled)."""
    tried = (("sent", report.sent), ("retried", report.unfinished), ("failed", report.failed))
    for outcome, emails in (*tried, ("refused", report.refused)):
        for email, _ in emails:
            EMAILS.labels(email.template, outcome).inc()


def settled_outcomes(report: DeliveryReport) -> list[tuple[OutgoingEmail, Literal["sent", "failed"], str | None]]:
    """Every email of the event that is in a final state, with what is known about it."""
    outcomes: list[tuple[OutgoingEmail, Literal["sent", "failed"], str | None]] = []
    outcomes += [(email, "sent", reply) for email, reply in report.sent]
    outcomes += [(email, "failed", reason) for email, reason in [*report.failed, *report.refused]]
    outcomes += [(email, "sent" if state == "sent" else "failed", None) for email, state in report.skipped]
    return outcomes


def subject_of(event: Event) -> str | None:
    """The application or enquiry ``event`` is about, if any (the ids are UUIDs: the two never clash)."""
    data = getattr(event, "data", None)
    subject = getattr(data, "application_id", None) or getattr(data, "enquiry_id", None)
    return str(subject) if subject is not None else None
