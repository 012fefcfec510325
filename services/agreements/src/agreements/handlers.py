"""The agreements service's use cases for its queues: each decides an outcome, the chassis's runner acts on it."""

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from faststream.rabbit import RabbitRouter
from pymongo.errors import ConnectionFailure

from agency_chassis.consuming import Runner
from agency_chassis.correlation import about_event
from agency_chassis.outcomes import Attempt, Done, GiveUp, Outcome, RetryLater
from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.events import (
    AgreementReaccepted,
    ApplicationSubmitted,
    DocumentReceived,
    EmailVerified,
    NotificationSettled,
    utc_now,
)
from agency_shared.topology import (
    AGREEMENTS_AGREEMENT_REACCEPTED,
    AGREEMENTS_APPLICATION_SUBMITTED,
    AGREEMENTS_DOCUMENT_RECEIVED,
    AGREEMENTS_EMAIL_VERIFIED,
    AGREEMENTS_NOTIFICATION_SETTLED,
)
from agreements.documents import AcceptanceNotRecorded, DocumentLedger, record_document
from agreements.reacceptance import (
    ReacceptanceLedger,
    ReacceptingApplications,
    UnknownVersion,
    record_reacceptance,
)
from agreements.recording import (
    AcceptanceLedger,
    ApplicationErased,
    ApplicationStore,
    LinkSigner,
    record_applications,
)
from agreements.storage import LedgerContention
from agreements.verification import (
    AddressMismatch,
    NotRecordedYet,
    UnknownApplication,
    VerifiableApplications,
    VerificationLedger,
    enquiry_confirmed,
    record_verification,
)

logger = logging.getLogger(__name__)
Clock = Callable[[], datetime]

# An outage of the database, or a ledger too busy to take the link now: worth waiting for,
# not worth a dead letter. (The broker's outages are the runner's: it retries a follow-up
# event that was not confirmed.)
OUTAGES = (ConnectionFailure, LedgerContention)


async def record_submitted_applications(
    batch: Sequence[tuple[ApplicationSubmitted, Attempt]],
    applications: ApplicationStore,
    ledger: AcceptanceLedger,
    now: Clock = utc_now,
    signer: LinkSigner | None = None,
) -> list[Outcome]:
    """Record the applications and their acceptances as the next ledger links, together, then announce
    agreement.recorded for each (with its link signed by ``signer``, for the receipt).

    A redelivery finds what was stored and announces the same event again (same id).
    """
    events = [event for event, _ in batch]
    try:
        results = await record_applications(events, applications, ledger, now(), signer)
    except OUTAGES as exc:
        ids = ", ".join(str(event.data.application_id) for event in events)
        return [RetryLater(f"recording {ids} failed: {exc!r}")] * len(events)
    outcomes: list[Outcome] = []
    for event, result in zip(events, results, strict=True):
        with about_event(event):
            if isinstance(result, ApplicationErased):
                # A replay after the applicant's data was erased: announcing it again would email them.
                logger.warning("application %s was erased: not recorded again", event.data.application_id)
                outcomes.append(Done())
            else:
                logger.info("application %s recorded as link %d", result.data.application_id, result.data.sequence)
                outcomes.append(Done(publish=(result,)))
    return outcomes


async def record_submitted_application(
    event: ApplicationSubmitted,
    applications: ApplicationStore,
    ledger: AcceptanceLedger,
    now: Clock = utc_now,
    signer: LinkSigner | None = None,
) -> Outcome:
    """One application alone: a batch of one."""
    [outcome] = await record_submitted_applications([(event, Attempt())], applications, ledger, now, signer)
    return outcome


async def record_email_verification(
    event: EmailVerified,
    applications: VerifiableApplications,
    ledger: VerificationLedger,
    now: Clock = utc_now,
    signer: LinkSigner | None = None,
) -> Outcome:
    """Record the verified address as evidence beside the acceptance (a link of its own), then announce
    acceptance.confirmed. A repeat (a double click, a redelivery) finds the link and announces the same event.

    An enquirer's verification is passed on as enquiry.confirmed (notifications releases the enquiry it
    held): this is the one queue of intake's email.verified, so a refused publish at intake reaches no one.
    """
    enquiry_id = event.data.enquiry_id
    if enquiry_id is not None:
        logger.info("email.verified %s is enquiry %s's: passed on as enquiry.confirmed", event.event_id, enquiry_id)
        return Done(publish=(enquiry_confirmed(event, enquiry_id),))
    application_id = event.data.application_id
    try:
        confirmed = await record_verification(event, applications, ledger, now(), signer)
    except ApplicationErased:
        logger.warning("application %s was erased: its verification is not recorded", application_id)
        return Done()
    except (UnknownApplication, AddressMismatch) as exc:
        return GiveUp(f"email.verified {event.event_id} cannot be recorded: {type(exc).__name__} {exc}")
    except NotRecordedYet:
        return RetryLater(f"the acceptance of {application_id} is not in the ledger yet")
    except OUTAGES as exc:
        return RetryLater(f"recording the verification of {application_id} failed: {exc!r}")
    logger.info("application %s: address verified, link %d", application_id, confirmed.data.verification_sequence)
    return Done(publish=(confirmed,))


