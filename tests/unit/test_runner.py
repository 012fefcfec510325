"""The runner's decisions: what each outcome does to the message, with a fake sender (no broker)."""

from datetime import datetime

import pytest
from faststream.rabbit import RabbitBroker, RabbitRouter, TestRabbitBroker
from prometheus_client import REGISTRY

from agency_chassis.consuming import REDELIVERY_LIMIT, DeathCause, Runner
from agency_chassis.outcomes import Attempt, Done, GiveUp, Outcome, RetryLater
from agency_chassis.publishing import MessageCopy, PublishFailed
from agency_chassis.retries import (
    ATTEMPT_HEADER,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTERED_AT_HEADER,
    DEAD_LETTERED_FROM_HEADER,
    MEMO_HEADER,
    MEMO_VALUE_CHARS,
    REDELIVERIES_HEADER,
    REPLAYED_HEADER,
    Backoff,
    memo_header,
)
from agency_shared.events import ApplicationSubmitted
from agency_shared.topology import AGREEMENTS_APPLICATION_SUBMITTED, EVENTS_EXCHANGE
from tests.support.events import agreement_recorded_event, application_submitted
from tests.support.fakes import FakeSender

QUEUE = AGREEMENTS_APPLICATION_SUBMITTED
BACKOFF = Backoff(base_seconds=1.0, cap_seconds=300.0, max_attempts=5)


def delivery(attempt: int | None = None) -> MessageCopy:
    headers = {} if attempt is None else {ATTEMPT_HEADER: attempt}
    return MessageCopy(
        body=b'{"event_type": "application.submitted"}',
        message_id="m-1",
        correlation_id="c-1",
        content_type="application/json",
        message_type="application.submitted",
        headers={"x-other": "kept", **headers},
    )


def dead_lettered(queue: str = QUEUE.name) -> float:
    return REGISTRY.get_sample_value("wechat_dead_lettered_total", {"queue": queue}) or 0.0


async def apply(outcome: Outcome, attempt: int = 1, sender: FakeSender | None = None) -> FakeSender:
    sender = sender or FakeSender()
    message = delivery(attempt)
    await Runner(sender, BACKOFF).apply(QUEUE, message, BACKOFF.attempt(message.headers), outcome)
    return sender


def the_dead_letter(sender: FakeSender, cause: DeathCause) -> MessageCopy:
    """The one copy sent, which must be the DLQ's, saying where, when and why (``cause``) the message died."""
    [(copy, queue, expiration_ms)] = sender.copies
    assert (queue, expiration_ms) == (QUEUE.dead_letter_queue.name, None)
    assert copy.headers[DEAD_LETTERED_FROM_HEADER] == QUEUE.name
    assert str(copy.headers[DEAD_LETTER_REASON_HEADER]).startswith(f"{cause}: ")
    assert datetime.fromisoformat(copy.headers[DEAD_LETTERED_AT_HEADER]).tzinfo is not None
    assert (copy.body, copy.message_id, copy.correlation_id) == (
        b'{"event_type": "application.submitted"}',
        "m-1",
        "c-1",
    )
    assert copy.headers["x-other"] == "kept"
    return copy


def test_the_attempt_comes_from_the_headers_and_the_backoff_alone() -> None:
    assert BACKOFF.attempt({}) == Attempt(number=1, last=False, replayed=False)
    assert BACKOFF.attempt({ATTEMPT_HEADER: 4}) == Attempt(number=4, last=False, replayed=False)
    assert BACKOFF.attempt({ATTEMPT_HEADER: 5}) == Attempt(number=5, last=True, replayed=False)
    assert BACKOFF.attempt({ATTEMPT_HEADER: "x", REPLAYED_HEADER: 1}) == Attempt(number=1, last=False, replayed=True)


def test_the_attempt_carries_the_memo_of_earlier_attempts_and_ignores_an_unreadable_one() -> None:
    assert BACKOFF.attempt({MEMO_HEADER: '{"a/b/c": "250 ok"}'}).memo == {"a/b/c": "250 ok"}
    assert BACKOFF.attempt({MEMO_HEADER: b'{"k": "v"}'}).memo == {"k": "v"}
    for unreadable in ("{not json", '["a"]', '{"k": 1}', 7):
        assert BACKOFF.attempt({MEMO_HEADER: unreadable}).memo == {}


