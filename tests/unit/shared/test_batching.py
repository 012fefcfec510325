"""Group commit's front: which deliveries go to the use case together, and what each gets back (no broker)."""

import asyncio
from collections.abc import Sequence

import pytest
from faststream.rabbit import RabbitBroker, RabbitRouter, TestRabbitBroker

from agency_chassis.batching import Batcher
from agency_chassis.consuming import Runner
from agency_chassis.outcomes import Attempt, Done, Outcome
from agency_chassis.retries import Backoff
from agency_shared.events import ApplicationSubmitted
from agency_shared.topology import AGREEMENTS_APPLICATION_SUBMITTED, EVENTS_EXCHANGE
from tests.support.events import application_submitted
from tests.support.fakes import FakeSender


class Recorder:
    """A batch use case that answers each message with its own name and remembers the batches it got."""

    def __init__(self, hold: asyncio.Event | None = None) -> None:
        self.batches: list[list[str]] = []
        self.hold = hold

    async def __call__(self, batch: Sequence[str]) -> Sequence[str]:
        self.batches.append(list(batch))
        if self.hold is not None:
            await self.hold.wait()
        return [f"{name} done" for name in batch]


async def test_deliveries_in_flight_together_go_in_one_batch_each_getting_its_own_outcome() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, max_size=16, wait_seconds=0.002)
    results = await asyncio.gather(*(batcher.submit(f"m{n}") for n in range(5)))
    assert recorder.batches == [["m0", "m1", "m2", "m3", "m4"]]
    assert results == [f"m{n} done" for n in range(5)]


async def test_no_batch_is_larger_than_the_maximum_and_those_waiting_go_next() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, max_size=4, wait_seconds=0.002)
    results = await asyncio.gather(*(batcher.submit(f"m{n}") for n in range(10)))
    assert [len(batch) for batch in recorder.batches] == [4, 4, 2]
    assert [name for batch in recorder.batches for name in batch] == [f"m{n}" for n in range(10)]
    assert results == [f"m{n} done" for n in range(10)]


async def test_what_arrives_while_a_batch_is_written_forms_the_next_one() -> None:
    hold = asyncio.Event()
    recorder = Recorder(hold)
    batcher = Batcher(recorder, max_size=16, wait_seconds=0.001)
    first = asyncio.create_task(batcher.submit("first"))
    while not recorder.batches:  # noqa: ASYNC110 - the batcher has no signal of its own for "writing"
        await asyncio.sleep(0.001)
    later = [asyncio.create_task(batcher.submit(f"later{n}")) for n in range(3)]
    await asyncio.sleep(0)
    hold.set()
    await asyncio.gather(first, *later)
    assert recorder.batches == [["first"], ["later0", "later1", "later2"]]


async def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_goes_on() -> None:
    calls = 0

    async def flaky(batch: Sequence[str]) -> Sequence[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database unreachable")
        return list(batch)

    batcher = Batcher(flaky, max_size=16)
    results = await asyncio.gather(*(batcher.submit(f"m{n}") for n in range(3)), return_exceptions=True)
    assert all(isinstance(result, ConnectionError) for result in results)
    assert await asyncio.wait_for(batcher.submit("after"), 1) == "after"


async def test_a_handler_that_answers_for_a_different_number_fails_the_batch() -> None:
    async def wrong_count(batch: Sequence[str]) -> Sequence[str]:
        return ["one"]

    batcher = Batcher(wrong_count, max_size=16)
    results = await asyncio.gather(*(batcher.submit(f"m{n}") for n in range(3)), return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)


async def test_an_error_the_batch_use_case_did_not_foresee_is_a_retry_for_each_message() -> None:
    batches: list[int] = []

    async def use_case(batch: Sequence[tuple[ApplicationSubmitted, Attempt]]) -> Sequence[Outcome]:
        """Record them."""
        batches.append(len(batch))
        raise KeyError("a defect")

    sender = FakeSender()
    broker, router = RabbitBroker(), RabbitRouter()
    Runner(sender, Backoff(1.0, 300.0, 5)).consume_batch(router, AGREEMENTS_APPLICATION_SUBMITTED, use_case)
    broker.include_router(router)
    event = application_submitted()
    async with TestRabbitBroker(broker) as test_broker:
        await test_broker.publish(
            event.model_dump(mode="json"), exchange=EVENTS_EXCHANGE, routing_key=event.routing_key
        )
    assert batches == [1]
    assert [queue for _, queue, _ in sender.copies] == [AGREEMENTS_APPLICATION_SUBMITTED.retry_queue(1000).name]


@pytest.mark.parametrize("size", [1, 3])
async def test_a_batch_cancelled_at_shutdown_cancels_its_deliveries(size: int) -> None:
    hold = asyncio.Event()
    batcher = Batcher(Recorder(hold), max_size=16, wait_seconds=0.001)
    waiting = [asyncio.create_task(batcher.submit(f"m{n}")) for n in range(size)]
    await asyncio.sleep(0.01)
    writer = batcher._writer
    assert writer is not None
    writer.cancel()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)


async def test_a_batch_that_fails_goes_again_message_by_message_so_one_bad_message_holds_back_no_other() -> None:
    calls: list[int] = []

    async def use_case(batch: Sequence[tuple[ApplicationSubmitted, Attempt]]) -> Sequence[Outcome]:
        """Record them (one of them breaks every batch it is in)."""
        calls.append(len(batch))
        if any(event.data.application.company.legal_name == "Broken Ltd" for event, _ in batch):
            raise KeyError("a defect")
        return [Done() for _ in batch]

    sender = FakeSender()
    broker, router = RabbitBroker(), RabbitRouter()
    runner = Runner(sender, Backoff(1.0, 300.0, 5), batch_wait_seconds=0.05)
    runner.consume_batch(router, AGREEMENTS_APPLICATION_SUBMITTED, use_case)
    broker.include_router(router)
    good = [application_submitted() for _ in range(3)]
    bad = application_submitted()
    company = bad.data.application.company.model_copy(update={"legal_name": "Broken Ltd"})
    application = bad.data.application.model_copy(update={"company": company})
    bad = bad.model_copy(update={"data": bad.data.model_copy(update={"application": application})})
    async with TestRabbitBroker(broker) as test_broker:
        await asyncio.gather(
            *(
                test_broker.publish(e.model_dump(mode="json"), exchange=EVENTS_EXCHANGE, routing_key=e.routing_key)
                for e in [*good, bad]
            )
        )
    assert calls[0] > 1  # they came together
    assert sorted(calls[1:]) == [1] * calls[0]  # then each alone
    # Only the bad one is retried: the good ones were done.
    assert [queue for _, queue, _ in sender.copies] == [AGREEMENTS_APPLICATION_SUBMITTED.retry_queue(1000).name]


def test_a_batcher_holds_at_least_one_item() -> None:
    async def handle(batch: Sequence[str]) -> Sequence[str]:
        return batch

    with pytest.raises(ValueError, match="at least one"):
        Batcher(handle, max_size=0)