async def note_notification(event: NotificationSettled, applications: ApplicationStore) -> Outcome:
    """Add an email's outcome to its application's timeline (enquiry emails have no application)."""
    try:
        await applications.note_notification(event.data)
    except OUTAGES as exc:
        return RetryLater(f"noting {event.data.notification_key} failed: {exc!r}")
    return Done()


async def record_received_document(event: DocumentReceived, ledger: DocumentLedger, now: Clock = utc_now) -> Outcome:
    """Add a client's document (its hash, size, type) to the ledger beside the acceptance, once per file."""
    data = event.data
    try:
        entry = await record_document(event, ledger, now())
    except AcceptanceNotRecorded:
        return RetryLater(f"the acceptance of {data.application_id} is not in the ledger yet")
    except OUTAGES as exc:
        return RetryLater(f"recording document {data.document_id} of {data.application_id} failed: {exc!r}")
    logger.info("application %s: document %s (%s) is link %d", data.application_id, data.document_id, data.item,
                entry.sequence)  # fmt: skip
    return Done()


async def record_client_reacceptance(
    event: AgreementReaccepted,
    applications: ReacceptingApplications,
    ledger: ReacceptanceLedger,
    catalog: AgreementCatalog,
    now: Clock = utc_now,
) -> Outcome:
    """Record the client's re-acceptance in the ledger (once per version: a redelivery finds its link)."""
    application_id = event.data.application_id
    try:
        entry = await record_reacceptance(event, applications, ledger, catalog, now())
    except ApplicationErased:
        logger.warning("application %s was erased: its re-acceptance is not recorded", application_id)
        return Done()
    except (UnknownVersion, LookupError) as exc:
        return GiveUp(f"agreement.reaccepted {event.event_id} cannot be recorded: {type(exc).__name__} {exc}")
    except OUTAGES as exc:
        return RetryLater(f"recording the re-acceptance of {application_id} failed: {exc!r}")
    if entry is None:
        return RetryLater(f"the acceptance of {application_id} is not in the ledger yet")
    logger.info("application %s re-accepted version %s: link %d", application_id, event.data.agreement_version,
                entry.sequence)  # fmt: skip
    return Done()


class Ports(Protocol):
    """The adapters the use cases run with (opened by the service's lifespan)."""

    @property
    def applications(self) -> "Applications": ...

    @property
    def ledger(self) -> "Ledger": ...

    @property
    def signer(self) -> LinkSigner: ...

    @property
    def catalog(self) -> AgreementCatalog: ...


class Ledger(AcceptanceLedger, VerificationLedger, DocumentLedger, ReacceptanceLedger, Protocol):
    """The acceptance ledger as the use cases append to it: acceptances, verifications, documents, re-acceptances."""


class Applications(ApplicationStore, VerifiableApplications, ReacceptingApplications, Protocol):
    """The application store as the use cases keep it."""


def build_router(runner: Runner, ports: Ports, now: Clock = utc_now) -> RabbitRouter:
    router = RabbitRouter()

    async def on_applications_submitted(batch: Sequence[tuple[ApplicationSubmitted, Attempt]]) -> list[Outcome]:
        """Record the application and its acceptance as the next ledger link, then announce agreement.recorded
        (the applications in flight together: one batch of database writes)."""
        return await record_submitted_applications(batch, ports.applications, ports.ledger, now, ports.signer)

    async def on_notification_settled(event: NotificationSettled, attempt: Attempt) -> Outcome:
        """Add an email's outcome to its application's timeline (enquiry emails have no application)."""
        return await note_notification(event, ports.applications)

    async def on_email_verified(event: EmailVerified, attempt: Attempt) -> Outcome:
        """Record the verified address beside the acceptance in the ledger, then announce acceptance.confirmed;
        pass an enquirer's on as enquiry.confirmed."""
        return await record_email_verification(event, ports.applications, ports.ledger, now, ports.signer)

    async def on_document_received(event: DocumentReceived, attempt: Attempt) -> Outcome:
        """Add a client's document to the evidence ledger (its hash; one link per file)."""
        return await record_received_document(event, ports.ledger, now)

    async def on_agreement_reaccepted(event: AgreementReaccepted, attempt: Attempt) -> Outcome:
        """Record a client's re-acceptance of the current agreement version in the ledger (casework's portal)."""
        return await record_client_reacceptance(event, ports.applications, ports.ledger, ports.catalog, now)

    runner.consume_batch(router, AGREEMENTS_APPLICATION_SUBMITTED, on_applications_submitted)
    runner.consume(router, AGREEMENTS_AGREEMENT_REACCEPTED, on_agreement_reaccepted)
    runner.consume(router, AGREEMENTS_DOCUMENT_RECEIVED, on_document_received)
    runner.consume(router, AGREEMENTS_EMAIL_VERIFIED, on_email_verified)
    runner.consume(router, AGREEMENTS_NOTIFICATION_SETTLED, on_notification_settled)
    return router