async def test_retry_later_carries_its_memo_merged_with_the_attempts_to_the_next_attempt() -> None:
    sender = FakeSender()
    message = delivery(2).with_headers(**{MEMO_HEADER: '{"earlier": "250 one"}'})
    attempt = BACKOFF.attempt(message.headers)
    await Runner(sender, BACKOFF).apply(QUEUE, message, attempt, RetryLater("down", memo={"now": "250 two"}))
    [(copy, _, _)] = sender.copies
    assert BACKOFF.attempt(copy.headers).memo == {"earlier": "250 one", "now": "250 two"}
    assert BACKOFF.attempt(copy.headers).number == 3


async def test_a_retry_without_a_memo_adds_no_memo_header() -> None:
    sender = await apply(RetryLater("down"))
    [(copy, _, _)] = sender.copies
    assert MEMO_HEADER not in copy.headers


async def test_done_publishes_its_events_in_order_then_acks() -> None:
    events = (agreement_recorded_event(), agreement_recorded_event(locale="zh-CN"))
    sender = await apply(Done(publish=events))
    assert sender.events == list(events)
    assert sender.copies == []


@pytest.mark.parametrize(("attempt", "delay_ms"), [(1, 1000), (2, 2000), (4, 8000)])
async def test_retry_later_parks_a_copy_in_its_backoff_delay_queue_then_acks(attempt: int, delay_ms: int) -> None:
    sender = await apply(RetryLater("database unreachable"), attempt)
    [(copy, queue, expiration_ms)] = sender.copies
    assert queue == QUEUE.retry_queue(delay_ms).name
    assert expiration_ms is not None
    assert 0.75 * delay_ms <= expiration_ms <= delay_ms  # jittered downwards only
    original = delivery(attempt)
    assert copy.headers == {**original.headers, ATTEMPT_HEADER: attempt + 1}
    assert (copy.body, copy.message_id, copy.correlation_id) == (original.body, "m-1", "c-1")
    assert (copy.content_type, copy.message_type) == (original.content_type, original.message_type)


async def test_retry_later_on_the_last_attempt_dead_letters_and_counts_it() -> None:
    before = dead_lettered()
    sender = await apply(RetryLater("still down"), attempt=BACKOFF.max_attempts)
    copy = the_dead_letter(sender, DeathCause.EXHAUSTED)
    assert copy.headers[DEAD_LETTER_REASON_HEADER] == "attempts-exhausted: still down"
    assert MEMO_HEADER not in copy.headers
    assert dead_lettered() == before + 1


async def test_give_up_still_publishes_its_events_then_dead_letters() -> None:
    before = dead_lettered()
    event = agreement_recorded_event()
    sender = await apply(GiveUp("the mailbox does not exist", publish=(event,)))
    assert sender.events == [event]
    copy = the_dead_letter(sender, DeathCause.GAVE_UP)
    assert copy.headers[DEAD_LETTER_REASON_HEADER] == "gave-up: the mailbox does not exist"
    assert dead_lettered() == before + 1


async def test_a_reason_too_long_for_one_frame_is_cut() -> None:
    sender = await apply(GiveUp("550 " + "x" * 10_000))
    assert len(the_dead_letter(sender, DeathCause.GAVE_UP).headers[DEAD_LETTER_REASON_HEADER]) == MEMO_VALUE_CHARS


async def test_a_dead_letter_the_broker_did_not_confirm_fails_the_delivery_and_is_not_counted() -> None:
    before = dead_lettered()
    with pytest.raises(PublishFailed):
        await apply(GiveUp("the mailbox does not exist"), sender=FakeSender(refuse_copies=True))
    assert dead_lettered() == before


