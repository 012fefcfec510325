"""Unit tests of the agreements handler with FastStream's in-memory broker and hand-written fakes."""

import uuid

from faststream.rabbit import RabbitBroker, TestRabbitBroker

from agency_shared.chain import GENESIS, GENESIS_HASH, record_hash
from agency_shared.events import AgreementRecorded, Event, NotificationSettledData
from agency_shared.topology import AGREEMENTS_APPLICATION_SUBMITTED, EVENTS_EXCHANGE
from agreements.handlers import build_router
from agreements.recording import ApplicationRecord, LedgerEntry, acceptance_link
from tests.support.events import application_submitted


class InMemoryStore:
    def __init__(self) -> None:
        self.records: dict[uuid.UUID, ApplicationRecord] = {}
        self.recorded: dict[uuid.UUID, int] = {}
        self.notes: list[NotificationSettledData] = []

    async def add(self, record: ApplicationRecord) -> ApplicationRecord:
        return self.records.setdefault(record.application_id, record)

    async def mark_recorded(self, record: ApplicationRecord, entry: LedgerEntry) -> None:
        self.recorded[record.application_id] = entry.sequence

    async def note_notification(self, settled: NotificationSettledData) -> None:
        self.notes.append(settled)


class InMemoryLedger:
    def __init__(self) -> None:
        self.links: list[LedgerEntry] = []

    async def append(self, record: ApplicationRecord) -> LedgerEntry:
        for link in self.links:
            if link.record["application_id"] == str(record.application_id):
                return link
        self.links.append(acceptance_link(record, self.links[-1].head if self.links else GENESIS))
        return self.links[-1]


async def test_a_submitted_application_is_recorded_once_and_announced_with_the_same_event() -> None:
    store, ledger, published = InMemoryStore(), InMemoryLedger(), list[Event]()

    async def publish(event: Event) -> None:
        published.append(event)

    broker = RabbitBroker()
    broker.include_router(build_router(store, ledger, publish))
    event = application_submitted(locale="zh-CN")
    async with TestRabbitBroker(broker) as test_broker:
        for _ in range(2):  # a redelivery
            await test_broker.publish(
                event.model_dump(mode="json"),
                exchange=EVENTS_EXCHANGE,
                routing_key=AGREEMENTS_APPLICATION_SUBMITTED.event.routing_key,
            )

    assert list(store.records) == [event.data.application_id]
    assert len(ledger.links) == 1
    assert store.recorded == {event.data.application_id: 1}
    first, second = published
    assert isinstance(first, AgreementRecorded)
    assert first == second
    assert first.data.locale == "zh-CN"
    assert (first.data.sequence, first.data.prev_hash) == (1, GENESIS_HASH)
    assert first.data.record_hash == record_hash(first.data.record)
    assert first.data.agreement_sha256 == event.data.acceptance.agreement_sha256
    assert first.correlation_id == event.correlation_id
