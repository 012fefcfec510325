"""The agreements use cases' decisions, with hand-written fakes of the store and the ledger."""

import uuid
from datetime import UTC, datetime

from pymongo.errors import AutoReconnect

from agency_chassis.outcomes import Attempt, Done, RetryLater
from agency_shared.chain import GENESIS_HASH, record_hash
from agency_shared.events import AgreementRecorded
from agreements.handlers import note_notification, record_submitted_application, record_submitted_applications
from agreements.storage import LedgerContention
from tests.support.events import application_submitted, notification_settled
from tests.support.fakes import FakeAcceptanceLedger, FakeApplications

NOW = datetime(2026, 5, 4, 3, 2, 1, 123000, tzinfo=UTC)


def clock() -> datetime:
    return NOW


async def test_an_application_is_recorded_once_and_announced_with_the_same_event_on_redelivery() -> None:
    store, ledger = FakeApplications(), FakeAcceptanceLedger()
    event = application_submitted(locale="zh-CN")
    first = await record_submitted_application(event, store, ledger, clock)
    second = await record_submitted_application(event, store, ledger, clock)
    assert isinstance(first, Done)
    assert first == second  # the same agreement.recorded, same id
    [recorded] = first.publish
    assert isinstance(recorded, AgreementRecorded)
    assert list(store.records) == [event.data.application_id]
    assert len(ledger.links) == 1
    assert store.recorded == {event.data.application_id: 1}
    assert (recorded.data.sequence, recorded.data.prev_hash) == (1, GENESIS_HASH)
    assert recorded.data.record_hash == record_hash(recorded.data.record)
    assert recorded.data.locale == "zh-CN"
    assert recorded.correlation_id == event.correlation_id


async def test_an_erased_applicant_is_done_with_nothing_to_announce() -> None:
    store, ledger = FakeApplications(), FakeAcceptanceLedger()
    event = application_submitted()
    store.erased.add(event.data.application_id)
    assert await record_submitted_application(event, store, ledger, clock) == Done()
    assert ledger.links == []


async def test_a_database_outage_means_retry_later() -> None:
    store, ledger = FakeApplications(), FakeAcceptanceLedger()
    store.down = True
    outcome = await record_submitted_application(application_submitted(), store, ledger, clock)
    assert isinstance(outcome, RetryLater)
    assert outcome.publish == ()
    assert "database unreachable" in outcome.reason


async def test_a_ledger_too_busy_or_unreachable_means_retry_later() -> None:
    for busy in (LedgerContention("no free sequence after 20 tries"), AutoReconnect("primary stepped down")):
        store, ledger = FakeApplications(), FakeAcceptanceLedger(busy=busy)
        outcome = await record_submitted_application(application_submitted(), store, ledger, clock)
        assert isinstance(outcome, RetryLater), busy
        assert outcome.publish == ()


async def test_a_batch_records_each_application_in_order_and_answers_for_each_message() -> None:
    store, ledger = FakeApplications(), FakeAcceptanceLedger()
    first, erased, third = application_submitted(), application_submitted(), application_submitted()
    store.erased.add(erased.data.application_id)
    batch = [(first, Attempt()), (erased, Attempt()), (third, Attempt(number=3)), (first, Attempt())]
    outcomes = await record_submitted_applications(batch, store, ledger, clock)
    assert len(outcomes) == len(batch)
    assert outcomes[1] == Done()  # erased: nothing to announce
    assert outcomes[0] == outcomes[3]  # the repeat announces the same link
    announced = [outcome.publish[0] for outcome in (outcomes[0], outcomes[2]) if isinstance(outcome, Done)]
    assert [(e.data.application_id, e.data.sequence) for e in announced if isinstance(e, AgreementRecorded)] == [
        (first.data.application_id, 1),
        (third.data.application_id, 2),
    ]
    assert [link.sequence for link in ledger.links] == [1, 2]
    assert store.recorded == {first.data.application_id: 1, third.data.application_id: 2}


async def test_an_outage_retries_every_message_of_the_batch() -> None:
    store, ledger = FakeApplications(), FakeAcceptanceLedger()
    store.down = True
    batch = [(application_submitted(), Attempt()) for _ in range(3)]
    outcomes = await record_submitted_applications(batch, store, ledger, clock)
    assert [type(outcome) for outcome in outcomes] == [RetryLater] * 3
    assert ledger.links == []


async def test_an_email_outcome_goes_to_the_store_each_time_it_comes() -> None:
    # A repeat is harmless because the store ignores it (tests/agreements/test_storage.py), not because
    # the use case remembers anything: each delivery is handed over and done.
    store = FakeApplications()
    event = notification_settled(uuid.uuid4())
    assert await note_notification(event, store) == Done()
    assert await note_notification(event, store) == Done()
    assert store.notes == [event.data, event.data]


async def test_noting_during_a_database_outage_means_retry_later() -> None:
    store = FakeApplications()
    store.down = True
    outcome = await note_notification(notification_settled(uuid.uuid4()), store)
    assert isinstance(outcome, RetryLater)