async def test_a_follow_up_the_broker_did_not_confirm_means_retry_later() -> None:
    sender = await apply(Done(publish=(agreement_recorded_event(),)), sender=FakeSender(refuse_events=True))
    [(copy, queue, _)] = sender.copies
    assert queue == QUEUE.retry_queue(1000).name
    assert copy.headers[ATTEMPT_HEADER] == 2


async def test_a_follow_up_not_confirmed_on_the_last_attempt_dead_letters() -> None:
    sender = FakeSender(refuse_events=True)
    await apply(Done(publish=(agreement_recorded_event(),)), attempt=5, sender=sender)
    the_dead_letter(sender, DeathCause.EXHAUSTED)


async def test_a_retry_that_cannot_be_parked_fails_the_delivery_so_it_is_requeued() -> None:
    with pytest.raises(PublishFailed):
        await apply(RetryLater("database unreachable"), sender=FakeSender(refuse_copies=True))


async def test_consume_hands_the_typed_event_and_its_attempt_to_the_use_case() -> None:
    # FastStream's in-memory broker: the subscription, the parsing and the outcome, without a server.
    sender, seen = FakeSender(), list[tuple[ApplicationSubmitted, Attempt]]()
    follow_up = agreement_recorded_event()

    async def use_case(event: ApplicationSubmitted, attempt: Attempt) -> Outcome:
        """Record it."""
        seen.append((event, attempt))
        return Done(publish=(follow_up,))

    broker, router = RabbitBroker(), RabbitRouter()
    Runner(sender, BACKOFF).consume(router, QUEUE, use_case)
    broker.include_router(router)
    event = application_submitted()
    async with TestRabbitBroker(broker) as test_broker:
        await test_broker.publish(
            event.model_dump(mode="json"), exchange=EVENTS_EXCHANGE, routing_key=event.routing_key
        )
    assert seen == [(event, Attempt(number=1, last=False, replayed=False))]
    assert sender.events == [follow_up]


async def test_consume_dead_letters_an_unreadable_payload_without_calling_the_use_case() -> None:
    calls = 0

    async def use_case(event: ApplicationSubmitted, attempt: Attempt) -> Outcome:
        nonlocal calls
        calls += 1
        return Done()

    sender = FakeSender()
    broker, router = RabbitBroker(), RabbitRouter()
    Runner(sender, BACKOFF).consume(router, QUEUE, use_case)
    broker.include_router(router)
    before = dead_lettered()
    async with TestRabbitBroker(broker) as test_broker:
        await test_broker.publish(
            {"event_type": "application.submitted", "data": {"company": "Zhou-Unique Ltd"}},
            exchange=EVENTS_EXCHANGE,
            routing_key=QUEUE.event.routing_key,
            message_id="m-unreadable",
        )
    assert calls == 0
    [(copy, queue, _)] = sender.copies
    assert queue == QUEUE.dead_letter_queue.name
    assert b"Zhou-Unique Ltd" in copy.body  # the message as it came, for an operator to look at
    reason = str(copy.headers[DEAD_LETTER_REASON_HEADER])
    assert reason.startswith("unreadable: ")
    assert "data.application: missing" in reason
    assert "Zhou-Unique" not in reason  # which fields, never the values
    assert dead_lettered() == before + 1


async def test_an_error_the_use_case_did_not_foresee_is_retried_with_backoff_then_dead_lettered() -> None:
    async def use_case(event: ApplicationSubmitted, attempt: Attempt) -> Outcome:
        raise KeyError("a defect")

    runner, event = Runner(FakeSender(), BACKOFF), application_submitted()
    outcome = await runner.decide(QUEUE, use_case, event, BACKOFF.attempt({}))
    assert isinstance(outcome, RetryLater)
    assert "KeyError" in outcome.reason
    sender = await apply(outcome, attempt=1)
    assert [queue for _, queue, _ in sender.copies] == [QUEUE.retry_queue(1000).name]
    the_dead_letter(await apply(outcome, attempt=5), DeathCause.EXHAUSTED)


