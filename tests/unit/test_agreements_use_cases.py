"""The agreements use cases' decisions, with hand-written fakes of the store and the ledger."""

import uuid
from datetime import UTC, datetime

from pymongo.errors import AutoReconnect

from agency_chassis.outcomes import Done, RetryLater
from agency_shared.chain import GENESIS_HASH, record_hash
from agency_shared.events import AgreementRecorded
from agreements.handlers import note_notification, record_submitted_application
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
