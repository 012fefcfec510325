"""Recording a verified address beside the acceptance: the decisions, with fakes of the store and the ledger."""

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from pymongo.errors import AutoReconnect

from agency_chassis.outcomes import Done, GiveUp, RetryLater
from agency_shared.chain import verify_links
from agency_shared.events import AcceptanceConfirmed, EnquiryConfirmed
from agency_shared.receipt_verifier import personal_sha256
from agreements.handlers import record_email_verification, record_submitted_application
from agreements.verification import EMAIL_VERIFIED
from tests.support.events import application_submitted, email_verified, enquiry_verified
from tests.support.fakes import FakeAcceptanceLedger, FakeApplications

NOW = datetime(2026, 12, 2, 9, 30, 0, 250000, tzinfo=UTC)
CLIENT = "li.wei@mapletea.example"


def clock() -> datetime:
    return NOW


async def recorded(store: FakeApplications, ledger: FakeAcceptanceLedger) -> uuid.UUID:
    submitted = application_submitted()
    assert isinstance(await record_submitted_application(submitted, store, ledger, clock), Done)
    return submitted.data.application_id


def stored_links(ledger: FakeAcceptanceLedger) -> list[dict[str, object]]:
    return [{"_id": link.sequence, **dataclasses.asdict(link)} for link in ledger.links]


async def test_a_verified_address_becomes_a_link_beside_the_acceptance_and_the_confirmation_follows() -> None:
    store, ledger = FakeApplications(), FakeAcceptanceLedger()
    application_id = await recorded(store, ledger)
    verified = email_verified(application_id, CLIENT.upper(), verified_at=NOW - timedelta(minutes=5))
    outcome = await record_email_verification(verified, store, ledger, clock)
    assert isinstance(outcome, Done)
    [confirmed] = outcome.publish
    assert isinstance(confirmed, AcceptanceConfirmed)
    acceptance, verification = ledger.links
    record = verification.record
    assert record["kind"] == EMAIL_VERIFIED
    assert record["acceptance_sequence"] == acceptance.sequence
    assert record["acceptance_record_hash"] == acceptance.record_hash
    assert record["verified_at"] == "2026-12-02T09:25:00.250000Z"
    salt = store.records[application_id].personal_salt
    assert record["verified_email_sha256"] == personal_sha256(salt, "verified_email", CLIENT.upper())
    assert record["verification_client_ip_sha256"] == personal_sha256(salt, "verification_client_ip", "198.51.100.99")
    assert CLIENT not in str(record).lower()
    assert "198.51.100.99" not in str(record)
    assert verify_links(stored_links(ledger), verification.head).ok
    # What notifications needs for the receipt: agreement.recorded's data, plus when the address was verified.
    assert confirmed.data.record == acceptance.record
    assert confirmed.data.sequence == acceptance.sequence
    assert confirmed.data.verification_sequence == verification.sequence
    assert confirmed.data.verified_at == verified.data.verified_at
    assert confirmed.data.personal_data.salt == salt
    assert store.verified == {application_id: verification.sequence}


async def test_a_double_click_or_a_redelivery_is_one_link_and_the_same_event() -> None:
    store, ledger = FakeApplications(), FakeAcceptanceLedger()
    application_id = await recorded(store, ledger)
    first = await record_email_verification(email_verified(application_id, verified_at=NOW), store, ledger, clock)
    # The second click: the same event id, observed a second later.
    later = email_verified(application_id, verified_at=NOW + timedelta(seconds=1))
    second = await record_email_verification(later, store, ledger, clock)
    assert first == second
    assert len(ledger.links) == 2


async def test_a_verification_of_an_unknown_application_or_of_another_address_is_dead_lettered() -> None:
    store, ledger = FakeApplications(), FakeAcceptanceLedger()
    application_id = await recorded(store, ledger)
    unknown = await record_email_verification(email_verified(uuid.uuid4()), store, ledger, clock)
    other = await record_email_verification(email_verified(application_id, "eve@evil.example"), store, ledger, clock)
    assert isinstance(unknown, GiveUp)
    assert isinstance(other, GiveUp)
    assert len(ledger.links) == 1
    assert not store.verifications


async def test_a_verification_waits_while_the_acceptance_is_not_in_the_ledger_or_the_database_is_down() -> None:
    store, ledger = FakeApplications(), FakeAcceptanceLedger()
    application_id = await recorded(store, ledger)
    ledger.links.clear()  # stored, its link not written yet
    assert isinstance(await record_email_verification(email_verified(application_id), store, ledger, clock), RetryLater)
    store.down = True
    assert isinstance(await record_email_verification(email_verified(application_id), store, ledger, clock), RetryLater)
    store.down, ledger.busy = False, AutoReconnect("primary stepped down")
    await recorded(store, FakeAcceptanceLedger())  # another application, so the ledger is the one failing
    assert isinstance(await record_email_verification(email_verified(application_id), store, ledger, clock), RetryLater)


async def test_an_erased_applicants_verification_is_acknowledged_and_nothing_is_recorded_or_announced() -> None:
    store, ledger = FakeApplications(), FakeAcceptanceLedger()
    application_id = await recorded(store, ledger)
    store.erased.add(application_id)
    assert await record_email_verification(email_verified(application_id), store, ledger, clock) == Done()
    assert len(ledger.links) == 1


async def test_an_enquirers_verification_is_passed_on_as_enquiry_confirmed_and_nothing_is_recorded() -> None:
    store, ledger = FakeApplications(), FakeAcceptanceLedger()
    await recorded(store, ledger)
    enquiry_id = uuid.uuid4()
    verified = enquiry_verified(enquiry_id)
    outcome = await record_email_verification(verified, store, ledger, clock)
    assert isinstance(outcome, Done)
    [confirmed] = outcome.publish
    assert isinstance(confirmed, EnquiryConfirmed)
    assert (confirmed.data.enquiry_id, confirmed.data.verified_at) == (enquiry_id, verified.data.verified_at)
    assert confirmed.correlation_id == verified.correlation_id
    # A repeat (a double click, a redelivery) is the same event: notifications drops it by its id.
    again = await record_email_verification(verified, store, ledger, clock)
    assert isinstance(again, Done)
    assert again.publish == outcome.publish
    assert len(ledger.links) == 1
    assert store.verifications == {}