async def test_a_validation_error_inside_the_use_case_is_not_taken_for_an_unreadable_payload() -> None:
    # Only a body that cannot be parsed is dead-lettered at once; the use case's own errors are retried.
    async def use_case(event: ApplicationSubmitted, attempt: Attempt) -> Outcome:
        ApplicationSubmitted.model_validate({})
        return Done()

    sender = FakeSender()
    broker, router = RabbitBroker(), RabbitRouter()
    Runner(sender, BACKOFF).consume(router, QUEUE, use_case)
    broker.include_router(router)
    before = dead_lettered()
    event = application_submitted()
    async with TestRabbitBroker(broker) as test_broker:
        await test_broker.publish(
            event.model_dump(mode="json"), exchange=EVENTS_EXCHANGE, routing_key=event.routing_key
        )
    assert dead_lettered() == before
    assert [queue for _, queue, _ in sender.copies] == [QUEUE.retry_queue(1000).name]


async def test_a_validation_error_inside_the_use_case_is_logged_without_the_values_it_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused = "-".join(("Zhou", "Unique"))  # not in the source line the traceback quotes

    async def use_case(event: ApplicationSubmitted, attempt: Attempt) -> Outcome:
        ApplicationSubmitted.model_validate({"event_type": "application.submitted", "data": {"name": refused}})
        return Done()

    event = application_submitted()
    outcome = await Runner(FakeSender(), BACKOFF).decide(QUEUE, use_case, event, BACKOFF.attempt({}))
    assert isinstance(outcome, RetryLater)
    assert "ValidationError" in outcome.reason
    assert "data.name: extra_forbidden" in caplog.text  # which field, and what kind of error
    assert "use_case" in caplog.text  # where it happened
    assert refused not in caplog.text + outcome.reason


async def test_a_redelivered_copy_is_parked_in_the_shortest_tier_counted_and_keeps_its_attempt_and_memo() -> None:
    sender = FakeSender()
    message = delivery(3).with_headers(**{MEMO_HEADER: '{"k": "250 ok"}', REDELIVERIES_HEADER: 2})
    await Runner(sender, BACKOFF).redelivered(QUEUE, message)
    [(copy, queue, expiration_ms)] = sender.copies
    assert queue == QUEUE.retry_queue(BACKOFF.delay_ms(1)).name
    assert expiration_ms is not None
    assert copy.headers[REDELIVERIES_HEADER] == 3
    # Not an attempt: a consumer stopped while holding it prefetched used none.
    assert BACKOFF.attempt(copy.headers).number == 3
    assert BACKOFF.attempt(copy.headers).memo == {"k": "250 ok"}


async def test_a_copy_redelivered_past_the_limit_is_dead_lettered_not_parked() -> None:
    sender = FakeSender()
    before = dead_lettered()
    message = delivery().with_headers(**{REDELIVERIES_HEADER: REDELIVERY_LIMIT})
    await Runner(sender, BACKOFF).redelivered(QUEUE, message)
    copy = the_dead_letter(sender, DeathCause.REDELIVERED)
    assert copy.headers[REDELIVERIES_HEADER] == REDELIVERY_LIMIT
    assert dead_lettered() == before + 1


async def test_what_the_last_attempt_learnt_goes_to_the_dlq_with_the_message() -> None:
    sender = FakeSender()
    before = dead_lettered()
    message = delivery(BACKOFF.max_attempts).with_headers(**{MEMO_HEADER: '{"earlier": "250 one"}'})
    attempt = BACKOFF.attempt(message.headers)
    outcome = RetryLater("still down", memo={"now": "250 two"})
    await Runner(sender, BACKOFF).apply(QUEUE, message, attempt, outcome)
    copy = the_dead_letter(sender, DeathCause.EXHAUSTED)
    assert BACKOFF.attempt(copy.headers).memo == {"earlier": "250 one", "now": "250 two"}
    assert dead_lettered() == before + 1


def test_a_memo_keeps_each_value_short_enough_for_one_frame() -> None:
    assert BACKOFF.attempt({MEMO_HEADER: memo_header({"k": "x" * 10_000})}).memo == {"k": "x" * MEMO_VALUE_CHARS}
